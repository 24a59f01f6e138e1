// The addon's registration: exports only. Each op family lives in its own file.
#include <napi.h>

#include "../cpp/allocator.h"
#include "../cpp/gemm.h"
#include "../cpp/thread_pool.h"
#include "../cuda/device.h"
#include "../cuda/kernels.h"
#include "../cuda/ops.h"
#include "ops.h"
#include "layers.h"
#include "storage.h"
#include "stream.h"
#include "train.h"
#include "args.h"
#include "distributed.h"

namespace recurrent {

namespace {

// backends() -> { cpu: { isa, threads, bf16, bf16Reason?, matmul }, cuda: { compiled, deviceCount, devices?, reason? } }
Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", gemm_isa());
  cpu.Set("threads", num_threads());
  cpu.Set("bf16", bf16_supported());
  if (!bf16_supported()) cpu.Set("bf16Reason", bf16_unavailable_reason());
  cpu.Set("matmul", bf16_matmul() ? "bf16" : "fp32");
  const CudaStatus status = cuda_status();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", status.compiled);
  cuda.Set("deviceCount", status.device_count);
  if (!status.reason.empty()) cuda.Set("reason", status.reason);
  if (!status.devices.empty()) {
    Napi::Array devices = Napi::Array::New(env, status.devices.size());
    for (size_t i = 0; i < status.devices.size(); ++i) {
      Napi::Object device = Napi::Object::New(env);
      device.Set("name", status.devices[i].name);
      device.Set("computeCapability", std::to_string(status.devices[i].major) + "." +
                                          std::to_string(status.devices[i].minor));
      device.Set("totalMemory", static_cast<double>(status.devices[i].total_memory));
      devices.Set(static_cast<uint32_t>(i), device);
    }
    cuda.Set("devices", devices);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("cpu", cpu);
  out.Set("cuda", cuda);
  return out;
}

// setAsync(on): queue ops on the stream (true) or run them on the caller's thread (false).
Napi::Value SetAsync(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "setAsync");
  stream_of(info.Env()).set_async(bool_arg(info[0], "async"));
  return info.Env().Undefined();
}

Napi::Value IsAsync(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), stream_of(info.Env()).async());
}

// synchronize(): a promise settled when every queued op has run (the GPU's too, once a
// tensor was ever put on 'cuda'; a kernel's failure rejects it).
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (cuda_used()) {
    try {
      cuda::synchronize();
    } catch (const std::exception& e) {
      Napi::Promise::Deferred failed = Napi::Promise::Deferred::New(env);
      failed.Reject(Napi::Error::New(env, e.what()).Value());
      return failed.Promise();
    }
  }
  return stream_of(env).synchronize(env);
}

// setNumThreads(n): threads the CPU kernels split work across (1 = serial).
Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "setNumThreads");
  set_num_threads(static_cast<int>(int_arg(info[0], "threads", 1, 256)));
  return info.Env().Undefined();
}

// setTf32(on): large CUDA matrix products through the tensor cores in TF32.
Napi::Value SetTf32(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "setTf32");
  cuda::set_tf32(bool_arg(info[0], "enabled"));
  return info.Env().Undefined();
}

// setBf16Matmul(on) -> whether BF16 matrix products are now on (false where unsupported).
Napi::Value SetBf16Matmul(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "setBf16Matmul");
  return Napi::Boolean::New(info.Env(), set_bf16_matmul(bool_arg(info[0], "enabled")));
}

