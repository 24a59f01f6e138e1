// A packed, register-blocked GEMM, with AVX-512 / AVX2+FMA variants chosen at run time.
//
// Blocking (Goto/BLIS style): for each KC x NC block of op(B), pack it into NR-wide
// column panels; for each MC x KC block of op(A), pack it into MR-tall row panels; then
// an MR x NR micro-kernel accumulates in registers over KC. The micro-kernel is written
// on GCC vectors and compiled three times, for AVX-512, AVX2+FMA and the portable
// baseline; the best one this CPU supports is chosen at run time (RECURRENT_ISA can
// force a lower one), so the shipped binary's baseline stays plain x86-64. gemm_cpu()
// splits C across the thread pool; the recurrent layer drives gemm_packed_tiles() on
// its own slices.
#include "gemm.h"

#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace recurrent {

namespace {

constexpr int kMaxMR = 16;  // the tallest micro-kernel (AVX-512); each ISA has its own MR
constexpr int kNR = 16;
static_assert(kNR == kGemmTile, "gemm.h promises tiles of kGemmTile columns");
// Depth of a block: a layer's per-step product (K = H up to 512) runs as one block, each C tile written
// once. Measured on Zen 5 against 256: +3-5% on the layers at H = 512, the same on large GEMMs; 128 was 5-11%
// slower.
constexpr int kKC = 512;
constexpr int kMC = 64;  // rows of an A block on the narrower ISAs
constexpr int kNC = 2048;
constexpr int kBf16MR = 8;  // rows of the BF16 micro-kernel (AVX512_BF16 only)

// acc(MR x NR) = sum_k a[k][0..MR) (x) b[k][0..NR); C tile += alpha * acc (only the
// rows x cols part that exists). A row of NR floats is one zmm register under AVX-512,
// two ymm under AVX2, four xmm on the baseline.

// The kernel body for a vector type V of W floats (NR / W vectors per row): the
// accumulators are MR x (NR / W) vectors that stay in registers.
#define RECURRENT_MICRO_KERNEL(NAME, TARGET, V, W, MR)                                                \
  TARGET void NAME(int kc, const float* __restrict a, const float* __restrict b, float alpha, float* c, \
                   int ldc, int rows, int cols, bool overwrite) {                                     \
    constexpr int kParts = kNR / (W);                                                                 \
    constexpr int kMR = (MR);                                                                         \
    V acc[kMR][kParts];                                                                               \
    for (int r = 0; r < kMR; ++r)                                                                     \
      for (int p = 0; p < kParts; ++p) acc[r][p] = V{};                                               \
    for (int k = 0; k < kc; ++k) {                                                                    \
      const V* bk = reinterpret_cast<const V*>(b + k * kNR);                                          \
      const float* ak = a + k * kMR;                                                                  \
      for (int r = 0; r < kMR; ++r)                                                                   \
        for (int p = 0; p < kParts; ++p) acc[r][p] += ak[r] * bk[p];                                  \
    }                                                                                                 \
    for (int r = 0; r < rows; ++r) {                                                                  \
      /* a partial tile goes through a full one, so its values are computed the same way */          \
      float tile[kNR];                                                                                \
      float* crow = c + static_cast<long>(r) * ldc;                                                   \
      float* out = cols == kNR ? crow : tile;                                                         \
      if (out == tile && !overwrite) std::memcpy(tile, crow, cols * sizeof(float));                   \
      V* current = reinterpret_cast<V*>(out);                                                         \
      if (overwrite)                                                                                  \
        for (int p = 0; p < kParts; ++p) current[p] = alpha * acc[r][p];                              \
      else                                                                                            \
        for (int p = 0; p < kParts; ++p) current[p] += alpha * acc[r][p];                             \
      if (out == tile) std::memcpy(crow, tile, cols * sizeof(float));                                 \
    }                                                                                                 \
  }

// MR x 2NR: two B panels at once (b0, b1), so each broadcast of A feeds two FMAs: on
// AVX-512, 8 x 32 needs 10 loads per 16 FMAs where 16 x 16 needs 17.
#define RECURRENT_MICRO_KERNEL_WIDE(NAME, TARGET, V, W, MR)                                               \
  TARGET void NAME(int kc, const float* __restrict a, const float* __restrict b0, const float* __restrict b1, \
                   float alpha, float* c, int ldc, int rows, int cols, bool overwrite) {                 \
    constexpr int kParts = kNR / (W);                                                                    \
    constexpr int kMR = (MR);                                                                            \
    V acc[kMR][2 * kParts];                                                                              \
    for (int r = 0; r < kMR; ++r)                                                                        \
      for (int p = 0; p < 2 * kParts; ++p) acc[r][p] = V{};                                              \
    for (int k = 0; k < kc; ++k) {                                                                       \
      const V* p0 = reinterpret_cast<const V*>(b0 + k * kNR);                                            \
      const V* p1 = reinterpret_cast<const V*>(b1 + k * kNR);                                            \
      const float* ak = a + k * kMR;                                                                     \
      for (int r = 0; r < kMR; ++r) {                                                                    \
        const float x = ak[r];                                                                           \
        for (int p = 0; p < kParts; ++p) {                                                               \
          acc[r][p] += x * p0[p];                                                                        \
          acc[r][kParts + p] += x * p1[p];                                                               \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
    for (int r = 0; r < rows; ++r) {                                                                     \
      float tile[2 * kNR];                                                                               \
      float* crow = c + static_cast<long>(r) * ldc;                                                      \
      float* out = cols == 2 * kNR ? crow : tile;                                                        \
      if (out == tile && !overwrite) std::memcpy(tile, crow, cols * sizeof(float));                      \
      V* current = reinterpret_cast<V*>(out);                                                            \
      if (overwrite)                                                                                     \
        for (int p = 0; p < 2 * kParts; ++p) current[p] = alpha * acc[r][p];                             \
      else                                                                                               \
        for (int p = 0; p < 2 * kParts; ++p) current[p] += alpha * acc[r][p];                            \
      if (out == tile) std::memcpy(crow, tile, cols * sizeof(float));                                    \
    }                                                                                                    \
  }

// Unaligned, aliasing vector types: loads and stores straight from float arrays.
typedef float Vec4 __attribute__((vector_size(16), aligned(4), may_alias));
typedef float Vec8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef float Vec16 __attribute__((vector_size(64), aligned(4), may_alias));

// overwrite: C tile = alpha * acc (C is not read), else C tile += alpha * acc.
using MicroKernel = void (*)(int, const float*, const float*, float, float*, int, int, int, bool);
using WideKernel = void (*)(int, const float*, const float*, const float*, float, float*, int, int, int, bool);

RECURRENT_MICRO_KERNEL(micro_kernel_baseline, , Vec4, 4, 4)
#if defined(__x86_64__) && defined(__GNUC__)
#define RECURRENT_X86_DISPATCH 1
#include <immintrin.h>
RECURRENT_MICRO_KERNEL(micro_kernel_avx2, __attribute__((target("avx2,fma"))), Vec8, 8, 6)
// AVX-512: 8 x 32 (two panels; 16 accumulators hide the FMA latency on two 512-bit pipes),
// and 8 x 16 for a last single panel; A blocks of 256 rows (L2).
RECURRENT_MICRO_KERNEL(micro_kernel_avx512, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8)
RECURRENT_MICRO_KERNEL_WIDE(micro_kernel_avx512_wide, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8)

// BF16 (AVX512_BF16): A and B hold pairs of bfloat16 per 32-bit word (rows k and k + 1 of a
// column of B; columns k and k + 1 of a row of A). vdpbf16ps multiplies the pairs and adds
// both products to an FP32 lane, so one instruction does the work of two FMAs on half the
// bytes. 8 rows x 16 * P columns of accumulators, as the FP32 kernels.
#define RECURRENT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))

template <int P>
RECURRENT_BF16_TARGET void micro_kernel_bf16(int kp, const uint32_t* __restrict a, const uint32_t* __restrict b0,
                                             const uint32_t* __restrict b1, float alpha, float* c, int ldc, int rows,
                                             int cols, bool overwrite) {
  __m512 acc[kBf16MR][P];
  for (int r = 0; r < kBf16MR; ++r)
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_ps();
  for (int k = 0; k < kp; ++k) {
    __m512bh bv[P];
    bv[0] = (__m512bh)_mm512_loadu_si512(b0 + static_cast<long>(k) * kNR);
    if (P == 2) bv[P - 1] = (__m512bh)_mm512_loadu_si512(b1 + static_cast<long>(k) * kNR);
    const uint32_t* ak = a + static_cast<long>(k) * kBf16MR;
    for (int r = 0; r < kBf16MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(ak[r]));
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], av, bv[p]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
  for (int r = 0; r < rows; ++r) {
    // a partial tile goes through a full one, so its values are computed the same way
    alignas(64) float tile[P * kNR];
    float* crow = c + static_cast<long>(r) * ldc;
    float* out = cols == P * kNR ? crow : tile;
    if (out == tile && !overwrite) std::memcpy(tile, crow, cols * sizeof(float));
    for (int p = 0; p < P; ++p) {
      const __m512 v = _mm512_mul_ps(scale, acc[r][p]);
      _mm512_storeu_ps(out + p * kNR, overwrite ? v : _mm512_add_ps(_mm512_loadu_ps(out + p * kNR), v));
    }
    if (out == tile) std::memcpy(crow, tile, cols * sizeof(float));
  }
}
#endif

struct Dispatch {
  MicroKernel kernel;
  WideKernel wide;  // or null
  const char* isa;
  int mr;  // rows of the micro-kernel (A panels are packed this tall)
  int mc;  // rows of an A block: a multiple of mr
};

// The best kernel this CPU runs, or the one RECURRENT_ISA asks for (baseline, avx2,
// avx512) when the CPU supports it, so every variant can be tested on one machine.
Dispatch choose_kernel() {
#ifdef RECURRENT_X86_DISPATCH
  __builtin_cpu_init();
  const bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* forced = std::getenv("RECURRENT_ISA");
  const std::string want = forced ? forced : "";
  if (want == "baseline") return {micro_kernel_baseline, nullptr, "baseline", 4, 64};
  if (want == "avx2" && has_avx2) return {micro_kernel_avx2, nullptr, "avx2", 6, 60};
  if ((want.empty() || want == "avx512") && has_avx512)
    return {micro_kernel_avx512, micro_kernel_avx512_wide, "avx512", 8, 256};
  if (has_avx2) return {micro_kernel_avx2, nullptr, "avx2", 6, 60};
#endif
  return {micro_kernel_baseline, nullptr, "baseline", 4, 64};
}

const Dispatch& dispatch() {
  static const Dispatch chosen = choose_kernel();
  return chosen;
}

}  // namespace

const char* gemm_isa() { return dispatch().isa; }

namespace {
std::atomic<bool> g_bf16{false};

const char* bf16_reason() {
#ifdef RECURRENT_X86_DISPATCH
  if (std::string(dispatch().isa) != "avx512") return "BF16 matrix products need the AVX-512 kernels (RECURRENT_ISA forces others)";
  if (!__builtin_cpu_supports("avx512bf16")) return "this CPU has no AVX512_BF16";
  return "";
#else
  return "BF16 matrix products need an x86-64 CPU with AVX512_BF16";
#endif
}
}  // namespace

const char* bf16_unavailable_reason() {
  static const char* reason = bf16_reason();
  return reason;
}

bool bf16_supported() { return bf16_unavailable_reason()[0] == '\0'; }

bool set_bf16_matmul(bool on) {
  g_bf16.store(on && bf16_supported());
  return g_bf16.load();
}

bool bf16_matmul() { return g_bf16.load(std::memory_order_relaxed); }

namespace {

#ifdef RECURRENT_X86_DISPATCH
#define RECURRENT_AVX2_TARGET __attribute__((target("avx2,fma")))
// The 8 x 8 block at src (row stride lds) transposed into dst (row stride ldd).
RECURRENT_AVX2_TARGET void transpose8(const float* src, long lds, float* dst, long ldd) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
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
    _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
    _mm256_storeu_ps(dst + (4 + j) * ldd, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
  }
}
#endif

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

// op(B)[k0:k0+kc, n0:n0+nc] into panels of NR columns: panel p holds kc rows of NR.
void pack_b(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, float* out) {
  const bool vector = vector_packing();
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

// op(A)[m0:m0+mc, k0:k0+kc] into panels of MR rows: panel p holds kc columns of MR.
void pack_a(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, int mr, float* out) {
  const bool vector = vector_packing();
  for (int p = 0; p < mc; p += mr) {
    const int rows = std::min(mr, mc - p);
    float* dst = out + static_cast<long>(p) * kc;
    int k = 0;
    if (rows == 8 && mr == 8 && trans) {
      for (; k < kc; ++k) std::memcpy(dst + k * 8, a + static_cast<long>(k0 + k) * lda + m0 + p, 8 * sizeof(float));
    }
#ifdef RECURRENT_X86_DISPATCH
    if (rows == 8 && mr == 8 && !trans && vector) {
      const float* src = a + static_cast<long>(m0 + p) * lda + k0;
      for (; k + 8 <= kc; k += 8) transpose8(src + k, lda, dst + k * 8, 8);
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

// BF16 packing, for A and B alike. A panel holds `width` lanes (columns of op(B), rows of
// op(A)) and ceil(kc / 2) pair rows: word q of lane i holds depths 2q and 2q + 1 (an odd last
// depth is paired with zero), each rounded to BF16 to nearest even (NaN stays a quiet NaN).
// `along`: the two values of a pair are adjacent in memory (x[lane * ld + depth]), else they
// are in consecutive rows (x[depth * ld + lane]).
#ifdef RECURRENT_X86_DISPATCH
// GCC 12 warns about the _mm512_undefined_epi32() inside _mm512_srli_epi32 (a false positive)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// Each lane: v rounded to BF16, in the high 16 bits (the low 16 bits cleared); integer
// arithmetic on the float bits, so the result does not depend on MXCSR.
RECURRENT_BF16_TARGET inline __m512i bf16_high(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
  return _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
}

// Lane i: (lo[i], hi[i]) as one BF16 pair.
RECURRENT_BF16_TARGET inline __m512i bf16_pairs_across(__m512 lo, __m512 hi) {
  return _mm512_or_si512(_mm512_srli_epi32(bf16_high(lo), 16), bf16_high(hi));
}

// Lane q: (x[2q], x[2q + 1]) for the 32 floats x = v0 (0..15), v1 (16..31).
RECURRENT_BF16_TARGET inline __m512i bf16_pairs_along(__m512 v0, __m512 v1) {
  // the high 16-bit word of float f is word 2f + 1 of the concatenated vectors
  const __m512i index = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23,
                                         21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(bf16_high(v0), index, bf16_high(v1));
}

inline __mmask16 first_lanes(int count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << std::max(count, 0)) - 1u);
}

// Pairs along a row of `count` floats (x[0..count), zero past it), pair q of the row written
// to out[q * stride], for q < ceil(count / 2).
RECURRENT_BF16_TARGET void pairs_of_row(const float* x, int count, uint32_t* out, int stride) {
  const int pairs = (count + 1) / 2;
  const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(stride));
  for (int q = 0; q < pairs; q += 16) {
    const int left = count - 2 * q;
    const __m512 v0 = _mm512_maskz_loadu_ps(first_lanes(left), x + 2 * q);
    const __m512 v1 = _mm512_maskz_loadu_ps(first_lanes(left - 16), x + 2 * q + 16);
    _mm512_mask_i32scatter_epi32(out + static_cast<long>(q) * stride, first_lanes(pairs - q), offsets, bf16_pairs_along(v0, v1), 4);
  }
}

// Lanes [i0, i0 + count) and depths [k0, k0 + kc) of x, in panels of `width` (at most 16) lanes.
RECURRENT_BF16_TARGET void pack_pairs(const float* x, int ld, bool along, int k0, int kc, int i0, int count, int width,
                                      uint32_t* out) {
  const int kp = (kc + 1) / 2;
  for (int p = 0; p < count; p += width) {
    const int lanes = std::min(width, count - p);
    uint32_t* dst = out + static_cast<long>(p) * kp;
    if (along) {
      int q0 = 0;  // pair rows done
      if (lanes == width && (width == 8 || width == 16)) {
        // 16 pair rows at a time: each lane's 32 depths become 16 pairs (one vector), and the
        // lanes x 16 block is transposed into 16 pair rows of `width` words with 8 x 8 transposes
        alignas(64) uint32_t block[16][16];
        for (; q0 + 16 <= kc / 2; q0 += 16) {
          for (int i = 0; i < width; ++i) {
            const float* row = x + static_cast<long>(i0 + p + i) * ld + k0 + 2 * q0;
            _mm512_store_si512(block[i], bf16_pairs_along(_mm512_loadu_ps(row), _mm512_loadu_ps(row + 16)));
          }
          uint32_t* out_rows = dst + static_cast<long>(q0) * width;
          for (int half = 0; half < width / 8; ++half)  // lanes [8 half, 8 half + 8)
            for (int part = 0; part < 2; ++part)        // pair rows [8 part, 8 part + 8)
              transpose8(reinterpret_cast<const float*>(&block[8 * half][8 * part]), 16,
                         reinterpret_cast<float*>(out_rows + static_cast<long>(8 * part) * width + 8 * half), width);
        }
      }
      if (q0 == 0) {
        if (lanes < width) std::fill(dst, dst + static_cast<long>(kp) * width, 0u);
        for (int i = 0; i < lanes; ++i) pairs_of_row(x + static_cast<long>(i0 + p + i) * ld + k0, kc, dst + i, width);
      } else if (2 * q0 < kc) {
        // the depths past the blocks, into the pair rows past them
        for (int i = 0; i < lanes; ++i)
          pairs_of_row(x + static_cast<long>(i0 + p + i) * ld + k0 + 2 * q0, kc - 2 * q0, dst + static_cast<long>(q0) * width + i,
                       width);
      }
      continue;
    }
    const __mmask16 mask = first_lanes(lanes);
    for (int q = 0; q < kp; ++q) {
      const float* row = x + static_cast<long>(k0 + 2 * q) * ld + i0 + p;
      const __m512 lo = _mm512_maskz_loadu_ps(mask, row);
      const __m512 hi = 2 * q + 1 < kc ? _mm512_maskz_loadu_ps(mask, row + ld) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(dst + q * width, first_lanes(width), bf16_pairs_across(lo, hi));
    }
  }
}
#pragma GCC diagnostic pop
#else
// Elsewhere BF16 never runs (bf16_supported() is false); this plain version keeps the build whole.
void pack_pairs(const float* x, int ld, bool along, int k0, int kc, int i0, int count, int width, uint32_t* out) {
  const auto bits = [](float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  };
  const int kp = (kc + 1) / 2;
  for (int i = 0; i < (count + width - 1) / width * width; ++i)
    for (int q = 0; q < kp; ++q) {
      uint32_t word = 0;
      for (int h = 0; h < 2 && i < count && 2 * q + h < kc; ++h) {
        const long lane = i0 + i, depth = k0 + 2 * q + h;
        word |= bits(along ? x[lane * ld + depth] : x[depth * ld + lane]) << (16 * h);
      }
      out[static_cast<long>(i / width * width) * kp + q * width + i % width] = word;
    }
}
#endif

// op(B)[k0:k0+kc, n0:n0+nc] in BF16 pairs: panels of NR columns (pack_b's layout, in pair rows).
void pack_b_bf16(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, uint32_t* out) {
  pack_pairs(b, ldb, trans, k0, kc, n0, nc, kNR, out);
}

// op(A)[m0:m0+mc, k0:k0+kc] in BF16 pairs: panels of kBf16MR rows.
void pack_a_bf16(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, uint32_t* out) {
  pack_pairs(a, lda, !trans, k0, kc, m0, mc, kBf16MR, out);
}

// The BF16 kernels over one packed A block and the B panels of columns [col, col + width).
void bf16_block(int kp, const uint32_t* pa, int mc, const uint32_t* b0, const uint32_t* b1, float alpha, float* c,
                int ldc, int cols, bool overwrite) {
#ifdef RECURRENT_X86_DISPATCH
  for (int ir = 0; ir < mc; ir += kBf16MR) {
    const uint32_t* ap = pa + static_cast<long>(ir) * kp;
    float* cp = c + static_cast<long>(ir) * ldc;
    if (b1) micro_kernel_bf16<2>(kp, ap, b0, b1, alpha, cp, ldc, std::min(kBf16MR, mc - ir), cols, overwrite);
    else micro_kernel_bf16<1>(kp, ap, b0, b0, alpha, cp, ldc, std::min(kBf16MR, mc - ir), cols, overwrite);
  }
#endif
}

}  // namespace

namespace {

void gemm_serial(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  // beta == 0: the first k-block overwrites C, which is never read (no zero-fill pass)
  const bool skip = k <= 0 || alpha == 0.0f;
  for (int i = 0; i < m; ++i) {
    float* row = c + static_cast<long>(i) * ldc;
    if (beta == 0.0f && skip) std::fill(row, row + n, 0.0f);
    else if (beta != 0.0f && beta != 1.0f)
      for (int j = 0; j < n; ++j) row[j] *= beta;
  }
  if (skip) return;

  if (bf16_matmul()) {
    thread_local std::vector<uint32_t> pa, pb;
    pb.resize(static_cast<size_t>(kKC / 2) * (kNC + kNR));
    pa.resize(static_cast<size_t>(kKC / 2) * (dispatch().mc + kMaxMR));
    for (int n0 = 0; n0 < n; n0 += kNC) {
      const int nc = std::min(kNC, n - n0);
      for (int k0 = 0; k0 < k; k0 += kKC) {
        const int kc = std::min(kKC, k - k0), kp = (kc + 1) / 2;
        pack_b_bf16(trans_b, b, ldb, k0, kc, n0, nc, pb.data());
        for (int m0 = 0; m0 < m; m0 += dispatch().mc) {
          const int mc = std::min(dispatch().mc, m - m0);
          pack_a_bf16(trans_a, a, lda, m0, mc, k0, kc, pa.data());
          const bool overwrite = beta == 0.0f && k0 == 0;
          for (int jr = 0; jr < nc;) {
            const uint32_t* bp = pb.data() + static_cast<long>(jr) * kp;
            const bool wide = jr + kNR < nc;
            bf16_block(kp, pa.data(), mc, bp, wide ? bp + static_cast<long>(kNR) * kp : nullptr, alpha,
                       c + static_cast<long>(m0) * ldc + n0 + jr, ldc, std::min((wide ? 2 : 1) * kNR, nc - jr), overwrite);
            jr += wide ? 2 * kNR : kNR;
          }
        }
      }
    }
    return;
  }

  const Dispatch& isa = dispatch();
  const MicroKernel micro_kernel = isa.kernel;
  const int mr = isa.mr, block_m = isa.mc;
  thread_local std::vector<float> packed_a, packed_b;
  packed_b.resize(static_cast<size_t>(kKC) * (kNC + kNR));
  packed_a.resize(static_cast<size_t>(kKC) * (block_m + kMaxMR));

  for (int n0 = 0; n0 < n; n0 += kNC) {
    const int nc = std::min(kNC, n - n0);
    for (int k0 = 0; k0 < k; k0 += kKC) {
      const int kc = std::min(kKC, k - k0);
      pack_b(trans_b, b, ldb, k0, kc, n0, nc, packed_b.data());
      for (int m0 = 0; m0 < m; m0 += block_m) {
        const int mc = std::min(block_m, m - m0);
        pack_a(trans_a, a, lda, m0, mc, k0, kc, mr, packed_a.data());
        const bool overwrite = beta == 0.0f && k0 == 0;
        for (int jr = 0; jr < nc;) {
          const float* bp = packed_b.data() + static_cast<long>(jr) * kc;
          if (isa.wide && jr + kNR < nc) {  // two panels
            for (int ir = 0; ir < mc; ir += mr) {
              isa.wide(kc, packed_a.data() + static_cast<long>(ir) * kc, bp, bp + static_cast<long>(kNR) * kc, alpha,
                       c + static_cast<long>(m0 + ir) * ldc + n0 + jr, ldc, std::min(mr, mc - ir),
                       std::min(2 * kNR, nc - jr), overwrite);
            }
            jr += 2 * kNR;
            continue;
          }
          for (int ir = 0; ir < mc; ir += mr) {
            micro_kernel(kc, packed_a.data() + static_cast<long>(ir) * kc, bp, alpha,
                         c + static_cast<long>(m0 + ir) * ldc + n0 + jr, ldc, std::min(mr, mc - ir),
                         std::min(kNR, nc - jr), overwrite);
          }
          jr += kNR;
        }
      }
    }
  }
}

// Below this many multiply-adds (or with a short K, where packing dominates) a GEMM is
// not worth waking other threads for.
constexpr double kParallelWork = 1 << 22;
constexpr int kParallelMinK = 64;

}  // namespace

// Columns [tile0 * NR, tile1 * NR) of C = alpha * A * op(B) + beta * C, op(B) packed.
void gemm_packed_tiles(int m, float alpha, const float* a, int lda, const PackedMatrix& b, float beta, float* c,
                       int ldc, int tile0, int tile1) {
  const int n = b.cols(), k = b.rows();
  const int col0 = tile0 * kNR, col1 = std::min(n, tile1 * kNR);
  if (m <= 0 || col1 <= col0) return;
  const bool skip = k <= 0 || alpha == 0.0f;
  for (int i = 0; i < m; ++i) {
    float* row = c + static_cast<long>(i) * ldc;
    if (beta == 0.0f && skip) std::fill(row + col0, row + col1, 0.0f);
    else if (beta != 0.0f && beta != 1.0f)
      for (int j = col0; j < col1; ++j) row[j] *= beta;
  }
  if (skip) return;
  if (b.is_bf16()) {
    thread_local std::vector<uint32_t> pa;
    const int block_m = dispatch().mc;
    pa.resize(static_cast<size_t>(kKC / 2) * (block_m + kMaxMR));
    for (int k0 = 0; k0 < k; k0 += kKC) {
      const int kc = std::min(kKC, k - k0), kp = (kc + 1) / 2;
      for (int m0 = 0; m0 < m; m0 += block_m) {
        const int mc = std::min(block_m, m - m0);
        pack_a_bf16(false, a, lda, m0, mc, k0, kc, pa.data());
        const bool overwrite = beta == 0.0f && k0 == 0;
        const auto panel = [&](int tile) {
          const int col = tile * kNR, block = col / kNC * kNC;
          return b.panel_bf16(block, k0) + static_cast<long>(col - block) * kp;
        };
        for (int tile = tile0; tile < tile1 && tile * kNR < n;) {
          const int col = tile * kNR;
          const bool wide = tile + 1 < tile1 && col + kNR < n && (col + kNR) / kNC == col / kNC;
          bf16_block(kp, pa.data(), mc, panel(tile), wide ? panel(tile + 1) : nullptr, alpha,
                     c + static_cast<long>(m0) * ldc + col, ldc, std::min((wide ? 2 : 1) * kNR, n - col), overwrite);
          tile += wide ? 2 : 1;
        }
      }
    }
    return;
  }
  const Dispatch& isa = dispatch();
  const MicroKernel micro_kernel = isa.kernel;
  const int mr = isa.mr, block_m = isa.mc;
  thread_local std::vector<float> packed_a;
  packed_a.resize(static_cast<size_t>(kKC) * (block_m + kMaxMR));
  for (int k0 = 0; k0 < k; k0 += kKC) {
    const int kc = std::min(kKC, k - k0);
    for (int m0 = 0; m0 < m; m0 += block_m) {
      const int mc = std::min(block_m, m - m0);
      pack_a(false, a, lda, m0, mc, k0, kc, mr, packed_a.data());
      const bool overwrite = beta == 0.0f && k0 == 0;
      const auto panel = [&](int tile) {
        const int col = tile * kNR, block = col / kNC * kNC;
        return b.panel(block, k0) + static_cast<long>(col - block) * kc;
      };
      for (int tile = tile0; tile < tile1 && tile * kNR < n;) {
        const int col = tile * kNR;
        if (isa.wide && tile + 1 < tile1 && col + kNR < n) {  // two panels
          const float* b0 = panel(tile);
          const float* b1 = panel(tile + 1);
          for (int ir = 0; ir < mc; ir += mr) {
            isa.wide(kc, packed_a.data() + static_cast<long>(ir) * kc, b0, b1, alpha,
                     c + static_cast<long>(m0 + ir) * ldc + col, ldc, std::min(mr, mc - ir), std::min(2 * kNR, n - col),
                     overwrite);
          }
          tile += 2;
          continue;
        }
        const float* bp = panel(tile);
        for (int ir = 0; ir < mc; ir += mr) {
          micro_kernel(kc, packed_a.data() + static_cast<long>(ir) * kc, bp, alpha,
                       c + static_cast<long>(m0 + ir) * ldc + col, ldc, std::min(mr, mc - ir), std::min(kNR, n - col),
                       overwrite);
        }
        tile += 1;
      }
    }
  }
}

void PackedMatrix::pack(bool trans, int k, int n, const float* b, int ldb) {
  k_ = k;
  n_ = n;
  bf16_ = bf16_matmul();
  if (bf16_) {
    // the same blocks, in rows of BF16 pairs: a block of kc rows holds ceil(kc / 2) pair rows
    size_t total = 0;
    for (int n0 = 0; n0 < n; n0 += kNC) total += static_cast<size_t>((k + 1) / 2) * ((std::min(kNC, n - n0) + kNR - 1) / kNR * kNR);
    pairs_.resize(total);
    data_.clear();
    for (int n0 = 0; n0 < n; n0 += kNC)
      for (int k0 = 0; k0 < k; k0 += kKC)
        pack_b_bf16(trans, b, ldb, k0, std::min(kKC, k - k0), n0, std::min(kNC, n - n0), const_cast<uint32_t*>(panel_bf16(n0, k0)));
    return;
  }
  pairs_.clear();
  // blocks of kNC columns, each split into blocks of kKC rows, each stored as pack_b lays it out
  size_t total = 0;
  for (int n0 = 0; n0 < n; n0 += kNC) total += static_cast<size_t>(k) * ((std::min(kNC, n - n0) + kNR - 1) / kNR * kNR);
  data_.resize(total);
  // the (column block, row block) pieces are independent: pack them on all threads
  struct Piece {
    int n0, k0;
  };
  std::vector<Piece> pieces;
  for (int n0 = 0; n0 < n; n0 += kNC)
    for (int k0 = 0; k0 < k; k0 += kKC) pieces.push_back({n0, k0});
  const auto pack_piece = [&](int i) {
    const Piece& piece = pieces[i];
    const int nc = std::min(kNC, n - piece.n0), kc = std::min(kKC, k - piece.k0);
    pack_b(trans, b, ldb, piece.k0, kc, piece.n0, nc, const_cast<float*>(panel(piece.n0, piece.k0)));
  };
  if (static_cast<double>(k) * n >= 1 << 18) parallel_for(static_cast<int>(pieces.size()), pack_piece);
  else for (int i = 0; i < static_cast<int>(pieces.size()); ++i) pack_piece(i);
}

const uint32_t* PackedMatrix::panel_bf16(int n0, int k0) const {
  // k0 is a multiple of kKC (even), so the pair rows before it are k0 / 2
  const size_t before = static_cast<size_t>((k_ + 1) / 2) * n0;
  const int padded = (std::min(kNC, n_ - n0) + kNR - 1) / kNR * kNR;
  return pairs_.data() + before + static_cast<size_t>(k0 / 2) * padded;
}

const float* PackedMatrix::panel(int n0, int k0) const {
  // blocks before n0 are full kNC wide; within the block, k-blocks before k0 are kKC tall
  const size_t before = static_cast<size_t>(k_) * n0;
  const int padded = (std::min(kNC, n_ - n0) + kNR - 1) / kNR * kNR;
  return data_.data() + before + static_cast<size_t>(k0) * padded;
}

// Splits C into column or row slices of whole micro-tiles, one
// per thread. Every element is computed by one thread in the serial order, so results
// are identical whatever the thread count.
void gemm_cpu(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta,
              float* c, int ldc) {
  const int threads = num_threads();
  // a BF16 product takes about half the time of an FP32 one: it counts half
  const double work = static_cast<double>(m) * n * k * (bf16_matmul() ? 0.5 : 1.0);
  if (threads <= 1 || k < kParallelMinK || work < kParallelWork) {
    gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Each thread packs all of the operand the split does not cut: a column split repeats A's
  // packing (m x k) in every thread, a row split B's (k x n). Cut the larger one: the weight
  // gradients (m = G*H, n = I) and dx (m = T*B rows, n = I) split by rows, the input
  // projection (n = G*H) by columns.
  const int mr = dispatch().mr;
  const bool by_rows = n < threads * 2 * kNR || (m >= n && m >= threads * 2 * mr);
  if (!by_rows) {
    const int tiles = (n + kNR - 1) / kNR;
    const int per = (tiles + threads - 1) / threads;
    parallel_for(threads, [&](int t) {
      const int n0 = std::min(n, t * per * kNR);
      const int n1 = std::min(n, (t + 1) * per * kNR);
      if (n1 <= n0) return;
      const float* bs = trans_b ? b + static_cast<long>(n0) * ldb : b + n0;
      gemm_serial(trans_a, trans_b, m, n1 - n0, k, alpha, a, lda, bs, ldb, beta, c + n0, ldc);
    });
  } else {
    const int tiles = (m + mr - 1) / mr;
    const int per = (tiles + threads - 1) / threads;
    parallel_for(threads, [&](int t) {
      const int m0 = std::min(m, t * per * mr);
      const int m1 = std::min(m, (t + 1) * per * mr);
      if (m1 <= m0) return;
      const float* as = trans_a ? a + m0 : a + static_cast<long>(m0) * lda;
      gemm_serial(trans_a, trans_b, m1 - m0, n, k, alpha, as, lda, b, ldb, beta, c + static_cast<long>(m0) * ldc, ldc);
    });
  }
}

}  // namespace recurrent
