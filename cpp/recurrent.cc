// CPU kernels for a recurrent layer over a whole sequence (see recurrent.h).
//
// The plan, per direction:
//   1. xproj (Tc*B, G*H) = x (Tc*B, I) * w_ih^T: one GEMM for a chunk of Tc steps, right
//      before them (set_time_chunk; all T steps when they are few).
//   2. Each step: hproj (B, G*H) = h (B, H) * w_hh^T on w_hh packed once per call
//      (PackedMatrix: the GEMM's own panel layout, so steps skip packing B),
//      then one fused pass over the gates (gates.h, vectorized) that writes h, c, y and saves
//      what backward needs into the reserve.
//   3. Backward: one reverse sweep producing the pre-activation gradients of every
//      step (dgates, (Tc*B, G*H) a chunk), and after each chunk of steps its rows of dx and
//      its share of dw_ih, dw_hh, db, with one GEMM or one reduction each.
// When lengths are sorted in decreasing order (as packed batches are) the active rows
// of a step are a prefix, and the recurrent GEMM runs over that prefix only.
#include "recurrent.h"

#include "layout.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "gates.h"
#include "gemm.h"
#include "thread_pool.h"

namespace recurrent {

namespace {

// Scratch reused across calls: nothing is allocated per step, and after the first call of a
// given size nothing is allocated at all.
struct Scratch {
  PackedMatrix w_hh_packed, w_ih_packed;
  // on cache lines, as the GEMMs' packed blocks (gemm.h): the steps' rows are whole lines
  AlignedVector<float> xproj, hproj, h, c, reserve, zeros, wperm;
  AlignedVector<float> dgates_x, dgates_h, dh, dc;
};

// A call borrows a scratch from a pool and gives it back. Calls queued in async mode run one at a
// time on whichever libuv thread is free: they share one scratch instead of one per thread
// (tens of MB each at H = 512, faulted in by each thread's first call); calls that do run at
// once (Node worker threads) get one each.
class ScratchLease {
 public:
  ScratchLease() {
    std::lock_guard<std::mutex> lock(mutex());
    auto& free = pool();
    // the scratch this thread used last where it is free: its lines are still in this core's
    // caches (two threads that each ran calls of their own, leasing whichever was free, took turns
    // on each other's scratch: a call in three ran 15-30% slower)
    const auto mine = std::find(free.begin(), free.end(), t_last);
    if (mine != free.end()) {
      scratch_ = *mine;
      free.erase(mine);
    } else if (free.empty()) {
      scratch_ = new Scratch();  // kept for the life of the process, like the thread_locals before
    } else {
      scratch_ = free.back();
      free.pop_back();
    }
    t_last = scratch_;
  }
  ~ScratchLease() {
    std::lock_guard<std::mutex> lock(mutex());
    pool().push_back(scratch_);
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  Scratch& operator*() const { return *scratch_; }

 private:
  static std::mutex& mutex() {
    static std::mutex* m = new std::mutex();
    return *m;
  }
  static std::vector<Scratch*>& pool() {
    static auto* p = new std::vector<Scratch*>();
    return *p;
  }
  Scratch* scratch_;
  static thread_local Scratch* t_last;
};

thread_local Scratch* ScratchLease::t_last = nullptr;

float* sized(AlignedVector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// lengths sorted in non-increasing order?
bool sorted_decreasing(const int* lengths, int batch) {
  if (!lengths) return true;
  for (int b = 1; b < batch; ++b)
    if (lengths[b] > lengths[b - 1]) return false;
  return true;
}

// Rows the recurrent GEMM must cover at time t.
int gemm_rows(const int* lengths, int batch, bool sorted, int t) {
  if (!lengths || !sorted) return batch;
  int rows = 0;
  while (rows < batch && lengths[rows] > t) ++rows;
  return rows;
}

inline float bias_at(const float* bias, int index) { return bias ? bias[index] : 0.0f; }

// A count of steps from the environment: 0 when unset (chosen by size).
int env_steps(const char* name) {
  const char* env = std::getenv(name);
  return env && *env ? std::max(0, std::atoi(env)) : 0;
}

// A mode from the environment ("" when unset).
std::string env_mode(const char* name) {
  const char* env = std::getenv(name);
  return env ? env : "";
}

// RECURRENT_TIME_CHUNK=N in the environment starts with chunks of N steps (a huge N: one chunk
// per call, as before chunking; for measuring).
std::atomic<int> g_time_chunk{env_steps("RECURRENT_TIME_CHUNK")};

// The weight bytes of the inference call running on this thread (CallWeightsScope), 0 outside one.
thread_local double t_call_weight_bytes = 0.0;

std::atomic<TeamSplit> g_team_split{[] {
  const std::string split = env_mode("RECURRENT_TEAM_SPLIT");
  return split == "units" ? TeamSplit::kUnits : split == "rows" ? TeamSplit::kRows : TeamSplit::kAuto;
}()};

// Steps per chunk (see set_time_chunk): at least `min_rows` rows for the GEMMs, about `bytes`
// of a chunk's gate-sized rows.
int time_chunk(int T, int B, int GH, int min_rows, size_t bytes) {
  if (g_time_chunk > 0) return std::min(T, g_time_chunk.load());
  const size_t per_step = static_cast<size_t>(B) * GH * sizeof(float);
  const int by_rows = (min_rows + B - 1) / B;
  const int by_bytes = static_cast<int>(bytes / std::max<size_t>(per_step, 1));
  return std::max(1, std::min(T, std::max(by_rows, by_bytes)));
}

// This core's L2 in bytes (1 MB where the system does not say).
size_t l2_bytes() {
  static const size_t bytes = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);  // glibc; 0 where it does not know
#else
    const long reported = 0;
#endif
    return reported > 0 ? static_cast<size_t>(reported) : size_t{1} << 20;
  }();
  return bytes;
}

}  // namespace

void set_time_chunk(int steps) { g_time_chunk = std::max(0, steps); }

void set_team_split(TeamSplit split) { g_team_split = split; }

CallWeightsScope::CallWeightsScope(double bytes) : saved_(t_call_weight_bytes) { t_call_weight_bytes = bytes; }
CallWeightsScope::~CallWeightsScope() { t_call_weight_bytes = saved_; }

double stack_weight_bytes(const LayerDims& dims, int layers) {
  const double gh = gate_count(dims.cell) * static_cast<double>(dims.hidden_size), bytes = bf16_matmul() ? 2 : 4;
  double total = 0;
  for (int l = 0; l < layers; ++l) total += dims.directions * gh * ((l == 0 ? dims.input_size : dims.hidden_size) + dims.hidden_size) * bytes;
  return total;
}

size_t layer_reserve_size(const LayerDims& dims) {
  return reserve_per_direction(dims) * dims.directions;
}

// ===========================================================================
// Work split: how the threads of a team share the steps of a chunk (TeamPlan below says when
// each is used). Nothing depends on the number of threads: every value is computed the same
// way either way.

namespace {

// Multiply-adds of one step's recurrent product below which a split by units is not worth it (the
// steps run on one thread unless the batch splits by rows): the per-step barrier and the split of
// a short product cost more than a second thread saves. Batches of 32 and more split by rows; below,
// the split by units pays from about 128K multiply-adds a step (2 threads, Zen 2, against the old
// threshold of 4M: LSTM B = 1, H = 256, T = 100 inference 1.85 -> 1.10 ms; B = 8, H = 128 training
// 2.94 -> 2.19 ms; B = 16 6.1 -> 4.2 ms), and costs below it (LSTM B = 1, H = 128, training: 1,360
// steps/s unsplit, 870 split at 65K; Zen 5: 3,012 against 1,772-2,059). Inference (a forward without
// a reserve) splits from half of it: LSTM B = 1, H = 128, T = 100 on 2 Zen 5 threads, 282 -> 150 us
// (onnxruntime: 211-284). A BF16 product takes about half the time of an FP32 one, so it counts
// half. RECURRENT_TEAM_MIN_WORK overrides the threshold.
double team_min_work() {
  static const double value = [] {
    const char* env = std::getenv("RECURRENT_TEAM_MIN_WORK");
    return env && *env ? std::atof(env) : 131072.0;
  }();
  return value;
}

// How the threads of a team share the steps of a chunk.
//  - By hidden units (large steps): the units are cut into blocks of kGateBlock; each thread owns a
//    range of blocks for every row and, at each step, computes the slice of the recurrent product
//    that feeds its units (all gates of them: the forward GEMM runs on w_hh with its rows permuted
//    so that a block's gates are adjacent columns) and its units' gates. One barrier per step,
//    since the next product needs every unit of the new state; backward mirrors it (the owned
//    units' gate gradients, the barrier, the owned columns of dh_prev = dgates * w_hh).
//  - By batch rows: the rows of a batch are independent sequences, so each thread runs its own rows
//    through all steps with no barrier at all, reading the whole of w_hh each step (from its L2 or
//    the L3). Chosen wherever each thread gets 16 rows or more and w_hh is at most 4 MB: short
//    steps, where a barrier each would cost more than the split saves (bench/native.ts compares).
// Every value is computed the same way in either case, so results do not depend on the split.
struct TeamPlan {
  int team;
  bool by_rows;
};

// The largest w_hh every thread reads whole at each step of a split by rows (the rows per thread
// below which a batch is not split, and their multiple: gemm_row_split(H)).
constexpr double kRowSplitMaxWeightBytes = 4 << 20;

// An inference call of at most kFewSteps steps whose weights (all its layers) pass
// kRowSplitMaxCallBytes splits by units: by rows, each thread reads every weight for its few
// steps. LSTM, 2 layers of H = 512 (12.7 MB), 2 threads (Zen 2, alternating): T = 1, B = 8,
// 1.03-1.18 ms by rows against 0.57-0.60 by units; B = 32, 2.53-2.58 against 1.88-1.98; T = 4 about
// even at B = 32; by T = 8 and 32 rows are ahead. One layer of H = 512 (4.7 MB) and two of H = 256
// (3.3 MB) stay faster by rows at T = 1 (B = 8: 166-172 us against 214-218).
constexpr int kFewSteps = 4;
constexpr double kRowSplitMaxCallBytes = 8 << 20;

TeamPlan team_for(int blocks, int batch, int gh, int hidden, int steps, bool inference = false) {
  const double step_work = static_cast<double>(batch) * gh * hidden * (bf16_matmul() ? 0.5 : 1.0);
  const TeamSplit split = g_team_split.load();
  const int row_team = std::min(num_threads(), batch / gemm_row_split(hidden).min_rows);
  const double weight_bytes = static_cast<double>(gh) * hidden * (bf16_matmul() ? 2 : 4);
  const bool few_steps_large_call = steps <= kFewSteps && t_call_weight_bytes > kRowSplitMaxCallBytes;
  if (row_team > 1 && (split == TeamSplit::kRows || (split == TeamSplit::kAuto && weight_bytes <= kRowSplitMaxWeightBytes &&
                                                      step_work * steps >= 1 << 20 && !few_steps_large_call)))
    return {row_team, true};
  // inference splits by units from half the work: no backward sweep, whose short steps cost more
  // split (see team_min_work)
  const double min_work = inference ? team_min_work() / 2 : team_min_work();
  if (blocks < 2 || (split != TeamSplit::kUnits && step_work < min_work)) return {1, false};
  return {std::min(num_threads(), blocks), false};
}

// The rows [b0, b1) and unit blocks [blk0, blk1) thread `id` of a team owns.
struct Share {
  int b0, b1, blk0, blk1;
};

Share share_of(const TeamPlan& plan, int id, int batch, int hidden) {
  const int blocks = (hidden + kGateBlock - 1) / kGateBlock;
  if (plan.by_rows) {
    const int grain = gemm_row_split(hidden).grain;  // rows in multiples of the GEMM's
    const int panels = (batch + grain - 1) / grain;
    return {std::min(batch, panels * id / plan.team * grain), std::min(batch, panels * (id + 1) / plan.team * grain), 0, blocks};
  }
  return {0, batch, blocks * id / plan.team, blocks * (id + 1) / plan.team};
}

// The active rows of [b0, b1) at a step where the first `rows` rows are active (a prefix).
int rows_within(int rows, int b0, int b1) { return std::max(0, std::min(rows, b1) - b0); }

// Gate kernels on a partial block (H not a multiple of kGateBlock): the block's values
// are copied into zero-padded arrays with gate stride kGateBlock, and back.
struct Pad {
  float x[4 * kGateBlock], b_ih[4 * kGateBlock], b_hh[4 * kGateBlock], gates[4 * kGateBlock], gates2[4 * kGateBlock];
  float a[kGateBlock], b[kGateBlock], c[kGateBlock], d[kGateBlock], e[kGateBlock];
};

void gather(float* dst, const float* src, int gs, int gates, int width) {
  for (int q = 0; q < gates; ++q)
    for (int j = 0; j < kGateBlock; ++j) dst[q * kGateBlock + j] = j < width ? src[q * gs + j] : 0.0f;
}

void scatter(float* dst, const float* src, int gs, int gates, int width) {
  for (int q = 0; q < gates; ++q)
    for (int j = 0; j < width; ++j) dst[q * gs + j] = src[q * kGateBlock + j];
}

}  // namespace

// ===========================================================================
// Forward

namespace {

// Set on a thread while it runs its share of a batch as a call of its own (forward_by_row_shares).
thread_local bool t_row_share = false;

struct RowShareScope {
  RowShareScope() { t_row_share = true; }
  ~RowShareScope() { t_row_share = false; }
  RowShareScope(const RowShareScope&) = delete;
  RowShareScope& operator=(const RowShareScope&) = delete;
};

// Copies `rows` rows of `width` floats from each of `count` groups: row r of group g from
// src + (g * src_rows + src_row0 + r) * width to dst + (g * dst_rows + dst_row0 + r) * width.
void copy_rows(const float* src, int src_rows, int src_row0, float* dst, int dst_rows, int dst_row0, int count, int rows,
               int width) {
  for (int g = 0; g < count; ++g)
    std::memcpy(dst + (static_cast<size_t>(g) * dst_rows + dst_row0) * width, src + (static_cast<size_t>(g) * src_rows + src_row0) * width,
                static_cast<size_t>(rows) * width * sizeof(float));
}

// A team thread's own buffers in a split by rows (see layer_forward_cpu): its rows of a chunk's
// inputs and their projection, and its rows' recurrent products of a step. Kept between calls,
// released after a call that left them above kOwnRowsKeep floats.
struct OwnRows {
  AlignedVector<float> x, xproj, hproj;
};
thread_local OwnRows t_own_rows;
constexpr size_t kOwnRowsKeep = size_t{1} << 20;

// The most rows a thread's share may have for forward_by_row_shares. Larger shares keep the team's
// shared buffers: at 32 and 64 rows a thread the two were within 2.5% either way (H = 128 and 512),
// while at 16 rows the shares ran 4-7% faster (B = 32: H = 128, T = 100, 4.46-4.50 ms against
// 4.76-4.84; H = 512, T = 32, 1-3%) and at 4 rows 30%.
constexpr int kRowShareMaxRows = 16;

// Inference split by batch rows: each thread of the team runs its rows as a call of its own (one
// layer, or a whole stack), on copies of its rows (x, h0, c0 in; the outputs, h_n, c_n back) and
// with its own scratch. The rows of a batch are independent sequences, and each row's values are
// computed as in the whole batch, so the results are bit-identical. In the shared buffers of one
// call (the step's states, products and outputs, the threads' rows side by side), the same split
// ran 40-50% slower than each thread's rows alone: two threads that each ran a call on 4 rows of
// H = 128 took 1.15 ms, a team of two on the 8 rows of one call 1.65-1.75 ms (2-core Zen 2), though
// no cache line was written by both (aligning every buffer changed nothing); on their own buffers,
// 1.18-1.19 ms (each thread leasing the scratch it used last, see ScratchLease). Training keeps the
// shared buffers: its reserve is one array for backward, and its weight gradients sum over all rows.
//
// The plan: a team split by rows whose shares are at most kRowShareMaxRows rows (else team 1).
// RECURRENT_ROW_SHARES=off keeps the team's shared buffers (for measuring).
TeamPlan row_share_plan(const LayerDims& dims) {
  static const bool off = env_mode("RECURRENT_ROW_SHARES") == "off";
  if (off || t_row_share || num_threads() < 2) return {1, true};
  const int B = dims.batch, H = dims.hidden_size, GH = gate_count(dims.cell) * H, blocks = (H + kGateBlock - 1) / kGateBlock;
  const TeamPlan plan = team_for(blocks, B, GH, H, dims.steps);
  if (!plan.by_rows || plan.team < 2) return {1, true};
  for (int id = 0; id < plan.team; ++id) {
    const Share share = share_of(plan, id, B, H);
    if (share.b1 - share.b0 > kRowShareMaxRows) return {1, true};
  }
  return plan;
}

// Runs `layers` layers (a stack when more than one; dims: the first layer's) share by share of
// `plan` as described above; ys[l] (T, B, D * H) receives layer l's output.
void forward_by_row_shares(const TeamPlan& plan, const LayerDims& dims, int layers, float* const* ys, float* h_n, float* c_n,
                           const float* x, const int* lengths, const float* h0, const float* c0, const LayerWeights* weights) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size, D = dims.directions, L = layers;
  const bool lstm = dims.cell == CellKind::kLstm;
  parallel_for(plan.team, [&](int id) {
    const Share share = share_of(plan, id, B, H);
    const int rows = share.b1 - share.b0;
    if (rows <= 0) return;
    const int width = weights[0].input_projected ? gate_count(dims.cell) * H : I;  // of a row of x
    const size_t state = static_cast<size_t>(L) * D * rows * H, xsize = static_cast<size_t>(T) * rows * width;
    const size_t ysize = static_cast<size_t>(T) * rows * D * H;
    // one buffer per thread, kept between calls up to 16 MB: x's rows, each layer's y, then h_n,
    // c_n, h0, c0
    thread_local AlignedVector<float> buffer;  // on cache lines, as Scratch
    buffer.resize(xsize + L * ysize + 4 * state);
    float* xs = buffer.data();
    std::vector<float*> own_ys(L);
    for (int l = 0; l < L; ++l) own_ys[l] = xs + xsize + l * ysize;
    float* hs = xs + xsize + L * ysize;
    float* cs = hs + state;
    float* h0s = cs + state;
    float* c0s = h0s + state;
    copy_rows(x, B, share.b0, xs, rows, 0, T, rows, width);
    if (h0) copy_rows(h0, B, share.b0, h0s, rows, 0, L * D, rows, H);
    if (lstm && c0) copy_rows(c0, B, share.b0, c0s, rows, 0, L * D, rows, H);
    LayerDims own = dims;
    own.batch = rows;
    const int* own_lengths = lengths ? lengths + share.b0 : nullptr;
    {
      const RowShareScope scope;
      if (L == 1)
        layer_forward_cpu(own, own_ys[0], hs, lstm ? cs : nullptr, nullptr, xs, own_lengths, h0 ? h0s : nullptr,
                          lstm && c0 ? c0s : nullptr, weights);
      else
        stack_forward_cpu(own, L, own_ys.data(), hs, lstm ? cs : nullptr, xs, own_lengths, h0 ? h0s : nullptr,
                          lstm && c0 ? c0s : nullptr, weights);
    }
    for (int l = 0; l < L; ++l) copy_rows(own_ys[l], rows, 0, ys[l], B, share.b0, T, rows, D * H);
    copy_rows(hs, rows, 0, h_n, B, share.b0, L * D, rows, H);
    if (lstm) copy_rows(cs, rows, 0, c_n, B, share.b0, L * D, rows, H);
    if (buffer.size() > (size_t{4} << 20)) AlignedVector<float>().swap(buffer);
  });
}

// w_hh for the steps' recurrent products: its rows in block order (block, gate, unit), zero rows
// past H, packed transposed (P = blocks * G * kGateBlock columns)
PackedWeight forward_recurrent(const LayerWeights& w, int G, int H, Scratch& s) {
  const int blocks = (H + kGateBlock - 1) / kGateBlock;
  const int P = blocks * G * kGateBlock;
  return PackedWeight(w.hh_cache, PackLayout::kForwardRecurrent, H, P, s.w_hh_packed, [&](PackedMatrix& packed) {
    float* wperm = sized(s.wperm, static_cast<size_t>(P) * H);
    const auto permute = [&](int blk) {
      for (int q = 0; q < G; ++q)
        for (int j = 0; j < kGateBlock; ++j) {
          float* dst = wperm + (static_cast<size_t>(blk) * G * kGateBlock + q * kGateBlock + j) * H;
          const int unit = blk * kGateBlock + j;
          if (unit < H) std::memcpy(dst, w.w_hh + (static_cast<size_t>(q) * H + unit) * H, H * sizeof(float));
          else std::fill(dst, dst + H, 0.0f);
        }
    };
    if (static_cast<double>(P) * H >= 1 << 18) parallel_for(blocks, permute);
    else for (int blk = 0; blk < blocks; ++blk) permute(blk);
    packed.pack(true, H, P, wperm, H);
  });
}

}  // namespace

