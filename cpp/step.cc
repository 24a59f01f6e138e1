// One step of a stacked recurrent model (see step.h).
#include "step.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"
#include "thread_pool.h"

namespace recurrent {

namespace {

// The first layer's token table (see step.h), or null where the step multiplies instead.
std::shared_ptr<const std::vector<float>> token_table(const StepDims& dims, const float* embedding,
                                                      const CachedWeight& embedding_cache, const LayerWeights& first) {
  const int E = dims.input_size, GH = gate_count(dims.cell) * dims.hidden_size, V = dims.vocab;
  const double floats = static_cast<double>(V) * GH;
  if (!embedding_cache.cache || !first.ih_cache.cache || V <= 0 || bf16_matmul() ||
      floats > std::max(2.0 * E * GH, static_cast<double>(1 << 18)))
    return nullptr;
  return embedding_cache.cache->table(TableKind::kTokenProjection, V, GH, embedding_cache.version, first.ih_cache,
                                      [&](std::vector<float>& table) {
                                        // the product the layer runs on its inputs, on every row of the embedding
                                        thread_local PackedMatrix scratch;
                                        const PackedWeight w_ih = forward_input(first.ih_cache, first.w_ih, E, GH, scratch);
                                        table.resize(static_cast<size_t>(V) * GH);
                                        gemm_packed(V, 1.0f, embedding, E, *w_ih, 0.0f, table.data(), GH);
                                      });
}

// The order of one step's weight reads in the sampling loop on one thread (see stack_sample_cpu).
struct StepOrder {
  bool odd;            // this step's place in the loop
  const float* given;  // layer 0's recurrent product of this step, made by the step before, or null
  float* next;         // where layer 0's recurrent product of the next step goes, or null (none)
  bool team = false;   // the layers split their units over a team (more than one thread)
};

void run_step(const StepDims& dims, float* out, float* h, float* c, const int* tokens, const float* embedding,
              const float* x, const LayerWeights* layers, const float* head_w, const float* head_b,
              CachedWeight head_cache, CachedWeight embedding_cache, const StepOrder* order) {
  const int B = dims.batch, H = dims.hidden_size, L = dims.layers, V = dims.outputs;
  const size_t state = static_cast<size_t>(B) * H;
  // the layers' outputs alternate between two buffers; the embedded input has its own
  thread_local AlignedVector<float> embedded, ys[2];  // on cache lines, as the layers' scratch
  thread_local PackedMatrix head_scratch;
  const float* input = x;
  LayerWeights first = layers[0];
  const std::shared_ptr<const std::vector<float>> table = tokens ? token_table(dims, embedding, embedding_cache, first) : nullptr;
  if (table) {
    // the first layer's projected inputs: the tokens' rows of the table
    const size_t GH = static_cast<size_t>(gate_count(dims.cell)) * H;
    embedded.resize(B * GH);
    for (int b = 0; b < B; ++b) std::memcpy(embedded.data() + b * GH, table->data() + tokens[b] * GH, GH * sizeof(float));
    input = embedded.data();
    first.input_projected = true;
  } else if (tokens) {
    const int E = dims.input_size;
    embedded.resize(static_cast<size_t>(B) * E);
    for (int b = 0; b < B; ++b)
      std::memcpy(embedded.data() + static_cast<size_t>(b) * E, embedding + static_cast<size_t>(tokens[b]) * E, E * sizeof(float));
    input = embedded.data();
  }
  const LayerDims first_dims{dims.cell, 1, B, dims.input_size, H, 1};  // the first layer's, one step
  const CallWeightsScope call(stack_weight_bytes(first_dims, L));
  for (int l = 0; l < L; ++l) {
    float* y;
    if (l == L - 1 && V == 0) {
      y = out;
    } else {
      ys[l % 2].resize(state);
      y = ys[l % 2].data();
    }
    const LayerDims layer = l == 0 ? first_dims : LayerDims{dims.cell, 1, B, H, H, 1};
    // h0 and h_n (c0 and c_n) are the same rows: the layer copies its initial state before it starts
    float* hl = h + l * state;
    float* cl = c ? c + l * state : nullptr;
    LayerWeights w = l == 0 ? first : layers[l];
    if (order) {
      w.backwards = order->odd;
      if (l == 0) w.recurrent_projected = order->given;
      if (!order->team) {
        w.recurrent_first = !order->odd;
      } else {
        // each thread of the team: layer 0's product for the next step at the end of that layer,
        // and the layers above their recurrent product first on odd steps (each thread's reads
        // then start where its last step's ended: in a harness of the 2 x 256 LSTM's halves on
        // two threads, 39-43 us a step against 52-54 in one order every step)
        if (l == 0) w.recurrent_next = order->next;
        else w.recurrent_first = order->odd;
      }
    }
    layer_forward_cpu(layer, y, hl, cl, nullptr, input, nullptr, hl, cl, &w);
    // one thread, odd steps: layer 0's product for the next step right after its own
    if (order && !order->team && order->next && order->odd && l == 0) recurrent_product_cpu(first_dims, layers[0], h, order->next, true);
    input = y;
  }
  // one thread, even steps: after every layer's
  if (order && !order->team && order->next && !order->odd)
    recurrent_product_cpu(first_dims, layers[0], h, order->next, false);
  if (V == 0) return;
  // out = input * w^T + b, as Linear computes it: the bias first, the product added on top
  const PackedWeight w = forward_input(head_cache, head_w, H, V, head_scratch);
  if (head_b)
    for (int b = 0; b < B; ++b) std::memcpy(out + static_cast<size_t>(b) * V, head_b, V * sizeof(float));
  gemm_packed(B, 1.0f, input, H, *w, head_b ? 1.0f : 0.0f, out, V);
}

}  // namespace

// What a step call leaves in its first layer's w_hh cache for the next call (PackCache::keep_ahead):
// the state it left in that layer, and where the call continued a chain, the next step's
// recurrent product of that layer made from it. A call takes the product only when its own state
// is that one, byte for byte, and the weights' version, precision and shapes are the same, so the
// values are those of the product it would make itself.
struct StepAhead {
  uint64_t version = 0;
  bool bf16 = false;
  CellKind cell = CellKind::kLstm;
  int batch = 0, hidden = 0;
  bool odd = false;                // the order the next call reads its weights in
  AlignedVector<float> state;      // the first layer's h as the call left it (B, H)
  AlignedVector<float> product;    // state * w_hh^T, in the layout a step reads (B, P); empty: none made
};

namespace {
// Up to this batch, and up to this many bytes of weights in the stack, a step call on one thread
// schedules its weight reads with the call before. Past 8 MB the reads come from L3 or memory
// either way and the alternating orders gained nothing (a 2 x 512 LSTM, 12.5 MB: 0.95-0.97x,
// bench/native/step_bench.cc on an Intel Xeon model 106).
// On more threads, up to kAheadTeamRows rows: each thread makes its own columns of the product at
// the end of the first layer (LayerWeights::recurrent_next). From 8 rows a small layer's team
// splits the batch by rows, on copies of its own (forward_by_row_shares), which an ordered step
// does not take.
constexpr int kAheadRows = 16;
constexpr int kAheadTeamRows = 7;
constexpr double kAheadBytes = 8 << 20;
}  // namespace

void stack_step_cpu(const StepDims& dims, float* out, float* h, float* c, const int* tokens, const float* embedding,
                    const float* x, const LayerWeights* layers, const float* head_w, const float* head_b,
                    CachedWeight head_cache, CachedWeight embedding_cache) {
  // Step calls that follow each other (each given the state the last one left: streaming,
  // step-by-step generation from JS) read their weights in the orders of stack_sample_cpu's
  // loop, each call the other's backwards, and each makes the next call's first recurrent product
  // from the state it leaves: so a call starts on the weights the last one read last, still in L2.
  // A call that does not follow (another state, other weights, a write to w_hh) runs as alone and
  // makes nothing ahead; a chain that stops leaves one product unused. On a team the threads
  // each take their share of the orders (run_step).
  PackCache* cache = layers[0].hh_cache.cache;
  const int B = dims.batch, H = dims.hidden_size;
  const LayerDims first{dims.cell, 1, B, dims.input_size, H, 1};
  const bool team = num_threads() > 1;
  if (!cache || B > (team ? kAheadTeamRows : kAheadRows) || stack_weight_bytes(first, dims.layers) > kAheadBytes) {
    run_step(dims, out, h, c, tokens, embedding, x, layers, head_w, head_b, head_cache, embedding_cache, nullptr);
    return;
  }
  const size_t state = static_cast<size_t>(B) * H;
  const size_t P = recurrent_product_cols(first);
  std::shared_ptr<StepAhead> ahead = cache->take_ahead();
  const uint64_t version = layers[0].hh_cache.version;
  const bool follows = ahead && ahead->version == version && ahead->bf16 == bf16_matmul() && ahead->cell == dims.cell &&
                       ahead->batch == B && ahead->hidden == H && std::memcmp(ahead->state.data(), h, state * sizeof(float)) == 0;
  if (!ahead) ahead = std::make_shared<StepAhead>();
  const bool odd = follows && ahead->odd;
  if (follows) {
    const bool given = !ahead->product.empty();
    ahead->product.resize(static_cast<size_t>(B) * P);
    const StepOrder order{odd, given ? ahead->product.data() : nullptr, ahead->product.data(), team};
    run_step(dims, out, h, c, tokens, embedding, x, layers, head_w, head_b, head_cache, embedding_cache, &order);
  } else {
    AlignedVector<float>().swap(ahead->product);
    run_step(dims, out, h, c, tokens, embedding, x, layers, head_w, head_b, head_cache, embedding_cache, nullptr);
  }
  ahead->version = version;
  ahead->bf16 = bf16_matmul();
  ahead->cell = dims.cell;
  ahead->batch = B;
  ahead->hidden = H;
  ahead->odd = !odd;
  ahead->state.assign(h, h + state);
  cache->keep_ahead(ahead, (ahead->state.capacity() + ahead->product.capacity()) * sizeof(float));
}

uint32_t RandomStream::next32() {
  // random.ts's next32() in 32-bit unsigned arithmetic, which is what Math.imul, + and ^ compute there
  counter += 0x6d2b79f5u;
  if (counter < 0x6d2b79f5u) high += 1;
  uint32_t t = counter ^ (high * 0x9e3779b9u);
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}

int sample_logits(const float* logits, int n, const SampleSpec& spec, RandomStream& rng, std::vector<double>& weights,
                  std::vector<int>& order) {
  const auto value = [&](int i) -> double {
    return spec.excluded && spec.excluded[i] ? -std::numeric_limits<double>::infinity() : static_cast<double>(logits[i]);
  };
  if (spec.temperature == 0 || spec.top_k == 1) {
    int best = 0;
    for (int i = 1; i < n; ++i)
      if (value(i) > value(best)) best = i;
    return best;
  }
  if (spec.top_k == 0 || spec.top_k >= n) {
    // every candidate, in index order
    double max = -std::numeric_limits<double>::infinity();
    for (int i = 0; i < n; ++i)
      if (value(i) > max) max = value(i);
    weights.resize(n);
    double total = 0;
    for (int i = 0; i < n; ++i) total += weights[i] = std::exp((value(i) - max) / spec.temperature);
    double r = rng.uniform() * total;
    int last = -1;
    for (int i = 0; i < n; ++i) {
      if (!(weights[i] > 0)) continue;
      r -= weights[i];
      if (r <= 0) return i;
      last = i;
    }
    // rounding left r a hair above 0: the last candidate that can be drawn at all
    return std::max(last, 0);
  }
  // the k likeliest, likeliest first, equals in index order (JS's sort is stable); NaN sorts as -inf
  const auto key = [&](int i) {
    const double v = value(i);
    return std::isnan(v) ? -std::numeric_limits<double>::infinity() : v;
  };
  order.resize(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
  const int keep = spec.top_k;
  const double max = value(order[0]);
  weights.resize(keep);
  double total = 0;
  for (int k = 0; k < keep; ++k) total += weights[k] = std::exp((value(order[k]) - max) / spec.temperature);
  double r = rng.uniform() * total;
  for (int k = 0; k < keep; ++k) {
    r -= weights[k];
    if (r <= 0 && weights[k] > 0) return order[k];
  }
  // rounding left r a hair above 0: the least likely candidate that can be drawn at all
  int last = keep - 1;
  while (last > 0 && !(weights[last] > 0)) last -= 1;
  return order[last];
}

void stack_sample_cpu(const StepDims& dims, float* out, float* h, float* c, const float* embedding,
                      const LayerWeights* layers, const float* head_w, const float* head_b, CachedWeight head_cache,
                      CachedWeight embedding_cache, int length, const SampleSpec& spec, RandomStream& rng, int* tokens) {
  const int B = dims.batch, V = dims.outputs;
  std::vector<double> weights;
  std::vector<int> order;
  // On one thread, the steps alternate between two orders of their weight reads, each the other
  // backwards, so that a step starts on the weights the last one read last, still in L2 where all
  // of them are not. Layer 0's recurrent product moves to the step before (its state is known
  // there), in the middle of the pair: for two layers, even steps read w_hh1, w_ih1, then w_hh0
  // for the next step, each panel from first to last; odd steps w_hh0 (for the next step), w_ih1,
  // w_hh1, from last to first. The values are the same in either order.
  // The demo's 2 x 192 LSTM reads 1.77 MB of weights a step, three matrices of 590 KB: in one order
  // every step, none of them was still in a 1.25 MB L2 when read again (Intel Xeon model 106, whose
  // L3 streams about 27 GB/s to one core); in these orders two of the three are. generate() on one
  // thread, processes alternating with the build before, 6 pairs: 13,295-14,729 -> 16,409-19,126
  // characters/s, each pair 1.18-1.37x (median 1.29x).
  const bool scheduled = num_threads() == 1 && length > 1;
  const int P = recurrent_product_cols(LayerDims{dims.cell, 1, B, dims.input_size, dims.hidden_size, 1});
  // layer 0's recurrent product for the next step (written once the step has read its own)
  thread_local AlignedVector<float> product;
  product.resize(scheduled ? static_cast<size_t>(B) * P : 0);
  for (int i = 0; i < length; ++i) {
    int* drawn = tokens + static_cast<size_t>(i) * B;
    for (int b = 0; b < B; ++b) drawn[b] = sample_logits(out + static_cast<size_t>(b) * V, V, spec, rng, weights, order);
    if (!scheduled) {
      stack_step_cpu(dims, out, h, c, drawn, embedding, nullptr, layers, head_w, head_b, head_cache, embedding_cache);
      continue;
    }
    const StepOrder step{i % 2 == 1, i > 0 ? product.data() : nullptr, i + 1 < length ? product.data() : nullptr};
    run_step(dims, out, h, c, drawn, embedding, nullptr, layers, head_w, head_b, head_cache, embedding_cache, &step);
  }
}

}  // namespace recurrent
