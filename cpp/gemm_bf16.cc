// BF16 matrix products: the switch and the choice of path, operands packed as pairs of bfloat16
// (rounded to nearest even as they are packed), AVX512_BF16's vdpbf16ps micro-kernel and AMX's
// tile kernel.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gemm_internal.h"

#ifdef RECURRENT_X86_DISPATCH
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace recurrent {

namespace {
std::atomic<bool> g_bf16{false};

struct Choice {
  const char* reason;  // "" where BF16 runs
  bool amx;            // on AMX tiles
};

#ifdef RECURRENT_X86_DISPATCH
// Linux gives a process AMX's tile data (8 KB more state a thread) only when asked, once
bool amx_permitted() {
  constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}
#endif

Choice choose() {
#ifdef RECURRENT_X86_DISPATCH
  __builtin_cpu_init();
  // GCC 12 has no __builtin_cpu_supports("amx-bf16"): CPUID leaf 7, EDX bits 22 (AMX-BF16), 24 (AMX-TILE)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) edx = 0;
  const bool avx512 = std::string(gemm_detail::dispatch().isa) == "avx512";
  const char* forced = std::getenv("RECURRENT_ISA");
  const bool amx_allowed = !(forced && std::string(forced) == "avx512");  // avx512: the AVX-512 kernels without AMX
  const bool amx_cpu = avx512 && amx_allowed && ((edx >> 22) & 1u) && ((edx >> 24) & 1u);
  const bool amx = amx_cpu && amx_permitted();
  Choice choice{"", false};
  choice.reason = bf16_choice({__builtin_cpu_is("intel") != 0, avx512, __builtin_cpu_supports("avx512bf16") != 0, amx}, &choice.amx);
  if (amx_cpu && !amx && choice.reason[0])
    choice.reason = "this CPU has AMX, but Linux did not grant its tile state (arch_prctl ARCH_REQ_XCOMP_PERM; Linux 5.16 or later): FP32 stays";
  return choice;
#else
  return {"BF16 matrix products need an x86-64 CPU with AVX512_BF16 or AMX-BF16", false};
#endif
}

const Choice& choice() {
  static const Choice chosen = choose();
  return chosen;
}
}  // namespace

const char* bf16_choice(const CpuFacts& cpu, bool* amx) {
  if (amx) *amx = false;
  if (!cpu.avx512_kernels) return "BF16 matrix products need the AVX-512 kernels (this CPU has none, or RECURRENT_ISA forces others)";
  if (cpu.amx_bf16) {
    if (amx) *amx = true;
    return "";
  }
  if (!cpu.avx512_bf16) return "this CPU has neither AMX-BF16 nor AVX512_BF16";
  if (cpu.intel) return "on Intel without AMX, AVX512_BF16 products are slower than FP32 (one port against two): FP32 stays";
  return "";
}

const char* bf16_unavailable_reason() { return choice().reason; }

bool bf16_supported() { return bf16_unavailable_reason()[0] == '\0'; }

bool set_bf16_matmul(bool on) {
  g_bf16.store(on && bf16_supported());
  return g_bf16.load();
}

bool bf16_matmul() { return g_bf16.load(std::memory_order_relaxed); }

bool bf16_amx() { return choice().amx; }

const char* matmul_path() { return !bf16_matmul() ? "fp32" : bf16_amx() ? "bf16-amx" : "bf16-avx512"; }

int bf16_pair_rows(int kc) {
  const int kp = (kc + 1) / 2;
  return bf16_amx() ? (kp + 15) / 16 * 16 : kp;
}

namespace gemm_detail {

namespace {

#ifdef RECURRENT_X86_DISPATCH
// BF16 (AVX512_BF16): A and B hold pairs of bfloat16 per 32-bit word (rows k and k + 1 of a
// column of B; columns k and k + 1 of a row of A). vdpbf16ps multiplies the pairs and adds
// both products to an FP32 lane, so one instruction does the work of two FMAs on half the
// bytes. 8 rows x 16 * P columns of accumulators, as the FP32 kernels.

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

// Lanes [i0, i0 + count) and depths [k0, k0 + kc) of x, in panels of `width` (at most 16) lanes
// and kp_out pair rows (those past the depth are zero).
RECURRENT_BF16_TARGET void pack_pairs(const float* x, int ld, bool along, int k0, int kc, int i0, int count, int width,
                                      int kp_out, uint32_t* out) {
  const int kp = (kc + 1) / 2;
  for (int p = 0; p < count; p += width) {  // the pair rows past the depth
    uint32_t* dst = out + static_cast<long>(p) * kp_out;
    std::fill(dst + static_cast<long>(kp) * width, dst + static_cast<long>(kp_out) * width, 0u);
  }
  if (!along) {
    // 8 pair rows (16 rows of x) at a time across all the panels, so that each row of x is read in
    // order, not a panel at a time walked down x's rows, a line from each, ld apart (with the same
    // order in pack_a_tiles: LSTM H = 512 BF16 training on one Xeon thread, 49 -> 40 ms)
    for (int q0 = 0; q0 < kp; q0 += 8)
      for (int p = 0; p < count; p += width) {
        const __mmask16 mask = first_lanes(std::min(width, count - p));
        uint32_t* dst = out + static_cast<long>(p) * kp_out;
        for (int q = q0; q < std::min(q0 + 8, kp); ++q) {
          const float* row = x + static_cast<long>(k0 + 2 * q) * ld + i0 + p;
          const __m512 lo = _mm512_maskz_loadu_ps(mask, row);
          const __m512 hi = 2 * q + 1 < kc ? _mm512_maskz_loadu_ps(mask, row + ld) : _mm512_setzero_ps();
          _mm512_mask_storeu_epi32(dst + q * width, first_lanes(width), bf16_pairs_across(lo, hi));
        }
      }
    return;
  }
  for (int p = 0; p < count; p += width) {
    const int lanes = std::min(width, count - p);
    uint32_t* dst = out + static_cast<long>(p) * kp_out;
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
  }
}

// AMX (Sapphire Rapids and later): eight tile registers of 16 rows x 64 bytes. TDPBF16PS
// multiplies a tile of A (16 rows x 16 BF16 pairs) by one of B (16 pair rows x 16 columns, the
// pairs as in the B panels above) into an FP32 tile of C: 8,192 multiply-adds in one
// instruction. Its tiles here: C in 0-3 (2 x 2 tiles, 32 x 32), A in 4-5, B in 6-7.
constexpr int kTile = 16;            // rows of a tile; a row holds 16 words (pairs or FP32)
constexpr int kTileWords = kTile * kTile;

// GCC 12's tile loads do not tell the compiler that they read memory, and its _tile_loadconfig
// says it reads 8 bytes of the 64 (so the stores that fill the rest were dropped as dead): these
// two say that they read memory.
#define RECURRENT_TILE_LOAD(T, base, stride) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #T ::"r"(static_cast<const void*>(base)), "r"(static_cast<long>(stride)) : "memory")

// The tile configuration (palette 1): byte 0 the palette, bytes 16 + 2t the bytes in a row of
// tile t (16 bits), byte 48 + t its rows.
RECURRENT_AMX_TARGET void amx_configure() {
  alignas(64) unsigned char config[64] = {};
  config[0] = 1;
  for (int t = 0; t < 8; ++t) {
    config[16 + 2 * t] = 64;
    config[48 + t] = kTile;
  }
  __asm__ volatile("ldtilecfg %0" ::"m"(config) : "memory");
}

RECURRENT_AMX_TARGET void amx_release() { _tile_release(); }

// op(A)[m0:m0+mc, k0:k0+kc] in AMX's layout: panels of 16 rows (the rows past mc zero), each
// cut into tiles of 32 depths: tile t of panel p holds 16 rows of 16 pairs, 1 KB.
RECURRENT_BF16_TARGET void pack_a_tiles(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, uint32_t* out) {
  const int tiles = bf16_pair_rows(kc) / kTile, panels = (mc + kTile - 1) / kTile;
  const auto tile_at = [&](int p, int t) { return out + (static_cast<long>(p) * tiles + t) * kTileWords; };
  if (!trans) {
    // a row's 32 depths lie together: one row of a tile
    for (int p = 0; p < panels; ++p)
      for (int t = 0; t < tiles; ++t) {
        const int rows = std::min(kTile, mc - kTile * p), left = kc - 2 * kTile * t;
        for (int i = 0; i < kTile; ++i) {
          __m512i pairs = _mm512_setzero_si512();
          if (i < rows) {
            const float* x = a + static_cast<long>(m0 + kTile * p + i) * lda + k0 + 2 * kTile * t;
            pairs = bf16_pairs_along(_mm512_maskz_loadu_ps(first_lanes(left), x), _mm512_maskz_loadu_ps(first_lanes(left - 16), x + 16));
          }
          _mm512_store_si512(tile_at(p, t) + i * kTile, pairs);
        }
      }
    return;
  }
  // A^T: a depth's 16 rows lie together; pairs of depths across, then [pair][row] transposed. One
  // depth range across all the panels at a time, so that each of its 32 rows of a is read in
  // order (as pack_pairs)
  for (int t = 0; t < tiles; ++t)
    for (int p = 0; p < panels; ++p) {
      alignas(64) uint32_t block[kTile][kTile];
      const __mmask16 mask = first_lanes(std::min(kTile, mc - kTile * p));
      for (int q = 0; q < kTile; ++q) {
        const int d = 2 * kTile * t + 2 * q;
        const float* x = a + static_cast<long>(k0 + std::min(d, kc - 1)) * lda + m0 + kTile * p;
        const __m512 lo = d < kc ? _mm512_maskz_loadu_ps(mask, x) : _mm512_setzero_ps();
        const __m512 hi = d + 1 < kc ? _mm512_maskz_loadu_ps(mask, x + lda) : _mm512_setzero_ps();
        _mm512_store_si512(block[q], bf16_pairs_across(lo, hi));
      }
      for (int qb = 0; qb < 2; ++qb)
        for (int rb = 0; rb < 2; ++rb)
          transpose8(reinterpret_cast<const float*>(&block[8 * qb][8 * rb]), kTile,
                     reinterpret_cast<float*>(tile_at(p, t) + 8 * rb * kTile + 8 * qb), kTile);
    }
}

// GCC's tile intrinsics paste their tile numbers into the assembly: they take literals only,
// so the per-tile steps are macros around these helpers.

// C's rows x cols (at most a tile) into a zero-padded tile in memory.
RECURRENT_BF16_TARGET inline void stage_tile(const float* c, int ldc, int rows, int cols, float* part) {
  std::memset(part, 0, kTileWords * sizeof(float));
  for (int r = 0; r < rows; ++r) std::memcpy(part + r * kTile, c + static_cast<long>(r) * ldc, cols * sizeof(float));
}

// A tile stored in memory written to C's rows x cols: as it is where `whole`, else C = alpha *
// tile (+ C where !overwrite).
RECURRENT_BF16_TARGET inline void unstage_tile(const float* part, float* c, int ldc, int rows, int cols, bool whole, float alpha,
                                               bool overwrite) {
  const __mmask16 mask = first_lanes(cols);
  const __m512 scale = _mm512_set1_ps(alpha);
  for (int r = 0; r < rows; ++r) {
    float* crow = c + static_cast<long>(r) * ldc;
    __m512 v = _mm512_load_ps(part + r * kTile);
    if (!whole) {
      v = _mm512_mul_ps(scale, v);
      if (!overwrite) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, crow), v);
    }
    _mm512_mask_storeu_ps(crow, mask, v);
  }
}

// C tile T's start: C itself (rows x cols of it) where `load`, else zero.
#define RECURRENT_TILE_BEGIN(T, cp, rows, cols)                          \
  do {                                                                   \
    if (!load) {                                                         \
      _tile_zero(T);                                                     \
    } else if ((rows) == kTile && (cols) == kTile) {                     \
      RECURRENT_TILE_LOAD(T, cp, ldc * static_cast<long>(sizeof(float))); \
    } else {                                                             \
      alignas(64) float part[kTileWords];                                \
      stage_tile(cp, ldc, rows, cols, part);                             \
      RECURRENT_TILE_LOAD(T, part, 64);                                  \
    }                                                                    \
  } while (0)

// C tile T's end: its rows x cols written to C (see unstage_tile).
#define RECURRENT_TILE_END(T, cp, rows, cols)                            \
  do {                                                                   \
    if (whole && (rows) == kTile && (cols) == kTile) {                   \
      _tile_stored(T, cp, ldc * static_cast<long>(sizeof(float)));       \
    } else {                                                             \
      alignas(64) float part[kTileWords];                                \
      _tile_stored(T, part, 64);                                         \
      unstage_tile(part, cp, ldc, rows, cols, whole, alpha, overwrite);  \
    }                                                                    \
  } while (0)

// C[0:rows, 0:cols) (rows <= 16 MT, cols <= 16 NT) from MT row panels of A (tiles in a row, the
// second panel `tiles` tiles after the first) and NT panels of B. With alpha = 1 the tiles
// start from C (or zero) and are stored as they are; otherwise they start from zero and are
// scaled. Either way a row's values do not depend on the tile it falls in.
template <int MT, int NT>
RECURRENT_AMX_TARGET void amx_kernel(int tiles, const uint32_t* a0, const uint32_t* b0, const uint32_t* b1, float alpha, float* c,
                                     int ldc, int rows, int cols, bool overwrite) {
  const bool whole = alpha == 1.0f, load = whole && !overwrite;
  const int rows0 = std::min(rows, kTile), cols0 = std::min(cols, kTile), rows1 = rows - kTile, cols1 = cols - kTile;
  float* c1 = c + static_cast<long>(kTile) * ldc;
  const uint32_t* a1 = a0 + static_cast<long>(tiles) * kTileWords;
  RECURRENT_TILE_BEGIN(0, c, rows0, cols0);
  if (NT == 2) RECURRENT_TILE_BEGIN(1, c + kTile, rows0, cols1);
  if (MT == 2) RECURRENT_TILE_BEGIN(2, c1, rows1, cols0);
  if (MT == 2 && NT == 2) RECURRENT_TILE_BEGIN(3, c1 + kTile, rows1, cols1);
  for (int t = 0; t < tiles; ++t) {
    const long at = static_cast<long>(t) * kTileWords;
    RECURRENT_TILE_LOAD(4, a0 + at, 64);
    RECURRENT_TILE_LOAD(6, b0 + at, 64);
    if (MT == 2) RECURRENT_TILE_LOAD(5, a1 + at, 64);
    if (NT == 2) RECURRENT_TILE_LOAD(7, b1 + at, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (NT == 2) _tile_dpbf16ps(1, 4, 7);
    if (MT == 2) _tile_dpbf16ps(2, 5, 6);
    if (MT == 2 && NT == 2) _tile_dpbf16ps(3, 5, 7);
  }
  RECURRENT_TILE_END(0, c, rows0, cols0);
  if (NT == 2) RECURRENT_TILE_END(1, c + kTile, rows0, cols1);
  if (MT == 2) RECURRENT_TILE_END(2, c1, rows1, cols0);
  if (MT == 2 && NT == 2) RECURRENT_TILE_END(3, c1 + kTile, rows1, cols1);
}

// The block's rows 32 at a time against one or two B panels. Each call's C (32 rows, one or two
// 64-byte lines a row, ldc apart) is mostly not in cache: a per-step product's C is B x 4H floats
// (3.7 MB at B = 512, H = 448), past L2. So the next 32 rows' lines are prefetched while this call's
// tiles run, and their loads and stores find them in L1 (Intel Xeon model 207, medians of per-round
// ratios, 21 alternating rounds in one process: BF16 LSTM layers (T x B x H) 8 x 512 x 448 training
// 1.11x on 2 threads and 1.21x on one, 32 x 32 x 512 1.06-1.13x, GRU 32 x 128 x 512 1.06-1.10x;
// the synthetic G2P training step (batch 512, hidden 448) 1.04-1.05x). Prefetching the next
// B panels into L2 the same way gained nothing (0.97-1.04x): they are already there.
void amx_block(int kp, const uint32_t* pa, int mc, const uint32_t* b0, const uint32_t* b1, float alpha, float* c, int ldc,
               int cols, bool overwrite) {
  const int tiles = kp / kTile;
  for (int ir = 0; ir < mc; ir += 2 * kTile) {
    const uint32_t* ap = pa + static_cast<long>(ir / kTile) * tiles * kTileWords;
    float* cp = c + static_cast<long>(ir) * ldc;
    const int rows = std::min(2 * kTile, mc - ir);
    for (int r = 2 * kTile; r < std::min(4 * kTile, mc - ir); ++r) {
      const char* next = reinterpret_cast<const char*>(cp + static_cast<long>(r) * ldc);
      _mm_prefetch(next, _MM_HINT_T0);
      if (cols > kTile) _mm_prefetch(next + 64, _MM_HINT_T0);
    }
    if (rows > kTile) {
      if (b1) amx_kernel<2, 2>(tiles, ap, b0, b1, alpha, cp, ldc, rows, cols, overwrite);
      else amx_kernel<2, 1>(tiles, ap, b0, b0, alpha, cp, ldc, rows, cols, overwrite);
    } else {
      if (b1) amx_kernel<1, 2>(tiles, ap, b0, b1, alpha, cp, ldc, rows, cols, overwrite);
      else amx_kernel<1, 1>(tiles, ap, b0, b0, alpha, cp, ldc, rows, cols, overwrite);
    }
  }
}
#pragma GCC diagnostic pop
#else
// Elsewhere BF16 never runs (bf16_supported() is false); this plain version keeps the build whole.
void pack_pairs(const float* x, int ld, bool along, int k0, int kc, int i0, int count, int width, int kp_out, uint32_t* out) {
  const auto bits = [](float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  };
  const int kp = (kc + 1) / 2;
  for (int i = 0; i < (count + width - 1) / width * width; ++i)
    for (int q = 0; q < kp_out; ++q) {
      uint32_t word = 0;
      for (int h = 0; h < 2 && i < count && q < kp && 2 * q + h < kc; ++h) {
        const long lane = i0 + i, depth = k0 + 2 * q + h;
        word |= bits(along ? x[lane * ld + depth] : x[depth * ld + lane]) << (16 * h);
      }
      out[static_cast<long>(i / width * width) * kp_out + q * width + i % width] = word;
    }
}
#endif

}  // namespace

// op(B)[k0:k0+kc, n0:n0+nc] in BF16 pairs: panels of NR columns (pack_b's layout, in pair rows),
// bf16_pair_rows(kc) pair rows each.
void pack_b_bf16(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, uint32_t* out) {
  pack_pairs(b, ldb, trans, k0, kc, n0, nc, kNR, bf16_pair_rows(kc), out);
}

// op(A)[m0:m0+mc, k0:k0+kc] in BF16 pairs: panels of kBf16MR rows, or AMX's tiles.
void pack_a_bf16(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, uint32_t* out) {
#ifdef RECURRENT_X86_DISPATCH
  if (bf16_amx()) {
    pack_a_tiles(trans, a, lda, m0, mc, k0, kc, out);
    return;
  }
#endif
  pack_pairs(a, lda, !trans, k0, kc, m0, mc, kBf16MR, (kc + 1) / 2, out);
}

// The BF16 kernels over one packed A block and the B panels of columns [col, col + width).
void bf16_block(int kp, const uint32_t* pa, int mc, const uint32_t* b0, const uint32_t* b1, float alpha, float* c,
                int ldc, int cols, bool overwrite) {
#ifdef RECURRENT_X86_DISPATCH
  if (bf16_amx()) {
    amx_block(kp, pa, mc, b0, b1, alpha, c, ldc, cols, overwrite);
    return;
  }
  for (int ir = 0; ir < mc; ir += kBf16MR) {
    const uint32_t* ap = pa + static_cast<long>(ir) * kp;
    float* cp = c + static_cast<long>(ir) * ldc;
    if (b1) micro_kernel_bf16<2>(kp, ap, b0, b1, alpha, cp, ldc, std::min(kBf16MR, mc - ir), cols, overwrite);
    else micro_kernel_bf16<1>(kp, ap, b0, b0, alpha, cp, ldc, std::min(kBf16MR, mc - ir), cols, overwrite);
  }
#endif
}

Bf16Tiles::Bf16Tiles() : amx_(bf16_amx()) {
#ifdef RECURRENT_X86_DISPATCH
  if (amx_) amx_configure();
#endif
}

Bf16Tiles::~Bf16Tiles() {
#ifdef RECURRENT_X86_DISPATCH
  if (amx_) amx_release();
#endif
}

}  // namespace gemm_detail
}  // namespace recurrent
