// Node-API glue for the recurrent layers. Every call starts with the layer's sizes:
//   (cell, T, B, I, H, D, ...)
// then buffers in kernel order (outputs, then inputs). Weights travel as one flat
// array of 4 * D entries, [w_ih, w_hh, b_ih, b_hh] per direction, biases null when
// the layer has none. Sizes are re-checked against every buffer.
#include "recurrent.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "../cpp/recurrent.h"
#include "../cpp/reference.h"
#include "../cpp/seq2seq.h"
#include "../cpp/step.h"
#include "../cuda/allocator.h"
#include "../cuda/recurrent.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

LayerDims dims_arg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int32_t kMax = 1 << 30;
  LayerDims d;
  d.cell = static_cast<CellKind>(int_arg(info[0], "cell", 0, 3));
  d.steps = static_cast<int>(int_arg(info[1], "steps", 1, kMax));
  d.batch = static_cast<int>(int_arg(info[2], "batch", 1, kMax));
  d.input_size = static_cast<int>(int_arg(info[3], "inputSize", 1, kMax));
  d.hidden_size = static_cast<int>(int_arg(info[4], "hiddenSize", 1, kMax));
  d.directions = static_cast<int>(int_arg(info[5], "directions", 1, 2));
  // Every index the kernels compute must fit in an int.
  const double rows = static_cast<double>(d.steps) * d.batch;
  const double widest = std::max({static_cast<double>(d.input_size),
                                  static_cast<double>(d.directions) * d.hidden_size,
                                  static_cast<double>(gate_count(d.cell)) * d.hidden_size});
  if (rows * widest >= 2147483647.0 || static_cast<double>(gate_count(d.cell)) * d.hidden_size *
                                            std::max(d.input_size, d.hidden_size) >= 2147483647.0)
    throw_range(env, "layer too large: T * B * width must stay below 2^31 elements");
  return d;
}

int64_t state_size(const LayerDims& d) { return static_cast<int64_t>(d.directions) * d.batch * d.hidden_size; }
int64_t gates_size(const LayerDims& d) { return static_cast<int64_t>(gate_count(d.cell)) * d.hidden_size; }
bool is_lstm(const LayerDims& d) { return d.cell == CellKind::kLstm; }

// Null/undefined, or a span of `count` floats from `offset`.
float* optional_span(const Napi::Value& value, const char* name, int64_t count, int64_t offset = 0) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  return span_of(value, name, offset, count);
}

// optional_span for an argument the op only reads (its version stays: read_span_of).
const float* optional_read_span(const Napi::Value& value, const char* name, int64_t count, int64_t offset = 0) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  return read_span_of(value, name, offset, count);
}

// The optional state offset: where this layer's (D, B, H) rows start in the (L * D, B, H)
// state buffers of a stacked module (h0, c0, hN, cN and their gradients), in floats.
int64_t state_offset_arg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return 0;
  return int_arg(info[index], "stateOffset", 0, int64_t{1} << 52);
}

// lengths: null, or an Int32Array of B entries in [0, T].
std::vector<int> lengths_arg(const Napi::Value& value, const LayerDims& d) {
  Napi::Env env = value.Env();
  std::vector<int> out;
  if (value.IsNull() || value.IsUndefined()) return out;
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, "lengths must be an Int32Array or null");
  Napi::Int32Array lengths = value.As<Napi::Int32Array>();
  if (static_cast<int64_t>(lengths.ElementLength()) != d.batch)
    throw_range(env, "lengths must have one entry per batch row (" + std::to_string(d.batch) + ")");
  out.resize(d.batch);
  for (int b = 0; b < d.batch; ++b) {
    if (lengths[b] < 0 || lengths[b] > d.steps)
      throw_range(env, "lengths[" + std::to_string(b) + "] must be in [0, " + std::to_string(d.steps) + "]");
    out[b] = lengths[b];
  }
  return out;
}

// The flat [w_ih, w_hh, b_ih, b_hh] x D array of storages, checked for size; biases may
// be null (a layer without bias). LayerBackward checks that grads have biases exactly
// where the weights do.
template <typename Span>
void weights_arg(const Napi::Value& value, const LayerDims& d, const char* name, Span span,
                 std::vector<typename Span::result_type>& out) {
  Napi::Env env = value.Env();
  if (!value.IsArray() || value.As<Napi::Array>().Length() != static_cast<uint32_t>(4 * d.directions))
    throw_type(env, std::string(name) + " must be an array of 4 * directions entries");
  Napi::Array array = value.As<Napi::Array>();
  const int64_t gh = gates_size(d);
  const int64_t sizes[4] = {gh * d.input_size, gh * d.hidden_size, gh, gh};
  out.assign(4 * d.directions, nullptr);
  for (int dir = 0; dir < d.directions; ++dir) {
    for (int k = 0; k < 4; ++k) {
      Napi::Value entry = array.Get(static_cast<uint32_t>(4 * dir + k));
      const bool is_bias = k >= 2;
      if (is_bias && (entry.IsNull() || entry.IsUndefined())) continue;
      out[4 * dir + k] = span(entry, name, sizes[k]);
    }
    if ((out[4 * dir + 2] == nullptr) != (out[4 * dir + 3] == nullptr))
      throw_type(env, std::string(name) + ": b_ih and b_hh must both be given or both be null");
  }
}

struct FloatSpan {
  using result_type = float*;
  float* operator()(const Napi::Value& v, const char* name, int64_t n) const { return span_of(v, name, 0, n); }
};

// The weights, which the layer only reads: their versions stay, so their packed forms are reused.
struct ReadSpan {
  using result_type = const float*;
  const float* operator()(const Napi::Value& v, const char* name, int64_t n) const { return read_span_of(v, name, 0, n); }
};

