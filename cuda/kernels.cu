// CUDA kernels: a tiled FP32 GEMM and the recurrent layer (forward and backward), with
// the CPU kernels' plan (cpp/recurrent.cc): the input projection of all steps as one
// GEMM; per step, the recurrent GEMM then one fused gate kernel (cells.h); backward, one
// reverse sweep of gate kernels and recurrent GEMMs, then the weight gradients as one
// GEMM each and the bias gradients as one column reduction.
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cpp/cells.h"
#include "kernels.h"

namespace recurrent {
namespace cuda {

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// ---------------------------------------------------------------------------
// GEMM: 64 x 64 tiles of C per block of 256 threads, 4 x 4 per thread, K in steps of 16.

constexpr int kTile = 64, kDepth = 16, kThreads = 256;
constexpr size_t kBarrierFloats = 64;  // the persistent kernels' grid barrier, at the end of the workspace
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

// The device's SM count, asked once (every GEMM call sizes its grid by it).
int sm_count() {
  static const int sms = [] {
    int device = 0, count = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "SM count");
    return count;
  }();
  return sms;
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

// ---------------------------------------------------------------------------
// Gate kernels: one thread per (batch row, hidden unit) of one time step.

__device__ inline bool active(const int* lengths, int b, int t) { return !lengths || lengths[b] > t; }

struct StepArgs {
  int B, H, D, d, t;
  const int* lengths;
  const float* b_ih;  // null: no bias
  const float* b_hh;
};

__device__ inline float bias(const float* b, int i) { return b ? b[i] : 0.0f; }

// One (batch row b, hidden unit j) of forward step t. xr: row b of the step's input
// projections (GH); hp(q): the recurrent projection of gate q for (b, j); h_old: the state
// entering the step; c_io: the cell state, updated in place (LSTM); the new state goes to
// *h_new; y: row b of the step's output; gates/h_prev/c_prev/h_n: the reserve's rows of b.
template <typename Recurrent>
__device__ __forceinline__ void forward_unit(const StepArgs& s, CellKind kind, int b, int j, const float* xr,
                                             Recurrent hp, float h_old, float* c_io, float* h_new, float* y,
                                             float* gates, float* h_prev, float* c_prev, float* h_n) {
  const int H = s.H, G = gate_count(kind);
  h_prev[j] = h_old;
  if (kind == CellKind::kLstm) c_prev[j] = *c_io;
  if (!active(s.lengths, b, s.t)) {
    y[j] = 0.0f;
    for (int q = 0; q < G; ++q) gates[q * H + j] = 0.0f;
    if (kind == CellKind::kGru) h_n[j] = 0.0f;
    *h_new = h_old;
    return;
  }
  if (kind == CellKind::kLstm) {
    float pre[4];
    for (int q = 0; q < 4; ++q) pre[q] = xr[q * H + j] + hp(q) + bias(s.b_ih, q * H + j) + bias(s.b_hh, q * H + j);
    float cn, hn;
    const LstmGates gv = lstm_cell_forward(pre[0], pre[1], pre[2], pre[3], *c_io, &cn, &hn);
    *c_io = cn;
    *h_new = hn;
    y[j] = hn;
    gates[j] = gv.i;
    gates[H + j] = gv.f;
    gates[2 * H + j] = gv.g;
    gates[3 * H + j] = gv.o;
  } else if (kind == CellKind::kGru) {
    const float hn_pre = hp(2) + bias(s.b_hh, 2 * H + j);
    float hv;
    const GruGates gv = gru_cell_forward(xr[j] + bias(s.b_ih, j), xr[H + j] + bias(s.b_ih, H + j),
                                         xr[2 * H + j] + bias(s.b_ih, 2 * H + j), hp(0) + bias(s.b_hh, j),
                                         hp(1) + bias(s.b_hh, H + j), hn_pre, h_old, &hv);
    *h_new = hv;
    y[j] = hv;
    gates[j] = gv.r;
    gates[H + j] = gv.z;
    gates[2 * H + j] = gv.n;
    h_n[j] = hn_pre;
  } else {
    const float hv = rnn_cell_forward(xr[j] + hp(0) + bias(s.b_ih, j) + bias(s.b_hh, j), kind == CellKind::kRnnRelu);
    *h_new = hv;
    y[j] = hv;
    gates[j] = hv;
  }
}

// One (b, j) of backward step t: dh_in is the gradient of the state leaving the step, dy
// the output's; dc_io the cell-state gradient, updated in place; gx / gh: row b of the
// step's gate gradients. Returns the part of dh_prev that bypasses the recurrent GEMM.
__device__ __forceinline__ float backward_unit(const StepArgs& s, CellKind kind, int b, int j, const float* g,
                                               float h_prev, float c_prev, float h_n, float dh_in, float dy,
                                               float* dc_io, float* gx, float* gh) {
  const int H = s.H, G = gate_count(kind);
  if (!active(s.lengths, b, s.t)) {
    for (int q = 0; q < G; ++q) {
      gx[q * H + j] = 0.0f;
      gh[q * H + j] = 0.0f;
    }
    return dh_in;  // a padded step passes the gradient through unchanged
  }
  const float dht = dh_in + dy;
  if (kind == CellKind::kLstm) {
    const LstmGates gv{g[j], g[H + j], g[2 * H + j], g[3 * H + j]};
    float dc_prev;
    const LstmGates da = lstm_cell_backward(gv, c_prev, dht, *dc_io, &dc_prev);
    *dc_io = dc_prev;
    gx[j] = gh[j] = da.i;
    gx[H + j] = gh[H + j] = da.f;
    gx[2 * H + j] = gh[2 * H + j] = da.g;
    gx[3 * H + j] = gh[3 * H + j] = da.o;
    return 0.0f;
  }
  if (kind == CellKind::kGru) {
    const GruGates gv{g[j], g[H + j], g[2 * H + j]};
    float direct;
    const GruGrads da = gru_cell_backward(gv, h_n, h_prev, dht, &direct);
    gx[j] = gh[j] = da.r;
    gx[H + j] = gh[H + j] = da.z;
    gx[2 * H + j] = da.n_x;
    gh[2 * H + j] = da.n_h;
    return direct;
  }
  const float da = rnn_cell_backward(g[j], dht, kind == CellKind::kRnnRelu);
  gx[j] = gh[j] = da;
  return 0.0f;
}

// xp: (B, GH) input projections of step t; hp: (B, GH) recurrent projections; h, c: (B, H)
// state, updated in place; y: step t of the output (row stride D*H, already offset by d*H);
// reserve views of step t: gates (B, GH), h_prev, c_prev, h_n (B, H).
__global__ void forward_step_kernel(StepArgs s, int cell, const float* xp, const float* hp, float* h, float* c, float* y,
                                    float* gates, float* h_prev, float* c_prev, float* h_n) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= s.B * s.H) return;
  const int b = idx / s.H, j = idx % s.H, H = s.H;
  const CellKind kind = static_cast<CellKind>(cell);
  const int GH = gate_count(kind) * H;
  const float* hr = hp + static_cast<long>(b) * GH;
  const long row = static_cast<long>(b) * H;
  float unused = 0.0f;
  forward_unit(s, kind, b, j, xp + static_cast<long>(b) * GH, [&](int q) { return hr[q * H + j]; }, h[idx],
               kind == CellKind::kLstm ? c + idx : &unused, h + idx, y + static_cast<long>(b) * s.D * H,
               gates + static_cast<long>(b) * GH, h_prev + row, c_prev ? c_prev + row : nullptr,
               h_n ? h_n + row : nullptr);
}

