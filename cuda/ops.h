// The device twins of the CPU tensor ops (cpp/ops.h), with the same arguments and semantics
// (counter-based random fills give the same numbers on both devices); ops.cu implements them.
// Plain C++: binding/ includes it and g++ compiles binding/. Every pointer is device memory
// unless said otherwise; every call is queued on the one stream of the process (stream()), in
// call order, and returns before the GPU has run it; errors at launch throw std::runtime_error.
// Builds without CUDA get throwing stand-ins (api.h).
#pragma once

#include <cstdint>

#include "api.h"
#include "cpp/ops.h"

namespace recurrent {
namespace cuda {

RECURRENT_CUDA_FN void strided_copy(float* dst, const int64_t* dst_strides, const float* src,
    const int64_t* src_strides, const int64_t* shape, int rank, bool accumulate) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void unary_forward(UnaryOp op, float* out, const float* in, int64_t n) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void unary_backward(UnaryOp op, float* grad_in, const float* in, const float* out,
    const float* grad_out, int64_t n) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void binary(BinaryOp op, float* out, const float* a, const int64_t* a_strides, const float* b,
    const int64_t* b_strides, const int64_t* shape, int rank) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void affine(float* out, const float* in, float alpha, float beta, int64_t n)
    RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void fill(float* out, float value, int64_t n) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void softmax_forward(float* out, const float* in, int64_t rows, int64_t cols, bool log)
    RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void softmax_backward(float* grad_in, const float* out, const float* grad_out, int64_t rows,
    int64_t cols, bool log) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void uniform_fill(float* out, int64_t n, float low, float high, uint64_t seed)
    RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void normal_fill(float* out, int64_t n, float mean, float stddev, uint64_t seed)
    RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void dropout_mask(float* out, int64_t n, float p, uint64_t seed) RECURRENT_CUDA_ELSE_THROW;
// indices: device memory (upload_ints)
RECURRENT_CUDA_FN void embedding_forward(float* out, const float* weight, const int32_t* indices, int64_t count,
    int64_t dim) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void embedding_backward(float* grad_weight, const float* grad_out, const int32_t* indices,
    int64_t count, int64_t dim) RECURRENT_CUDA_ELSE_THROW;

}  // namespace cuda
}  // namespace recurrent