// The weights argument (checked by weights_arg) as the kernels take it, with each direction's
// w_ih and w_hh caches at their versions now.
std::vector<LayerWeights> layer_weights_arg(const Napi::Value& value, const LayerDims& d) {
  std::vector<const float*> w;
  weights_arg(value, d, "weights", ReadSpan{}, w);
  Napi::Array array = value.As<Napi::Array>();
  std::vector<LayerWeights> weights(d.directions);
  for (int dir = 0; dir < d.directions; ++dir)
    weights[dir] = LayerWeights{w[4 * dir], w[4 * dir + 1], w[4 * dir + 2], w[4 * dir + 3],
                                cached_weight_of(array.Get(static_cast<uint32_t>(4 * dir))),
                                cached_weight_of(array.Get(static_cast<uint32_t>(4 * dir + 1)))};
  return weights;
}

}  // namespace

// layerReserveSize(cell, T, B, I, H, D) -> floats
Napi::Value LayerReserveSize(const Napi::CallbackInfo& info) {
  expect_args(info, 6, "layerReserveSize");
  return Napi::Number::New(info.Env(), static_cast<double>(layer_reserve_size(dims_arg(info))));
}

// layerForward(cell, T, B, I, H, D, y, hN, cN, reserve, x, lengths, h0, c0, weights[, stateOffset])
Napi::Value LayerForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 15, "layerForward");
  const LayerDims d = dims_arg(info);
  const int64_t rows = static_cast<int64_t>(d.steps) * d.batch;
  const int64_t at = state_offset_arg(info, 15);
  float* y = span_of(info[6], "y", 0, rows * d.directions * d.hidden_size);
  float* h_n = span_of(info[7], "hN", at, state_size(d));
  float* c_n = is_lstm(d) ? span_of(info[8], "cN", at, state_size(d)) : nullptr;
  float* reserve = optional_span(info[9], "reserve", static_cast<int64_t>(layer_reserve_size(d)));
  const float* x = span_of(info[10], "x", 0, rows * d.input_size);
  const std::vector<int> lengths = lengths_arg(info[11], d);
  const float* h0 = optional_span(info[12], "h0", state_size(d), at);
  const float* c0 = is_lstm(d) ? optional_span(info[13], "c0", state_size(d), at) : nullptr;
  const std::vector<LayerWeights> weights = layer_weights_arg(info[14], d);
  run(
      env,
      [=] {
        layer_forward_cpu(d, y, h_n, c_n, reserve, x, lengths.empty() ? nullptr : lengths.data(), h0, c0,
                          weights.data());
      },
      [&] {
        // the CUDA layer always writes a reserve; inference gets a temporary one
        DeviceFloats scratch_reserve(reserve ? 0 : layer_reserve_size(d));
        DeviceFloats workspace(cuda::layer_workspace_size(d));
        DeviceInts device_lengths(lengths);
        cuda::layer_forward(cuda::stream(), d, y, h_n, c_n, reserve ? reserve : scratch_reserve.data, x,
                            lengths.empty() ? nullptr : device_lengths.data, h0, c0, weights.data(), workspace.data);
      });
  return env.Undefined();
}

// stackForward(cell, T, B, I, H, D, L, ys, hN, cN, x, lengths, h0, c0, layers): inference through L
// one-direction layers (D must be 1) in one call (cpp/recurrent.h, stack_forward_cpu): ys holds L
// storages of (T, B, H), the last one the stack's output; hN, cN, h0, c0 are (L, B, H); layers holds
// L arrays [w_ih, w_hh, b_ih, b_hh]. CPU storages only.
Napi::Value StackForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 15, "stackForward");
  const LayerDims d = dims_arg(info);
  if (d.directions != 1) throw_range(env, "stackForward runs one-direction layers: directions must be 1");
  const int L = static_cast<int>(int_arg(info[6], "layers", 1, 1 << 16));
  const int64_t rows = static_cast<int64_t>(d.steps) * d.batch;
  const int64_t states = static_cast<int64_t>(L) * d.batch * d.hidden_size;
  if (!info[7].IsArray() || info[7].As<Napi::Array>().Length() != static_cast<uint32_t>(L))
    throw_type(env, "ys must be an array of one storage per layer");
  if (!info[14].IsArray() || info[14].As<Napi::Array>().Length() != static_cast<uint32_t>(L))
    throw_type(env, "layers must be an array of one weights array per layer");
  Napi::Array ys_array = info[7].As<Napi::Array>();
  Napi::Array layers_array = info[14].As<Napi::Array>();
  std::vector<float*> ys(L);
  for (int l = 0; l < L; ++l) ys[l] = span_of(ys_array.Get(static_cast<uint32_t>(l)), "ys[l]", 0, rows * d.hidden_size);
  float* h_n = span_of(info[8], "hN", 0, states);
  float* c_n = is_lstm(d) ? span_of(info[9], "cN", 0, states) : nullptr;
  const float* x = read_span_of(info[10], "x", 0, rows * d.input_size);
  const std::vector<int> lengths = lengths_arg(info[11], d);
  const float* h0 = optional_read_span(info[12], "h0", states);
  const float* c0 = is_lstm(d) ? optional_read_span(info[13], "c0", states) : nullptr;
  std::vector<LayerWeights> weights(L);
  for (int l = 0; l < L; ++l) {
    LayerDims layer = d;
    layer.input_size = l == 0 ? d.input_size : d.hidden_size;
    weights[l] = layer_weights_arg(layers_array.Get(static_cast<uint32_t>(l)), layer)[0];
  }
  run(
      env,
      [=] {
        stack_forward_cpu(d, L, ys.data(), h_n, c_n, x, lengths.empty() ? nullptr : lengths.data(), h0, c0, weights.data());
      },
      [&] { throw_type(env, "stackForward runs on the CPU only"); });
  return env.Undefined();
}