// dh: (B, H) gradient of the state leaving step t, replaced by the part of dh_prev that
// bypasses the recurrent GEMM; dc likewise (LSTM). dgx / dgh: (B, GH) of step t.
__global__ void backward_step_kernel(StepArgs s, int cell, const float* gates, const float* h_prev, const float* c_prev,
                                     const float* h_n, const float* dy, float* dh, float* dc, float* dgx, float* dgh) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= s.B * s.H) return;
  const int b = idx / s.H, j = idx % s.H, H = s.H;
  const CellKind kind = static_cast<CellKind>(cell);
  const int GH = gate_count(kind) * H;
  float unused = 0.0f;
  dh[idx] = backward_unit(s, kind, b, j, gates + static_cast<long>(b) * GH, h_prev[idx],
                          kind == CellKind::kLstm ? c_prev[idx] : 0.0f, kind == CellKind::kGru ? h_n[idx] : 0.0f,
                          dh[idx], dy ? dy[static_cast<long>(b) * s.D * H + j] : 0.0f,
                          kind == CellKind::kLstm ? dc + idx : &unused, dgx + static_cast<long>(b) * GH,
                          dgh + static_cast<long>(b) * GH);
}

// ---------------------------------------------------------------------------
// Persistent kernels (Diamos et al., "Persistent RNNs", 2016): one cooperative launch runs
// every time step. Block k owns hidden units [k U, (k+1) U) and keeps the rows of w_hh that
// feed them (forward) or its columns (backward) in shared memory for the whole sequence, so
// the recurrent weights are read from memory once instead of once per step; a grid-wide
// barrier separates the steps. Small batches only (the state must fit in shared memory
// beside the weights): there the per-step GEMM + gate launches are pure latency.

