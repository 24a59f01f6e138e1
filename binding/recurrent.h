// Node-API glue for the recurrent layer kernels (cpp/recurrent.h) and their
// double-precision reference (cpp/reference.h).
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value LayerReserveSize(const Napi::CallbackInfo& info);
Napi::Value LayerForward(const Napi::CallbackInfo& info);
Napi::Value StackForward(const Napi::CallbackInfo& info);
Napi::Value LayerBackward(const Napi::CallbackInfo& info);
Napi::Value StepPlan(const Napi::CallbackInfo& info);
Napi::Value StepRun(const Napi::CallbackInfo& info);
Napi::Value StepSample(const Napi::CallbackInfo& info);
Napi::Value Seq2SeqDecode(const Napi::CallbackInfo& info);
Napi::Value ReferenceForward(const Napi::CallbackInfo& info);
Napi::Value ReferenceBackward(const Napi::CallbackInfo& info);

}  // namespace recurrent
