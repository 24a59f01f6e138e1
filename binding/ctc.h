// Node-API glue for CTC (cpp/ctc.h): the loss with its gradient, the double reference, and the
// greedy and prefix-beam-search decoders.
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value CtcLoss(const Napi::CallbackInfo& info);
Napi::Value CtcLossReference(const Napi::CallbackInfo& info);
Napi::Value CtcDecode(const Napi::CallbackInfo& info);

}  // namespace recurrent