// Sense-counting grid barrier: bar[0] arrivals, bar[1] generation. All blocks are
// co-resident (cooperative launch), so spinning is safe.
__device__ __forceinline__ void grid_barrier(unsigned int* bar) {
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile unsigned int* generation = bar + 1;
    const unsigned int seen = *generation;
    __threadfence();  // this block's writes are visible before it arrives
    if (atomicAdd(bar, 1u) == gridDim.x - 1) {
      atomicExch(bar, 0u);
      __threadfence();
      atomicAdd(bar + 1, 1u);
    } else {
      while (*generation == seen) __nanosleep(20);
    }
    __threadfence();
  }
  __syncthreads();
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

struct PersistentArgs {
  StepArgs s;
  int T, U, cell;
  const float* xproj;  // forward: (T*B, GH) input projections (no bias)
  const float* w_hh;   // (GH, H)
  float* state[2];     // forward: (B, H) double buffer, state[0] holds h0
  float* c;            // (B, H) cell state, or the LSTM's dc in backward
  float* dh;           // backward: (B, H)
  float* y;            // forward: the output (T, B, D*H), offset by d*H
  const float* dy;     // backward: dy offset by d*H, or null
  float *gates, *h_prev, *c_prev, *h_n;  // the reserve's views of this direction
  float* dgx;          // backward: (T*B, GH)
  float* dgh;
  unsigned int* barrier;
};

__global__ void __launch_bounds__(256) persistent_forward_kernel(PersistentArgs a) {
  extern __shared__ float smem[];
  const CellKind kind = static_cast<CellKind>(a.cell);
  const int H = a.s.H, B = a.s.B, U = a.U, G = gate_count(kind), GH = G * H, R = G * U;
  const int j0 = blockIdx.x * U;
  float* ws = smem;         // (R, H): row q U + u is w_hh row q H + j0 + u
  float* hs = ws + R * H;   // (B, H): the state entering the step
  float* pre = hs + B * H;  // (B, R): recurrent projections of this block's gates
  for (int i = threadIdx.x; i < R * H; i += blockDim.x) {
    const int r = i / H, k = i % H, q = r / U, u = r % U;
    ws[i] = j0 + u < H ? a.w_hh[static_cast<long>(q * H + j0 + u) * H + k] : 0.0f;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int step = 0; step < a.T; ++step) {
    StepArgs s = a.s;
    s.t = s.d == 0 ? step : a.T - 1 - step;
    const float* cur = a.state[step & 1];
    float* next = a.state[(step + 1) & 1];
    for (int i = threadIdx.x; i < B * H; i += blockDim.x) hs[i] = __ldcg(cur + i);  // written by other blocks
    __syncthreads();
    for (int o = warp; o < B * R; o += warps) {
      const float* hr = hs + (o / R) * H;
      const float* wr = ws + (o % R) * H;
      float acc = 0.0f;
      for (int k = lane; k < H; k += 32) acc += hr[k] * wr[k];
      acc = warp_sum(acc);
      if (lane == 0) pre[o] = acc;
    }
    __syncthreads();
    const long row = static_cast<long>(s.t) * B;
    for (int i = threadIdx.x; i < B * U; i += blockDim.x) {
      const int b = i / U, u = i % U, j = j0 + u;
      if (j >= H) continue;
      const float* pr = pre + b * R;
      const long rb = row + b;
      float unused = 0.0f;
      forward_unit(s, kind, b, j, a.xproj + rb * GH, [&](int q) { return pr[q * U + u]; }, hs[b * H + j],
                   kind == CellKind::kLstm ? a.c + static_cast<long>(b) * H + j : &unused,
                   next + static_cast<long>(b) * H + j, a.y + rb * s.D * H, a.gates + rb * GH, a.h_prev + rb * H,
                   a.c_prev ? a.c_prev + rb * H : nullptr, a.h_n ? a.h_n + rb * H : nullptr);
    }
    grid_barrier(a.barrier);
  }
}

