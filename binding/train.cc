// Node-API glue for losses, optimizers and clipping. An optimizer step is one native
// call over all parameters; so is clipping, which also writes the norm into a tensor
// so that async training never has to read it back mid-step.
#include "train.h"

#include <cmath>
#include <string>
#include <vector>

#include "../cpp/loss.h"
#include "../cpp/optim.h"
#include "../cuda/ops.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 34;

std::vector<int32_t> targets_arg(const Napi::Value& value, int64_t rows, int64_t classes, int32_t ignore_index) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, "targets must be an Int32Array");
  Napi::Int32Array array = value.As<Napi::Int32Array>();
  if (static_cast<int64_t>(array.ElementLength()) != rows)
    throw_range(env, "targets must have " + std::to_string(rows) + " entries");
  std::vector<int32_t> targets(array.Data(), array.Data() + rows);
  for (int64_t n = 0; n < rows; ++n)
    if (targets[n] != ignore_index && (targets[n] < 0 || targets[n] >= classes))
      throw_range(env, "targets[" + std::to_string(n) + "] = " + std::to_string(targets[n]) + " is not a class in [0, " +
                           std::to_string(classes) + ")");
  return targets;
}

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

// crossEntropy(losses, logits, targets, rows, classes, ignoreIndex)
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 6, "crossEntropy");
  const int64_t rows = int_arg(info[3], "rows", 0, kMaxElements);
  const int64_t classes = int_arg(info[4], "classes", 1, kMaxElements);
  if (rows > kMaxElements / classes) throw_range(info.Env(), "crossEntropy: too many elements");
  const int32_t ignore = static_cast<int32_t>(int_arg(info[5], "ignoreIndex", INT32_MIN, INT32_MAX));
  std::vector<int32_t> targets = targets_arg(info[2], rows, classes, ignore);
  float* losses = span_of(info[0], "losses", 0, rows);
  const float* logits = span_of(info[1], "logits", 0, rows * classes);
  run(info.Env(), [=] { cross_entropy_forward_cpu(losses, logits, targets.data(), rows, classes, ignore); }, [&] {
    DeviceInts on_device(targets);
    cuda::cross_entropy_forward(losses, logits, on_device.data, rows, classes, ignore);
  });
  return info.Env().Undefined();
}

// crossEntropyBackward(gradLogits, logits, targets, gradLosses, rows, classes, ignoreIndex)
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 7, "crossEntropyBackward");
  const int64_t rows = int_arg(info[4], "rows", 0, kMaxElements);
  const int64_t classes = int_arg(info[5], "classes", 1, kMaxElements);
  if (rows > kMaxElements / classes) throw_range(info.Env(), "crossEntropyBackward: too many elements");
  const int32_t ignore = static_cast<int32_t>(int_arg(info[6], "ignoreIndex", INT32_MIN, INT32_MAX));
  std::vector<int32_t> targets = targets_arg(info[2], rows, classes, ignore);
  float* grad_logits = span_of(info[0], "gradLogits", 0, rows * classes);
  const float* logits = span_of(info[1], "logits", 0, rows * classes);
  const float* grad_losses = span_of(info[3], "gradLosses", 0, rows);
  run(
      info.Env(),
      [=] { cross_entropy_backward_cpu(grad_logits, logits, targets.data(), grad_losses, rows, classes, ignore); },
      [&] {
        DeviceInts on_device(targets);
        cuda::cross_entropy_backward(grad_logits, logits, on_device.data, grad_losses, rows, classes, ignore);
      });
  return info.Env().Undefined();
}

// optimizerStep(kind, hyper, steps, params, grads, state0, state1, state2)
//   kind 0 SGD   hyper [lr, momentum, dampening, weightDecay, nesterov]    state0 momentum
//   kind 1 Adam  hyper [lr, beta1, beta2, eps, weightDecay, decoupled]     state0 expAvg, state1 expAvgSq
//   kind 2 RMSprop hyper [lr, alpha, eps, weightDecay, momentum, centered] state0 squareAvg, state1 gradAvg, state2 momentum
// steps[i]: parameter i's step count after this update. Null grads are skipped.
Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 8, "optimizerStep");
  const int kind = static_cast<int>(int_arg(info[0], "kind", 0, 2));
  const std::vector<double> hyper = numbers_arg(info[1], "hyper", kind == 0 ? 5 : 6);
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
  // Every state a configuration needs must be present for every parameter with a grad.
  for (size_t i = 0; i < count; ++i) {
    if (!grads[i]) continue;
    const bool ok = kind == 0 ? (hyper[1] == 0.0 || s0[i])
                  : kind == 1 ? (s0[i] && s1[i])
                              : (s0[i] && (hyper[5] == 0.0 || s1[i]) && (hyper[4] == 0.0 || s2[i]));
    if (!ok) throw_type(env, "optimizerStep: missing optimizer state for parameter " + std::to_string(i));
    if (steps[i] < 1) throw_range(env, "optimizerStep: steps must be >= 1");
  }
  const auto f = [&](size_t k) { return static_cast<float>(hyper[k]); };
  if (kind == 0) {
    const SgdHyper h{f(0), f(1), f(2), f(3), hyper[4] != 0.0};
    run(
        env,
        [=] {
          for (size_t i = 0; i < count; ++i)
            if (grads[i]) sgd_step_cpu(params[i], grads[i], s0[i], sizes[i], h, steps[i] == 1);
        },
        [&] {
          for (size_t i = 0; i < count; ++i)
            if (grads[i]) cuda::sgd_step(params[i], grads[i], s0[i], sizes[i], h, steps[i] == 1);
        });
  } else if (kind == 1) {
    const AdamHyper h{f(0), f(1), f(2), f(3), f(4), hyper[5] != 0.0};
    run(
        env,
        [=] {
          for (size_t i = 0; i < count; ++i)
            if (grads[i]) adam_step_cpu(params[i], grads[i], s0[i], s1[i], sizes[i], h, steps[i]);
        },
        [&] {
          for (size_t i = 0; i < count; ++i)
            if (grads[i]) cuda::adam_step(params[i], grads[i], s0[i], s1[i], sizes[i], h, steps[i]);
        });
  } else {
    const RmspropHyper h{f(0), f(1), f(2), f(3), f(4), hyper[5] != 0.0};
    run(
        env,
        [=] {
          for (size_t i = 0; i < count; ++i)
            if (grads[i]) rmsprop_step_cpu(params[i], grads[i], s0[i], s1[i], s2[i], sizes[i], h);
        },
        [&] {
          for (size_t i = 0; i < count; ++i)
            if (grads[i]) cuda::rmsprop_step(params[i], grads[i], s0[i], s1[i], s2[i], sizes[i], h);
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
  run(info.Env(), [=] {
    double total = 0.0;
    for (size_t i = 0; i < grads.size(); ++i) total += sum_squares_cpu(grads[i], sizes[i]);
    const double norm = std::sqrt(total);
    *norm_out = static_cast<float>(norm);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
      const float scale = static_cast<float>(coef);
      for (size_t i = 0; i < grads.size(); ++i)
        for (int64_t j = 0; j < sizes[i]; ++j) grads[i][j] *= scale;
    }
  }, gpu);
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
