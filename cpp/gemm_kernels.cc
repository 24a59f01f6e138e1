// The FP32 micro-kernels, compiled for AVX-512, AVX2+FMA and the portable baseline, and the
// run-time choice between them (RECURRENT_ISA can force a lower one, so every variant can be
// tested on one machine).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gemm_internal.h"

namespace recurrent {
namespace gemm_detail {

namespace {

// acc(MR x NR) = sum_k a[k][0..MR) (x) b[k][0..NR); C tile += alpha * acc (only the
// rows x cols part that exists). A row of NR floats is one zmm register under AVX-512,
// two ymm under AVX2, four xmm on the baseline.

// The kernels' epilogue: rows [0, ROWS) of the accumulators acc[r][0, PARTS) (vectors V) to C's rows
// (c, ldc; WIDTH = PARTS vectors of columns, of which `cols` exist): alpha * acc where `overwrite`,
// else C + alpha * acc. A partial row goes through a full one, so its values are computed the same
// way. (A macro, as the kernels are: a template argument would lose V's alignment attribute.)
#define RECURRENT_STORE_TILE(V, ROWS, PARTS, WIDTH)                                 \
  for (int r = 0; r < (ROWS); ++r) {                                                 \
    float tile[WIDTH];                                                               \
    float* crow = c + static_cast<long>(r) * ldc;                                    \
    float* out = cols == (WIDTH) ? crow : tile;                                      \
    if (out == tile && !overwrite) std::memcpy(tile, crow, cols * sizeof(float));    \
    V* current = reinterpret_cast<V*>(out);                                          \
    if (overwrite)                                                                   \
      for (int p = 0; p < (PARTS); ++p) current[p] = alpha * acc[r][p];              \
    else                                                                             \
      for (int p = 0; p < (PARTS); ++p) current[p] += alpha * acc[r][p];             \
    if (out == tile) std::memcpy(crow, tile, cols * sizeof(float));                  \
  }

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
    RECURRENT_STORE_TILE(V, rows, kParts, kNR);                                                       \
  }

// MR x NP * NR: NP (2 or 3) B panels at once, so each broadcast of A feeds NP FMAs. On AVX-512, 8 x 48
// needs 11 loads per 24 FMAs where 8 x 32 needs 10 per 16 and 16 x 16 needs 17 per 16: a GEMM of
// 1024 x 2048 x 512 on one thread ran 8 x 48 at 108-113 GFLOP/s against 81-93 for 8 x 32 and 88-106
// for 12 x 32 (Intel Xeon model 106, Ice Lake, one process, alternating). B's panels (96 KB at a
// depth of 512) do not fit a 48 KB L1 and stream from L2 for every 8 rows of A: they are prefetched
// kPrefetchDepths (16) depths ahead, as in the strided kernel. Not measured on AMD.
#define RECURRENT_MICRO_KERNEL_WIDE(NAME, TARGET, V, W, MR, NP)                                             \
  TARGET void NAME(int kc, const float* __restrict a, const float* __restrict b, float alpha, float* c, int ldc, \
                   int rows, int cols, bool overwrite) {                                                       \
    constexpr int kParts = kNR / (W);                                                                          \
    constexpr int kMR = (MR);                                                                                  \
    const long panel = static_cast<long>(kNR) * kc;                                                            \
    V acc[kMR][(NP) * kParts];                                                                                 \
    for (int r = 0; r < kMR; ++r)                                                                              \
      for (int p = 0; p < (NP) * kParts; ++p) acc[r][p] = V{};                                                 \
    for (int k = 0; k < kc; ++k) {                                                                             \
      V bk[(NP) * kParts];                                                                                     \
      for (int q = 0; q < (NP); ++q) {                                                                         \
        __builtin_prefetch(b + q * panel + (k + kPrefetchDepths) * kNR);                                       \
        for (int p = 0; p < kParts; ++p) bk[q * kParts + p] = reinterpret_cast<const V*>(b + q * panel + k * kNR)[p]; \
      }                                                                                                        \
      const float* ak = a + k * kMR;                                                                           \
      for (int r = 0; r < kMR; ++r) {                                                                          \
        const float x = ak[r];                                                                                 \
        for (int p = 0; p < (NP) * kParts; ++p) acc[r][p] += x * bk[p];                                        \
      }                                                                                                        \
    }                                                                                                          \
    RECURRENT_STORE_TILE(V, rows, (NP) * kParts, (NP) * kNR);                                                  \
  }

// The skinny kernel's body (see SkinnyKernel): R rows by NP panels of NR columns, accumulators
// R x NP x NR / W vectors, summed over k in the micro-kernels' order.
// (A template argument loses the vector typedefs' alignment attribute: loads and stores go
// through memcpy, which compiles to unaligned moves.)
template <typename V, int W, int R, int NP>
__attribute__((always_inline)) inline void skinny_body(int kc, const float* __restrict a, int lda, const float* __restrict b,
                                                       float alpha, float* c, int ldc, int cols, bool overwrite) {
  constexpr int kParts = kNR / W;
  const long panel = static_cast<long>(kNR) * kc;
  V acc[R][NP][kParts];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NP; ++q)
      for (int p = 0; p < kParts; ++p) acc[r][q][p] = V{};
  for (int k = 0; k < kc; ++k) {
    for (int r = 0; r < R; ++r) {
      const float x = a[static_cast<long>(r) * lda + k];
      for (int q = 0; q < NP; ++q) {
        const float* bk = b + q * panel + k * kNR;
        for (int p = 0; p < kParts; ++p) {
          V v;
          __builtin_memcpy(&v, bk + p * W, sizeof(V));
          acc[r][q][p] += x * v;
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* crow = c + static_cast<long>(r) * ldc;
    for (int q = 0; q < NP; ++q) {
      const int width = cols - q * kNR < kNR ? cols - q * kNR : kNR;
      if (width <= 0) break;
      float tile[kNR];
      float* out = width == kNR ? crow + q * kNR : tile;
      if (out == tile && !overwrite) std::memcpy(tile, crow + q * kNR, width * sizeof(float));
      for (int p = 0; p < kParts; ++p) {
        V current;
        if (overwrite) {
          current = alpha * acc[r][q][p];
        } else {
          __builtin_memcpy(&current, out + p * W, sizeof(V));
          current += alpha * acc[r][q][p];
        }
        __builtin_memcpy(out + p * W, &current, sizeof(V));
      }
      if (out == tile) std::memcpy(crow + q * kNR, tile, width * sizeof(float));
    }
  }
}

// The same over a group of NV column vectors (W columns each) that need not fill whole panels
// (skinny_body is kept for whole panels: written over vectors, its 2- and 3-row groups compiled to
// slower loops on AVX2, 75 -> 43 and 92 -> 82 GFLOP/s):
// vector j is part j % (kNR / W) of panel j / (kNR / W), counted from b (and from C's column 0).
// For ISAs whose panel is several vectors (AVX2: two), so that R rows can use every accumulator
// register: 4 rows x 3 vectors on AVX2 where whole panels would leave 4 x 2 (an FMA latency's worth
// of chains too few). Vectors from column `cols` on are computed (the panels are zero-padded) but
// not stored.
template <typename V, int W, int R, int NV>
__attribute__((always_inline)) inline void skinny_vectors_body(int kc, const float* __restrict a, int lda, const float* __restrict b,
                                                               int j0, float alpha, float* c, int ldc, int cols, bool overwrite) {
  constexpr int kParts = kNR / W;
  const long panel = static_cast<long>(kNR) * kc;
  const float* src[NV];
  for (int v = 0; v < NV; ++v) src[v] = b + (j0 + v) / kParts * panel + (j0 + v) % kParts * W;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (int k = 0; k < kc; ++k) {
    for (int r = 0; r < R; ++r) {
      const float x = a[static_cast<long>(r) * lda + k];
      for (int v = 0; v < NV; ++v) {
        V bv;
        __builtin_memcpy(&bv, src[v] + k * kNR, sizeof(V));
        acc[r][v] += x * bv;
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* crow = c + static_cast<long>(r) * ldc;
    for (int v = 0; v < NV; ++v) {
      const int col = (j0 + v) * W, width = cols - col < W ? cols - col : W;
      if (width <= 0) break;
      float tile[W];
      float* out = width == W ? crow + col : tile;
      if (out == tile && !overwrite) std::memcpy(tile, crow + col, width * sizeof(float));
      V current;
      if (overwrite) {
        current = alpha * acc[r][v];
      } else {
        __builtin_memcpy(&current, out, sizeof(V));
        current += alpha * acc[r][v];
      }
      __builtin_memcpy(out, &current, sizeof(V));
      if (out == tile) std::memcpy(crow + col, tile, width * sizeof(float));
    }
  }
}

// At most this many panels at once: a panel's rows lie kNR * kc floats apart (32 KB at kc = 512),
// so the lines of one k in all of them fall in one set of L1, which has 12 ways on Zen 5 and recent
// Intel cores. AVX-512's registers hold 24 panels for one row: 24 lines of a set evicted each other,
// and one row times 2048 x 512 took 117 us where two rows took 52 (8 panels: 43 us; Zen 5).
constexpr int kSkinnyMaxPanels = 8;

// A skinny kernel for one ISA: as many panels at once as its registers hold for `rows` rows
// (ACC accumulator registers in all), the rest one panel at a time; with VECTORS, groups of column
// vectors instead (skinny_vectors_body), where whole panels would leave registers unused.
#define RECURRENT_SKINNY_KERNEL(NAME, TARGET, V, W, ACC, VECTORS)                                               \
  template <int R>                                                                                             \
  TARGET void NAME##_rows(int kc, const float* a, int lda, const float* b, int panels, float alpha, float* c,   \
                          int ldc, int cols, bool overwrite) {                                                 \
    constexpr int kParts = kNR / (W);                                                                          \
    constexpr int kGroupV = (ACC) / R;                                                                         \
    if constexpr ((VECTORS) && kGroupV % kParts != 0) {                                                        \
      const int vectors = panels * kParts;                                                                     \
      int j = 0;                                                                                               \
      for (; j + kGroupV <= vectors; j += kGroupV)                                                             \
        skinny_vectors_body<V, W, R, kGroupV>(kc, a, lda, b, j, alpha, c, ldc, cols, overwrite);                \
      for (; j < vectors; ++j) skinny_vectors_body<V, W, R, 1>(kc, a, lda, b, j, alpha, c, ldc, cols, overwrite); \
      return;                                                                                                  \
    }                                                                                                          \
    constexpr int kFit = (ACC) / (R * (kNR / (W))) > 0 ? (ACC) / (R * (kNR / (W))) : 1;                         \
    constexpr int kGroup = kFit < kSkinnyMaxPanels ? kFit : kSkinnyMaxPanels;                                  \
    const long panel = static_cast<long>(kNR) * kc;                                                            \
    int q = 0;                                                                                                 \
    for (; q + kGroup <= panels; q += kGroup)                                                                  \
      skinny_body<V, W, R, kGroup>(kc, a, lda, b + q * panel, alpha, c + q * kNR, ldc, cols - q * kNR, overwrite); \
    for (; q < panels; ++q)                                                                                    \
      skinny_body<V, W, R, 1>(kc, a, lda, b + q * panel, alpha, c + q * kNR, ldc, cols - q * kNR, overwrite);     \
  }                                                                                                            \
  void NAME(int rows, int kc, const float* a, int lda, const float* b, int panels, float alpha, float* c, int ldc, \
            int cols, bool overwrite) {                                                                        \
    static_assert(kSkinnyRows == 4, "one case per row count");                                                 \
    switch (rows) {                                                                                            \
      case 1: return NAME##_rows<1>(kc, a, lda, b, panels, alpha, c, ldc, cols, overwrite);                    \
      case 2: return NAME##_rows<2>(kc, a, lda, b, panels, alpha, c, ldc, cols, overwrite);                    \
      case 3: return NAME##_rows<3>(kc, a, lda, b, panels, alpha, c, ldc, cols, overwrite);                    \
      default: return NAME##_rows<4>(kc, a, lda, b, panels, alpha, c, ldc, cols, overwrite);                   \
    }                                                                                                          \
  }

// Unaligned, aliasing vector types: loads and stores straight from float arrays.
typedef float Vec4 __attribute__((vector_size(16), aligned(4), may_alias));
typedef float Vec8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef float Vec16 __attribute__((vector_size(64), aligned(4), may_alias));

RECURRENT_MICRO_KERNEL(micro_kernel_baseline, , Vec4, 4, 4)
RECURRENT_SKINNY_KERNEL(skinny_kernel_baseline, , Vec4, 4, 12, false)

#ifdef RECURRENT_NEON_DISPATCH
// AArch64 (ASIMD, 128-bit, 32 registers): 6 x 16 tiles, 24 accumulators, the 4 B vectors of a k
// and A's 6 values in two registers; each product is vfmaq_lane(q)_f32, one fused multiply-add by
// a lane of A. The skinny kernels are the generic ones on 4-float vectors, whose `acc += x * v`
// GCC contracts to the same fused multiply-add, so a row's values are the micro-kernel's bit for bit.
void micro_kernel_neon(int kc, const float* __restrict a, const float* __restrict b, float alpha, float* c, int ldc, int rows,
                       int cols, bool overwrite) {
  constexpr int kMR = 6;
  float32x4_t acc[kMR][4];
  for (int r = 0; r < kMR; ++r)
    for (int p = 0; p < 4; ++p) acc[r][p] = vdupq_n_f32(0.0f);
  for (int k = 0; k < kc; ++k) {
    const float* bk = b + k * kNR;
    const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8), b3 = vld1q_f32(bk + 12);
    const float32x4_t a0 = vld1q_f32(a + k * kMR);      // rows 0-3
    const float32x2_t a1 = vld1_f32(a + k * kMR + 4);   // rows 4-5
#define RECURRENT_NEON_ROW(R, LANE_FMA, AV, LANE)          \
    acc[R][0] = LANE_FMA(acc[R][0], b0, AV, LANE);          \
    acc[R][1] = LANE_FMA(acc[R][1], b1, AV, LANE);          \
    acc[R][2] = LANE_FMA(acc[R][2], b2, AV, LANE);          \
    acc[R][3] = LANE_FMA(acc[R][3], b3, AV, LANE);
    RECURRENT_NEON_ROW(0, vfmaq_laneq_f32, a0, 0)
    RECURRENT_NEON_ROW(1, vfmaq_laneq_f32, a0, 1)
    RECURRENT_NEON_ROW(2, vfmaq_laneq_f32, a0, 2)
    RECURRENT_NEON_ROW(3, vfmaq_laneq_f32, a0, 3)
    RECURRENT_NEON_ROW(4, vfmaq_lane_f32, a1, 0)
    RECURRENT_NEON_ROW(5, vfmaq_lane_f32, a1, 1)
#undef RECURRENT_NEON_ROW
  }
  const float32x4_t scale = vdupq_n_f32(alpha);
  for (int r = 0; r < rows; ++r) {
    float tile[kNR];
    float* crow = c + static_cast<long>(r) * ldc;
    float* out = cols == kNR ? crow : tile;
    if (out == tile && !overwrite) std::memcpy(tile, crow, cols * sizeof(float));
    // C += alpha * acc as one fused multiply-add, as GCC contracts the generic kernels' update
    for (int p = 0; p < 4; ++p)
      vst1q_f32(out + 4 * p, overwrite ? vmulq_f32(scale, acc[r][p]) : vfmaq_f32(vld1q_f32(out + 4 * p), scale, acc[r][p]));
    if (out == tile) std::memcpy(crow, tile, cols * sizeof(float));
  }
}
RECURRENT_SKINNY_KERNEL(skinny_kernel_neon, , Vec4, 4, 24, false)
#endif
#ifdef RECURRENT_X86_DISPATCH
RECURRENT_MICRO_KERNEL(micro_kernel_avx2, __attribute__((target("avx2,fma"))), Vec8, 8, 6)
// 5 x 16: 10 accumulators, still an FMA latency's worth of chains on two FMA pipes, for row counts
// that 6-row panels do not fill (16 = 6 + 5 + 5, 32 = 6 + 6 + 4 x 5), where the 4 rows left over
// ran on the skinny kernels at 81 against 97 GFLOP/s (Zen 2)
RECURRENT_MICRO_KERNEL(micro_kernel_avx2_5, __attribute__((target("avx2,fma"))), Vec8, 8, 5)
RECURRENT_SKINNY_KERNEL(skinny_kernel_avx2, __attribute__((target("avx2,fma"))), Vec8, 8, 12, true)
// AVX-512: 8 x 48 and 8 x 32 (three and two panels; 24 and 16 accumulators hide the FMA latency on
// two 512-bit pipes), and 8 x 16 for a last single panel; A blocks of 256 rows (L2).
RECURRENT_MICRO_KERNEL(micro_kernel_avx512, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8)
RECURRENT_MICRO_KERNEL_WIDE(micro_kernel_avx512_x2, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8, 2)
RECURRENT_MICRO_KERNEL_WIDE(micro_kernel_avx512_x3, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8, 3)
void micro_kernel_avx512_wide(int kc, const float* a, const float* b, int panels, float alpha, float* c, int ldc, int rows,
                              int cols, bool overwrite) {
  if (panels == 3) micro_kernel_avx512_x3(kc, a, b, alpha, c, ldc, rows, cols, overwrite);
  else micro_kernel_avx512_x2(kc, a, b, alpha, c, ldc, rows, cols, overwrite);
}
RECURRENT_SKINNY_KERNEL(skinny_kernel_avx512, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 24, false)

// 8 x NP * 16 (NP panels, 1 to 3) with A read where it lies, no packing: row r's value at depth k is
// a[r * rs + k * ks] (rs = lda, ks = 1 for A; rs = 1, ks = lda for A^T, whose 8 values of a k lie
// side by side). The sums are the packed kernels' (the same multiply-adds in the same order), so a
// row's values do not depend on which kernel computed it. Packing A cost a fifth as much as the
// products it served where it is used once per panel of B: an LSTM H = 128 training step spent 9%
// of its time packing (Zen 5). B's panels are prefetched kPrefetchDepths (16) depths (1 KB)
// ahead: a recurrent step's product streams w_hh through L1 once per 8 or 16 rows, and the
// prefetches took it 8-16% faster (Intel Xeon model 207, paired alternating runs: layer_bench
// LSTM 512 inference on 1 thread, LSTM 1 x 512 and 2 x 256 at B = T = 32 through forward()).
// Not measured on AMD.
#define RECURRENT_STRIDED_BODY(NAME, NP)                                                                              \
  __attribute__((target("avx512f,avx2,fma"))) void NAME(int kc, const float* __restrict a, long rs, long ks,         \
                                                        const float* __restrict b, float alpha, float* c, int ldc,   \
                                                        int cols, bool overwrite) {                                  \
    constexpr int kMR = 8;                                                                                             \
    const long panel = static_cast<long>(kNR) * kc;                                                                    \
    Vec16 acc[kMR][NP];                                                                                                \
    for (int r = 0; r < kMR; ++r)                                                                                      \
      for (int p = 0; p < (NP); ++p) acc[r][p] = Vec16{};                                                              \
    const float* row[kMR];                                                                                             \
    for (int r = 0; r < kMR; ++r) row[r] = a + r * rs;                                                                 \
    for (int k = 0; k < kc; ++k) {                                                                                     \
      const long at = k * ks;                                                                                          \
      Vec16 bk[NP];                                                                                                    \
      for (int p = 0; p < (NP); ++p) {                                                                                 \
        __builtin_prefetch(b + p * panel + (k + kPrefetchDepths) * kNR);                                               \
        bk[p] = *reinterpret_cast<const Vec16*>(b + p * panel + k * kNR);                                              \
      }                                                                                                                \
      for (int r = 0; r < kMR; ++r) {                                                                                  \
        const float x = row[r][at];                                                                                    \
        for (int p = 0; p < (NP); ++p) acc[r][p] += x * bk[p];                                                         \
      }                                                                                                                \
    }                                                                                                                  \
    RECURRENT_STORE_TILE(Vec16, kMR, (NP), (NP) * kNR);                                                               \
  }
RECURRENT_STRIDED_BODY(strided_avx512_1, 1)
RECURRENT_STRIDED_BODY(strided_avx512_2, 2)
RECURRENT_STRIDED_BODY(strided_avx512_3, 3)
void strided_kernel_avx512(int kc, const float* a, long rs, long ks, const float* b, int panels, float alpha, float* c, int ldc,
                           int cols, bool overwrite) {
  if (panels == 3) strided_avx512_3(kc, a, rs, ks, b, alpha, c, ldc, cols, overwrite);
  else if (panels == 2) strided_avx512_2(kc, a, rs, ks, b, alpha, c, ldc, cols, overwrite);
  else strided_avx512_1(kc, a, rs, ks, b, alpha, c, ldc, cols, overwrite);
}

#endif

// The best kernel this CPU runs, or the one RECURRENT_ISA asks for (baseline, avx2,
// avx512, amx; on AArch64 neon or baseline) when the CPU supports it, so every variant can be tested on
// one machine.
Dispatch choose_kernel() {
#ifdef RECURRENT_X86_DISPATCH
  __builtin_cpu_init();
  const bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* forced = std::getenv("RECURRENT_ISA");
  const std::string want = forced ? forced : "";
  if (want == "baseline") return {micro_kernel_baseline, nullptr, "baseline", 4, 64, skinny_kernel_baseline, kPanelPairSplit, nullptr, nullptr};
  if (want == "avx2" && has_avx2) return {micro_kernel_avx2, nullptr, "avx2", 6, 60, skinny_kernel_avx2, {4, 2}, micro_kernel_avx2_5, nullptr};
  // amx: the AVX-512 kernels, and AMX for BF16 products (gemm_bf16.cc; avx512 turns AMX off)
  if ((want.empty() || want == "avx512" || want == "amx") && has_avx512)
    return {micro_kernel_avx512, micro_kernel_avx512_wide, "avx512", 8, 256, skinny_kernel_avx512, {4, 4, 256}, nullptr,
            std::getenv("RECURRENT_NO_STRIDED") ? nullptr : strided_kernel_avx512,  // the variable: for comparisons
            __builtin_cpu_is("intel") == 0};
  if (has_avx2) return {micro_kernel_avx2, nullptr, "avx2", 6, 60, skinny_kernel_avx2, {4, 2}, micro_kernel_avx2_5, nullptr};
#endif
#ifdef RECURRENT_NEON_DISPATCH
  // ASIMD is part of every AArch64 CPU: the NEON kernels unless RECURRENT_ISA asks for the baseline
  const char* requested = std::getenv("RECURRENT_ISA");
  if (!requested || std::string(requested) != "baseline") return {micro_kernel_neon, nullptr, "neon", 6, 60, skinny_kernel_neon, kPanelPairSplit, nullptr, nullptr};
#endif
  return {micro_kernel_baseline, nullptr, "baseline", 4, 64, skinny_kernel_baseline, kPanelPairSplit, nullptr, nullptr};
}

}  // namespace

const Dispatch& dispatch() {
  static const Dispatch chosen = choose_kernel();
  return chosen;
}

}  // namespace gemm_detail

const char* gemm_isa() { return gemm_detail::dispatch().isa; }

namespace {
std::atomic<int> g_row_split_min{0}, g_row_split_grain{0};  // set_gemm_row_split's override (0: none)
}  // namespace

GemmRowSplit gemm_row_split(int hidden) {
  const int min_rows = g_row_split_min.load();
  if (min_rows > 0) return {min_rows, g_row_split_grain.load()};
  const GemmRowSplit split = gemm_detail::dispatch().row_split;
  return hidden <= split.max_hidden ? split : kPanelPairSplit;
}

void set_gemm_row_split(int min_rows, int grain) {
  g_row_split_grain = std::max(1, grain);
  g_row_split_min = std::max(0, min_rows);
}

}  // namespace recurrent
