// The CUDA recurrent layer (forward and backward, see recurrent.h), with the CPU kernels'
// plan (cpp/recurrent.cc): the input projection of all steps as one GEMM; per step, the
// recurrent GEMM then one fused gate kernel (cells.h); backward, one reverse sweep of gate
// kernels and recurrent GEMMs, then the weight gradients as one GEMM each and the bias
// gradients as one column reduction. The reserve's layout is cpp/layout.h, shared with the CPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "common.cuh"
#include "cpp/cells.h"
#include "cpp/layout.h"
#include "gemm.h"
#include "recurrent.h"

namespace recurrent {
namespace cuda {

namespace {

constexpr size_t kBarrierFloats = 64;  // the persistent kernels' grid barrier, at the end of the workspace

// ---------------------------------------------------------------------------
// Gate kernels: one thread per (batch row, hidden unit) of one time step.

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
  if (!is_active(s.lengths, b, s.t)) {
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
  if (!is_active(s.lengths, b, s.t)) {
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

}  // namespace

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
    const ReserveViews r = reserve_views(dims, reserve, d);
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
    const ReserveViews r = reserve_views(dims, const_cast<float*>(reserve), d);
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
