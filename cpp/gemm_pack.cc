// The FP32 packers: blocks of op(A) and op(B) into the panels the micro-kernels read, with AVX2
// 8 x 8 transposes where a panel runs across memory rows (pure data movement: the values are
// the same as the plain loops', which RECURRENT_ISA=baseline still runs).
#include <algorithm>
#include <cstring>
#include <string>

#include "gemm_internal.h"

namespace recurrent {
namespace gemm_detail {

#ifdef RECURRENT_X86_DISPATCH
namespace {

// The 8 x 8 matrix whose rows are r[0..7] transposed: column j of it into c[j].
RECURRENT_AVX2_TARGET inline void transpose8_registers(const __m256 (&r)[8], __m256 (&c)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);  // rows i, i+1 interleaved: columns 0, 1 | 4, 5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // columns 2, 3 | 6, 7
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));  // column 0 | 4 of 4 rows
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));  // column 1 | 5
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));  // column 2 | 6
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));  // column 3 | 7
  }
  for (int j = 0; j < 4; ++j) {
    c[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    c[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// A panel of R rows (5 or 6, AVX2's micro-kernel heights) of A as it lies (row stride lda), over kc
// columns from src, into dst: R values per column, columns one after another. 8 columns at a time
// by an 8 x 8 transpose with 8 - R zero rows; each column's R values are stored as 8 (the next
// column's store overwrites the extra ones), the last of each 8 as 4 + (R - 4), so nothing past the
// panel is written. (The plain loop it replaces, a value at a time at a stride of lda, was 2% of an
// LSTM training step.)
template <int R>
RECURRENT_AVX2_TARGET void pack_rows(const float* src, long lda, int kc, float* dst) {
  static_assert(R == 5 || R == 6, "the last column's store is written for 5 and 6 rows");
  int k = 0;
  for (; k + 8 <= kc; k += 8) {
    __m256 r[8], column[8];
    for (int i = 0; i < 8; ++i) r[i] = i < R ? _mm256_loadu_ps(src + i * lda + k) : _mm256_setzero_ps();
    transpose8_registers(r, column);
    float* out = dst + static_cast<long>(k) * R;
    for (int j = 0; j < 7; ++j) _mm256_storeu_ps(out + j * R, column[j]);
    _mm_storeu_ps(out + 7 * R, _mm256_castps256_ps128(column[7]));
    if (R == 6) _mm_storel_pi(reinterpret_cast<__m64*>(out + 7 * R + 4), _mm256_extractf128_ps(column[7], 1));
    else _mm_store_ss(out + 7 * R + 4, _mm256_extractf128_ps(column[7], 1));
  }
  for (; k < kc; ++k)
    for (int r = 0; r < R; ++r) dst[k * R + r] = src[r * lda + k];
}

}  // namespace

// The 8 x 8 block at src (row stride lds) transposed into dst (row stride ldd).
RECURRENT_AVX2_TARGET void transpose8(const float* src, long lds, float* dst, long ldd) {
  __m256 r[8], c[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  transpose8_registers(r, c);
  for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + j * ldd, c[j]);
}
#endif

namespace {

// Whether the packers may use AVX2 transposes (pure data movement: the packed values are the
// same either way); not under RECURRENT_ISA=baseline, so that run still covers the plain loops.
bool vector_packing() {
#ifdef RECURRENT_X86_DISPATCH
  static const bool on = std::string(dispatch().isa) != "baseline";
  return on;
#else
  return false;
#endif
}

}  // namespace

void pack_b(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, float* out) {
  [[maybe_unused]] const bool vector = vector_packing();
  for (int p = 0; p < nc; p += kNR) {
    const int cols = std::min(kNR, nc - p);
    float* dst = out + static_cast<long>(p) * kc;
    int k = 0;
    if (cols == kNR && !trans) {
      for (; k < kc; ++k) std::memcpy(dst + k * kNR, b + static_cast<long>(k0 + k) * ldb + n0 + p, kNR * sizeof(float));
    }
#ifdef RECURRENT_X86_DISPATCH
    if (cols == kNR && trans && vector) {
      // B^T's rows are B's columns: two 8 x 8 transposes per 8 rows of the panel
      const float* src = b + static_cast<long>(n0 + p) * ldb + k0;
      for (; k + 8 <= kc; k += 8) {
        transpose8(src + k, ldb, dst + k * kNR, kNR);
        transpose8(src + 8L * ldb + k, ldb, dst + k * kNR + 8, kNR);
      }
    }
#endif
    for (; k < kc; ++k) {
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

// op(A) = A^T, the full panels of [m0, m0 + full): each k's values of all of them lie side by side
// in one row of A, so 8 rows at a time (a pass per panel read every row again, a few floats of
// each, at a stride of lda: the weight gradient's dG^T, 2048 x 1024 at a stride of 8 KB, spent
// 4.6% of an LSTM H = 512 training step packing). Each panel gets its 8 rows' values at once, MR x
// 8 floats in a row: one row at a time wrote MR floats to every panel in turn, kc x MR x 4 bytes
// apart (16 KB on AVX-512), so the stores of 32 panels fell in one set of L1 and evicted each
// other's half-written lines; the dW products of an LSTM H = 128 training step spent 14.5% of it
// packing (Zen 5).
template <int MR>
void pack_a_trans_rows(const float* a, int lda, int m0, int full, int k0, int kc, float* out) {
  constexpr int kRows = 8;
  for (int k = 0; k < kc; k += kRows) {
    const int rows = std::min(kRows, kc - k);
    const float* src = a + static_cast<long>(k0 + k) * lda + m0;
    for (int p = 0; p < full; p += MR) {
      float* dst = out + static_cast<long>(p) * kc + static_cast<long>(k) * MR;
      // a copy of a constant size is inlined (a call to memcpy per panel costs more than it moves)
      for (int r = 0; r < rows; ++r) std::memcpy(dst + r * MR, src + static_cast<long>(r) * lda + p, MR * sizeof(float));
    }
  }
}

void pack_a(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, int mr, float* out) {
  [[maybe_unused]] const bool vector = vector_packing();
  if (trans && (mr == 8 || mr == 6 || mr == 4)) {
    const int full = mc / mr * mr;
    if (mr == 8) pack_a_trans_rows<8>(a, lda, m0, full, k0, kc, out);
    else if (mr == 6) pack_a_trans_rows<6>(a, lda, m0, full, k0, kc, out);  // AVX2, NEON
    else pack_a_trans_rows<4>(a, lda, m0, full, k0, kc, out);                // the portable baseline
    if (full == mc) return;
    // the last, partial panel by the loop below
    out += static_cast<long>(full) * kc;
    m0 += full;
    mc -= full;
  }
  for (int p = 0; p < mc; p += mr) {
    const int rows = std::min(mr, mc - p);
    float* dst = out + static_cast<long>(p) * kc;
    int k = 0;
#ifdef RECURRENT_X86_DISPATCH
    if (rows == 8 && mr == 8 && !trans && vector) {
      const float* src = a + static_cast<long>(m0 + p) * lda + k0;
      for (; k + 8 <= kc; k += 8) transpose8(src + k, lda, dst + k * 8, 8);
    }
    if (rows == mr && (mr == 6 || mr == 5) && !trans && vector) {
      if (mr == 6) pack_rows<6>(a + static_cast<long>(m0 + p) * lda + k0, lda, kc, dst);
      else pack_rows<5>(a + static_cast<long>(m0 + p) * lda + k0, lda, kc, dst);
      continue;
    }
#endif
    for (; k < kc; ++k) {
      float* col = dst + k * mr;
      for (int r = 0; r < rows; ++r) {
        col[r] = trans ? a[static_cast<long>(k0 + k) * lda + m0 + p + r] : a[static_cast<long>(m0 + p + r) * lda + k0 + k];
      }
      for (int r = rows; r < mr; ++r) col[r] = 0.0f;
    }
  }
}

}  // namespace gemm_detail
}  // namespace recurrent
