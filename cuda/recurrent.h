// The CUDA recurrent layer (recurrent.cu), the device twin of cpp/recurrent.h: same shapes,
// semantics and reserve layout (cpp/layout.h), the same gate math (cpp/cells.h). Plain C++:
// binding/ includes it. Every pointer is device memory unless said otherwise; every call is
// asynchronous on `stream` and reports launch errors by throwing std::runtime_error. Builds
// without CUDA get throwing stand-ins (api.h).
#pragma once

#include <cstddef>

#include "api.h"
#include "cpp/recurrent.h"

namespace recurrent {
namespace cuda {

// The persistent kernels (one cooperative launch for all time steps, w_hh held in shared
// memory) run where they fit and, in kAuto, the batch is at most kPersistentMaxBatch; the
// per-step GEMM + gate kernels run otherwise. RECURRENT_CUDA_PERSISTENT=0 / 1 in the
// environment starts in kNever / kAlways.
enum class PersistentMode { kAuto = 0, kNever = 1, kAlways = 2 };
constexpr int kPersistentMaxBatch = 32;
constexpr size_t kPersistentMaxState = 4096;  // B * H
RECURRENT_CUDA_FN void set_persistent_mode(PersistentMode mode) RECURRENT_CUDA_ELSE();
// Whether layer_forward (backward = false) or layer_backward would take the persistent path.
RECURRENT_CUDA_FN bool uses_persistent(const LayerDims& dims, bool backward) RECURRENT_CUDA_ELSE(return false);

// Floats of device workspace layer_forward / layer_backward need (beside the reserve,
// whose size is layer_reserve_size(dims), as on the CPU).
RECURRENT_CUDA_FN size_t layer_workspace_size(const LayerDims& dims) RECURRENT_CUDA_ELSE_THROW;

// As layer_forward_cpu / layer_backward_cpu. `weights` / `grads` are host arrays (one per
// direction) of device pointers; `lengths` is device memory (B ints) or null; reserve is
// required (training and inference alike).
RECURRENT_CUDA_FN void layer_forward(Stream stream, const LayerDims& dims, float* y, float* h_n, float* c_n,
    float* reserve, const float* x, const int* lengths, const float* h0, const float* c0, const LayerWeights* weights,
    float* workspace) RECURRENT_CUDA_ELSE_THROW;

RECURRENT_CUDA_FN void layer_backward(Stream stream, const LayerDims& dims, float* dx, float* dh0, float* dc0,
    const LayerGrads* grads, const float* dy, const float* dh_n, const float* dc_n, const float* reserve,
    const float* x, const int* lengths, const LayerWeights* weights, float* workspace) RECURRENT_CUDA_ELSE_THROW;

}  // namespace cuda
}  // namespace recurrent
