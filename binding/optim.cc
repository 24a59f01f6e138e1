// Node-API glue for optimizers and clipping (cpp/optim.h). An optimizer step is one native
// call over all parameters; so is clipping, which also writes the norm into a tensor so that
// async training never has to read it back mid-step.
#include "optim.h"

#include <cmath>
#include <string>
#include <vector>

#include "../cpp/optim.h"
#include "../cuda/optim.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

// An array of `count` storages (or nulls where allowed), as spans of `sizes[i]` floats.
std::vector<float*> storage_list(const Napi::Value& value, const char* name, const std::vector<int64_t>& sizes,
                                 bool nullable) {
  Napi::Env env = value.Env();
  if (!value.IsArray() || value.As<Napi::Array>().Length() != sizes.size())
    throw_type(env, std::string(name) + " must be an array of " + std::to_string(sizes.size()) + " storages");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<float*> out(sizes.size(), nullptr);
  for (uint32_t i = 0; i < sizes.size(); ++i) {
    Napi::Value entry = array.Get(i);
    if (nullable && (entry.IsNull() || entry.IsUndefined())) continue;
    out[i] = span_of(entry, name, 0, sizes[i]);
  }
  return out;
}

std::vector<int64_t> lengths_of(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw_type(env, std::string(name) + " must be an array of storages");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int64_t> sizes(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) sizes[i] = Storage::From(array.Get(i), name)->length();
  return sizes;
}

std::vector<double> numbers_arg(const Napi::Value& value, const char* name, size_t count) {
  Napi::Env env = value.Env();
  if (!value.IsArray() || value.As<Napi::Array>().Length() != count)
    throw_type(env, std::string(name) + " must be an array of " + std::to_string(count) + " numbers");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<double> out(count);
  for (uint32_t i = 0; i < count; ++i) out[i] = number_arg(array.Get(i), name);
  return out;
}

}  // namespace
namespace {

// The hyper arrays in cpp/optim.h's field order (k*HyperFields, which lib/core/native.ts's
// optimizerStep() follows); the last entry of each is a flag.
float hyper_at(const std::vector<double>& v, size_t k) { return static_cast<float>(v[k]); }

SgdHyper sgd_hyper(const std::vector<double>& v) {
  return {hyper_at(v, 0), hyper_at(v, 1), hyper_at(v, 2), hyper_at(v, 3), v[4] != 0.0};
}

AdamHyper adam_hyper(const std::vector<double>& v) {
  return {hyper_at(v, 0), hyper_at(v, 1), hyper_at(v, 2), hyper_at(v, 3), hyper_at(v, 4), v[5] != 0.0};
}

RmspropHyper rmsprop_hyper(const std::vector<double>& v) {
  return {hyper_at(v, 0), hyper_at(v, 1), hyper_at(v, 2), hyper_at(v, 3), hyper_at(v, 4), v[5] != 0.0};
}

// update(i, lo, hi, gpu) for every parameter i with a gradient: queued for the CPU worker (by
// value), in chunks of elements [lo, hi) over the thread pool (cpp/optim.h's for_each_chunk), or
// launched now on the GPU's stream, whole.
template <typename Update>
void update_each(Napi::Env env, const std::vector<int64_t>& sizes, const std::vector<float*>& grads, Update update) {
  run(
      env,
      [=] {
        for_each_chunk(sizes.data(), sizes.size(), [&](size_t i) { return grads[i] != nullptr; },
                       [&](size_t i, int64_t lo, int64_t hi) { update(i, lo, hi, false); });
      },
      [&] { for (size_t i = 0; i < grads.size(); ++i) if (grads[i]) update(i, 0, sizes[i], true); });
}

}  // namespace

