// Node-API glue for the losses (cpp/loss.h): the fused cross-entropy and its gradient.
#include "loss.h"

#include <string>
#include <vector>

#include "../cpp/loss.h"
#include "../cuda/loss.h"
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

// The arguments both calls share: sizes, the ignored index and the checked targets, at the
// positions each call has them.
struct CrossEntropyArgs {
  int64_t rows, classes;
  int32_t ignore;
  float smoothing;
  std::vector<int32_t> targets;
};

CrossEntropyArgs cross_entropy_args(const Napi::CallbackInfo& info, const char* name, int at_targets, int at_rows) {
  const int64_t rows = int_arg(info[at_rows], "rows", 0, kMaxElements);
  const int64_t classes = int_arg(info[at_rows + 1], "classes", 1, kMaxElements);
  if (rows > kMaxElements / classes) throw_range(info.Env(), std::string(name) + ": too many elements");
  const int32_t ignore = static_cast<int32_t>(int_arg(info[at_rows + 2], "ignoreIndex", INT32_MIN, INT32_MAX));
  const double smoothing = number_arg(info[at_rows + 3], "labelSmoothing");
  if (!(smoothing >= 0.0 && smoothing <= 1.0))
    throw_range(info.Env(), std::string(name) + ": labelSmoothing must be in [0, 1], received " + std::to_string(smoothing));
  return {rows, classes, ignore, static_cast<float>(smoothing), targets_arg(info[at_targets], rows, classes, ignore)};
}

}  // namespace

// crossEntropy(losses, logits, targets, rows, classes, ignoreIndex, labelSmoothing)
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 7, "crossEntropy");
  const CrossEntropyArgs a = cross_entropy_args(info, "crossEntropy", 2, 3);
  float* losses = span_of(info[0], "losses", 0, a.rows);
  const float* logits = read_span_of(info[1], "logits", 0, a.rows * a.classes);
  run(info.Env(), [=] { cross_entropy_forward_cpu(losses, logits, a.targets.data(), a.rows, a.classes, a.ignore, a.smoothing); }, [&] {
    DeviceInts on_device(a.targets);
    cuda::cross_entropy_forward(losses, logits, on_device.data, a.rows, a.classes, a.ignore, a.smoothing);
  });
  return info.Env().Undefined();
}

// crossEntropyBackward(gradLogits, logits, targets, gradLosses, rows, classes, ignoreIndex, labelSmoothing)
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 8, "crossEntropyBackward");
  const CrossEntropyArgs a = cross_entropy_args(info, "crossEntropyBackward", 2, 4);
  float* grad_logits = span_of(info[0], "gradLogits", 0, a.rows * a.classes);
  const float* logits = read_span_of(info[1], "logits", 0, a.rows * a.classes);
  const float* grad_losses = read_span_of(info[3], "gradLosses", 0, a.rows);
  run(
      info.Env(),
      [=] { cross_entropy_backward_cpu(grad_logits, logits, a.targets.data(), grad_losses, a.rows, a.classes, a.ignore,
                                    a.smoothing); },
      [&] {
        DeviceInts on_device(a.targets);
        cuda::cross_entropy_backward(grad_logits, logits, on_device.data, grad_losses, a.rows, a.classes, a.ignore,
                                     a.smoothing);
      });
  return info.Env().Undefined();
}

}  // namespace recurrent
