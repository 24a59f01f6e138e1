// The single GEMM entry point every CPU kernel calls.
//
// Row-major, BLAS-style: C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C,
// op(X) = X or X^T. lda/ldb/ldc are row strides in elements. beta == 0 means C is
// written without being read (it may hold garbage or NaN).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace recurrent {

void gemm_cpu(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta,
              float* c, int ldc);

// Columns of one product that lie in separate matrices: part s is C_s (M, n) = alpha * op(A) (M, K) *
// op(B_s) (K, n) + beta * C_s, B_s and C_s as in gemm_cpu.
struct GemmColumns {
  const float* b;
  int ldb;
  int n;
  float* c;
  int ldc;
};
// gemm_cpu on every part, with op(A) packed once for all of them (the weight gradients of w_ih and
// w_hh share dG^T): the same values as gemm_cpu on each part. row_sums, where not null, (M) =
// beta * row_sums + the sum of each row of op(A) over k, in the order of k (a bias's gradient: the
// column sums of dG), taken from A's packed blocks as they pass.
void gemm_cpu_shared_a(bool trans_a, bool trans_b, int m, int k, float alpha, const float* a, int lda, const GemmColumns* parts,
                       int count, float beta, float* row_sums = nullptr);

// BF16 matrix products (torch's float32 matmul precision 'medium'): while on, every GEMM
// rounds its operands to bfloat16 (round to nearest even) as it packs them and multiplies
// them in BF16 pairs, accumulating in FP32; C, alpha and beta stay FP32. Two paths: AMX tiles
// (TDPBF16PS) where the CPU has AMX-BF16, else AVX512_BF16's vdpbf16ps where that beats FP32
// (see bf16_choice); elsewhere set_bf16_matmul(true) leaves it off and returns false.
bool bf16_supported();
bool set_bf16_matmul(bool on);
bool bf16_matmul();
// BF16 products, when on, run on AMX tiles (else on AVX512_BF16).
bool bf16_amx();
// What backends().cpu.matmul reports: "fp32", "bf16-avx512" or "bf16-amx".
const char* matmul_path();

// Which machines get BF16 products (a pure function of the CPU's facts, so that every kind of
// machine is tested here): those whose BF16 products beat FP32. AMX does wherever it can run
// (a tile product is 16 x 16 x 32 multiply-adds; 3-4x FP32 at a layer's shapes). AVX512_BF16
// does on AMD (Zen 4 and 5: 1.6-2.0x FP32); on Intel VDPBF16PS issues on one port where FP32
// FMAs issue on two, so it does not (0.77x FP32 measured): without AMX, FP32 stays. Returns why
// not, or "" where BF16 runs; *amx tells which path runs.
struct CpuFacts {
  bool intel;           // GenuineIntel
  bool avx512_kernels;  // the AVX-512 kernels are in use (the CPU has them, RECURRENT_ISA allows them)
  bool avx512_bf16;
  bool amx_bf16;        // AMX-BF16 usable: the CPU has it, Linux grants the tile data, RECURRENT_ISA allows it
};
const char* bf16_choice(const CpuFacts& cpu, bool* amx = nullptr);
// Why BF16 is unavailable (empty when it is available).
const char* bf16_unavailable_reason();