// optimizerStep(kind, hyper, steps, params, grads, state0, state1, state2)
//   kind and hyper's order: cpp/optim.h (OptimizerKind, k*HyperFields)
//   SGD: state0 momentum; Adam: state0 expAvg, state1 expAvgSq; RMSprop: state0 squareAvg, state1 gradAvg, state2 momentum
// steps[i]: parameter i's step count after this update. Null grads are skipped.
Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 8, "optimizerStep");
  const int kind = static_cast<int>(int_arg(info[0], "kind", 0, static_cast<int>(OptimizerKind::kRmsprop)));
  const size_t fields = kind == 0 ? field_count(kSgdHyperFields) : kind == 1 ? field_count(kAdamHyperFields) : field_count(kRmspropHyperFields);
  const std::vector<double> hyper = numbers_arg(info[1], "hyper", fields);
  const std::vector<int64_t> sizes = lengths_of(info[3], "params");
  const size_t count = sizes.size();
  std::vector<double> steps_d = numbers_arg(info[2], "steps", count);
  std::vector<int64_t> steps(count);
  for (size_t i = 0; i < count; ++i) steps[i] = static_cast<int64_t>(steps_d[i]);
  const std::vector<float*> params = storage_list(info[3], "params", sizes, false);
  const std::vector<float*> grads = storage_list(info[4], "grads", sizes, true);
  const std::vector<float*> s0 = storage_list(info[5], "state0", sizes, true);
  const std::vector<float*> s1 = storage_list(info[6], "state1", sizes, true);
  const std::vector<float*> s2 = storage_list(info[7], "state2", sizes, true);
  const SgdHyper sgd = kind == 0 ? sgd_hyper(hyper) : SgdHyper{};
  const AdamHyper adam = kind == 1 ? adam_hyper(hyper) : AdamHyper{};
  const RmspropHyper rms = kind == 2 ? rmsprop_hyper(hyper) : RmspropHyper{};
  // Every state a configuration needs must be present for every parameter with a grad.
  for (size_t i = 0; i < count; ++i) {
    if (!grads[i]) continue;
    const bool ok = kind == 0 ? (sgd.momentum == 0.0f || s0[i])
                  : kind == 1 ? (s0[i] && s1[i])
                              : (s0[i] && (!rms.centered || s1[i]) && (rms.momentum == 0.0f || s2[i]));
    if (!ok) throw_type(env, "optimizerStep: missing optimizer state for parameter " + std::to_string(i));
    if (steps[i] < 1) throw_range(env, "optimizerStep: steps must be >= 1");
  }
  // the state arrays of parameter i from element lo on (null stays null)
  const auto at = [](float* p, int64_t lo) -> float* { return p ? p + lo : nullptr; };
  if (kind == 0) {
    update_each(env, sizes, grads, [=](size_t i, int64_t lo, int64_t hi, bool gpu) {
      (gpu ? cuda::sgd_step : sgd_step_cpu)(params[i] + lo, grads[i] + lo, at(s0[i], lo), hi - lo, sgd, steps[i] == 1);
    });
  } else if (kind == 1) {
    update_each(env, sizes, grads, [=](size_t i, int64_t lo, int64_t hi, bool gpu) {
      (gpu ? cuda::adam_step : adam_step_cpu)(params[i] + lo, grads[i] + lo, s0[i] + lo, s1[i] + lo, hi - lo, adam, steps[i]);
    });
  } else {
    update_each(env, sizes, grads, [=](size_t i, int64_t lo, int64_t hi, bool gpu) {
      (gpu ? cuda::rmsprop_step : rmsprop_step_cpu)(params[i] + lo, grads[i] + lo, s0[i] + lo, at(s1[i], lo), at(s2[i], lo), hi - lo, rms);
    });
  }
  return env.Undefined();
}

// clipGradNorm(grads, maxNorm, normOut): total L2 norm of all grads into normOut[0];
// grads scaled by maxNorm / (norm + 1e-6) when that is below 1 (torch's rule).
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 3, "clipGradNorm");
  const std::vector<int64_t> sizes = lengths_of(info[0], "grads");
  const std::vector<float*> grads = storage_list(info[0], "grads", sizes, false);
  const double max_norm = number_arg(info[1], "maxNorm");
  float* norm_out = span_of(info[2], "normOut", 0, 1);
  const auto gpu = [&] { cuda::clip_grad_norm(grads.data(), sizes.data(), grads.size(), max_norm, norm_out); };
  run(info.Env(), [=] { *norm_out = static_cast<float>(clip_grad_norm_cpu(grads.data(), sizes.data(), grads.size(), max_norm)); }, gpu);
  return info.Env().Undefined();
}

// clipGradValue(grads, clip): every gradient element clamped to [-clip, clip].
Napi::Value ClipGradValue(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 2, "clipGradValue");
  const std::vector<int64_t> sizes = lengths_of(info[0], "grads");
  const std::vector<float*> grads = storage_list(info[0], "grads", sizes, false);
  const float clip = static_cast<float>(number_arg(info[1], "clip"));
  run(
      info.Env(), [=] { for (size_t i = 0; i < grads.size(); ++i) clamp_cpu(grads[i], sizes[i], -clip, clip); },
      [&] { for (size_t i = 0; i < grads.size(); ++i) cuda::clamp(grads[i], sizes[i], -clip, clip); });
  return info.Env().Undefined();
}

}  // namespace recurrent
