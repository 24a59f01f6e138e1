// The device twins of the CPU optimizer updates (cpp/optim.h); optim.cu implements them with
// the per-element math the CPU runs (cpp/optim_math.h).
// Plain C++: binding/ includes it and g++ compiles binding/. Every pointer is device memory
// unless said otherwise; every call is queued on the one stream of the process (stream()), in
// call order, and returns before the GPU has run it; errors at launch throw std::runtime_error.
// Builds without CUDA get throwing stand-ins (api.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "api.h"
#include "cpp/optim.h"

namespace recurrent {
namespace cuda {

RECURRENT_CUDA_FN void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& h,
    bool first_step) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
    const AdamHyper& h, int64_t step) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void rmsprop_step(float* param, const float* grad, float* square_avg, float* grad_avg,
    float* momentum_buf, int64_t n, const RmspropHyper& h) RECURRENT_CUDA_ELSE_THROW;
// The L2 norm of all `count` gradients (host arrays of device pointers and sizes) into
// norm_out[0]; the gradients scaled by max_norm / (norm + 1e-6) where that is below 1.
// Nothing is read back to the host.
RECURRENT_CUDA_FN void clip_grad_norm(float* const* grads, const int64_t* sizes, size_t count, double max_norm,
    float* norm_out) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void clamp(float* x, int64_t n, float low, float high) RECURRENT_CUDA_ELSE_THROW;

}  // namespace cuda
}  // namespace recurrent
