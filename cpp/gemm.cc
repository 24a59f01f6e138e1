// A packed, register-blocked GEMM, with AVX-512 / AVX2+FMA variants chosen at run time.
//
// Blocking (Goto/BLIS style): for each KC x NC block of op(B), pack it into NR-wide
// column panels; for each MC x KC block of op(A), pack it into MR-tall row panels; then
// an MR x NR micro-kernel accumulates in registers over KC. The micro-kernel is written
// with fixed-size loops the compiler vectorizes; `target_clones` compiles it for
// AVX-512, AVX2+FMA and the portable baseline, and the loader picks the best one this
// CPU supports (the shipped binary's baseline stays plain x86-64).
// The multithreaded, hand-tuned version is a later step; callers see only gemm_cpu().
#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace recurrent {

namespace {

constexpr int kMR = 4;
constexpr int kNR = 16;
constexpr int kKC = 256;
constexpr int kMC = 64;
constexpr int kNC = 2048;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RECURRENT_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define RECURRENT_CLONES
#endif

// acc(MR x NR) = sum_k a[k][0..MR) (x) b[k][0..NR); C tile += alpha * acc (only the
// rows x cols part that exists). NR floats are one GCC vector: a single zmm register
// under AVX-512, two ymm under AVX2, four xmm on the baseline.
typedef float VecNR __attribute__((vector_size(kNR * sizeof(float))));

RECURRENT_CLONES
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float alpha, float* c, int ldc,
                  int rows, int cols) {
  VecNR acc[kMR];
  for (int r = 0; r < kMR; ++r) acc[r] = VecNR{} ;
  for (int k = 0; k < kc; ++k) {
    VecNR bk;
    std::memcpy(&bk, b + k * kNR, sizeof(VecNR));
    const float* ak = a + k * kMR;
    for (int r = 0; r < kMR; ++r) acc[r] += ak[r] * bk;
  }
  for (int r = 0; r < rows; ++r) {
    float* crow = c + static_cast<long>(r) * ldc;
    if (cols == kNR) {
      VecNR current;
      std::memcpy(&current, crow, sizeof(VecNR));
      current += alpha * acc[r];
      std::memcpy(crow, &current, sizeof(VecNR));
    } else {
      for (int j = 0; j < cols; ++j) crow[j] += alpha * acc[r][j];
    }
  }
}

// op(B)[k0:k0+kc, n0:n0+nc] into panels of NR columns: panel p holds kc rows of NR.
void pack_b(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, float* out) {
  for (int p = 0; p < nc; p += kNR) {
    const int cols = std::min(kNR, nc - p);
    float* dst = out + static_cast<long>(p) * kc;
    for (int k = 0; k < kc; ++k) {
      float* row = dst + k * kNR;
      if (!trans) {
        const float* src = b + static_cast<long>(k0 + k) * ldb + n0 + p;
        for (int j = 0; j < cols; ++j) row[j] = src[j];
      } else {
        const float* src = b + static_cast<long>(n0 + p) * ldb + (k0 + k);
        for (int j = 0; j < cols; ++j) row[j] = src[static_cast<long>(j) * ldb];
      }
      for (int j = cols; j < kNR; ++j) row[j] = 0.0f;
    }
  }
}

// op(A)[m0:m0+mc, k0:k0+kc] into panels of MR rows: panel p holds kc columns of MR.
void pack_a(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, float* out) {
  for (int p = 0; p < mc; p += kMR) {
    const int rows = std::min(kMR, mc - p);
    float* dst = out + static_cast<long>(p) * kc;
    for (int k = 0; k < kc; ++k) {
      float* col = dst + k * kMR;
      for (int r = 0; r < rows; ++r) {
        col[r] = trans ? a[static_cast<long>(k0 + k) * lda + m0 + p + r] : a[static_cast<long>(m0 + p + r) * lda + k0 + k];
      }
      for (int r = rows; r < kMR; ++r) col[r] = 0.0f;
    }
  }
}

}  // namespace

void gemm_cpu(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta,
              float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  for (int i = 0; i < m; ++i) {
    float* row = c + static_cast<long>(i) * ldc;
    if (beta == 0.0f) std::fill(row, row + n, 0.0f);
    else if (beta != 1.0f)
      for (int j = 0; j < n; ++j) row[j] *= beta;
  }
  if (k <= 0 || alpha == 0.0f) return;

  thread_local std::vector<float> packed_a, packed_b;
  packed_b.resize(static_cast<size_t>(kKC) * (kNC + kNR));
  packed_a.resize(static_cast<size_t>(kKC) * (kMC + kMR));

  for (int n0 = 0; n0 < n; n0 += kNC) {
    const int nc = std::min(kNC, n - n0);
    for (int k0 = 0; k0 < k; k0 += kKC) {
      const int kc = std::min(kKC, k - k0);
      pack_b(trans_b, b, ldb, k0, kc, n0, nc, packed_b.data());
      for (int m0 = 0; m0 < m; m0 += kMC) {
        const int mc = std::min(kMC, m - m0);
        pack_a(trans_a, a, lda, m0, mc, k0, kc, packed_a.data());
        for (int jr = 0; jr < nc; jr += kNR) {
          const float* bp = packed_b.data() + static_cast<long>(jr) * kc;
          for (int ir = 0; ir < mc; ir += kMR) {
            micro_kernel(kc, packed_a.data() + static_cast<long>(ir) * kc, bp, alpha,
                         c + static_cast<long>(m0 + ir) * ldc + n0 + jr, ldc, std::min(kMR, mc - ir),
                         std::min(kNR, nc - jr));
          }
        }
      }
    }
  }
}

}  // namespace recurrent
