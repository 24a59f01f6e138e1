// The CUDA GEMM (see gemm.h): tiled shared-memory FP32 kernels, 64 x 64 tiles with K split
// across blocks for small products and 128 x 128 tiles (TF32 tensor cores when asked) for
// large ones.
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "common.cuh"
#include "gemm.h"

namespace recurrent {
namespace cuda {

namespace {

// ---------------------------------------------------------------------------
// GEMM: 64 x 64 tiles of C per block of 256 threads, 4 x 4 per thread, K in steps of 16.

constexpr int kTile = 64, kDepth = 16, kThreads = 256;
std::atomic<bool> g_tf32{false};      // set_tf32
// split-K on 128 x 128 tiles (RECURRENT_CUDA_BIG_SPLIT=0 turns it off, for comparison)
std::atomic<bool> g_big_split{!(std::getenv("RECURRENT_CUDA_BIG_SPLIT") && std::string(std::getenv("RECURRENT_CUDA_BIG_SPLIT")) == "0")};

// SPLIT: blockIdx.z splits K into chunks of k_chunk (one product only), each adding
// alpha times its partial product into C with atomics (C already scaled by beta).
template <bool TA, bool TB, bool SPLIT>
__global__ void __launch_bounds__(kThreads) gemm_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                        int lda, const float* __restrict__ B, int ldb, float beta,
                                                        float* __restrict__ C, int ldc, long sa, long sb, long sc,
                                                        int k_chunk) {
  const int kb = SPLIT ? blockIdx.z * k_chunk : 0;
  const int ke = SPLIT ? min(K, kb + k_chunk) : K;
  if (!SPLIT) {
    A += blockIdx.z * sa;
    B += blockIdx.z * sb;
    C += blockIdx.z * sc;
  }
  __shared__ float as[kDepth][kTile + 4];  // as[k][m]
  __shared__ float bs[kDepth][kTile + 4];  // bs[k][n]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int m0 = blockIdx.y * kTile, n0 = blockIdx.x * kTile;
  float acc[4][4] = {};
  for (int k0 = kb; k0 < ke; k0 += kDepth) {
    for (int i = threadIdx.x; i < kTile * kDepth; i += kThreads) {
      // consecutive threads read consecutive addresses of A and B
      const int mm = TA ? i % kTile : i / kDepth, ka = TA ? i / kTile : i % kDepth;
      const int gm = m0 + mm, gka = k0 + ka;
      as[ka][mm] = gm < M && gka < ke ? (TA ? A[static_cast<long>(gka) * lda + gm] : A[static_cast<long>(gm) * lda + gka]) : 0.0f;
      const int nn = TB ? i / kDepth : i % kTile, kb2 = TB ? i % kDepth : i / kTile;
      const int gn = n0 + nn, gkb = k0 + kb2;
      bs[kb2][nn] = gn < N && gkb < ke ? (TB ? B[static_cast<long>(gn) * ldb + gkb] : B[static_cast<long>(gkb) * ldb + gn]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = as[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = bs[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gm = m0 + ty * 4 + i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gn = n0 + tx * 4 + j;
      if (gn >= N) continue;
      float* out = C + static_cast<long>(gm) * ldc + gn;
      if (SPLIT) atomicAdd(out, alpha * acc[i][j]);
      else *out = alpha * acc[i][j] + (beta == 0.0f ? 0.0f : beta * *out);
    }
  }
}

// Large products: 128 x 128 tiles of C per block of 256 threads, K in steps of 8, the next
// tile's loads in registers while this one is multiplied. FP32: 8 x 8 outputs per thread.
// TF32 (opt-in): the same tiles through the tensor cores (wmma m16n16k8, FP32 accumulate),
// each of the 8 warps computing 64 x 32.
constexpr int kBig = 128, kBigDepth = 8, kBigPad = 4;

// SPLIT: as in gemm_kernel, blockIdx.z takes a chunk of K and adds into C with atomics.
template <bool TA, bool TB, bool TF32, bool SPLIT>
__global__ void __launch_bounds__(256) gemm_big_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                       int lda, const float* __restrict__ B, int ldb, float beta,
                                                       float* __restrict__ C, int ldc, long sa, long sb, long sc,
                                                       int k_chunk) {
  const int kb = SPLIT ? blockIdx.z * k_chunk : 0;
  const int ke = SPLIT ? min(K, kb + k_chunk) : K;
  if (!SPLIT) {
    A += blockIdx.z * sa;
    B += blockIdx.z * sb;
    C += blockIdx.z * sc;
  }
  __shared__ __align__(32) float as[kBigDepth][kBig + kBigPad];  // as[k][m]
  __shared__ __align__(32) float bs[kBigDepth][kBig + kBigPad];  // bs[k][n]
  const int t = threadIdx.x;
  const int m0 = blockIdx.y * kBig, n0 = blockIdx.x * kBig;
  // this thread's 4 loads of each tile: (row, col) of the A tile (m, k) and B tile (k, n)
  const int am = TA ? (t % 32) * 4 : t / 2, ak = TA ? t / 32 : (t % 2) * 4;
  const int bk = TB ? (t % 2) * 4 : t / 32, bn = TB ? t / 2 : (t % 32) * 4;
  float ra[4], rb[4];
  auto load = [&](int k0) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int m = m0 + am + (TA ? q : 0), ka = k0 + ak + (TA ? 0 : q);
      ra[q] = m < M && ka < ke ? (TA ? A[static_cast<long>(ka) * lda + m] : A[static_cast<long>(m) * lda + ka]) : 0.0f;
      const int n = n0 + bn + (TB ? 0 : q), kq = k0 + bk + (TB ? q : 0);
      rb[q] = n < N && kq < ke ? (TB ? B[static_cast<long>(n) * ldb + kq] : B[static_cast<long>(kq) * ldb + n]) : 0.0f;
    }
  };
  auto store = [&] {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      as[ak + (TA ? 0 : q)][am + (TA ? q : 0)] = ra[q];
      bs[bk + (TB ? q : 0)][bn + (TB ? 0 : q)] = rb[q];
    }
  };
  load(kb);
  if constexpr (!TF32) {
    const int tx = t % 16, ty = t / 16;
    float acc[8][8] = {};
    for (int k0 = kb; k0 < ke; k0 += kBigDepth) {
      __syncthreads();
      store();
      __syncthreads();
      if (k0 + kBigDepth < ke) load(k0 + kBigDepth);
#pragma unroll
      for (int k = 0; k < kBigDepth; ++k) {
        float a[8], b[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) a[i] = as[k][ty * 8 + i];
#pragma unroll
        for (int j = 0; j < 8; ++j) b[j] = bs[k][tx * 8 + j];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
      }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int gm = m0 + ty * 8 + i;
      if (gm >= M) continue;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int gn = n0 + tx * 8 + j;
        if (gn >= N) continue;
        float* out = C + static_cast<long>(gm) * ldc + gn;
        if (SPLIT) atomicAdd(out, alpha * acc[i][j]);
        else *out = alpha * acc[i][j] + (beta == 0.0f ? 0.0f : beta * *out);
      }
    }
  } else {
    using namespace nvcuda;
    const int warp = t / 32, lane = t % 32, wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = kb; k0 < ke; k0 += kBigDepth) {
      __syncthreads();
      store();
      __syncthreads();
      if (k0 + kBigDepth < ke) load(k0 + kBigDepth);
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        wmma::load_matrix_sync(fa[i], &as[0][wm + i * 16], kBig + kBigPad);
#pragma unroll
        for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(fb[j], &bs[0][wn + j * 16], kBig + kBigPad);
#pragma unroll
        for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __shared__ __align__(32) float scratch[8][16 * 16];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::store_matrix_sync(scratch[warp], acc[i][j], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
          const int gm = m0 + wm + i * 16 + e / 16, gn = n0 + wn + j * 16 + e % 16;
          if (gm < M && gn < N) {
            float* out = C + static_cast<long>(gm) * ldc + gn;
            if (SPLIT) atomicAdd(out, alpha * scratch[warp][e]);
            else *out = alpha * scratch[warp][e] + (beta == 0.0f ? 0.0f : beta * *out);
          }
        }
        __syncwarp();
      }
  }
}
// C (rows m, leading dimension ldc, n columns) *= beta
__global__ void scale_rows_kernel(float* c, int ldc, int n, float beta) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col < n) c[static_cast<long>(blockIdx.y) * ldc + col] *= beta;
}

