// Node-API glue for the runtime: backends, async mode, threads, precision, memory.
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value Backends(const Napi::CallbackInfo& info);
Napi::Value SetAsync(const Napi::CallbackInfo& info);
Napi::Value IsAsync(const Napi::CallbackInfo& info);
Napi::Value Synchronize(const Napi::CallbackInfo& info);
Napi::Value SetNumThreads(const Napi::CallbackInfo& info);
Napi::Value SetStackPipeline(const Napi::CallbackInfo& info);
Napi::Value SetRowSplit(const Napi::CallbackInfo& info);
Napi::Value SetTf32(const Napi::CallbackInfo& info);
Napi::Value SetBf16Matmul(const Napi::CallbackInfo& info);
Napi::Value MemoryStats(const Napi::CallbackInfo& info);
Napi::Value EmptyCache(const Napi::CallbackInfo& info);
Napi::Value NativeCodes(const Napi::CallbackInfo& info);

}  // namespace recurrent