// layerBackward(cell, T, B, I, H, D, dx, dh0, dc0, grads, dy, dhN, dcN, reserve, x, lengths, weights[, dhSteps[,
//               stateOffset]])
Napi::Value LayerBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 17, "layerBackward");
  const LayerDims d = dims_arg(info);
  const int64_t at = state_offset_arg(info, 18);
  // optional 18th argument: dL/dh of every step, (D, T, B, H) (diagnostics; CPU only)
  float* dh_steps = info.Length() > 17 ? optional_span(info[17], "dhSteps", static_cast<int64_t>(d.directions) * d.steps * d.batch * d.hidden_size) : nullptr;
  const int64_t rows = static_cast<int64_t>(d.steps) * d.batch;
  float* dx = optional_span(info[6], "dx", rows * d.input_size);  // null: no input gradient (CPU)
  float* dh0 = optional_span(info[7], "dh0", state_size(d), at);
  float* dc0 = is_lstm(d) ? optional_span(info[8], "dc0", state_size(d), at) : nullptr;
  std::vector<float*> g;
  weights_arg(info[9], d, "grads", FloatSpan{}, g);
  const float* dy = optional_span(info[10], "dy", rows * d.directions * d.hidden_size);
  const float* dh_n = optional_span(info[11], "dhN", state_size(d), at);
  const float* dc_n = is_lstm(d) ? optional_span(info[12], "dcN", state_size(d), at) : nullptr;
  const float* reserve = span_of(info[13], "reserve", 0, static_cast<int64_t>(layer_reserve_size(d)));
  const float* x = span_of(info[14], "x", 0, rows * d.input_size);
  const std::vector<int> lengths = lengths_arg(info[15], d);
  const std::vector<LayerWeights> weights = layer_weights_arg(info[16], d);
  std::vector<LayerGrads> grads(d.directions);
  for (int dir = 0; dir < d.directions; ++dir) {
    grads[dir] = LayerGrads{g[4 * dir], g[4 * dir + 1], g[4 * dir + 2], g[4 * dir + 3]};
    if ((weights[dir].b_ih == nullptr) != (grads[dir].b_ih == nullptr))
      throw_type(env, "grads must have biases exactly where weights do");
  }
  run(
      env,
      [=] {
        layer_backward_cpu(d, dx, dh0, dc0, grads.data(), dy, dh_n, dc_n, reserve, x,
                           lengths.empty() ? nullptr : lengths.data(), weights.data(), dh_steps);
      },
      [&] {
        if (dh_steps) throw_type(env, "dhSteps (gradient flow) is computed on the CPU only");
        if (!dx) throw_type(env, "dx must be a storage on CUDA (it may be null on the CPU only)");
        DeviceFloats workspace(cuda::layer_workspace_size(d));
        DeviceInts device_lengths(lengths);
        cuda::layer_backward(cuda::stream(), d, dx, dh0, dc0, grads.data(), dy, dh_n, dc_n, reserve, x,
                             lengths.empty() ? nullptr : device_lengths.data, weights.data(), workspace.data);
      });
  return env.Undefined();
}

// A step plan: the weights of one stacked one-directional model (cpp/step.h), checked once by
// stepPlan() so that each stepRun() (one time step: generation, streaming) checks only its own
// arguments. Through Node-API every storage argument costs two property lookups (its type tag and
// its wrapped pointer); a plan saves about twenty of them per step.
//
// The plan does not keep the weights alive: it holds weak pointers to their buffers, and a step
// whose weight was disposed (or collected) throws. The caller (lib/nn/recurrent.ts) makes a new plan
// whenever a module's weight storages change. Versions are read at each step, so weights written
// in place (an optimizer step, loadStateDict) are packed again.
namespace {

struct StepWeight {
  std::weak_ptr<Buffer> buffer;  // expired: absent (a bias-free layer, no head bias)
  std::string name;
  bool present = false;
};

struct StepPlanData {
  StepDims dims;  // batch: per step
  int64_t vocab = 0;  // embedding rows, 0: the input is x
  // per layer w_ih, w_hh, b_ih, b_hh; then the embedding, the head's weight and bias
  std::vector<StepWeight> weights;
};

constexpr napi_type_tag kStepPlanTag = {0x7265637572726e74ULL, 0x53746570506c616eULL};

// The buffer of a plan's weight for one step, or a TypeError when it was disposed; it joins the
// op's keep list (a queued step keeps it alive).
const float* plan_weight(Napi::Env env, const StepWeight& w, std::shared_ptr<Buffer>* out = nullptr) {
  if (!w.present) return nullptr;
  std::shared_ptr<Buffer> buffer = w.buffer.lock();
  if (!buffer || buffer->released) throw_type(env, w.name + " refers to a disposed tensor");
  const float* data = buffer->data;
  if (out) *out = buffer;
  current_keep().push_back(std::move(buffer));
  return data;
}

}  // namespace