int recurrent_product_cols(const LayerDims& dims) {
  return (dims.hidden_size + kGateBlock - 1) / kGateBlock * gate_count(dims.cell) * kGateBlock;
}

void recurrent_product_cpu(const LayerDims& dims, const LayerWeights& w, const float* h, float* out, bool backwards) {
  const int P = recurrent_product_cols(dims);
  const ScratchLease lease;
  const PackedWeight w_hh = forward_recurrent(w, gate_count(dims.cell), dims.hidden_size, *lease);
  gemm_packed_tiles(dims.batch, 1.0f, h, dims.hidden_size, *w_hh, 0.0f, out, P, 0, P / kGemmTile, backwards);
}

void layer_forward_cpu(const LayerDims& dims, float* y, float* h_n, float* c_n, float* reserve,
                       const float* x, const int* lengths, const float* h0, const float* c0,
                       const LayerWeights* weights) {
  std::optional<CallWeightsScope> call;  // a layer called on its own: its own weights
  if (!reserve && t_call_weight_bytes == 0.0) call.emplace(stack_weight_bytes(dims, 1));
  const LayerWeights& w0 = weights[0];
  const bool ordered = w0.recurrent_projected || w0.recurrent_first || w0.backwards || w0.recurrent_next;
  if (ordered && (reserve || dims.directions != 1 || dims.steps != 1 || lengths))
    throw std::invalid_argument("layer_forward_cpu: a step's order of products is for inference at T = 1 in one direction");
  // (an ordered step keeps all its rows in one call: a given recurrent product holds all of them)
  if (!reserve && !ordered) {
    const TeamPlan shares = row_share_plan(dims);
    if (shares.team > 1) {
      forward_by_row_shares(shares, dims, 1, &y, h_n, c_n, x, lengths, h0, c0, weights);
      return;
    }
  }
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size;
  const int D = dims.directions, G = gate_count(dims.cell), GH = G * H;
  const bool projected = weights[0].input_projected;
  if (projected && (reserve || D != 1)) throw std::invalid_argument("layer_forward_cpu: a projected input is for inference in one direction");
  const CellKind cell = dims.cell;
  const bool relu = cell == CellKind::kRnnRelu;
  const bool sorted = sorted_decreasing(lengths, B);
  const bool training = reserve != nullptr;
  const int blocks = (H + kGateBlock - 1) / kGateBlock;
  const int P = blocks * G * kGateBlock;  // columns of the permuted recurrent projection
  const GateKernels& k = gate_kernels();
  const ScratchLease lease;
  Scratch& s = *lease;

  // The input projection of `chunk` steps at a time, about 512 KB of it: the steps then read it from L2.
  // Chunks of 2 MB (the whole of T = 32 at B = 32, H = 128) left it in L3, where the gates' loads of
  // it waited: LSTM H = 128 inference 1.14x, GRU 1.07x, LSTM training 1.08x, GRU H = 128 at B = 128
  // 1.09x (layer_bench on one thread, paired runs, Intel Xeon model 106: 1.25 MB of L2). The backward
  // sweep's chunks follow the size of the weight gradients instead (see layer_backward_cpu).
  const int chunk = time_chunk(T, B, GH, 256, size_t{512} << 10);
  float* xproj = sized(s.xproj, static_cast<size_t>(chunk) * B * GH);
  float* hproj = sized(s.hproj, static_cast<size_t>(B) * P);
  const size_t state = static_cast<size_t>(B) * H;
  float* hbuf = sized(s.h, 2 * state);
  float* c = sized(s.c, state);
  float* zeros = sized(s.zeros, GH);
  std::fill(zeros, zeros + GH, 0.0f);

  for (int d = 0; d < D; ++d) {
    const LayerWeights& w = weights[d];
    const ReserveViews r = training ? reserve_views(dims, reserve, d) : ReserveViews{};
    const float* b_ih = w.b_ih ? w.b_ih : zeros;
    const float* b_hh = w.b_hh ? w.b_hh : zeros;

    // a step's recurrent product made by the caller (or below, before the input's) reads no w_hh here
    const float* given = w.recurrent_projected;
    std::optional<PackedWeight> w_hh;
    if (!given || w.recurrent_next) w_hh.emplace(forward_recurrent(w, G, H, s));
    // w_ih^T for the input projection: kept where the weight has a cache, else gemm_cpu packs it
    std::optional<PackedWeight> w_ih;
    if (w.ih_cache.cache && !projected)
      w_ih.emplace(forward_input(w.ih_cache, w.w_ih, I, GH, s.w_ih_packed));

    if (h0) std::memcpy(hbuf, h0 + d * state, state * sizeof(float));
    else std::fill(hbuf, hbuf + state, 0.0f);
    // the step's recurrent product before its input's (T = 1, checked above): here where one
    // thread runs the step, else each thread of the team before its own share of the input's
    const bool team_first = w.recurrent_first && !given && team_for(blocks, B, GH, H, 1, !training).team > 1;
    if (w.recurrent_first && !given && !team_first) {
      gemm_packed_tiles(B, 1.0f, hbuf, H, **w_hh, 0.0f, hproj, P, 0, P / kGemmTile, w.backwards);
      given = hproj;
    }
    if (cell == CellKind::kLstm) {
      if (c0) std::memcpy(c, c0 + d * state, state * sizeof(float));
      else std::fill(c, c + state, 0.0f);
    }

    for (int first = 0; first < T; first += chunk) {
      // the chunk's steps cover the time steps [t_lo, t_lo + n): their input projection first
      const int n = std::min(chunk, T - first);
      const int t_lo = d == 0 ? first : T - first - n;
      const float* x_chunk = x + static_cast<size_t>(t_lo) * B * (projected ? GH : I);
      const TeamPlan plan = team_for(blocks, B, GH, H, n, !training);
      // Split by rows, each thread projects its own rows, so that its steps read nothing another
      // core wrote (a product of all rows over the pool splits them by time: half of each thread's
      // rows would come from the other core's cache, which costs microseconds a step where the
      // cores are far apart). Otherwise all rows at once, over the pool.
      const bool own_projection = plan.by_rows && plan.team > 1 && w_ih;
      // Split by units, where the product of all rows is too small for the pool (a few steps of a
      // small batch), each thread projects its own units' columns of every gate: else the calling
      // thread reads all of w_ih while the others wait, and it is the weight that thread would
      // otherwise not read at all, so the threads' halves of the weights stay in their own L2.
      static_assert(kGateBlock % kGemmTile == 0, "a thread's units are whole tiles of every gate's columns");
      const bool unit_projection = !plan.by_rows && plan.team > 1 && w_ih && H % kGemmTile == 0 &&
                                   gemm_packed_serial(n * B, **w_ih);
      const float* const xp = projected ? x_chunk : xproj;  // the chunk's projected inputs
      if (!own_projection && !unit_projection && !projected) {
        if (w_ih) gemm_packed(n * B, 1.0f, x_chunk, I, **w_ih, 0.0f, xproj, GH, w.backwards);
        else gemm_cpu(false, true, n * B, GH, I, 1.0f, x_chunk, I, w.w_ih, I, 0.0f, xproj, GH);
      }
      run_team(plan.team, [&](int id, int team, Barrier& barrier) {
        const Share share = share_of({team, plan.by_rows}, id, B, H);
        const int blk0 = share.blk0, blk1 = share.blk1;
        const int u0 = blk0 * kGateBlock, u1 = std::min(H, blk1 * kGateBlock);
        // Split by rows, the thread's own rows of the chunk's inputs, gathered (a step's rows lie B
        // apart), projected in one product; its recurrent products go to a buffer of its own too.
        // (Per step, 4-row products of the inputs, and the products of both threads side by side
        // in one buffer, left the team 25% slower than two calls on half the rows each: LSTM H =
        // 128, B = 8, T = 32, 2 threads, 630 against 500 us.)
        OwnRows& own = t_own_rows;
        const int srows = share.b1 - share.b0;
        if (own_projection) {
          own.x.resize(static_cast<size_t>(n) * srows * I);
          own.xproj.resize(static_cast<size_t>(n) * srows * GH);
          own.hproj.resize(static_cast<size_t>(srows) * P);
          copy_rows(x_chunk, B, share.b0, own.x.data(), srows, 0, n, srows, I);
          gemm_packed(n * srows, 1.0f, own.x.data(), I, **w_ih, 0.0f, own.xproj.data(), GH);
        }
        // the step's recurrent products of the share's first row and of row b; the projected
        // inputs of row b at time t
        float* const share_out = own_projection ? own.hproj.data() : hproj + static_cast<size_t>(share.b0) * P;
        if (team_first && srows > 0 && blk1 > blk0)
          gemm_packed_tiles(srows, 1.0f, hbuf + static_cast<size_t>(share.b0) * H, H, **w_hh, 0.0f, share_out, P, blk0 * G, blk1 * G,
                            w.backwards);
        if (unit_projection)
          for (int i = 0; i < G; ++i) {
            const int q = w.backwards ? G - 1 - i : i;  // (an ordered step's reads, as the products')
            gemm_packed_tiles(n * B, 1.0f, x_chunk, I, **w_ih, 0.0f, xproj, GH, (q * H + u0) / kGemmTile, (q * H + u1) / kGemmTile,
                              w.backwards);
          }
        const float* const share_proj = given ? given + static_cast<size_t>(share.b0) * P : share_out;
        const auto hproj_of = [&](int b) { return share_proj + static_cast<size_t>(b - share.b0) * P; };
        const auto xrow_of = [&](int t, int b) {
          return own_projection ? own.xproj.data() + (static_cast<size_t>(t - t_lo) * srows + (b - share.b0)) * GH
                                : xp + (static_cast<size_t>(t - t_lo) * B + b) * GH;
        };
        std::vector<float> discard(training ? 0 : GH + H);  // inference: gates and h_n go nowhere
        Pad pad;
        for (int step = first; step < first + n; ++step) {
          const int t = time_of(d, step, T);
          float* h_cur = hbuf + (step % 2) * state;  // the state alternates between two buffers
          float* h_next = hbuf + (1 - step % 2) * state;
          const int rows = rows_within(gemm_rows(lengths, B, sorted, t), share.b0, share.b1);
          // every other step over w_hh's panels backwards: a step of a few rows then starts on the
          // panels the last one read last, still in L2 where w_hh is larger
          if (rows > 0 && blk1 > blk0 && !given && !team_first)
            gemm_packed_tiles(rows, 1.0f, h_cur + static_cast<size_t>(share.b0) * H, H, **w_hh, 0.0f,
                              share_out, P, blk0 * G, blk1 * G, (step % 2 == 1) != w.backwards);
          for (int b = share.b0; b < share.b1; ++b) {
            const size_t row = static_cast<size_t>(t) * B + b;
            const float* hb = h_cur + static_cast<size_t>(b) * H;
            float* hb_next = h_next + static_cast<size_t>(b) * H;
            float* cb = c + static_cast<size_t>(b) * H;
            float* yb = y + row * D * H + static_cast<size_t>(d) * H;
            float* gates = training ? r.gates + row * GH : discard.data();
            float* hn_saved = training && cell == CellKind::kGru ? r.h_n + row * H : discard.data() + GH;
            if (training) {
              std::memcpy(r.h_prev + row * H + u0, hb + u0, (u1 - u0) * sizeof(float));
              if (cell == CellKind::kLstm) std::memcpy(r.c_prev + row * H + u0, cb + u0, (u1 - u0) * sizeof(float));
            }
            if (!is_active(lengths, b, t)) {
              std::fill(yb + u0, yb + u1, 0.0f);
              std::memcpy(hb_next + u0, hb + u0, (u1 - u0) * sizeof(float));
              if (training) {
                for (int q = 0; q < G; ++q) std::fill(gates + q * H + u0, gates + q * H + u1, 0.0f);
                if (cell == CellKind::kGru) std::fill(hn_saved + u0, hn_saved + u1, 0.0f);
              }
              continue;
            }
            const float* xrow = xrow_of(t, b);
            // the whole blocks in one call, then a partial last block through the pad
            const int whole = std::max(0, std::min(blk1, H / kGateBlock) - blk0);
            if (whole > 0) {
              const int j0 = blk0 * kGateBlock;
              const float* hp = hproj_of(b) + static_cast<size_t>(blk0) * G * kGateBlock;
              if (cell == CellKind::kLstm) k.lstm_forward(xrow + j0, b_ih + j0, b_hh + j0, H, hp, cb + j0, hb_next + j0, yb + j0, gates + j0, whole);
              else if (cell == CellKind::kGru) k.gru_forward(xrow + j0, b_ih + j0, b_hh + j0, H, hp, hb + j0, hb_next + j0, yb + j0, gates + j0, hn_saved + j0, whole);
              else k.rnn_forward(xrow + j0, b_ih + j0, b_hh + j0, hp, relu, hb_next + j0, yb + j0, gates + j0, whole);
            }
            for (int blk = blk0 + whole; blk < blk1; ++blk) {
              const int j0 = blk * kGateBlock, width = H - j0;  // less than a block
              const float* hp = hproj_of(b) + static_cast<size_t>(blk) * G * kGateBlock;
              gather(pad.x, xrow + j0, H, G, width);
              gather(pad.b_ih, b_ih + j0, H, G, width);
              gather(pad.b_hh, b_hh + j0, H, G, width);
              if (cell == CellKind::kLstm) {
                gather(pad.c, cb + j0, 0, 1, width);
                k.lstm_forward(pad.x, pad.b_ih, pad.b_hh, kGateBlock, hp, pad.c, pad.a, pad.b, pad.gates, 1);
                scatter(cb + j0, pad.c, 0, 1, width);
              } else if (cell == CellKind::kGru) {
                gather(pad.d, hb + j0, 0, 1, width);
                k.gru_forward(pad.x, pad.b_ih, pad.b_hh, kGateBlock, hp, pad.d, pad.a, pad.b, pad.gates, pad.e, 1);
                scatter(hn_saved + j0, pad.e, 0, 1, width);
              } else {
                k.rnn_forward(pad.x, pad.b_ih, pad.b_hh, hp, relu, pad.a, pad.b, pad.gates, 1);
              }
              scatter(hb_next + j0, pad.a, 0, 1, width);
              scatter(yb + j0, pad.b, 0, 1, width);
              scatter(gates + j0, pad.gates, H, G, width);
            }
          }
          if (!plan.by_rows) barrier.wait();
        }
        // the next step's recurrent product (T = 1): the share's columns (split by units, after the
        // step's barrier: every unit of h_n is written) or its rows (split by rows: its own)
        if (w.recurrent_next && srows > 0 && blk1 > blk0)
          gemm_packed_tiles(srows, 1.0f, hbuf + (T % 2 == 0 ? 0 : state) + static_cast<size_t>(share.b0) * H, H, **w_hh, 0.0f,
                            w.recurrent_next + static_cast<size_t>(share.b0) * P, P, blk0 * G, blk1 * G, w.backwards);
        if (own.xproj.capacity() + own.x.capacity() > kOwnRowsKeep) own = OwnRows{};
      });
    }
    const float* final_h = T % 2 == 0 ? hbuf : hbuf + state;
    std::memcpy(h_n + d * state, final_h, state * sizeof(float));
    if (cell == CellKind::kLstm) std::memcpy(c_n + d * state, c, state * sizeof(float));
  }
}