__global__ void __launch_bounds__(256) persistent_backward_kernel(PersistentArgs a) {
  extern __shared__ float smem[];
  const CellKind kind = static_cast<CellKind>(a.cell);
  const int H = a.s.H, B = a.s.B, U = a.U, G = gate_count(kind), GH = G * H;
  const int j0 = blockIdx.x * U;
  float* wt = smem;         // (U, GH): wt[u][r] = w_hh[r][j0 + u]
  float* ds = wt + U * GH;  // (B, GH): the gate gradients of the step processed last
  for (int i = threadIdx.x; i < U * GH; i += blockDim.x) {
    const int u = i / GH, r = i % GH;
    wt[i] = j0 + u < H ? a.w_hh[static_cast<long>(r) * H + j0 + u] : 0.0f;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int i = 0; i <= a.T; ++i) {
    if (i > 0) {
      // dh_prev of this block's units += dgh (of the step done last) w_hh
      const int done = a.s.d == 0 ? a.T - i : i - 1;
      const float* src = a.dgh + static_cast<long>(done) * B * GH;
      for (int k = threadIdx.x; k < B * GH; k += blockDim.x) ds[k] = __ldcg(src + k);
      __syncthreads();
      for (int o = warp; o < B * U; o += warps) {
        const int b = o / U, u = o % U;
        const float* dr = ds + b * GH;
        const float* wr = wt + u * GH;
        float acc = 0.0f;
        for (int k = lane; k < GH; k += 32) acc += dr[k] * wr[k];
        acc = warp_sum(acc);
        if (lane == 0 && j0 + u < H) a.dh[static_cast<long>(b) * H + j0 + u] += acc;
      }
      __syncthreads();
    }
    if (i == a.T) break;
    StepArgs s = a.s;
    s.t = s.d == 0 ? a.T - 1 - i : i;
    const long row = static_cast<long>(s.t) * B;
    for (int k = threadIdx.x; k < B * U; k += blockDim.x) {
      const int b = k / U, u = k % U, j = j0 + u;
      if (j >= H) continue;
      const long rb = row + b, idx = static_cast<long>(b) * H + j;
      float unused = 0.0f;
      a.dh[idx] = backward_unit(s, kind, b, j, a.gates + rb * GH, a.h_prev[rb * H + j],
                                kind == CellKind::kLstm ? a.c_prev[rb * H + j] : 0.0f,
                                kind == CellKind::kGru ? a.h_n[rb * H + j] : 0.0f, a.dh[idx],
                                a.dy ? a.dy[rb * s.D * H + j] : 0.0f, kind == CellKind::kLstm ? a.c + idx : &unused,
                                a.dgx + rb * GH, a.dgh + rb * GH);
    }
    grid_barrier(a.barrier);
  }
}

// out[col] += sum over rows of m[row][col] (m: rows x cols, row-major): blocks of 32
// columns x 8 row lanes, the rows split across gridDim.y, partial sums added with atomics
// (out zeroed first).
__global__ void column_sum_kernel(int rows, int cols, const float* m, float* out) {
  __shared__ float part[8][33];
  const int col = blockIdx.x * 32 + threadIdx.x;
  float sum = 0.0f;
  if (col < cols)
    for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += gridDim.y * 8) sum += m[static_cast<long>(r) * cols + col];
  part[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.0f;
    for (int k = 0; k < 8; ++k) total += part[k][threadIdx.x];
    atomicAdd(out + col, total);
  }
}

