// Node-API glue for optimizer updates and gradient clipping (cpp/optim.h).
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info);
Napi::Value ClipGradValue(const Napi::CallbackInfo& info);

}  // namespace recurrent
