// CUDA kernels: a tiled FP32 GEMM and the recurrent layer (forward and backward), with
// the CPU kernels' plan (cpp/recurrent.cc): the input projection of all steps as one
// GEMM; per step, the recurrent GEMM then one fused gate kernel (cells.h); backward, one
// reverse sweep of gate kernels and recurrent GEMMs, then the weight gradients as one
// GEMM each and the bias gradients as one column reduction.
#include <cuda_runtime.h>

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

template <bool TA, bool TB>
__global__ void __launch_bounds__(kThreads) gemm_kernel(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                        int lda, const float* __restrict__ B, int ldb, float beta,
                                                        float* __restrict__ C, int ldc, long sa, long sb, long sc) {
  A += blockIdx.z * sa;
  B += blockIdx.z * sb;
  C += blockIdx.z * sc;
  __shared__ float as[kDepth][kTile + 4];  // as[k][m]
  __shared__ float bs[kDepth][kTile + 4];  // bs[k][n]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int m0 = blockIdx.y * kTile, n0 = blockIdx.x * kTile;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kDepth) {
    for (int i = threadIdx.x; i < kTile * kDepth; i += kThreads) {
      // consecutive threads read consecutive addresses of A and B
      const int mm = TA ? i % kTile : i / kDepth, ka = TA ? i / kTile : i % kDepth;
      const int gm = m0 + mm, gka = k0 + ka;
      as[ka][mm] = gm < M && gka < K ? (TA ? A[static_cast<long>(gka) * lda + gm] : A[static_cast<long>(gm) * lda + gka]) : 0.0f;
      const int nn = TB ? i / kDepth : i % kTile, kb = TB ? i % kDepth : i / kTile;
      const int gn = n0 + nn, gkb = k0 + kb;
      bs[kb][nn] = gn < N && gkb < K ? (TB ? B[static_cast<long>(gn) * ldb + gkb] : B[static_cast<long>(gkb) * ldb + gn]) : 0.0f;
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
      *out = alpha * acc[i][j] + (beta == 0.0f ? 0.0f : beta * *out);
    }
  }
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

// xp: (B, GH) input projections of step t; hp: (B, GH) recurrent projections; h, c: (B, H)
// state, updated in place; y: step t of the output (row stride D*H, already offset by d*H);
// reserve views of step t: gates (B, GH), h_prev, c_prev, h_n (B, H).
__global__ void forward_step_kernel(StepArgs s, int cell, const float* xp, const float* hp, float* h, float* c, float* y,
                                    float* gates, float* h_prev, float* c_prev, float* h_n) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= s.B * s.H) return;
  const int b = idx / s.H, j = idx % s.H, H = s.H;
  const CellKind kind = static_cast<CellKind>(cell);
  const int G = gate_count(kind), GH = G * H;
  const float* xr = xp + static_cast<long>(b) * GH;
  const float* hr = hp + static_cast<long>(b) * GH;
  float* g = gates + static_cast<long>(b) * GH;
  float* yb = y + static_cast<long>(b) * s.D * H;
  h_prev[idx] = h[idx];
  if (kind == CellKind::kLstm) c_prev[idx] = c[idx];
  if (!active(s.lengths, b, s.t)) {
    yb[j] = 0.0f;
    for (int q = 0; q < G; ++q) g[q * H + j] = 0.0f;
    if (kind == CellKind::kGru) h_n[idx] = 0.0f;
    return;
  }
  if (kind == CellKind::kLstm) {
    float pre[4];
    for (int q = 0; q < 4; ++q) pre[q] = xr[q * H + j] + hr[q * H + j] + bias(s.b_ih, q * H + j) + bias(s.b_hh, q * H + j);
    float cn, hn;
    const LstmGates gv = lstm_cell_forward(pre[0], pre[1], pre[2], pre[3], c[idx], &cn, &hn);
    c[idx] = cn;
    h[idx] = hn;
    yb[j] = hn;
    g[j] = gv.i;
    g[H + j] = gv.f;
    g[2 * H + j] = gv.g;
    g[3 * H + j] = gv.o;
  } else if (kind == CellKind::kGru) {
    const float hn_pre = hr[2 * H + j] + bias(s.b_hh, 2 * H + j);
    float hv;
    const GruGates gv = gru_cell_forward(xr[j] + bias(s.b_ih, j), xr[H + j] + bias(s.b_ih, H + j),
                                         xr[2 * H + j] + bias(s.b_ih, 2 * H + j), hr[j] + bias(s.b_hh, j),
                                         hr[H + j] + bias(s.b_hh, H + j), hn_pre, h[idx], &hv);
    h[idx] = hv;
    yb[j] = hv;
    g[j] = gv.r;
    g[H + j] = gv.z;
    g[2 * H + j] = gv.n;
    h_n[idx] = hn_pre;
  } else {
    const float hv = rnn_cell_forward(xr[j] + hr[j] + bias(s.b_ih, j) + bias(s.b_hh, j), kind == CellKind::kRnnRelu);
    h[idx] = hv;
    yb[j] = hv;
    g[j] = hv;
  }
}