// ===========================================================================
// A stack of layers in inference (see stack_forward_cpu in recurrent.h)

namespace {

std::atomic<StackPipeline> g_stack_pipeline{[] {
  const std::string mode = env_mode("RECURRENT_STACK_PIPELINE");
  return mode == "on" ? StackPipeline::kOn : mode == "off" ? StackPipeline::kOff : StackPipeline::kAuto;
}()};

// Where the size rule runs the pipeline: only where each layer's steps are too short to split over
// the team (team_for gives one thread), so that the other threads would sit idle. There it is
// 1.2-1.7x faster on 2 threads (Zen 2, bench/stack-pipeline-results.md; LSTM 2 x 128 at B = 1:
// 1.6x). Where a layer does split its steps (by units, a barrier per step, or by rows), the
// pipeline loses in most runs: a thread's layers must take a whole step's work, and an LSTM's or
// GRU's first layer reads fewer inputs than the next, so the threads are out of balance. At B = 1
// to 8 and H = 128 to 256 it was 10-30% faster in some runs and 15-20% slower in others, as the
// machine's two cores changed speed from minute to minute. RECURRENT_STACK_PIPELINE=on forces it.

// Steps per chunk of the pipeline (0: chosen by size); RECURRENT_PIPELINE_CHUNK sets the start.
std::atomic<int> g_pipeline_chunk{env_steps("RECURRENT_PIPELINE_CHUNK")};

struct PipelinePlan {
  int team;   // 1: layer after layer, each with its own split
  int chunk;  // time steps per chunk
};

PipelinePlan pipeline_for(const LayerDims& dims, int layers) {
  const int T = dims.steps, B = dims.batch, H = dims.hidden_size, GH = gate_count(dims.cell) * H;
  const int team = std::min(num_threads(), layers);
  const StackPipeline mode = g_stack_pipeline.load();
  if (team < 2 || T < 2 || dims.directions != 1 || mode == StackPipeline::kOff) return {1, T};
  if (mode == StackPipeline::kAuto) {
    double step_work = 0;  // every layer's multiply-adds in a step
    for (int l = 0; l < layers; ++l) step_work += static_cast<double>(B) * GH * ((l == 0 ? dims.input_size : H) + H);
    if (step_work * T < 1 << 20) return {1, T};  // too little to wake a second thread for
    const int blocks = (H + kGateBlock - 1) / kGateBlock;
    if (team_for(blocks, B, GH, H, T).team > 1) return {1, T};
  }
  const int forced = g_pipeline_chunk.load();
  if (forced > 0) return {team, std::min(T, forced)};
  // Filling the pipeline costs a chunk of the first layers; a chunk's call and its handover cost
  // a few microseconds. Measured best: 4-8 steps (LSTM 2 x 128 and 2 x 256, B = 1 and 8).
  return {team, std::max(1, std::min(8, T / 8))};
}

}  // namespace