// stepPlan(cell, I, H, L, V, embedding, layers, headW, headB) -> plan: I is the embedding's width
// with an embedding (else null: the input is x); layers holds L arrays [w_ih, w_hh, b_ih, b_hh];
// V = 0: no head (headW, headB null), the step's output is the last layer's h. CPU storages only.
Napi::Value StepPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 9, "stepPlan");
  const int32_t kMax = 1 << 30;
  auto plan = std::make_unique<StepPlanData>();
  StepDims& d = plan->dims;
  d.cell = static_cast<CellKind>(int_arg(info[0], "cell", 0, 3));
  d.batch = 1;
  d.input_size = static_cast<int>(int_arg(info[1], "inputSize", 1, kMax));
  d.hidden_size = static_cast<int>(int_arg(info[2], "hiddenSize", 1, kMax));
  d.layers = static_cast<int>(int_arg(info[3], "layers", 1, 1 << 16));
  d.outputs = static_cast<int>(int_arg(info[4], "outputs", 0, kMax));
  const int64_t H = d.hidden_size, L = d.layers, V = d.outputs;
  const int64_t gh = static_cast<int64_t>(gate_count(d.cell)) * H;
  if (static_cast<double>(gh) * std::max(d.input_size, d.hidden_size) >= 2147483647.0 ||
      static_cast<double>(V) * H >= 2147483647.0)
    throw_range(env, "model too large: every product must stay below 2^31 elements");
  // every weight once through the full check (a live CPU storage of the right size)
  const auto add = [&](const Napi::Value& value, const std::string& name, int64_t count, bool optional) {
    StepWeight w;
    w.name = name;
    if (!(optional && (value.IsNull() || value.IsUndefined()))) {
      read_span_of(value, w.name.c_str(), 0, count);
      const Storage* storage = Storage::From(value, w.name.c_str());
      if (storage->on_cuda()) throw_type(env, name + ": stepPlan runs on the CPU only");
      w.buffer = storage->buffer();
      w.present = true;
    }
    plan->weights.push_back(std::move(w));
  };
  if (!info[6].IsArray() || info[6].As<Napi::Array>().Length() != static_cast<uint32_t>(L))
    throw_type(env, "layers must be an array of one weights array per layer");
  for (uint32_t l = 0; l < static_cast<uint32_t>(L); ++l) {
    const Napi::Value layer = info[6].As<Napi::Array>().Get(l);
    if (!layer.IsArray() || layer.As<Napi::Array>().Length() != 4) throw_type(env, "layers[" + std::to_string(l) + "] must be [w_ih, w_hh, b_ih, b_hh]");
    const Napi::Array w = layer.As<Napi::Array>();
    const std::string at = "layers[" + std::to_string(l) + "]";
    add(w.Get(0u), at + ".w_ih", gh * (l == 0 ? d.input_size : H), false);
    add(w.Get(1u), at + ".w_hh", gh * H, false);
    add(w.Get(2u), at + ".b_ih", gh, true);
    add(w.Get(3u), at + ".b_hh", gh, true);
    if (plan->weights[4 * l + 2].present != plan->weights[4 * l + 3].present)
      throw_type(env, at + ": b_ih and b_hh must both be given or both be null");
  }
  if (info[5].IsNull() || info[5].IsUndefined()) {
    add(info[5], "embedding", 0, true);
  } else {
    const int64_t table = Storage::From(info[5], "embedding")->length();
    if (table % d.input_size != 0) throw_range(env, "embedding must hold whole rows of inputSize floats");
    plan->vocab = table / d.input_size;
    add(info[5], "embedding", table, false);
  }
  add(info[7], "headW", V * H, V == 0);
  add(info[8], "headB", V, true);
  if (V == 0 && (plan->weights[4 * L + 1].present || plan->weights[4 * L + 2].present))
    throw_type(env, "headW and headB must be null without outputs");
  current_keep().clear();
  Napi::External<StepPlanData> external = Napi::External<StepPlanData>::New(env, plan.release(), [](Napi::Env, StepPlanData* p) { delete p; });
  external.TypeTag(&kStepPlanTag);
  return external;
}

namespace {

const StepPlanData& plan_arg(Napi::Env env, const Napi::Value& value) {
  if (!value.IsExternal() || !value.As<Napi::External<StepPlanData>>().CheckTypeTag(&kStepPlanTag))
    throw_type(env, "plan must be a step plan (from stepPlan)");
  return *value.As<Napi::External<StepPlanData>>().Data();
}

// A plan's weights for one call: each buffer checked live and added to the op's keep list.
struct StepWeights {
  const float* embedding = nullptr;
  CachedWeight embedding_cache;
  std::vector<LayerWeights> layers;
  const float* head_w = nullptr;
  const float* head_b = nullptr;
  CachedWeight head_cache;
};

StepWeights step_weights(Napi::Env env, const StepPlanData& plan) {
  const int64_t L = plan.dims.layers;
  StepWeights s;
  std::shared_ptr<Buffer> embedding;
  s.embedding = plan_weight(env, plan.weights[4 * L], &embedding);
  if (embedding) s.embedding_cache = CachedWeight{&embedding->packs, embedding->version};
  s.layers.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    std::shared_ptr<Buffer> w_ih, w_hh;
    LayerWeights& w = s.layers[l];
    w.w_ih = plan_weight(env, plan.weights[4 * l], &w_ih);
    w.w_hh = plan_weight(env, plan.weights[4 * l + 1], &w_hh);
    w.b_ih = plan_weight(env, plan.weights[4 * l + 2]);
    w.b_hh = plan_weight(env, plan.weights[4 * l + 3]);
    w.ih_cache = CachedWeight{&w_ih->packs, w_ih->version};
    w.hh_cache = CachedWeight{&w_hh->packs, w_hh->version};
  }
  std::shared_ptr<Buffer> head;
  s.head_w = plan_weight(env, plan.weights[4 * L + 1], &head);
  s.head_b = plan_weight(env, plan.weights[4 * L + 2]);
  if (head) s.head_cache = CachedWeight{&head->packs, head->version};
  return s;
}

// The step's batch, checked against the plan's sizes.
int step_batch(Napi::Env env, const Napi::Value& value, const StepDims& d) {
  const int64_t B = int_arg(value, "batch", 1, 1 << 30);
  if (static_cast<double>(B) * std::max<int64_t>({static_cast<int64_t>(gate_count(d.cell)) * d.hidden_size, d.outputs, d.input_size}) >=
      2147483647.0)
    throw_range(env, "batch too large: every product must stay below 2^31 elements");
  return static_cast<int>(B);
}

}  // namespace