// C = beta C before split-K blocks add their parts (beta == 0: zeroed, C is not read).
void scale_c(cudaStream_t s, float* c, int ldc, int m, int n, float beta) {
  if (beta == 0.0f) check(cudaMemset2DAsync(c, sizeof(float) * ldc, 0, sizeof(float) * n, m, s), "zero C");
  else if (beta != 1.0f) scale_rows_kernel<<<dim3((n + 255) / 256, m), 256, 0, s>>>(c, ldc, n, beta);
}
}  // namespace

void gemm(Stream stream, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc, int batch, long stride_a, long stride_b,
          long stride_c) {
  if (m <= 0 || n <= 0 || batch <= 0) return;
  constexpr int kMaxGridZ = 65535;
  for (; batch > kMaxGridZ; batch -= kMaxGridZ) {  // more products than one grid holds: in chunks
    gemm(stream, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, kMaxGridZ, stride_a, stride_b, stride_c);
    a += kMaxGridZ * stride_a;
    b += kMaxGridZ * stride_b;
    c += kMaxGridZ * stride_c;
  }
  const cudaStream_t s = as_stream(stream);
  const int sms = sm_count();
  const long big_tiles = static_cast<long>((n + kBig - 1) / kBig) * ((m + kBig - 1) / kBig) * batch;
  // Fewer 128 x 128 tiles than SMs but a long K (the per-step products of a layer at large
  // batch: B x 4H x H forward, B x H x 4H backward): in TF32, split K across blocks of 128 x 128
  // tiles (measured on an H200: 1.2-1.6x for the layer at B = 256); in FP32 the 64 x 64 tiles
  // below are faster there (3.6M against 3.0M timestep-samples/s, LSTM H = 512 inference).
  int big_splits = 1;
  if (big_tiles < sms && batch == 1 && g_big_split.load() && g_tf32.load())
    big_splits = static_cast<int>(std::min<long>((sms + big_tiles - 1) / big_tiles, k / 128));
  if (big_tiles >= sms || (big_splits >= 2 && big_tiles * big_splits >= sms / 2)) {
    const bool split = big_tiles < sms;
    int chunk = 0, zdim = batch;
    if (split) {
      chunk = ((k + big_splits - 1) / big_splits + kBigDepth - 1) / kBigDepth * kBigDepth;
      zdim = (k + chunk - 1) / chunk;
      scale_c(s, c, ldc, m, n, beta);
    }
    const dim3 grid((n + kBig - 1) / kBig, (m + kBig - 1) / kBig, zdim);
    const bool tf32 = g_tf32.load();
#define RECURRENT_BIG(TA, TB, SPLIT)                                                                              \
  (tf32 ? gemm_big_kernel<TA, TB, true, SPLIT><<<grid, 256, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,  \
                                                                    stride_a, stride_b, stride_c, chunk)           \
        : gemm_big_kernel<TA, TB, false, SPLIT><<<grid, 256, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, \
                                                                     stride_a, stride_b, stride_c, chunk))
