// The CUDA GEMM (gemm.cu), the device twin of cpp/gemm.h. Plain C++: binding/ includes it.
// Every pointer is device memory; every call is asynchronous on `stream` and reports launch
// errors by throwing std::runtime_error. Builds without CUDA get throwing stand-ins (api.h).
#pragma once

#include "api.h"

namespace recurrent {
namespace cuda {

// Row-major C (M, N) = alpha op(A) op(B) + beta C, `batch` products at strides sa/sb/sc.
// beta == 0: C is not read. Tiled shared-memory FP32 kernels (128 x 128 tiles for large
// products, 64 x 64 with K split across blocks for small ones); with set_tf32(true) the
// large products use the tensor cores in TF32 (10-bit mantissa inputs, FP32 accumulation),
// as torch.backends.cuda.matmul.allow_tf32 does.
RECURRENT_CUDA_FN void gemm(Stream stream, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
    const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc, int batch = 1, long stride_a = 0,
    long stride_b = 0, long stride_c = 0) RECURRENT_CUDA_ELSE_THROW;

// TF32 tensor cores for the large products (setFloat32MatmulPrecision('high'), torch's
// allow_tf32).
RECURRENT_CUDA_FN void set_tf32(bool enabled) RECURRENT_CUDA_ELSE();

}  // namespace cuda
}  // namespace recurrent