void column_sum(cudaStream_t s, int rows, int cols, const float* m, float* out) {
  check(cudaMemsetAsync(out, 0, sizeof(float) * cols, s), "zero bias gradient");
  const int row_blocks = std::max(1, std::min(64, rows / 256));
  column_sum_kernel<<<dim3((cols + 31) / 32, row_blocks), dim3(32, 8), 0, s>>>(rows, cols, m, out);
}

int blocks_for(long n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

inline int time_of(int direction, int step, int steps) { return direction == 0 ? step : steps - 1 - step; }

struct ReserveViews {
  float *gates, *h_prev, *c_prev, *h_n;
};

// The CPU reserve layout (cpp/recurrent.cc), so a reserve means the same on both backends.
ReserveViews views(const LayerDims& d, float* base, int direction) {
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t gh = static_cast<size_t>(gate_count(d.cell)) * d.hidden_size;
  const size_t extra = (d.cell == CellKind::kLstm || d.cell == CellKind::kGru) ? 1 : 0;
  const size_t per = rows * d.hidden_size * (gate_count(d.cell) + 1 + extra);
  float* p = base + per * direction;
  ReserveViews r{p, p + rows * gh, nullptr, nullptr};
  if (d.cell == CellKind::kLstm) r.c_prev = r.h_prev + rows * d.hidden_size;
  if (d.cell == CellKind::kGru) r.h_n = r.h_prev + rows * d.hidden_size;
  return r;
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

size_t layer_workspace_size(const LayerDims& d) {
  const size_t gh = static_cast<size_t>(gate_count(d.cell)) * d.hidden_size;
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t state = static_cast<size_t>(d.batch) * d.hidden_size;
  // forward: xproj (T*B, GH), hproj (B, GH; the persistent kernel's second state buffer), h, c;
  // backward: dgx, dgh (T*B, GH), dh, dc; then the persistent kernels' grid barrier
  return 2 * rows * gh + gh * d.batch + 2 * state + kBarrierFloats;
}

namespace {

PersistentMode initial_mode() {
  const char* env = std::getenv("RECURRENT_CUDA_PERSISTENT");
  if (env && std::string(env) == "0") return PersistentMode::kNever;
  if (env && std::string(env) == "1") return PersistentMode::kAlways;
  return PersistentMode::kAuto;
}

std::atomic<int> g_persistent_mode{static_cast<int>(initial_mode())};

struct DeviceLimits {
  int sms = 0;
  size_t smem = 0;  // dynamic shared memory a block may opt in to
};

const DeviceLimits& limits() {
  static const DeviceLimits l = [] {
    DeviceLimits out;
    int device = 0, smem = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "shared memory size");
    out.sms = sm_count();
    out.smem = static_cast<size_t>(smem);
    check(cudaFuncSetAttribute(persistent_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), "smem");
    check(cudaFuncSetAttribute(persistent_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), "smem");
    return out;
  }();
  return l;
}

struct PersistentPlan {
  bool use = false;
  int units = 0, blocks = 0;
  size_t smem = 0;
};

PersistentPlan persistent_plan(const LayerDims& d, bool backward) {
  PersistentPlan plan;
  const auto mode = static_cast<PersistentMode>(g_persistent_mode.load());
  if (mode == PersistentMode::kNever) return plan;
  const DeviceLimits& l = limits();
  const size_t H = d.hidden_size, B = d.batch, G = gate_count(d.cell), GH = G * H;
  plan.units = static_cast<int>((H + l.sms - 1) / l.sms);
  plan.blocks = static_cast<int>((H + plan.units - 1) / plan.units);
  const size_t U = plan.units;
  plan.smem = sizeof(float) * (backward ? U * GH + B * GH : G * U * H + B * H + B * G * U);
  if (plan.smem > l.smem) return plan;
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, backward ? persistent_backward_kernel : persistent_forward_kernel, 256, plan.smem),
        "occupancy");
  if (per_sm < 1 || plan.blocks > per_sm * l.sms) return plan;
  // measured on an H200 (bench/gpu): the persistent kernels win up to about 4096 state values
  // per step (B = 8 at H = 512, B = 32 at H = 128); the per-step GEMMs beyond
  plan.use = mode == PersistentMode::kAlways || (d.batch <= kPersistentMaxBatch && B * H <= kPersistentMaxState);
  return plan;
}