#define RECURRENT_BIG_T(TA, TB) (split ? RECURRENT_BIG(TA, TB, true) : RECURRENT_BIG(TA, TB, false))
    if (!trans_a && !trans_b) RECURRENT_BIG_T(false, false);
    else if (!trans_a) RECURRENT_BIG_T(false, true);
    else if (!trans_b) RECURRENT_BIG_T(true, false);
    else RECURRENT_BIG_T(true, true);
#undef RECURRENT_BIG_T
#undef RECURRENT_BIG
    check_launch("gemm (128 x 128 tiles)");
    return;
  }
  const int tiles = ((n + kTile - 1) / kTile) * ((m + kTile - 1) / kTile);
  // Too few tiles to fill the GPU (the per-step products of a layer: B x H x 4H) and a
  // long K: split K across blocks that add their partial products with atomics.
  int splits = 1;
  if (batch == 1 && k >= 512 && tiles < sms) splits = std::min((2 * sms + tiles - 1) / tiles, k / 256);
  if (splits > 1) {
    const int chunk = ((k + splits - 1) / splits + kDepth - 1) / kDepth * kDepth;
    splits = (k + chunk - 1) / chunk;
    scale_c(s, c, ldc, m, n, beta);
    const dim3 grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile, splits);
    if (!trans_a && !trans_b) gemm_kernel<false, false, true><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0, 0, chunk);
    else if (!trans_a) gemm_kernel<false, true, true><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0, 0, chunk);
    else if (!trans_b) gemm_kernel<true, false, true><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0, 0, chunk);
    else gemm_kernel<true, true, true><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0, 0, 0, chunk);
    check_launch("gemm (split K)");
    return;
  }
  const dim3 grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile, batch);
  if (!trans_a && !trans_b) gemm_kernel<false, false, false><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c, 0);
  else if (!trans_a) gemm_kernel<false, true, false><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c, 0);
  else if (!trans_b) gemm_kernel<true, false, false><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c, 0);
  else gemm_kernel<true, true, false><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c, 0);
  check_launch("gemm");
}

void set_tf32(bool enabled) { g_tf32 = enabled; }

}  // namespace cuda
}  // namespace recurrent
