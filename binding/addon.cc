// The addon's registration: exports only. Each family of functions lives in its own file,
// named after what it binds (runtime, storage, ops, recurrent, loss, optim, distributed).
#include <napi.h>

#include "ctc.h"
#include "distributed.h"
#include "loss.h"
#include "ops.h"
#include "optim.h"
#include "recurrent.h"
#include "runtime.h"
#include "storage.h"

namespace recurrent {

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Storage", Storage::Init(env));
  exports.Set("setAsync", Napi::Function::New<SetAsync>(env, "setAsync"));
  exports.Set("isAsync", Napi::Function::New<IsAsync>(env, "isAsync"));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env, "synchronize"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("setStackPipeline", Napi::Function::New<SetStackPipeline>(env, "setStackPipeline"));
  exports.Set("setRowSplit", Napi::Function::New<SetRowSplit>(env, "setRowSplit"));
  exports.Set("setTf32", Napi::Function::New<SetTf32>(env, "setTf32"));
  exports.Set("setBf16Matmul", Napi::Function::New<SetBf16Matmul>(env, "setBf16Matmul"));
  exports.Set("memoryStats", Napi::Function::New<MemoryStats>(env, "memoryStats"));
  exports.Set("externalMemory", Napi::Function::New<ExternalMemory>(env, "externalMemory"));
  exports.Set("emptyCache", Napi::Function::New<EmptyCache>(env, "emptyCache"));
  exports.Set("backends", Napi::Function::New<Backends>(env, "backends"));
  exports.Set("nativeCodes", Napi::Function::New<NativeCodes>(env, "nativeCodes"));
  exports.Set("copyBetween", Napi::Function::New<CopyBetween>(env, "copyBetween"));
  exports.Set("stridedCopy", Napi::Function::New<StridedCopy>(env, "stridedCopy"));
  exports.Set("unary", Napi::Function::New<Unary>(env, "unary"));
  exports.Set("unaryBackward", Napi::Function::New<UnaryBackward>(env, "unaryBackward"));
  exports.Set("binary", Napi::Function::New<Binary>(env, "binary"));
  exports.Set("affine", Napi::Function::New<Affine>(env, "affine"));
  exports.Set("fill", Napi::Function::New<Fill>(env, "fill"));
  exports.Set("gemm", Napi::Function::New<Gemm>(env, "gemm"));
  exports.Set("softmax", Napi::Function::New<Softmax>(env, "softmax"));
  exports.Set("additiveAttention", Napi::Function::New<AdditiveAttention>(env, "additiveAttention"));
  exports.Set("additiveAttentionBackward", Napi::Function::New<AdditiveAttentionBackward>(env, "additiveAttentionBackward"));
  exports.Set("softmaxBackward", Napi::Function::New<SoftmaxBackward>(env, "softmaxBackward"));
  exports.Set("uniformFill", Napi::Function::New<UniformFill>(env, "uniformFill"));
  exports.Set("normalFill", Napi::Function::New<NormalFill>(env, "normalFill"));
  exports.Set("dropoutMask", Napi::Function::New<DropoutMask>(env, "dropoutMask"));
  exports.Set("embeddingForward", Napi::Function::New<EmbeddingForward>(env, "embeddingForward"));
  exports.Set("embeddingBackward", Napi::Function::New<EmbeddingBackward>(env, "embeddingBackward"));
  exports.Set("crossEntropy", Napi::Function::New<CrossEntropy>(env, "crossEntropy"));
  exports.Set("crossEntropyBackward", Napi::Function::New<CrossEntropyBackward>(env, "crossEntropyBackward"));
  exports.Set("ctcLoss", Napi::Function::New<CtcLoss>(env, "ctcLoss"));
  exports.Set("ctcLossReference", Napi::Function::New<CtcLossReference>(env, "ctcLossReference"));
  exports.Set("ctcDecode", Napi::Function::New<CtcDecode>(env, "ctcDecode"));
  exports.Set("optimizerStep", Napi::Function::New<OptimizerStep>(env, "optimizerStep"));
  exports.Set("clipGradNorm", Napi::Function::New<ClipGradNorm>(env, "clipGradNorm"));
  exports.Set("clipGradValue", Napi::Function::New<ClipGradValue>(env, "clipGradValue"));
  exports.Set("layerReserveSize", Napi::Function::New<LayerReserveSize>(env, "layerReserveSize"));
  exports.Set("layerForward", Napi::Function::New<LayerForward>(env, "layerForward"));
  exports.Set("stackForward", Napi::Function::New<StackForward>(env, "stackForward"));
  exports.Set("stepPlan", Napi::Function::New<StepPlan>(env, "stepPlan"));
  exports.Set("stepRun", Napi::Function::New<StepRun>(env, "stepRun"));
  exports.Set("stepSample", Napi::Function::New<StepSample>(env, "stepSample"));
  exports.Set("seq2seqDecode", Napi::Function::New<Seq2SeqDecode>(env, "seq2seqDecode"));
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