// stepRun(plan, B, out, h, c, tokens, x): one step of the plan's model on B rows: tokens (an
// Int32Array of B ids) with an embedding, else x (B, I); h, c (L, B, H) read and written in place
// (c: LSTM only, else null); out (B, V), or (B, H) without a head.
Napi::Value StepRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 7, "stepRun");
  const StepPlanData& plan = plan_arg(env, info[0]);
  StepDims d = plan.dims;
  d.batch = step_batch(env, info[1], d);
  const int64_t B = d.batch, H = d.hidden_size, L = d.layers, V = d.outputs;
  float* out = span_of(info[2], "out", 0, B * (V > 0 ? V : H));
  float* h = span_of(info[3], "h", 0, L * B * H);
  float* c = d.cell == CellKind::kLstm ? span_of(info[4], "c", 0, L * B * H) : nullptr;
  std::vector<int> tokens;
  const float* x = nullptr;
  const StepWeights w = step_weights(env, plan);
  if (w.embedding) {
    d.vocab = static_cast<int>(plan.vocab);
    if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw_type(env, "tokens must be an Int32Array");
    Napi::Int32Array ids = info[5].As<Napi::Int32Array>();
    if (static_cast<int64_t>(ids.ElementLength()) != B) throw_range(env, "tokens must have one entry per batch row (" + std::to_string(B) + ")");
    tokens.resize(B);
    for (size_t b = 0; b < tokens.size(); ++b) {
      const int32_t id = ids[b];
      if (id < 0 || id >= plan.vocab) throw_range(env, "tokens[" + std::to_string(b) + "] must be in [0, " + std::to_string(plan.vocab) + ")");
      tokens[b] = id;
    }
  } else {
    x = read_span_of(info[6], "x", 0, B * d.input_size);
  }
  run(
      env,
      [=] {
        stack_step_cpu(d, out, h, c, tokens.empty() ? nullptr : tokens.data(), w.embedding, x, w.layers.data(), w.head_w, w.head_b,
                       w.head_cache, w.embedding_cache);
      },
      [&] { throw_type(env, "stepRun runs on the CPU only"); });
  return env.Undefined();
}

// stepSample(plan, B, out, h, c, length, temperature, topK, excluded, rng) -> Int32Array (length x B):
// autoregressive sampling (cpp/step.h's stack_sample_cpu) with a plan that has an embedding and a
// head: out (B, V) holds the logits to draw the first ids from; h, c as stepRun; topK 0 for every
// id; excluded null or a Uint8Array of V flags; rng a Uint32Array [counter, high], the generator's
// state (random.ts), read and written back. Runs now, on this thread, after the queue.
Napi::Value StepSample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 10, "stepSample");
  const StepPlanData& plan = plan_arg(env, info[0]);
  StepDims d = plan.dims;
  if (plan.vocab == 0 || d.outputs == 0) throw_type(env, "stepSample needs a model with an embedding and a head");
  d.batch = step_batch(env, info[1], d);
  d.vocab = static_cast<int>(plan.vocab);
  const int64_t B = d.batch, H = d.hidden_size, L = d.layers, V = d.outputs;
  float* out = span_of(info[2], "out", 0, B * V);
  float* h = span_of(info[3], "h", 0, L * B * H);
  float* c = d.cell == CellKind::kLstm ? span_of(info[4], "c", 0, L * B * H) : nullptr;
  const int length = static_cast<int>(int_arg(info[5], "length", 0, 1 << 30));
  if (static_cast<double>(length) * B >= 2147483647.0) throw_range(env, "length x batch must stay below 2^31");
  SampleSpec spec{};
  spec.temperature = number_arg(info[6], "temperature");
  if (!(spec.temperature >= 0) || std::isinf(spec.temperature)) throw_range(env, "temperature must be a finite number >= 0");
  spec.top_k = static_cast<int>(int_arg(info[7], "topK", 0, 1 << 30));
  if (V > plan.vocab) throw_range(env, "stepSample: the head's outputs must be embedding rows (" + std::to_string(V) + " outputs, " +
                                           std::to_string(plan.vocab) + " rows)");
  if (!info[8].IsNull() && !info[8].IsUndefined()) {
    if (!info[8].IsTypedArray() || info[8].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw_type(env, "excluded must be a Uint8Array or null");
    Napi::Uint8Array flags = info[8].As<Napi::Uint8Array>();
    if (static_cast<int64_t>(flags.ElementLength()) != V) throw_range(env, "excluded must hold one flag per output (" + std::to_string(V) + ")");
    spec.excluded = flags.Data();  // read in place: the call runs to its end before JS runs again
  }
  if (!info[9].IsTypedArray() || info[9].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[9].As<Napi::Uint32Array>().ElementLength() != 2)
    throw_type(env, "rng must be a Uint32Array [counter, high]");
  Napi::Uint32Array rng_state = info[9].As<Napi::Uint32Array>();
  const StepWeights w = step_weights(env, plan);
  if (op_on_cuda()) throw_type(env, "stepSample runs on the CPU only");
  // the values are read now, on this thread: the buffers stay alive through `keep` until it returns
  const std::vector<std::shared_ptr<Buffer>> keep = std::move(current_keep());
  current_keep().clear();
  stream_of(env).wait_idle();
  RandomStream rng{rng_state[0], rng_state[1]};
  Napi::Int32Array tokens = Napi::Int32Array::New(env, static_cast<size_t>(length) * B);
  stack_sample_cpu(d, out, h, c, w.embedding, w.layers.data(), w.head_w, w.head_b, w.head_cache, w.embedding_cache, length, spec, rng,
                   tokens.Data());
  rng_state[0] = rng.counter;
  rng_state[1] = rng.high;
  return tokens;
}

