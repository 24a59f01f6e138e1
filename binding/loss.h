// Node-API glue for the losses (cpp/loss.h).
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value CrossEntropy(const Napi::CallbackInfo& info);
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info);

}  // namespace recurrent
