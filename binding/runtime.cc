// Node-API glue for the runtime: what the build can run on (backends), async mode and
// synchronize, threads, matmul precision, and memory statistics.
#include "runtime.h"

#include <string>

#include "../cpp/allocator.h"
#include "../cpp/cells.h"
#include "../cpp/ops.h"
#include "../cpp/optim.h"
#include "../cpp/gemm.h"
#include "../cpp/recurrent.h"
#include "../cpp/thread_pool.h"
#include "../cuda/device.h"
#include "../cuda/allocator.h"
#include "../cuda/gemm.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

template <size_t N>
Napi::Object codes_of(Napi::Env env, const char* const (&names)[N]) {
  Napi::Object codes = Napi::Object::New(env);
  for (size_t i = 0; i < N; ++i) codes.Set(names[i], Napi::Number::New(env, static_cast<double>(i)));
  return codes;
}

template <size_t N>
Napi::Array names_of(Napi::Env env, const char* const (&names)[N]) {
  Napi::Array list = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) list.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i]));
  return list;
}

}  // namespace

// nativeCodes() -> { unary, binary, cell, optimizer: { name: code }, hyper: { SGD: [field, ...], ... } }:
// the codes and layouts the kernels read, for the check that lib/core/native.ts agrees
Napi::Value NativeCodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("unary", codes_of(env, kUnaryOpNames));
  out.Set("binary", codes_of(env, kBinaryOpNames));
  out.Set("cell", codes_of(env, kCellNames));
  out.Set("optimizer", codes_of(env, kOptimizerNames));
  Napi::Object hyper = Napi::Object::New(env);
  hyper.Set("SGD", names_of(env, kSgdHyperFields));
  hyper.Set("Adam", names_of(env, kAdamHyperFields));
  hyper.Set("RMSprop", names_of(env, kRmspropHyperFields));
  out.Set("hyper", hyper);
  return out;
}

// backends() -> { cpu: { isa, threads, soloCalls, bf16, bf16Reason?, matmul }, cuda: { compiled, deviceCount, devices?, reason? } }
Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", gemm_isa());
  cpu.Set("threads", num_threads());
  cpu.Set("soloCalls", static_cast<double>(solo_calls()));
  cpu.Set("bf16", bf16_supported());
  if (!bf16_supported()) cpu.Set("bf16Reason", bf16_unavailable_reason());
  cpu.Set("matmul", matmul_path());
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

// setStackPipeline(mode): 0 auto, 1 on, 2 off: whether stackForward may run its layers as a
// pipeline over time (cpp/recurrent.h; for benchmarks and tests, like RECURRENT_STACK_PIPELINE).
Napi::Value SetStackPipeline(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "setStackPipeline");
  set_stack_pipeline(static_cast<StackPipeline>(int_arg(info[0], "mode", 0, 2)));
  return info.Env().Undefined();
}

// setRowSplit(minRows, grain): the batch rows a thread needs before a team splits by rows, and
// their multiple (cpp/gemm.h's GemmRowSplit; 0: the kernels' own); for benchmarks and tests.
Napi::Value SetRowSplit(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "setRowSplit");
  set_gemm_row_split(static_cast<int>(int_arg(info[0], "minRows", 0, 1 << 20)), static_cast<int>(int_arg(info[1], "grain", 1, 1 << 20)));
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

// memoryStats() -> { allocatedBytes, cachedBytes, packedWeightBytes, cuda?: { allocatedBytes, cachedBytes } };
// emptyCache() -> bytes returned to the system (and the GPU driver), packed weights included
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("allocatedBytes", static_cast<double>(allocated_bytes()));
  out.Set("cachedBytes", static_cast<double>(cached_bytes()));
  out.Set("packedWeightBytes", static_cast<double>(PackCache::total_bytes()));
  if (cuda_used()) {
    Napi::Object gpu = Napi::Object::New(info.Env());
    gpu.Set("allocatedBytes", static_cast<double>(cuda::device_allocated_bytes()));
    gpu.Set("cachedBytes", static_cast<double>(cuda::device_cached_bytes()));
    out.Set("cuda", gpu);
  }
  return out;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  size_t released = cached_release_all() + PackCache::clear_all();
  if (cuda_used()) released += cuda::device_release_all();
  return Napi::Number::New(info.Env(), static_cast<double>(released));
}

}  // namespace recurrent
