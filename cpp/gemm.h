// The single GEMM entry point every CPU kernel calls.
//
// Row-major, BLAS-style: C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C,
// op(X) = X or X^T. lda/ldb/ldc are row strides in elements. beta == 0 means C is
// written without being read (it may hold garbage or NaN).
#pragma once

namespace recurrent {

void gemm_cpu(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta,
              float* c, int ldc);

// The instruction set the GEMM kernels use on this CPU: "avx512", "avx2" or "baseline".
const char* gemm_isa();

}  // namespace recurrent