// memoryStats() -> { allocatedBytes, cachedBytes, cuda?: { allocatedBytes, cachedBytes } };
// emptyCache() -> bytes returned to the system (and the GPU driver)
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("allocatedBytes", static_cast<double>(allocated_bytes()));
  out.Set("cachedBytes", static_cast<double>(cached_bytes()));
  if (cuda_used()) {
    Napi::Object gpu = Napi::Object::New(info.Env());
    gpu.Set("allocatedBytes", static_cast<double>(cuda::device_allocated_bytes()));
    gpu.Set("cachedBytes", static_cast<double>(cuda::device_cached_bytes()));
    out.Set("cuda", gpu);
  }
  return out;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  size_t released = cached_release_all();
  if (cuda_used()) released += cuda::device_release_all();
  return Napi::Number::New(info.Env(), static_cast<double>(released));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Storage", Storage::Init(env));
  exports.Set("setAsync", Napi::Function::New<SetAsync>(env, "setAsync"));
  exports.Set("isAsync", Napi::Function::New<IsAsync>(env, "isAsync"));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env, "synchronize"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("setTf32", Napi::Function::New<SetTf32>(env, "setTf32"));
  exports.Set("setBf16Matmul", Napi::Function::New<SetBf16Matmul>(env, "setBf16Matmul"));
  exports.Set("memoryStats", Napi::Function::New<MemoryStats>(env, "memoryStats"));
  exports.Set("emptyCache", Napi::Function::New<EmptyCache>(env, "emptyCache"));
  exports.Set("backends", Napi::Function::New<Backends>(env, "backends"));
  exports.Set("copyBetween", Napi::Function::New<CopyBetween>(env, "copyBetween"));
  exports.Set("stridedCopy", Napi::Function::New<StridedCopy>(env, "stridedCopy"));
  exports.Set("unary", Napi::Function::New<Unary>(env, "unary"));
  exports.Set("unaryBackward", Napi::Function::New<UnaryBackward>(env, "unaryBackward"));
  exports.Set("binary", Napi::Function::New<Binary>(env, "binary"));
  exports.Set("affine", Napi::Function::New<Affine>(env, "affine"));
  exports.Set("fill", Napi::Function::New<Fill>(env, "fill"));
  exports.Set("gemm", Napi::Function::New<Gemm>(env, "gemm"));
  exports.Set("softmax", Napi::Function::New<Softmax>(env, "softmax"));
  exports.Set("softmaxBackward", Napi::Function::New<SoftmaxBackward>(env, "softmaxBackward"));
  exports.Set("uniformFill", Napi::Function::New<UniformFill>(env, "uniformFill"));
  exports.Set("normalFill", Napi::Function::New<NormalFill>(env, "normalFill"));
  exports.Set("dropoutMask", Napi::Function::New<DropoutMask>(env, "dropoutMask"));
  exports.Set("embeddingForward", Napi::Function::New<EmbeddingForward>(env, "embeddingForward"));
  exports.Set("embeddingBackward", Napi::Function::New<EmbeddingBackward>(env, "embeddingBackward"));
  exports.Set("crossEntropy", Napi::Function::New<CrossEntropy>(env, "crossEntropy"));
  exports.Set("crossEntropyBackward", Napi::Function::New<CrossEntropyBackward>(env, "crossEntropyBackward"));
  exports.Set("optimizerStep", Napi::Function::New<OptimizerStep>(env, "optimizerStep"));
  exports.Set("clipGradNorm", Napi::Function::New<ClipGradNorm>(env, "clipGradNorm"));
  exports.Set("clipGradValue", Napi::Function::New<ClipGradValue>(env, "clipGradValue"));
  exports.Set("layerReserveSize", Napi::Function::New<LayerReserveSize>(env, "layerReserveSize"));
  exports.Set("layerForward", Napi::Function::New<LayerForward>(env, "layerForward"));
  exports.Set("layerBackward", Napi::Function::New<LayerBackward>(env, "layerBackward"));
  exports.Set("referenceForward", Napi::Function::New<ReferenceForward>(env, "referenceForward"));
  exports.Set("referenceBackward", Napi::Function::New<ReferenceBackward>(env, "referenceBackward"));
  exports.Set("distributedStatus", Napi::Function::New<DistributedStatus>(env, "distributedStatus"));
  exports.Set("distributedInit", Napi::Function::New<DistributedInit>(env, "distributedInit"));
  exports.Set("allReduce", Napi::Function::New<AllReduce>(env, "allReduce"));
  exports.Set("allReduceStart", Napi::Function::New<AllReduceStart>(env, "allReduceStart"));
  exports.Set("allReduceWait", Napi::Function::New<AllReduceWait>(env, "allReduceWait"));
  exports.Set("allReduceScalars", Napi::Function::New<AllReduceScalars>(env, "allReduceScalars"));
  exports.Set("broadcast", Napi::Function::New<Broadcast>(env, "broadcast"));
  exports.Set("broadcastBytes", Napi::Function::New<BroadcastBytes>(env, "broadcastBytes"));
  exports.Set("barrier", Napi::Function::New<Barrier>(env, "barrier"));
  exports.Set("distributedAbort", Napi::Function::New<DistributedAbort>(env, "distributedAbort"));
  exports.Set("distributedShutdown", Napi::Function::New<DistributedShutdown>(env, "distributedShutdown"));
  return exports;
}

}  // namespace

}  // namespace recurrent

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return recurrent::Init(env, exports); }

// Registration by hand instead of NODE_API_MODULE, to report the module's Node-API
// version as NAPI_VERSION_EXPERIMENTAL. Node then runs finalizers synchronously inside
// garbage collection instead of deferring them to the next turn of the event loop
// (where a synchronous training loop never lets them run and native memory piles up:
// see binding/storage.h). The API calls compiled in are still exactly those of
// NAPI_VERSION (8), all present in every Node version we support; what changes is
// only when finalizers run, and the only one here (Storage's destructor) just frees
// memory.
extern "C" {
NAPI_MODULE_EXPORT int32_t NODE_API_MODULE_GET_API_VERSION(void) { return NAPI_VERSION_EXPERIMENTAL; }
NAPI_MODULE_EXPORT napi_value NAPI_MODULE_INITIALIZER(napi_env env, napi_value exports) {
  return Napi::RegisterModule(env, exports, InitAddon);
}
}
