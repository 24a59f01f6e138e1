// Node-API glue for the collectives of data-parallel training (cpp/collective.h).
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value DistributedStatus(const Napi::CallbackInfo& info);
Napi::Value DistributedInit(const Napi::CallbackInfo& info);
Napi::Value AllReduce(const Napi::CallbackInfo& info);
Napi::Value AllReduceStart(const Napi::CallbackInfo& info);
Napi::Value AllReduceWait(const Napi::CallbackInfo& info);
Napi::Value AllReduceScalars(const Napi::CallbackInfo& info);
Napi::Value Broadcast(const Napi::CallbackInfo& info);
Napi::Value BroadcastBytes(const Napi::CallbackInfo& info);
Napi::Value Barrier(const Napi::CallbackInfo& info);
Napi::Value DistributedAbort(const Napi::CallbackInfo& info);
Napi::Value DistributedShutdown(const Napi::CallbackInfo& info);

}  // namespace recurrent
