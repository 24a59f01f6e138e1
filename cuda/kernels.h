// The CUDA kernels of recurrent, callable from plain C++ (binding/, CTest). Every pointer
// is device memory unless said otherwise; every call is asynchronous on `stream` (a
// cudaStream_t; null: the default stream) and reports launch errors by throwing
// std::runtime_error. Shapes and semantics are those of the CPU kernels (cpp/gemm.h,
// cpp/recurrent.h), and the gate math is the same header (cpp/cells.h).
#pragma once

#include <cstddef>

#include "cpp/recurrent.h"

namespace recurrent {
namespace cuda {

using Stream = void*;

// Row-major C (M, N) = alpha op(A) op(B) + beta C, `batch` products at strides sa/sb/sc.
// beta == 0: C is not read. Tiled shared-memory FP32 kernels (128 x 128 tiles for large
// products, 64 x 64 with K split across blocks for small ones); with set_tf32(true) the
// large products use the tensor cores in TF32 (10-bit mantissa inputs, FP32 accumulation),
// as torch.backends.cuda.matmul.allow_tf32 does.
void gemm(Stream stream, bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc, int batch = 1, long stride_a = 0,
          long stride_b = 0, long stride_c = 0);

// The persistent kernels (one cooperative launch for all time steps, w_hh held in shared
// memory) run where they fit and, in kAuto, the batch is at most kPersistentMaxBatch; the
// per-step GEMM + gate kernels run otherwise. RECURRENT_CUDA_PERSISTENT=0 / 1 in the
// environment starts in kNever / kAlways.
enum class PersistentMode { kAuto = 0, kNever = 1, kAlways = 2 };
constexpr int kPersistentMaxBatch = 32;
constexpr size_t kPersistentMaxState = 4096;  // B * H
void set_persistent_mode(PersistentMode mode);
// Whether layer_forward (backward = false) or layer_backward would take the persistent path.
bool uses_persistent(const LayerDims& dims, bool backward);

void set_tf32(bool enabled);

// Floats of device workspace layer_forward / layer_backward need (beside the reserve,
// whose size is layer_reserve_size(dims), as on the CPU).
size_t layer_workspace_size(const LayerDims& dims);

// As layer_forward_cpu / layer_backward_cpu. `weights` / `grads` are host arrays (one per
// direction) of device pointers; `lengths` is device memory (B ints) or null; reserve is
// required (training and inference alike).
void layer_forward(Stream stream, const LayerDims& dims, float* y, float* h_n, float* c_n, float* reserve,
                   const float* x, const int* lengths, const float* h0, const float* c0, const LayerWeights* weights,
                   float* workspace);

void layer_backward(Stream stream, const LayerDims& dims, float* dx, float* dh0, float* dc0, const LayerGrads* grads,
                    const float* dy, const float* dh_n, const float* dc_n, const float* reserve, const float* x,
                    const int* lengths, const LayerWeights* weights, float* workspace);

}  // namespace cuda
}  // namespace recurrent
