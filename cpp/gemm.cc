// A plain cache-blocked GEMM. The SIMD, multithreaded one is a later step; every
// kernel reaches GEMM through gemm_cpu(), so swapping it changes nothing else.
//
// Strategy: scale C by beta once, then for each (K, N) block copy op(B) into a
// contiguous row-major panel and accumulate C[i, j..] += a_ik * panel[k, j..] with
// unit-stride inner loops that the compiler vectorizes.
#include "gemm.h"

#include <algorithm>
#include <vector>

namespace recurrent {

namespace {
constexpr int kBlockK = 256;
constexpr int kBlockN = 512;
}  // namespace

void gemm_cpu(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta,
              float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  for (int i = 0; i < m; ++i) {
    float* row = c + static_cast<long>(i) * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + n, 0.0f);
    } else if (beta != 1.0f) {
      for (int j = 0; j < n; ++j) row[j] *= beta;
    }
  }
  if (k <= 0 || alpha == 0.0f) return;

  thread_local std::vector<float> panel;
  panel.resize(static_cast<size_t>(kBlockK) * kBlockN);

  for (int k0 = 0; k0 < k; k0 += kBlockK) {
    const int kb = std::min(kBlockK, k - k0);
    for (int n0 = 0; n0 < n; n0 += kBlockN) {
      const int nb = std::min(kBlockN, n - n0);
      // panel (kb, nb) = op(B)[k0:k0+kb, n0:n0+nb], scaled by alpha
      for (int kk = 0; kk < kb; ++kk) {
        float* dst = panel.data() + static_cast<size_t>(kk) * nb;
        if (!trans_b) {
          const float* src = b + static_cast<long>(k0 + kk) * ldb + n0;
          for (int j = 0; j < nb; ++j) dst[j] = alpha * src[j];
        } else {
          const float* src = b + static_cast<long>(n0) * ldb + (k0 + kk);
          for (int j = 0; j < nb; ++j) dst[j] = alpha * src[static_cast<long>(j) * ldb];
        }
      }
      for (int i = 0; i < m; ++i) {
        float* crow = c + static_cast<long>(i) * ldc + n0;
        for (int kk = 0; kk < kb; ++kk) {
          const float aik = trans_a ? a[static_cast<long>(k0 + kk) * lda + i]
                                    : a[static_cast<long>(i) * lda + k0 + kk];
          if (aik == 0.0f) continue;
          const float* prow = panel.data() + static_cast<size_t>(kk) * nb;
          for (int j = 0; j < nb; ++j) crow[j] += aik * prow[j];
        }
      }
    }
  }
}

}  // namespace recurrent
