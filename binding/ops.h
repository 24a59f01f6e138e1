// Node-API glue for the tensor ops of cpp/ops.h and cpp/gemm.h.
#pragma once

#include <napi.h>

namespace recurrent {

Napi::Value StridedCopy(const Napi::CallbackInfo& info);
Napi::Value Unary(const Napi::CallbackInfo& info);
Napi::Value UnaryBackward(const Napi::CallbackInfo& info);
Napi::Value Binary(const Napi::CallbackInfo& info);
Napi::Value Affine(const Napi::CallbackInfo& info);
Napi::Value Fill(const Napi::CallbackInfo& info);
Napi::Value Gemm(const Napi::CallbackInfo& info);
Napi::Value Softmax(const Napi::CallbackInfo& info);
Napi::Value AdditiveAttention(const Napi::CallbackInfo& info);
Napi::Value AdditiveAttentionBackward(const Napi::CallbackInfo& info);
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info);
Napi::Value UniformFill(const Napi::CallbackInfo& info);
Napi::Value NormalFill(const Napi::CallbackInfo& info);
Napi::Value DropoutMask(const Napi::CallbackInfo& info);
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info);
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info);

}  // namespace recurrent
