// What the pieces of the CPU GEMM share (not part of gemm.h's interface): the blocking
// constants, the micro-kernel types and the run-time choice of ISA (gemm_kernels.cc), the FP32
// packers (gemm_pack.cc) and the BF16 ones with their kernel (gemm_bf16.cc). gemm.cc drives them.
#pragma once

#include <cstdint>

#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define RECURRENT_X86_DISPATCH 1
#include <immintrin.h>
#define RECURRENT_AVX2_TARGET __attribute__((target("avx2,fma")))
#define RECURRENT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))
#define RECURRENT_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))
#endif
#if defined(__aarch64__) && defined(__GNUC__)
#define RECURRENT_NEON_DISPATCH 1
#include <arm_neon.h>
#endif

namespace recurrent {
namespace gemm_detail {

constexpr int kMaxMR = 16;  // the tallest micro-kernel (AVX-512); each ISA has its own MR
constexpr int kNR = 16;
static_assert(kNR == kGemmTile, "gemm.h promises tiles of kGemmTile columns");
// How many depths ahead the AVX-512 wide and strided kernels prefetch B's panels (16 depths of a
// panel = 1 KB: far enough to cover an L2 hit while the 8 rows of the current depth run).
constexpr int kPrefetchDepths = 16;
// Depth of a block: a layer's per-step product (K = H up to 512) runs as one block, each C tile written
// once (faster on the H = 512 layers than 256 or 128, the same on large GEMMs).
constexpr int kKC = 512;
constexpr int kMC = 64;  // rows of an A block on the narrower ISAs
constexpr int kNC = 2048;
constexpr int kBf16MR = 8;  // rows of the BF16 micro-kernel (AVX512_BF16 only)

// overwrite: C tile = alpha * acc (C is not read), else C tile += alpha * acc.
using MicroKernel = void (*)(int, const float*, const float*, float, float*, int, int, int, bool);
// The micro-kernel over `panels` (2 or kMaxPanels) panels of B at once, from b on, kNR * kc floats apart.
using WideKernel = void (*)(int kc, const float* a, const float* b, int panels, float alpha, float* c, int ldc, int rows, int cols,
                            bool overwrite);
// The most panels of B the wide and strided kernels take at once.
constexpr int kMaxPanels = 3;

// Products of at most kSkinnyRows rows (one step of a small batch) on packed B: A is read where it
// lies (no packing) and several panels run at once, so the FMA chains of a single row overlap.
// C[0:rows, 0:cols) = alpha * A[0:rows, 0:kc) * (the panels from b on, kNR * kc floats apart) (or +=
// with !overwrite); cols <= panels * kNR. Each element is summed in the micro-kernels' order, so the
// values are theirs bit for bit (a row's result does not depend on the batch it came in).
constexpr int kSkinnyRows = 4;
// Up to this many rows the skinny kernels run in passes of kSkinnyRows where the micro-kernel's MR
// rows would leave some of its rows empty.
constexpr int kSkinnyMaxRows = 8;
using SkinnyKernel = void (*)(int rows, int kc, const float* a, int lda, const float* b, int panels, float alpha, float* c,
                              int ldc, int cols, bool overwrite);

// MR rows (a full panel) by 1 to kMaxPanels panels of B (from b on, kNR * kc floats apart), A not
// packed: row r's value at depth k is a[r * rs + k * ks]. The same values as the packed kernels.
using StridedKernel = void (*)(int kc, const float* a, long rs, long ks, const float* b, int panels, float alpha, float* c, int ldc,
                               int cols, bool overwrite);

struct Dispatch {
  MicroKernel kernel;
  WideKernel wide;  // or null
  const char* isa;
  int mr;  // rows of the micro-kernel (A panels are packed this tall)
  int mc;  // rows of an A block: a multiple of mr
  SkinnyKernel skinny;
  GemmRowSplit row_split;  // see gemm.h
  MicroKernel short_kernel;  // mr - 1 rows, or null: gemm_packed_tiles' row counts that mr does not divide
  StridedKernel strided;     // or null: full panels of A read where they lie (see StridedKernel)
  // Whether the strided kernel reads A^T where it lies too (its 8 values of a depth side by side, the
  // depths lda apart), or A^T is packed. Not on Intel: a weight gradient (A^T, m x 512 x 1024) ran
  // 55-67 GFLOP/s strided against 85-105 packed at lda = 1536, 60-76 against 84-106 at 512 and
  // 59-80 against 79-109 at 768 (Xeon model 106, Ice Lake, one thread; model 207 not measured).
  // On Zen 5 the strided reads were faster at lda = 512 and 1536 (265 and 251 against 245 and 236).
  bool strided_transposed = false;
};

// The kernels chosen for this CPU (or forced by RECURRENT_ISA), once.
const Dispatch& dispatch();

#ifdef RECURRENT_X86_DISPATCH
// The 8 x 8 block at src (row stride lds) transposed into dst (row stride ldd).
RECURRENT_AVX2_TARGET void transpose8(const float* src, long lds, float* dst, long ldd);
#endif

// op(B)[k0:k0+kc, n0:n0+nc] into panels of NR columns: panel p holds kc rows of NR.
void pack_b(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, float* out);
// op(A)[m0:m0+mc, k0:k0+kc] into panels of MR rows: panel p holds kc columns of MR.
void pack_a(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, int mr, float* out);

// The same in BF16 pairs: B in panels of NR columns and bf16_pair_rows(kc) pair rows; A in panels
// of kBf16MR rows, or where AMX runs in panels of 16 rows cut into tiles of 32 depths (16 rows x
// 16 pairs, 1 KB; the rows past mc zero, so an A buffer holds mc rounded up to 16 rows). Buffers
// 64-byte aligned.
void pack_b_bf16(bool trans, const float* b, int ldb, int k0, int kc, int n0, int nc, uint32_t* out);
void pack_a_bf16(bool trans, const float* a, int lda, int m0, int mc, int k0, int kc, uint32_t* out);
// The BF16 kernels over one packed A block (kp = bf16_pair_rows(kc)) and the B panels of
// columns [col, col + width). Where AMX runs, only while a Bf16Tiles lives on this thread.
void bf16_block(int kp, const uint32_t* pa, int mc, const uint32_t* b0, const uint32_t* b1, float alpha, float* c,
                int ldc, int cols, bool overwrite);

// This thread's AMX tiles configured for bf16_block while it lives (released after), where
// AMX runs; nothing elsewhere.
class Bf16Tiles {
 public:
  Bf16Tiles();
  ~Bf16Tiles();
  Bf16Tiles(const Bf16Tiles&) = delete;
  Bf16Tiles& operator=(const Bf16Tiles&) = delete;

 private:
  bool amx_;
};

}  // namespace gemm_detail
}  // namespace recurrent
