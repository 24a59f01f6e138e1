// Node-API glue for CTC (cpp/ctc.h). The facade (lib/nn/ctc.ts) validates with full messages;
// these re-check what memory safety needs: sizes, lengths within T and S, labels within [0, C).
#include "ctc.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "../cpp/ctc.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 34;

std::vector<int32_t> int32s_arg(const Napi::Value& value, const char* name, int64_t count) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, std::string(name) + " must be an Int32Array");
  Napi::Int32Array array = value.As<Napi::Int32Array>();
  if (count >= 0 && static_cast<int64_t>(array.ElementLength()) != count)
    throw_range(env, std::string(name) + " must have " + std::to_string(count) + " entries");
  return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

// (T, B, C, blank) at info[at..at+3]
CtcDims dims_arg(const Napi::CallbackInfo& info, size_t at) {
  const int64_t T = int_arg(info[at], "T", 0, kMaxElements);
  const int64_t B = int_arg(info[at + 1], "B", 0, kMaxElements);
  const int64_t C = int_arg(info[at + 2], "C", 1, kMaxElements);
  if (T > 0 && B > kMaxElements / T / C) throw_range(info.Env(), "ctc: too many elements");
  const int32_t blank = static_cast<int32_t>(int_arg(info[at + 3], "blank", 0, C - 1));
  return {T, B, C, blank};
}

std::vector<int32_t> input_lengths_arg(const Napi::Value& value, const CtcDims& d) {
  std::vector<int32_t> lengths = int32s_arg(value, "inputLengths", d.batch);
  for (int32_t n : lengths)
    if (n < 0 || n > d.steps) throw_range(value.Env(), "inputLengths: " + std::to_string(n) + " is not in [0, T]");
  return lengths;
}

// Labels of every row back to back, and where each row starts.
struct Targets {
  std::vector<int32_t> labels, lengths;
  std::vector<int64_t> offsets;
};

Targets targets_arg(const Napi::Value& labels, const Napi::Value& lengths, const CtcDims& d) {
  Targets t{int32s_arg(labels, "targets", -1), int32s_arg(lengths, "targetLengths", d.batch), {}};
  int64_t at = 0;
  for (int32_t n : t.lengths) {
    if (n < 0) throw_range(labels.Env(), "targetLengths must not be negative");
    t.offsets.push_back(at);
    at += n;
  }
  if (at != static_cast<int64_t>(t.labels.size())) throw_range(labels.Env(), "targets must hold sum(targetLengths) labels");
  for (int32_t label : t.labels)
    if (label < 0 || label >= d.classes || label == d.blank)
      throw_range(labels.Env(), "targets: label " + std::to_string(label) + " is not a class other than blank");
  return t;
}

}  // namespace

// ctcLoss(losses, grad | null, logProbs, T, B, C, blank, targets, targetLengths, inputLengths, zeroInfinity)
// losses (B); grad (T, B, C): torch's gradient before the loss's incoming gradient scales it.
Napi::Value CtcLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 11, "ctcLoss");
  const bool zero_infinity = bool_arg(info[10], "zeroInfinity");
  const CtcDims d = dims_arg(info, 3);
  const Targets targets = targets_arg(info[7], info[8], d);
  const std::vector<int32_t> inputs = input_lengths_arg(info[9], d);
  float* losses = span_of(info[0], "losses", 0, d.batch);
  float* grad = info[1].IsNull() ? nullptr : span_of(info[1], "grad", 0, d.steps * d.batch * d.classes);
  const float* log_probs = read_span_of(info[2], "logProbs", 0, d.steps * d.batch * d.classes);
  if (op_on_cuda()) throw_type(env, "ctcLoss runs on the CPU");
  const bool queued = stream_of(env).async();
  auto check = std::make_shared<CtcInputCheck>();
  dispatch(env, [=] {
    *check = ctc_loss_cpu(losses, grad, log_probs, d, targets.labels.data(), targets.offsets.data(), targets.lengths.data(),
                          inputs.data(), zero_infinity);
    if (queued && check->row >= 0) {
      throw std::runtime_error("ctcLoss: logProbs must be log-probabilities over the classes (the frame at t = " +
                               std::to_string(check->step) + " of row " + std::to_string(check->row) + " has logsumexp " +
                               std::to_string(check->logsumexp) + ", not 0): apply logSoftmax over the last dimension");
    }
  });
  if (!queued && check->row >= 0) {
    Napi::RangeError error = Napi::RangeError::New(env,
        "ctcLoss: expected logProbs to be log-probabilities over the classes, but the frame at t = " + std::to_string(check->step) +
            " of row " + std::to_string(check->row) + " has logsumexp " + std::to_string(check->logsumexp) +
            " (not 0): apply logSoftmax over the last dimension");
    error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
    throw error;
  }
  return env.Undefined();
}

// ctcLossReference(logProbs: Float64Array, T, B, C, blank, targets, targetLengths, inputLengths, wantGrad)
//   -> { losses: Float64Array, grad?: Float64Array }
Napi::Value CtcLossReference(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 9, "ctcLossReference");
  const CtcDims d = dims_arg(info, 1);
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      static_cast<int64_t>(info[0].As<Napi::Float64Array>().ElementLength()) != d.steps * d.batch * d.classes)
    throw_type(env, "logProbs must be a Float64Array of T * B * C values");
  const Targets targets = targets_arg(info[5], info[6], d);
  const std::vector<int32_t> inputs = input_lengths_arg(info[7], d);
  const bool want_grad = bool_arg(info[8], "wantGrad");
  Napi::Float64Array losses = Napi::Float64Array::New(env, d.batch);
  Napi::Float64Array grad = Napi::Float64Array::New(env, want_grad ? d.steps * d.batch * d.classes : 0);
  ctc_loss_reference(losses.Data(), want_grad ? grad.Data() : nullptr, info[0].As<Napi::Float64Array>().Data(), d,
                     targets.labels.data(), targets.offsets.data(), targets.lengths.data(), inputs.data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("losses", losses);
  if (want_grad) out.Set("grad", grad);
  return out;
}

// ctcDecode(logProbs, T, B, C, blank, inputLengths, beamWidth) -> Int32Array[] (beamWidth 0: greedy)
Napi::Value CtcDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 7, "ctcDecode");
  const CtcDims d = dims_arg(info, 1);
  const std::vector<int32_t> inputs = input_lengths_arg(info[5], d);
  const int beam = static_cast<int>(int_arg(info[6], "beamWidth", 0, 1 << 16));
  const float* log_probs = read_span_of(info[0], "logProbs", 0, d.steps * d.batch * d.classes);
  if (op_on_cuda()) throw_type(env, "ctcDecode runs on the CPU");
  current_keep().clear();
  stream_of(env).wait_idle();  // the values are read now, on this thread
  const auto paths = beam == 0 ? ctc_greedy_decode_cpu(log_probs, d, inputs.data()) : ctc_beam_search_cpu(log_probs, d, inputs.data(), beam);
  Napi::Array out = Napi::Array::New(env, paths.size());
  for (size_t b = 0; b < paths.size(); ++b) {
    Napi::Int32Array row = Napi::Int32Array::New(env, paths[b].size());
    std::copy(paths[b].begin(), paths[b].end(), row.Data());
    out.Set(static_cast<uint32_t>(b), row);
  }
  return out;
}

}  // namespace recurrent