// seq2seqDecode(models, search) -> { tokens: Int32Array[], logProbs: Float64Array, ended: Uint8Array, counts: Int32Array,
//   scores: Float64Array }:
// greedy (beamWidth 0) or beam search over an attention encoder-decoder, or an ensemble of them
// (cpp/seq2seq.h), the whole search in one call, on the values as they are now. Each model is
// [dims, embedding, layers, attention, encoder]; all have the same classes and sources.
//   dims      [cell, L, E, H, C, attention, K, Hv, contextFeeding (0 | 1)]
//   layers    L arrays [w_ih, w_hh, b_ih, b_hh] (with context feeding, layer 2 reads Hv + H inputs)
//   attention [queryW, queryB, scoreV, combineW, combineB, outW, outB] (unused ones null)
//   encoder   [S, B, values (S, B, Hv), keys (S, B, K), lengths Int32Array (B), h0 (L, B, H), c0 | null]
//   search    [beamWidth, maxLength, lengthPenalty, startToken, endToken, nBest]
// The result lists counts[b] hypotheses for source b (nBest of them where the search ended that
// many; greedy: one), best first, source after source, each with the score the search ranked it by.
namespace {

// One model's arguments, checked, with the arrays its DecoderWeights and EncoderMemory point into.
struct DecodeArgs {
  DecoderWeights w{};
  std::vector<LayerWeights> layers;
  EncoderMemory m{};
  std::vector<int> lengths;
  int64_t rows = 0;  // embedding rows
};

void decode_model_arg(Napi::Env env, const Napi::Value& value, DecodeArgs& model) {
  if (!value.IsArray() || value.As<Napi::Array>().Length() != 5)
    throw_type(env, "seq2seqDecode: each model must be [dims, embedding, layers, attention, encoder]");
  Napi::Array spec = value.As<Napi::Array>();
  for (uint32_t i : {0u, 2u, 3u, 4u})
    if (!spec.Get(i).IsArray()) throw_type(env, "seq2seqDecode: model entry " + std::to_string(i) + " must be an array");
  DecoderWeights& w = model.w;
  EncoderMemory& m = model.m;
  const int32_t kMax = 1 << 30;
  Napi::Array dims = spec.Get(0u).As<Napi::Array>();
  if (dims.Length() != 9) throw_type(env, "dims must have 9 entries");
  w.cell = static_cast<CellKind>(int_arg(dims.Get(0u), "cell", 0, 3));
  w.layers = static_cast<int>(int_arg(dims.Get(1u), "layers", 1, 1 << 16));
  w.embed = static_cast<int>(int_arg(dims.Get(2u), "embed", 1, kMax));
  w.hidden = static_cast<int>(int_arg(dims.Get(3u), "hidden", 1, kMax));
  w.classes = static_cast<int>(int_arg(dims.Get(4u), "classes", 1, kMax));
  w.attention = static_cast<AttentionKind>(int_arg(dims.Get(5u), "attention", 0, 3));
  w.key_size = static_cast<int>(int_arg(dims.Get(6u), "keySize", 1, kMax));
  w.value_size = static_cast<int>(int_arg(dims.Get(7u), "valueSize", 1, kMax));
  w.context_feeding = int_arg(dims.Get(8u), "contextFeeding", 0, 1) == 1;
  const int64_t H = w.hidden, C = w.classes, K = w.key_size, Hv = w.value_size, L = w.layers;
  if ((w.attention == AttentionKind::kDot || w.attention == AttentionKind::kGeneral) && K != H)
    throw_range(env, "dot and general attention need keys of the decoder's width");
  if (w.attention == AttentionKind::kDot && Hv != H) throw_range(env, "dot attention needs values of the decoder's width");
  if (w.context_feeding && (L < 2 || w.attention == AttentionKind::kNone))
    throw_range(env, "context feeding needs at least 2 layers and an attention");
  const int64_t table = Storage::From(spec.Get(1u), "embedding")->length();
  if (table % w.embed != 0) throw_range(env, "embedding must hold whole rows of E floats");
  model.rows = table / w.embed;
  w.embedding = read_span_of(spec.Get(1u), "embedding", 0, table);
  Napi::Array layer_array = spec.Get(2u).As<Napi::Array>();
  if (layer_array.Length() != static_cast<uint32_t>(L)) throw_type(env, "layers must have one weights array per layer");
  std::vector<LayerWeights>& layers = model.layers;
  for (uint32_t l = 0; l < static_cast<uint32_t>(L); ++l) {
    const int input = l == 0 ? w.embed : l == 1 && w.context_feeding ? w.value_size + w.hidden : w.hidden;
    const LayerDims layer{w.cell, 1, 1, input, w.hidden, 1};
    layers.push_back(layer_weights_arg(layer_array.Get(l), layer)[0]);
  }
  w.rnn = layers.data();  // `model` does not move: the caller holds it by pointer
  Napi::Array att = spec.Get(3u).As<Napi::Array>();
  if (att.Length() != 7) throw_type(env, "attention must have 7 entries");
  auto optional = [&](uint32_t i, const char* name, int64_t count) { return optional_read_span(att.Get(i), name, count); };
  if (w.attention == AttentionKind::kBahdanau) {
    w.query_w = read_span_of(att.Get(0u), "queryW", 0, K * H);
    w.query_cache = cached_weight_of(att.Get(0u));
    w.query_b = optional(1, "queryB", K);
    w.score_v = read_span_of(att.Get(2u), "scoreV", 0, K);
  }
  if (w.attention != AttentionKind::kNone) {
    w.combine_w = read_span_of(att.Get(3u), "combineW", 0, H * (Hv + H));
    w.combine_cache = cached_weight_of(att.Get(3u));
    w.combine_b = optional(4, "combineB", H);
  }
  w.out_w = read_span_of(att.Get(5u), "outW", 0, C * H);
  w.out_cache = cached_weight_of(att.Get(5u));
  w.out_b = optional(6, "outB", C);

  Napi::Array enc = spec.Get(4u).As<Napi::Array>();
  if (enc.Length() != 7) throw_type(env, "encoder must have 7 entries");
  m.steps = static_cast<int>(int_arg(enc.Get(0u), "S", 1, kMax));
  m.sources = static_cast<int>(int_arg(enc.Get(1u), "B", 0, kMax));
  const int64_t S = m.steps, B = m.sources;
  if (static_cast<double>(S) * B * std::max({Hv, K, H * L}) >= 2147483647.0) throw_range(env, "encoder memory too large");
  m.values = read_span_of(enc.Get(2u), "values", 0, S * B * Hv);
  m.keys = read_span_of(enc.Get(3u), "keys", 0, S * B * K);
  Napi::Value length_value = enc.Get(4u);
  if (!length_value.IsTypedArray() || length_value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      static_cast<int64_t>(length_value.As<Napi::Int32Array>().ElementLength()) != B)
    throw_type(env, "lengths must be an Int32Array of B entries");
  Napi::Int32Array length_array = length_value.As<Napi::Int32Array>();
  std::vector<int>& lengths = model.lengths;
  lengths.assign(length_array.Data(), length_array.Data() + B);
  for (int n : lengths)
    if (n < 1 || n > S) throw_range(env, "lengths must be in [1, S]");
  m.lengths = lengths.data();
  m.h0 = read_span_of(enc.Get(5u), "h0", 0, L * B * H);
  m.c0 = w.cell == CellKind::kLstm ? read_span_of(enc.Get(6u), "c0", 0, L * B * H) : nullptr;

}

}  // namespace