// dh: (B, H) gradient of the state leaving step t, replaced by the part of dh_prev that
// bypasses the recurrent GEMM; dc likewise (LSTM). dgx / dgh: (B, GH) of step t.
__global__ void backward_step_kernel(StepArgs s, int cell, const float* gates, const float* h_prev, const float* c_prev,
                                     const float* h_n, const float* dy, float* dh, float* dc, float* dgx, float* dgh) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= s.B * s.H) return;
  const int b = idx / s.H, j = idx % s.H, H = s.H;
  const CellKind kind = static_cast<CellKind>(cell);
  const int G = gate_count(kind), GH = G * H;
  float* gx = dgx + static_cast<long>(b) * GH;
  float* gh = dgh + static_cast<long>(b) * GH;
  if (!active(s.lengths, b, s.t)) {
    for (int q = 0; q < G; ++q) {
      gx[q * H + j] = 0.0f;
      gh[q * H + j] = 0.0f;
    }
    return;
  }
  const float* g = gates + static_cast<long>(b) * GH;
  const float dht = dh[idx] + (dy ? dy[static_cast<long>(b) * s.D * H + j] : 0.0f);
  if (kind == CellKind::kLstm) {
    const LstmGates gv{g[j], g[H + j], g[2 * H + j], g[3 * H + j]};
    float dc_prev;
    const LstmGates da = lstm_cell_backward(gv, c_prev[idx], dht, dc[idx], &dc_prev);
    dc[idx] = dc_prev;
    gx[j] = gh[j] = da.i;
    gx[H + j] = gh[H + j] = da.f;
    gx[2 * H + j] = gh[2 * H + j] = da.g;
    gx[3 * H + j] = gh[3 * H + j] = da.o;
    dh[idx] = 0.0f;
  } else if (kind == CellKind::kGru) {
    const GruGates gv{g[j], g[H + j], g[2 * H + j]};
    float direct;
    const GruGrads da = gru_cell_backward(gv, h_n[idx], h_prev[idx], dht, &direct);
    gx[j] = gh[j] = da.r;
    gx[H + j] = gh[H + j] = da.z;
    gx[2 * H + j] = da.n_x;
    gh[2 * H + j] = da.n_h;
    dh[idx] = direct;
  } else {
    const float da = rnn_cell_backward(g[j], dht, kind == CellKind::kRnnRelu);
    gx[j] = gh[j] = da;
    dh[idx] = 0.0f;
  }
}

// out[col] = sum over rows of m[row][col] (m: rows x cols, row-major); one thread per column.
__global__ void column_sum_kernel(int rows, int cols, const float* m, float* out) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  float sum = 0.0f;
  for (int r = 0; r < rows; ++r) sum += m[static_cast<long>(r) * cols + col];
  out[col] = sum;
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
  const dim3 grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile, batch);
  const cudaStream_t s = as_stream(stream);
  if (!trans_a && !trans_b) gemm_kernel<false, false><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c);
  else if (!trans_a) gemm_kernel<false, true><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c);
  else if (!trans_b) gemm_kernel<true, false><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c);
  else gemm_kernel<true, true><<<grid, kThreads, 0, s>>>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stride_a, stride_b, stride_c);
  check_launch("gemm");
}

size_t layer_workspace_size(const LayerDims& d) {
  const size_t gh = static_cast<size_t>(gate_count(d.cell)) * d.hidden_size;
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t state = static_cast<size_t>(d.batch) * d.hidden_size;
  // forward: xproj (T*B, GH), hproj (B, GH), h, c; backward: dgx, dgh (T*B, GH), dh, dc
  return 2 * rows * gh + gh * d.batch + 2 * state;
}

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
    if (h0) check(cudaMemcpyAsync(h, h0 + d * state, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy h0");
    else check(cudaMemsetAsync(h, 0, state * sizeof(float), s), "zero h");
    if (c0) check(cudaMemcpyAsync(c, c0 + d * state, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy c0");
    else check(cudaMemsetAsync(c, 0, state * sizeof(float), s), "zero c");
    const StepArgs base{B, H, D, d, 0, lengths, w.b_ih, w.b_hh};
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
    if (dh_n) check(cudaMemcpyAsync(dh, dh_n + d * state, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy dh_n");
    else check(cudaMemsetAsync(dh, 0, state * sizeof(float), s), "zero dh");
    if (dc_n) check(cudaMemcpyAsync(dc, dc_n + d * state, state * sizeof(float), cudaMemcpyDeviceToDevice, s), "copy dc_n");
    else check(cudaMemsetAsync(dc, 0, state * sizeof(float), s), "zero dc");
    const StepArgs base{B, H, D, d, 0, lengths, w.b_ih, w.b_hh};
    for (int step = T - 1; step >= 0; --step) {
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
      column_sum_kernel<<<blocks_for(GH, 256), 256, 0, s>>>(n, GH, dgx, g.b_ih);
      column_sum_kernel<<<blocks_for(GH, 256), 256, 0, s>>>(n, GH, dgh, g.b_hh);
      check_launch("bias gradients");
    }
  }
}

}  // namespace cuda
}  // namespace recurrent
