// The device twins of the CPU losses (cpp/loss.h); loss.cu implements them. Targets are device
// memory (allocator.h: upload_ints).
// Plain C++: binding/ includes it and g++ compiles binding/. Every pointer is device memory
// unless said otherwise; every call is queued on the one stream of the process (stream()), in
// call order, and returns before the GPU has run it; errors at launch throw std::runtime_error.
// Builds without CUDA get throwing stand-ins (api.h).
#pragma once

#include <cstdint>

#include "api.h"

namespace recurrent {
namespace cuda {

RECURRENT_CUDA_FN void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
    int64_t classes, int32_t ignore_index, float smoothing) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void cross_entropy_backward(float* grad_logits, const float* logits, const int32_t* targets,
    const float* grad_losses, int64_t rows, int64_t classes, int32_t ignore_index, float smoothing) RECURRENT_CUDA_ELSE_THROW;

}  // namespace cuda
}  // namespace recurrent