Napi::Value Seq2SeqDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 2, "seq2seqDecode");
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0)
    throw_type(env, "seq2seqDecode: models must be a non-empty array");
  if (!info[1].IsArray()) throw_type(env, "seq2seqDecode: search must be an array");
  Napi::Array model_array = info[0].As<Napi::Array>();
  std::vector<std::unique_ptr<DecodeArgs>> parsed;
  std::vector<DecoderModel> models;
  for (uint32_t i = 0; i < model_array.Length(); ++i) {
    parsed.push_back(std::make_unique<DecodeArgs>());
    decode_model_arg(env, model_array.Get(i), *parsed.back());
    const DecodeArgs& d = *parsed.back();
    if (d.w.classes != parsed[0]->w.classes || d.m.sources != parsed[0]->m.sources)
      throw_range(env, "the models of an ensemble must have the same classes and sources");
    models.push_back({&d.w, &d.m});
  }
  Napi::Array search = info[1].As<Napi::Array>();
  if (search.Length() != 6) throw_type(env, "search must have 6 entries");
  const int32_t kMax = 1 << 30;
  SearchOptions o{};
  o.beam_width = static_cast<int>(int_arg(search.Get(0u), "beamWidth", 0, 4096));
  o.max_length = static_cast<int>(int_arg(search.Get(1u), "maxLength", 0, 1 << 20));
  o.length_penalty = number_arg(search.Get(2u), "lengthPenalty");
  o.start_token = static_cast<int>(int_arg(search.Get(3u), "startToken", 0, kMax));
  o.end_token = static_cast<int>(int_arg(search.Get(4u), "endToken", 0, parsed[0]->w.classes - 1));
  o.n_best = static_cast<int>(int_arg(search.Get(5u), "nBest", 1, std::max(o.beam_width, 1)));
  for (const auto& d : parsed) {
    const int64_t H = d->w.hidden, C = d->w.classes, K = d->w.key_size, Hv = d->w.value_size, L = d->w.layers, B = d->m.sources;
    if (o.start_token >= d->rows) throw_range(env, "startToken must be an embedding row");
    if (static_cast<double>(B) * std::max(o.beam_width, 1) * std::max({H * L, C, Hv + H, K}) >= 2147483647.0)
      throw_range(env, "too many hypotheses: beams x sources x width must stay below 2^31");
    if (C > d->rows) throw_range(env, "every class but the end token must be an embedding row");
  }
  if (op_on_cuda()) throw_type(env, "seq2seqDecode runs on the CPU");
  current_keep().clear();
  stream_of(env).wait_idle();  // the values are read now, on this thread
  const std::vector<std::vector<Hypothesis>> lists = seq2seq_decode_nbest_cpu(models, o);
  std::vector<const Hypothesis*> all;
  Napi::Int32Array counts = Napi::Int32Array::New(env, lists.size());
  for (size_t b = 0; b < lists.size(); ++b) {
    counts[b] = static_cast<int32_t>(lists[b].size());
    for (const Hypothesis& hyp : lists[b]) all.push_back(&hyp);
  }
  Napi::Array tokens = Napi::Array::New(env, all.size());
  Napi::Float64Array log_probs = Napi::Float64Array::New(env, all.size());
  Napi::Uint8Array ended = Napi::Uint8Array::New(env, all.size());
  Napi::Float64Array scores = Napi::Float64Array::New(env, all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    Napi::Int32Array row = Napi::Int32Array::New(env, all[i]->tokens.size());
    std::copy(all[i]->tokens.begin(), all[i]->tokens.end(), row.Data());
    tokens.Set(static_cast<uint32_t>(i), row);
    log_probs[i] = all[i]->log_prob;
    ended[i] = all[i]->ended ? 1 : 0;
    scores[i] = length_normalized(*all[i], o.length_penalty);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", tokens);
  out.Set("logProbs", log_probs);
  out.Set("ended", ended);
  out.Set("counts", counts);
  out.Set("scores", scores);
  return out;
}