void set_stack_pipeline(StackPipeline mode) { g_stack_pipeline = mode; }

void set_pipeline_chunk(int steps) { g_pipeline_chunk = std::max(0, steps); }

void stack_forward_cpu(const LayerDims& dims, int layers, float* const* ys, float* h_n, float* c_n,
                       const float* x, const int* lengths, const float* h0, const float* c0,
                       const LayerWeights* weights) {
  const int T = dims.steps, B = dims.batch, H = dims.hidden_size, L = layers;
  const size_t state = static_cast<size_t>(B) * H;
  const bool lstm = dims.cell == CellKind::kLstm;
  const auto layer_dims = [&](int l, int steps) {
    LayerDims d = dims;
    d.steps = steps;
    d.input_size = l == 0 ? dims.input_size : H;
    return d;
  };
  const auto input_of = [&](int l) { return l == 0 ? x : ys[l - 1]; };
  const CallWeightsScope call(stack_weight_bytes(dims, L));
  const auto layer_after_layer = [&] {
    for (int l = 0; l < L; ++l)
      layer_forward_cpu(layer_dims(l, T), ys[l], h_n + l * state, lstm ? c_n + l * state : nullptr, nullptr, input_of(l), lengths,
                        h0 ? h0 + l * state : nullptr, lstm && c0 ? c0 + l * state : nullptr, &weights[l]);
  };
  // small shares of a batch split by rows: each thread runs its rows through the whole stack
  const TeamPlan shares = g_stack_pipeline.load() == StackPipeline::kOn ? TeamPlan{1, true} : row_share_plan(dims);
  if (shares.team > 1) {
    forward_by_row_shares(shares, dims, L, ys, h_n, c_n, x, lengths, h0, c0, weights);
    return;
  }
  const PipelinePlan plan = pipeline_for(dims, L);
  if (plan.team <= 1) {
    layer_after_layer();
    return;
  }
  // Chunk k of layer l covers steps [k * chunk, (k + 1) * chunk) and starts from the state the
  // layer's chunk k - 1 left in h_n, c_n. Every step computes what the whole-sequence call computes
  // (the kernels' results do not depend on how time is cut into chunks), so the stack's results do
  // not depend on the plan.
  const int chunks = (T + plan.chunk - 1) / plan.chunk;
  std::vector<Progress> done(L);  // chunks of each layer written
  run_team(plan.team, [&](int id, int team, Barrier&) {
    if (team == 1) {  // the pool was busy (another caller): this thread alone, whole layers
      layer_after_layer();
      return;
    }
    const int l0 = L * id / team, l1 = L * (id + 1) / team;  // this thread's layers
    std::vector<int> chunk_lengths(lengths ? B : 0);
    for (int k = 0; k < chunks; ++k) {
      const int t0 = k * plan.chunk, n = std::min(plan.chunk, T - t0);
      if (lengths)
        for (int b = 0; b < B; ++b) chunk_lengths[b] = std::max(0, std::min(n, lengths[b] - t0));
      for (int l = l0; l < l1; ++l) {
        if (l == l0 && l > 0) done[l - 1].wait_for(k + 1);  // the layer below is another thread's
        const LayerDims chunk_dims = layer_dims(l, n);
        float* hl = h_n + l * state;
        float* cl = lstm ? c_n + l * state : nullptr;
        const float* h_start = k > 0 ? hl : h0 ? h0 + l * state : nullptr;
        const float* c_start = !lstm ? nullptr : k > 0 ? cl : c0 ? c0 + l * state : nullptr;
        layer_forward_cpu(chunk_dims, ys[l] + static_cast<size_t>(t0) * B * H, hl, cl, nullptr,
                          input_of(l) + static_cast<size_t>(t0) * B * chunk_dims.input_size, lengths ? chunk_lengths.data() : nullptr,
                          h_start, c_start, &weights[l]);
        if (l == l1 - 1) done[l].publish(k + 1);
      }
    }
  });
}