void launch_persistent(bool backward, const PersistentPlan& plan, PersistentArgs args, cudaStream_t s) {
  check(cudaMemsetAsync(args.barrier, 0, 2 * sizeof(unsigned int), s), "zero the barrier");
  void* params[] = {&args};
  check(cudaLaunchCooperativeKernel(backward ? reinterpret_cast<void*>(persistent_backward_kernel)
                                             : reinterpret_cast<void*>(persistent_forward_kernel),
                                    dim3(plan.blocks), dim3(256), params, plan.smem, s),
        backward ? "persistent backward" : "persistent forward");
}

// dst = src (device, n floats), or zeros where src is null
void copy_or_zero(float* dst, const float* src, size_t n, cudaStream_t s) {
  if (src) check(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy state");
  else check(cudaMemsetAsync(dst, 0, n * sizeof(float), s), "zero state");
}

// What both persistent kernels take: the step arguments, sizes, w_hh, the reserve's views and
// the barrier (two unsigned ints of the workspace).
PersistentArgs persistent_args(const StepArgs& base, const LayerDims& dims, const PersistentPlan& plan,
                               const float* w_hh, const ReserveViews& r, float* barrier) {
  PersistentArgs p{};
  p.s = base;
  p.T = dims.steps;
  p.U = plan.units;
  p.cell = static_cast<int>(dims.cell);
  p.w_hh = w_hh;
  p.gates = r.gates;
  p.h_prev = r.h_prev;
  p.c_prev = r.c_prev;
  p.h_n = r.h_n;
  p.barrier = reinterpret_cast<unsigned int*>(barrier);
  return p;
}

}  // namespace

void set_tf32(bool enabled) { g_tf32 = enabled; }

void set_persistent_mode(PersistentMode mode) { g_persistent_mode = static_cast<int>(mode); }

bool uses_persistent(const LayerDims& dims, bool backward) { return persistent_plan(dims, backward).use; }