// ===========================================================================
// Reference (Float64Arrays in and out)

namespace {

const double* f64_arg(const Napi::Value& value, const char* name, int64_t count, bool optional) {
  Napi::Env env = value.Env();
  if (optional && (value.IsNull() || value.IsUndefined())) return nullptr;
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_type(env, std::string(name) + " must be a Float64Array");
  Napi::Float64Array array = value.As<Napi::Float64Array>();
  if (static_cast<int64_t>(array.ElementLength()) != count)
    throw_range(env, std::string(name) + " must have " + std::to_string(count) + " elements, received " +
                         std::to_string(array.ElementLength()));
  return array.Data();
}

struct F64Span {
  using result_type = const double*;
  const double* operator()(const Napi::Value& v, const char* name, int64_t n) const {
    return f64_arg(v, name, n, false);
  }
};

std::vector<ReferenceWeights> reference_weights(const Napi::Value& value, const LayerDims& d) {
  std::vector<const double*> w;
  weights_arg(value, d, "weights", F64Span{}, w);
  std::vector<ReferenceWeights> out(d.directions);
  for (int dir = 0; dir < d.directions; ++dir)
    out[dir] = ReferenceWeights{w[4 * dir], w[4 * dir + 1], w[4 * dir + 2], w[4 * dir + 3]};
  return out;
}

}  // namespace

// referenceForward(cell, T, B, I, H, D, x, lengths, h0, c0, weights) -> { y, hN, cN }
Napi::Value ReferenceForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 11, "referenceForward");
  const LayerDims d = dims_arg(info);
  const int64_t rows = static_cast<int64_t>(d.steps) * d.batch;
  const double* x = f64_arg(info[6], "x", rows * d.input_size, false);
  const std::vector<int> lengths = lengths_arg(info[7], d);
  const double* h0 = f64_arg(info[8], "h0", state_size(d), true);
  const double* c0 = f64_arg(info[9], "c0", state_size(d), true);
  const std::vector<ReferenceWeights> weights = reference_weights(info[10], d);
  Napi::Float64Array y = Napi::Float64Array::New(env, rows * d.directions * d.hidden_size);
  Napi::Float64Array h_n = Napi::Float64Array::New(env, state_size(d));
  Napi::Float64Array c_n = Napi::Float64Array::New(env, state_size(d));
  layer_forward_reference(d, y.Data(), h_n.Data(), c_n.Data(), x, lengths.empty() ? nullptr : lengths.data(),
                          h0, c0, weights.data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("y", y);
  out.Set("hN", h_n);
  if (is_lstm(d)) out.Set("cN", c_n);
  return out;
}

// referenceBackward(cell, T, B, I, H, D, dy, dhN, dcN, x, lengths, h0, c0, weights)
//   -> { dx, dh0, dc0, grads: [dw_ih, dw_hh, db_ih, db_hh] x D }
Napi::Value ReferenceBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 14, "referenceBackward");
  const LayerDims d = dims_arg(info);
  const int64_t rows = static_cast<int64_t>(d.steps) * d.batch;
  const double* dy = f64_arg(info[6], "dy", rows * d.directions * d.hidden_size, true);
  const double* dh_n = f64_arg(info[7], "dhN", state_size(d), true);
  const double* dc_n = f64_arg(info[8], "dcN", state_size(d), true);
  const double* x = f64_arg(info[9], "x", rows * d.input_size, false);
  const std::vector<int> lengths = lengths_arg(info[10], d);
  const double* h0 = f64_arg(info[11], "h0", state_size(d), true);
  const double* c0 = f64_arg(info[12], "c0", state_size(d), true);
  const std::vector<ReferenceWeights> weights = reference_weights(info[13], d);
  const bool has_bias = weights[0].b_ih != nullptr;
  const int64_t gh = gates_size(d);
  Napi::Float64Array dx = Napi::Float64Array::New(env, rows * d.input_size);
  Napi::Float64Array dh0 = Napi::Float64Array::New(env, state_size(d));
  Napi::Float64Array dc0 = Napi::Float64Array::New(env, state_size(d));
  Napi::Array grad_list = Napi::Array::New(env, 4 * d.directions);
  std::vector<ReferenceGrads> grads(d.directions);
  for (int dir = 0; dir < d.directions; ++dir) {
    Napi::Float64Array w_ih = Napi::Float64Array::New(env, gh * d.input_size);
    Napi::Float64Array w_hh = Napi::Float64Array::New(env, gh * d.hidden_size);
    grad_list.Set(4 * dir, w_ih);
    grad_list.Set(4 * dir + 1, w_hh);
    grads[dir] = ReferenceGrads{w_ih.Data(), w_hh.Data(), nullptr, nullptr};
    if (has_bias) {
      Napi::Float64Array b_ih = Napi::Float64Array::New(env, gh), b_hh = Napi::Float64Array::New(env, gh);
      grad_list.Set(4 * dir + 2, b_ih);
      grad_list.Set(4 * dir + 3, b_hh);
      grads[dir].b_ih = b_ih.Data();
      grads[dir].b_hh = b_hh.Data();
    } else {
      grad_list.Set(4 * dir + 2, env.Null());
      grad_list.Set(4 * dir + 3, env.Null());
    }
  }
  layer_backward_reference(d, dx.Data(), dh0.Data(), dc0.Data(), grads.data(), dy, dh_n, dc_n, x,
                           lengths.empty() ? nullptr : lengths.data(), h0, c0, weights.data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("dx", dx);
  out.Set("dh0", dh0);
  if (is_lstm(d)) out.Set("dc0", dc0);
  out.Set("grads", grad_list);
  return out;
}

}  // namespace recurrent
