// The FP32 micro-kernels, compiled for AVX-512, AVX2+FMA and the portable baseline, and the
// run-time choice between them (RECURRENT_ISA can force a lower one, so every variant can be
// tested on one machine).
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
#ifdef RECURRENT_X86_DISPATCH
RECURRENT_MICRO_KERNEL(micro_kernel_avx2, __attribute__((target("avx2,fma"))), Vec8, 8, 6)
// AVX-512: 8 x 32 (two panels; 16 accumulators hide the FMA latency on two 512-bit pipes),
// and 8 x 16 for a last single panel; A blocks of 256 rows (L2).
RECURRENT_MICRO_KERNEL(micro_kernel_avx512, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8)
RECURRENT_MICRO_KERNEL_WIDE(micro_kernel_avx512_wide, __attribute__((target("avx512f,avx2,fma"))), Vec16, 16, 8)

#endif

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

}  // namespace

const Dispatch& dispatch() {
  static const Dispatch chosen = choose_kernel();
  return chosen;
}

}  // namespace gemm_detail

const char* gemm_isa() { return gemm_detail::dispatch().isa; }

}  // namespace recurrent