void layer_forward(Stream stream, const LayerDims& dims, float* y, float* h_n, float* c_n, float* reserve, const float* x,
                   const int* lengths, const float* h0, const float* c0, const LayerWeights* weights, float* workspace) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size, D = dims.directions;
  const int GH = gate_count(dims.cell) * H;
  const size_t state = static_cast<size_t>(B) * H, rows = static_cast<size_t>(T) * B;
  const cudaStream_t s = as_stream(stream);
  float* xproj = workspace;
  float* hproj = xproj + rows * GH;
  float* h = hproj + static_cast<size_t>(B) * GH;
  float* c = h + state;
  for (int d = 0; d < D; ++d) {
    const LayerWeights& w = weights[d];
    const ReserveViews r = views(dims, reserve, d);
    gemm(stream, false, true, T * B, GH, I, 1.0f, x, I, w.w_ih, I, 0.0f, xproj, GH);
    copy_or_zero(h, h0 ? h0 + d * state : nullptr, state, s);
    copy_or_zero(c, c0 ? c0 + d * state : nullptr, state, s);
    const StepArgs base{B, H, D, d, 0, lengths, w.b_ih, w.b_hh};
    const PersistentPlan plan = persistent_plan(dims, false);
    if (plan.use) {
      PersistentArgs p = persistent_args(base, dims, plan, w.w_hh, r, c + state);
      p.xproj = xproj;
      p.state[0] = h;
      p.state[1] = hproj;
      p.c = c;
      p.y = y + static_cast<size_t>(d) * H;
      launch_persistent(false, plan, p, s);
      check(cudaMemcpyAsync(h_n + d * state, p.state[T & 1], state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy h_n");
      if (dims.cell == CellKind::kLstm && c_n)
        check(cudaMemcpyAsync(c_n + d * state, c, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy c_n");
      continue;
    }
    for (int step = 0; step < T; ++step) {
      StepArgs a = base;
      a.t = time_of(d, step, T);
      const size_t row = static_cast<size_t>(a.t) * B;
      gemm(stream, false, true, B, GH, H, 1.0f, h, H, w.w_hh, H, 0.0f, hproj, GH);
      forward_step_kernel<<<blocks_for(state, 256), 256, 0, s>>>(
          a, static_cast<int>(dims.cell), xproj + row * GH, hproj, h, c, y + row * D * H + static_cast<size_t>(d) * H,
          r.gates + row * GH, r.h_prev + row * H, r.c_prev ? r.c_prev + row * H : nullptr, r.h_n ? r.h_n + row * H : nullptr);
      check_launch("forward step");
    }
    check(cudaMemcpyAsync(h_n + d * state, h, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy h_n");
    if (dims.cell == CellKind::kLstm && c_n)
      check(cudaMemcpyAsync(c_n + d * state, c, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy c_n");
  }
}

void layer_backward(Stream stream, const LayerDims& dims, float* dx, float* dh0, float* dc0, const LayerGrads* grads,
                    const float* dy, const float* dh_n, const float* dc_n, const float* reserve, const float* x,
                    const int* lengths, const LayerWeights* weights, float* workspace) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size, D = dims.directions;
  const int GH = gate_count(dims.cell) * H;
  const size_t state = static_cast<size_t>(B) * H, rows = static_cast<size_t>(T) * B;
  const cudaStream_t s = as_stream(stream);
  float* dgx = workspace;
  float* dgh = dgx + rows * GH;
  float* dh = dgh + rows * GH;
  float* dc = dh + state;
  for (int d = 0; d < D; ++d) {
    const LayerWeights& w = weights[d];
    const LayerGrads& g = grads[d];
    const ReserveViews r = views(dims, const_cast<float*>(reserve), d);
    copy_or_zero(dh, dh_n ? dh_n + d * state : nullptr, state, s);
    copy_or_zero(dc, dc_n ? dc_n + d * state : nullptr, state, s);
    const StepArgs base{B, H, D, d, 0, lengths, w.b_ih, w.b_hh};
    const PersistentPlan plan = persistent_plan(dims, true);
    if (plan.use) {
      PersistentArgs p = persistent_args(base, dims, plan, w.w_hh, r, dc + state);
      p.c = dc;
      p.dh = dh;
      p.dy = dy ? dy + static_cast<size_t>(d) * H : nullptr;
      p.dgx = dgx;
      p.dgh = dgh;
      launch_persistent(true, plan, p, s);
    }
    for (int step = T - 1; step >= 0 && !plan.use; --step) {
      StepArgs a = base;
      a.t = time_of(d, step, T);
      const size_t row = static_cast<size_t>(a.t) * B;
      backward_step_kernel<<<blocks_for(state, 256), 256, 0, s>>>(
          a, static_cast<int>(dims.cell), r.gates + row * GH, r.h_prev + row * H, r.c_prev ? r.c_prev + row * H : nullptr,
          r.h_n ? r.h_n + row * H : nullptr, dy ? dy + row * D * H + static_cast<size_t>(d) * H : nullptr, dh, dc,
          dgx + row * GH, dgh + row * GH);
      check_launch("backward step");
      // dh_prev = (the part that bypasses the GEMM, now in dh) + dgates_h w_hh
      gemm(stream, false, false, B, H, GH, 1.0f, dgh + row * GH, GH, w.w_hh, H, 1.0f, dh, H);
    }
    if (dh0) check(cudaMemcpyAsync(dh0 + d * state, dh, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy dh0");
    if (dc0 && dims.cell == CellKind::kLstm)
      check(cudaMemcpyAsync(dc0 + d * state, dc, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy dc0");
    const int n = T * B;
    gemm(stream, false, false, n, I, GH, 1.0f, dgx, GH, w.w_ih, I, d == 0 ? 0.0f : 1.0f, dx, I);
    gemm(stream, true, false, GH, I, n, 1.0f, dgx, GH, x, I, 0.0f, g.w_ih, I);
    gemm(stream, true, false, GH, H, n, 1.0f, dgh, GH, r.h_prev, H, 0.0f, g.w_hh, H);
    if (g.b_ih) {
      column_sum(s, n, GH, dgx, g.b_ih);
      column_sum(s, n, GH, dgh, g.b_hh);
      check_launch("bias gradients");
    }
  }
}

}  // namespace cuda
}  // namespace recurrent
