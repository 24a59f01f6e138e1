// Node-API glue for losses, optimizer updates and gradient clipping.
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value CrossEntropy(const Napi::CallbackInfo& info);
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info);
Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info);
Napi::Value ClipGradValue(const Napi::CallbackInfo& info);

}  // namespace recurrent