// ===========================================================================
// Backward

void layer_backward_cpu(const LayerDims& dims, float* dx, float* dh0, float* dc0,
                        const LayerGrads* grads, const float* dy, const float* dh_n,
                        const float* dc_n, const float* reserve, const float* x,
                        const int* lengths, const LayerWeights* weights, float* dh_steps) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size;
  const int D = dims.directions, G = gate_count(dims.cell), GH = G * H;
  const CellKind cell = dims.cell;
  const bool relu = cell == CellKind::kRnnRelu;
  const bool sorted = sorted_decreasing(lengths, B);
  const size_t state = static_cast<size_t>(B) * H;
  const int blocks = (H + kGateBlock - 1) / kGateBlock;
  const GateKernels& k = gate_kernels();
  const ScratchLease lease;
  Scratch& s = *lease;

  // the gate gradients of `chunk` steps at a time; then that chunk's share of dx and of the
  // weight gradients. Where those gradients (dW_ih and dW_hh) fit in half of L2, chunks of 128 rows,
  // so that each chunk's dG is packed and used while it is still in L2 (then dW stays there too):
  // a GRU of H = 128 at B = 32 trained 1.09x faster than in one chunk of 1024 rows, LSTM 1.03x (paired,
  // one thread; Intel Xeon model 106, L2 1.25 MB). Larger weights keep long chunks: each chunk passes
  // over dW once more, and an LSTM of H = 512 (8 MB) lost 17% at 128 rows, a tanh RNN of H = 512 (2 MB) 4%.
  const size_t weight_grad_bytes = static_cast<size_t>(GH) * (I + H) * sizeof(float);
  const int chunk = 2 * weight_grad_bytes <= l2_bytes() ? time_chunk(T, B, GH, 128, 0) : time_chunk(T, B, GH, 1024, size_t{8} << 20);
  const size_t chunk_rows = static_cast<size_t>(chunk) * B;
  float* dgx = sized(s.dgates_x, chunk_rows * GH);
  // Only the GRU has different input-side and hidden-side gate gradients.
  float* dgh = cell == CellKind::kGru ? sized(s.dgates_h, chunk_rows * GH) : dgx;
  float* dh = sized(s.dh, state);
  float* dc = sized(s.dc, state);

  for (int d = 0; d < D; ++d) {
    const LayerWeights& w = weights[d];
    const LayerGrads& g = grads[d];
    const ReserveViews r = reserve_views(dims, const_cast<float*>(reserve), d);
    // w_hh (G*H, H) and, where kept, w_ih (G*H, I), packed once for all steps
    const PackedWeight w_hh(w.hh_cache, PackLayout::kBackwardRecurrent, GH, H, s.w_hh_packed,
                            [&](PackedMatrix& packed) { packed.pack(false, GH, H, w.w_hh, H); });
    std::optional<PackedWeight> w_ih;
    if (dx && w.ih_cache.cache)
      w_ih.emplace(w.ih_cache, PackLayout::kBackwardInput, GH, I, s.w_ih_packed, [&](PackedMatrix& packed) { packed.pack(false, GH, I, w.w_ih, I); });

    if (dh_n) std::memcpy(dh, dh_n + d * state, state * sizeof(float));
    else std::fill(dh, dh + state, 0.0f);
    if (cell == CellKind::kLstm) {
      if (dc_n) std::memcpy(dc, dc_n + d * state, state * sizeof(float));
      else std::fill(dc, dc + state, 0.0f);
    }

    for (int last = T; last > 0; last -= chunk) {
      // the sweep's steps [last - n, last) cover the time steps [t_lo, t_lo + n)
      const int n = std::min(chunk, last);
      const int t_lo = d == 0 ? last - n : T - last;
      const TeamPlan plan = team_for(blocks, B, GH, H, n);
      run_team(plan.team, [&](int id, int team, Barrier& barrier) {
        const Share share = share_of({team, plan.by_rows}, id, B, H);
        const int blk0 = share.blk0, blk1 = share.blk1;
        const int u0 = blk0 * kGateBlock, u1 = std::min(H, blk1 * kGateBlock);
        Pad pad;
        for (int step = last - 1; step >= last - n; --step) {
          const int t = time_of(d, step, T);
          for (int b = share.b0; b < share.b1; ++b) {
            const size_t row = static_cast<size_t>(t) * B + b;
            float* gx = dgx + (static_cast<size_t>(t - t_lo) * B + b) * GH;
            float* gh = dgh + (static_cast<size_t>(t - t_lo) * B + b) * GH;
            float* dh_step = dh_steps ? dh_steps + ((static_cast<size_t>(d) * T + t) * B + b) * H : nullptr;
            if (!is_active(lengths, b, t)) {
              if (dh_step) std::fill(dh_step + u0, dh_step + u1, 0.0f);
              for (int q = 0; q < G; ++q) {
                std::fill(gx + q * H + u0, gx + q * H + u1, 0.0f);
                if (gh != gx) std::fill(gh + q * H + u0, gh + q * H + u1, 0.0f);
              }
              continue;
            }
            const float* gates = r.gates + row * GH;
            float* dhb = dh + static_cast<size_t>(b) * H;
            float* dcb = dc + static_cast<size_t>(b) * H;
            if (dy) {
              const float* dyb = dy + row * D * H + static_cast<size_t>(d) * H;
              for (int j = u0; j < u1; ++j) dhb[j] += dyb[j];
            }
            if (dh_step) std::copy(dhb + u0, dhb + u1, dh_step + u0);
            // the whole blocks in one call, then a partial last block through the pad
            const int whole = std::max(0, std::min(blk1, H / kGateBlock) - blk0);
            if (whole > 0) {
              const int j0 = blk0 * kGateBlock;
              if (cell == CellKind::kLstm) k.lstm_backward(gates + j0, H, r.c_prev + row * H + j0, dhb + j0, dcb + j0, gx + j0, whole);
              else if (cell == CellKind::kGru) k.gru_backward(gates + j0, H, r.h_n + row * H + j0, r.h_prev + row * H + j0, dhb + j0, gx + j0, gh + j0, whole);
              else k.rnn_backward(gates + j0, relu, dhb + j0, gx + j0, whole);
            }
            for (int blk = blk0 + whole; blk < blk1; ++blk) {
              const int j0 = blk * kGateBlock, width = H - j0;  // less than a block
              gather(pad.gates, gates + j0, H, G, width);
              gather(pad.a, dhb + j0, 0, 1, width);
              if (cell == CellKind::kLstm) {
                gather(pad.b, r.c_prev + row * H + j0, 0, 1, width);
                gather(pad.c, dcb + j0, 0, 1, width);
                k.lstm_backward(pad.gates, kGateBlock, pad.b, pad.a, pad.c, pad.x, 1);
                scatter(dcb + j0, pad.c, 0, 1, width);
              } else if (cell == CellKind::kGru) {
                gather(pad.b, r.h_n + row * H + j0, 0, 1, width);
                gather(pad.c, r.h_prev + row * H + j0, 0, 1, width);
                k.gru_backward(pad.gates, kGateBlock, pad.b, pad.c, pad.a, pad.x, pad.gates2, 1);
                scatter(gh + j0, pad.gates2, H, G, width);
              } else {
                k.rnn_backward(pad.gates, relu, pad.a, pad.x, 1);
              }
              scatter(dhb + j0, pad.a, 0, 1, width);
              scatter(gx + j0, pad.x, H, G, width);
            }
          }
          if (!plan.by_rows) barrier.wait();
          // dh_prev (owned rows and columns) = the part that bypasses the GEMM (in dh now) + dgates_h * w_hh
          const int rows = rows_within(gemm_rows(lengths, B, sorted, t), share.b0, share.b1);
          // (every other step backwards over w_hh's panels, as in the forward)
          if (rows > 0 && blk1 > blk0)
            gemm_packed_tiles(rows, 1.0f, dgh + (static_cast<size_t>(t - t_lo) * B + share.b0) * GH, GH, *w_hh, 1.0f,
                              dh + static_cast<size_t>(share.b0) * H, H, blk0, blk1, step % 2 == 1);
        }
      });

      // the chunk's rows of dx (where the input wants them), and its share of the weight gradients (the
      // first chunk writes them)
      const int rows = n * B;
      const size_t at = static_cast<size_t>(t_lo) * B;
      const float accumulate = last == T ? 0.0f : 1.0f;
      if (dx && w_ih) gemm_packed(rows, 1.0f, dgx, GH, **w_ih, d == 0 ? 0.0f : 1.0f, dx + at * I, I);
      else if (dx) gemm_cpu(false, false, rows, I, GH, 1.0f, dgx, GH, w.w_ih, I, d == 0 ? 0.0f : 1.0f, dx + at * I, I);
      // the weight gradients, and the biases' (dG's column sums) from dG^T's packing as it passes
      const GemmColumns ih{x + at * I, I, I, g.w_ih, I}, hh{r.h_prev + at * H, H, H, g.w_hh, H};
      if (dgh == dgx) {  // one dG^T for both (every cell but the GRU): packed once, b_hh's gradient is b_ih's
        const GemmColumns parts[] = {ih, hh};
        gemm_cpu_shared_a(true, false, GH, rows, 1.0f, dgx, GH, parts, 2, accumulate, g.b_ih);
        if (g.b_ih) std::copy(g.b_ih, g.b_ih + GH, g.b_hh);
      } else {
        gemm_cpu_shared_a(true, false, GH, rows, 1.0f, dgx, GH, &ih, 1, accumulate, g.b_ih);
        gemm_cpu_shared_a(true, false, GH, rows, 1.0f, dgh, GH, &hh, 1, accumulate, g.b_hh);
      }
    }
    if (dh0) std::memcpy(dh0 + d * state, dh, state * sizeof(float));
    if (dc0 && cell == CellKind::kLstm) std::memcpy(dc0 + d * state, dc, state * sizeof(float));
  }
}

}  // namespace recurrent