// Memory aligned to a cache line (AMX tile loads of 64-byte rows run at a third of their rate
// where the rows straddle two lines).
template <typename T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(size_t count) {
    void* p = std::aligned_alloc(64, (count * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};
template <typename T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

// op(B) packed once into the panel layout of gemm_cpu, for products that reuse the same
// B many times (the recurrent weights at every time step).
class PackedMatrix {
 public:
  // op(B) is (k, n): B itself is (n, k) with row stride ldb when trans, else (k, n).
  // Packed in BF16 pairs when bf16_matmul() is on at the time.
  void pack(bool trans, int k, int n, const float* b, int ldb);
  int rows() const { return k_; }
  int cols() const { return n_; }
  bool is_bf16() const { return bf16_; }
  // Bytes of the packed panels.
  size_t bytes() const { return (data_.capacity() + pairs_.capacity()) * sizeof(float); }
  // The panels of the block starting at column n0 (a multiple of the block width) and row k0.
  const float* panel(int n0, int k0) const;
  // The same in BF16: each 32-bit word holds rows k and k + 1 of one column (k even); a block
  // of kc rows has bf16_pair_rows(kc) pair rows.
  const uint32_t* panel_bf16(int n0, int k0) const;

 private:
  // Both on cache lines. FP32 panels in a std::vector lay 16 bytes past a line (glibc's large
  // blocks), so each 64-byte panel row straddled two lines and a product of one row, which loads
  // each once, read twice the lines from L2: one row times a packed 192 x 768 w_hh took 11.5 us,
  // 6.4 us on cache lines; an LSTM of H = 256 at B = 1, T = 100 1.7-1.9x faster (Intel Xeon model 106).
  AlignedVector<float> data_;
  AlignedVector<uint32_t> pairs_;
  int k_ = 0, n_ = 0;
  bool bf16_ = false;
};

// C (M, N) = alpha * A (M, K) * op(B) + beta * C with op(B) packed and A not transposed,
// on columns [tile0 * kGemmTile, tile1 * kGemmTile) of C only, on the calling
// thread: for kernels that split one product between the threads of a team. `backwards`: a
// product of a few rows (the skinny kernels) goes over B's panels from the last to the first, so
// a loop that alternates directions from one call to the next finds the panels it read last
// still in the cache (the same values either way).
constexpr int kGemmTile = 16;
void gemm_packed_tiles(int m, float alpha, const float* a, int lda, const PackedMatrix& b, float beta, float* c,
                       int ldc, int tile0, int tile1, bool backwards = false);

// C (M, N) = alpha * A (M, K) * op(B) + beta * C with op(B) packed, over the thread pool when the
// product is large enough (as gemm_cpu splits it); the same values as gemm_cpu on the unpacked B.
// `backwards`: as gemm_packed_tiles', where the product runs on the calling thread alone.
void gemm_packed(int m, float alpha, const float* a, int lda, const PackedMatrix& b, float beta, float* c, int ldc,
                 bool backwards = false);
// Whether gemm_packed runs a product of m rows by b on the calling thread alone (too small to split).
bool gemm_packed_serial(int m, const PackedMatrix& b);

// Pair rows of a depth block of kc rows in the BF16 layouts: ceil(kc / 2), rounded up to the
// 16 of an AMX tile where AMX runs (the rows past the depth are zero).
int bf16_pair_rows(int kc);

// The instruction set the GEMM kernels use on this CPU: "avx512", "avx2" or "baseline".
const char* gemm_isa();

// How a batch may be cut between threads that each multiply their own rows by the same packed B
// (a recurrent layer's w_hh, H deep) at full rate: at least min_rows rows each, in multiples of
// grain, where H <= max_hidden; above it 16 and 8. AVX2: 4 and 2 at any H (its skinny kernels run
// 4 rows at full rate, its micro-kernel 6; Zen 2). AVX-512: 4 and 4 up to H = 256, where a split
// by units waits at a barrier every step for too little work: on a 2-core Intel Xeon (model 207),
// in-process alternating, 2 threads, B = 8 and 16, 4-row shares against the split by units ran
// inference 1.08-1.94x faster at H = 128 and 256 (LSTM, GRU, tanh RNN) and training 1.15-1.24x,
// but 0.60-0.86x at H = 384 and 512, where each thread's whole w_hh (2.4-4 MB for the LSTM) no
// longer stays in its L2. Elsewhere 16 and 8 (two of AVX-512's 8-row panels).
struct GemmRowSplit {
  int min_rows;
  int grain;
  int max_hidden = 1 << 30;
};
// 16 and 8: the split of the ISAs without their own, and above an ISA's max_hidden.
constexpr GemmRowSplit kPanelPairSplit{16, 8};
GemmRowSplit gemm_row_split(int hidden);
// Overrides the row split at every H (min_rows 0: the ISA's own again); for benchmarks and tests.
void set_gemm_row_split(int min_rows, int grain);

}  // namespace recurrent
