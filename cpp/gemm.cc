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
//
// This file drives the blocks; the micro-kernels and the ISA choice are in gemm_kernels.cc, the
// FP32 packers in gemm_pack.cc, BF16 (switch, packers, kernel) in gemm_bf16.cc.
#include "gemm.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gemm_internal.h"
#include "thread_pool.h"

namespace recurrent {

using namespace gemm_detail;

namespace {

// Rows of an A block of depth kc: the ISA's mc at the full depth kKC, more at a shorter one, so a
// block keeps the same bytes in L2 (mc * kKC floats). With a short K (an input projection with I = 64)
// each pass over B's panels then serves more rows: 1024 x 2048 x 64 on AVX2, 55-59 -> 64-70 GFLOP/s.
int block_rows(const Dispatch& isa, int kc) {
  const int rows = static_cast<int>(static_cast<long>(isa.mc) * kKC / std::max(kc, 1)) / isa.mr * isa.mr;
  return std::max(isa.mc, rows);
}

// Rows [0, rows) of the C block at c from `panels` panels of B (from b on, kNR * kc floats apart;
// more than one only where the ISA has a wide kernel): the first `direct` rows (whole MR-row panels)
// by the strided kernel from A where it lies (row r, depth k at a[r * rs + k * ks]), the rest from
// their packing at their place in packed_a. Every row's values are the same whichever kernel
// computes them.
void panel_rows(const Dispatch& isa, int kc, int rows, int direct, const float* a, long rs, long ks, const float* packed_a,
                const float* b, int panels, float alpha, float* c, int ldc, int cols, bool overwrite) {
  const int mr = isa.mr;
  for (int ir = 0; ir < direct; ir += mr)
    isa.strided(kc, a + ir * rs, rs, ks, b, panels, alpha, c + static_cast<long>(ir) * ldc, ldc, cols, overwrite);
  for (int ir = direct; ir < rows; ir += mr) {
    const float* ap = packed_a + static_cast<long>(ir) * kc;
    float* cp = c + static_cast<long>(ir) * ldc;
    if (panels > 1) isa.wide(kc, ap, b, panels, alpha, cp, ldc, std::min(mr, rows - ir), cols, overwrite);
    else isa.kernel(kc, ap, b, alpha, cp, ldc, std::min(mr, rows - ir), cols, overwrite);
  }
}

// How many panels of B the kernels take at once from `left` panels: up to kMaxPanels where the ISA
// has wide kernels, one otherwise.
int panels_at_once(const Dispatch& isa, int left) { return isa.wide ? std::min(kMaxPanels, left) : 1; }

// C (rows, n) made ready for the products to be added on top: scaled by beta, or zero where nothing
// will be added (skip: k <= 0 or alpha == 0) and beta == 0; otherwise with beta == 0 it is left for the
// first depth block to overwrite, unread.
void scale_c(int rows, int n, float* c, int ldc, float beta, bool skip) {
  for (int i = 0; i < rows; ++i) {
    float* row = c + static_cast<long>(i) * ldc;
    if (beta == 0.0f && skip) std::fill(row, row + n, 0.0f);
    else if (beta != 0.0f && beta != 1.0f)
      for (int j = 0; j < n; ++j) row[j] *= beta;
  }
}

// row_sums[i] += op(A)[i][k0, k0 + kc) for the rows [0, rows) of a block, in the order of k: rows
// [0, direct) from A where it lies (row r, depth k at a[r * rs + k * ks]), the rest from their MR-row
// panels in packed_a.
void add_row_sums(int mr, int kc, int rows, int direct, const float* a, long rs, long ks, const float* packed_a, float* row_sums) {
  for (int ir = 0; ir < rows; ir += mr) {
    const int n = std::min(mr, rows - ir);
    float acc[kMaxMR];
    std::copy(row_sums + ir, row_sums + ir + n, acc);
    if (ir < direct && rs == 1 && n == 8) {  // A^T where it lies: a depth's 8 values side by side
      for (int q = 0; q < kc; ++q)
        for (int r = 0; r < 8; ++r) acc[r] += a[ir + q * ks + r];
    } else if (ir < direct) {
      for (int q = 0; q < kc; ++q)
        for (int r = 0; r < n; ++r) acc[r] += a[(ir + r) * rs + q * ks];
    } else if (mr == 8) {
      const float* ap = packed_a + static_cast<long>(ir) * kc;
      for (int q = 0; q < kc; ++q)
        for (int r = 0; r < 8; ++r) acc[r] += ap[q * 8 + r];
    } else {
      const float* ap = packed_a + static_cast<long>(ir) * kc;
      for (int q = 0; q < kc; ++q)
        for (int r = 0; r < n; ++r) acc[r] += ap[q * mr + r];
    }
    std::copy(acc, acc + n, row_sums + ir);
  }
}

// C_s += alpha * op(A) * op(B_s) for each part s (C already scaled by beta; k > 0, alpha != 0), FP32:
// the parts' panels of B side by side in blocks of about kNC columns (each part's from a panel
// boundary), so that every block of op(A) is packed once for all of them. row_sums, where not null:
// += the sum of each row of op(A), in the order of k (from the packed blocks where A is packed).
void gemm_serial_parts(bool trans_a, bool trans_b, int m, int k, float alpha, const float* a, int lda, const GemmColumns* parts,
                       int count, float beta, float* row_sums = nullptr) {
  const Dispatch& isa = dispatch();
  const int mr = isa.mr;
  thread_local AlignedVector<float> packed_a, packed_b;  // B's panel rows on cache lines (see PackedMatrix)
  // the parts' panels in one row: part s's first at first[s]
  thread_local std::vector<int> first;
  first.assign(count + 1, 0);
  for (int s = 0; s < count; ++s) first[s + 1] = first[s] + (parts[s].n + kNR - 1) / kNR;
  const int block_panels = kNC / kNR;
  packed_b.resize(static_cast<size_t>(kKC) * kNR * block_panels);

  for (int p0 = 0; p0 < first[count]; p0 += block_panels) {
    const int p1 = std::min(first[count], p0 + block_panels);
    for (int k0 = 0; k0 < k; k0 += kKC) {
      const int kc = std::min(kKC, k - k0);
      const int block_m = block_rows(isa, kc);
      packed_a.resize(std::max(packed_a.size(), static_cast<size_t>(kc) * (block_m + kMaxMR)));
      // each part's columns within the block, packed at their panels' place
      for (int s = 0; s < count; ++s) {
        const int q0 = std::max(p0, first[s]), q1 = std::min(p1, first[s + 1]);
        if (q0 >= q1) continue;
        const int n0 = (q0 - first[s]) * kNR, nc = std::min(parts[s].n, (q1 - first[s]) * kNR) - n0;
        pack_b(trans_b, parts[s].b, parts[s].ldb, k0, kc, n0, nc, packed_b.data() + static_cast<long>(q0 - p0) * kNR * kc);
      }
      for (int m0 = 0; m0 < m; m0 += block_m) {
        const int mc = std::min(block_m, m - m0);
        // the whole MR-row panels read where they lie where the ISA has a strided kernel (as in
        // gemm_packed_tiles), the rest packed at its place. A^T only where the ISA reads it strided
        // (see Dispatch::strided_transposed), and not at a stride of a multiple of 4 KB: there every
        // k's values fall in one set of L1 (a weight gradient of 2048 x 512 x 1024, lda = 2048: 218
        // against 240 GFLOP/s packed; Zen 5)
        const bool strided = isa.strided && !(trans_a && (!isa.strided_transposed || lda % 1024 == 0));
        const int direct = strided ? mc / mr * mr : 0;
        if (mc > direct) pack_a(trans_a, a, lda, m0 + direct, mc - direct, k0, kc, mr, packed_a.data() + static_cast<long>(direct) * kc);
        const bool overwrite = beta == 0.0f && k0 == 0;
        // op(A)'s row r, depth k of the block at a_block[r * rs + k * ks]
        const long rs = trans_a ? 1 : lda, ks = trans_a ? lda : 1;
        const float* a_block = a + m0 * rs + k0 * ks;
        if (row_sums && p0 == 0) add_row_sums(mr, kc, mc, direct, a_block, rs, ks, packed_a.data(), row_sums + m0);
        for (int s = 0; s < count; ++s) {
          const int q0 = std::max(p0, first[s]), q1 = std::min(p1, first[s + 1]);
          const GemmColumns& part = parts[s];
          for (int q = q0; q < q1;) {
            const int panels = panels_at_once(isa, q1 - q), col = (q - first[s]) * kNR;
            const float* bp = packed_b.data() + static_cast<long>(q - p0) * kNR * kc;
            panel_rows(isa, kc, mc, direct, a_block, rs, ks, packed_a.data(), bp, panels, alpha,
                       part.c + static_cast<long>(m0) * part.ldc + col, part.ldc, std::min(panels * kNR, part.n - col), overwrite);
            q += panels;
          }
        }
      }
    }
  }
}

void gemm_serial(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  // beta == 0: the first k-block overwrites C, which is never read (no zero-fill pass)
  const bool skip = k <= 0 || alpha == 0.0f;
  scale_c(m, n, c, ldc, beta, skip);
  if (skip) return;

  if (bf16_matmul()) {
    thread_local AlignedVector<uint32_t> pa, pb;
    pb.resize(static_cast<size_t>(kKC / 2) * (kNC + kNR));
    pa.resize(static_cast<size_t>(kKC / 2) * (dispatch().mc + kMaxMR));
    const Bf16Tiles tiles;
    for (int n0 = 0; n0 < n; n0 += kNC) {
      const int nc = std::min(kNC, n - n0);
      for (int k0 = 0; k0 < k; k0 += kKC) {
        const int kc = std::min(kKC, k - k0), kp = bf16_pair_rows(kc);
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

  const GemmColumns part{b, ldb, n, c, ldc};
  gemm_serial_parts(trans_a, trans_b, m, k, alpha, a, lda, &part, 1, beta);
}

// Below this many multiply-adds (or with a short K, where packing dominates) a GEMM is
// not worth waking other threads for.
constexpr double kParallelWork = 1 << 22;
constexpr int kParallelMinK = 64;
// Tiles of B whose tail rows follow their body rows in gemm_packed_tiles: 12 panels of depth 512,
// 384 KB, stay in L2, and a run is whole groups of kMaxPanels (with runs of 8, every third group had
// two panels: an LSTM of H = 512 at B = T = 32 through layer_bench on one thread ran 21.0k against
// 20.1k timestep-samples/s, a GRU 28.8k against 26.3k; medians of 6 alternating runs, Intel Xeon
// model 106, Ice Lake).
constexpr int kTileRun = 12;

}  // namespace

// How gemm_packed_tiles runs a block of rows: `full` rows in MR-row panels (the last possibly
// partial), then `shorts` rows in panels of MR - 1 (the ISA's short kernel), then `tail` rows on the
// skinny kernels.
struct RowPanels {
  int full, shorts, tail;
};

static RowPanels row_panels(const Dispatch& isa, int rows) {
  const int mr = isa.mr;
  if (isa.short_kernel)
    for (int s = 0; s < mr && s * (mr - 1) <= rows; ++s)
      if ((rows - s * (mr - 1)) % mr == 0) return {rows - s * (mr - 1), s * (mr - 1), 0};
  const int rest = rows % mr, tail = rest <= kSkinnyRows ? rest : 0;
  return {rows - tail, 0, tail};
}

// Rows [0, m) of C's columns [tile0 * NR, tile1 * NR) += (or =, overwrite) alpha * A * op(B) over the
// depth block [k0, k0 + kc), by the skinny kernels (m <= kSkinnyMaxRows): A as it lies, panels in
// groups (see SkinnyKernel); more rows than one kernel takes go in passes over a run of panels
// small enough to stay in L2. `backwards`: the runs last first (see gemm_packed_tiles).
static void skinny_block(const Dispatch& isa, int m, int k0, int kc, float alpha, const float* a, int lda, const PackedMatrix& b,
                  float* c, int ldc, int tile0, int tile1, bool overwrite, bool backwards) {
  const int n = b.cols();
  const int run = m <= kSkinnyRows ? 24 : 12;  // panels: a multiple of every kernel's group
  const auto run_at = [&](int tile, int panels) {
    const int col = tile * kNR, block = col / kNC * kNC;
    const int end = std::min({tile1 * kNR, n, col + panels * kNR});
    const float* panel = b.panel(block, k0) + static_cast<long>(col - block) * kc;
    for (int r0 = 0; r0 < m; r0 += kSkinnyRows)
      isa.skinny(std::min(kSkinnyRows, m - r0), kc, a + static_cast<long>(r0) * lda + k0, lda, panel, (end - col + kNR - 1) / kNR,
                 alpha, c + static_cast<long>(r0) * ldc + col, ldc, end - col, overwrite);
  };
  // runs of `run` panels from the first tile of each block of kNC columns (a run never crosses one: the
  // blocks' panels lie apart); `backwards`: the blocks and their runs last first
  const int block_tiles = kNC / kNR, tiles_end = std::min(tile1, (n + kNR - 1) / kNR);
  if (tiles_end <= tile0) return;
  const int first_block = tile0 / block_tiles, blocks = (tiles_end - 1) / block_tiles - first_block + 1;
  for (int i = 0; i < blocks; ++i) {
    const int blk = first_block + (backwards ? blocks - 1 - i : i);
    const int t0 = std::max(tile0, blk * block_tiles), t1 = std::min(tiles_end, (blk + 1) * block_tiles);
    const int runs = (t1 - t0 + run - 1) / run;
    for (int j = 0; j < runs; ++j) {
      const int start = t0 + (backwards ? runs - 1 - j : j) * run;
      run_at(start, std::min(run, t1 - start));
    }
  }
}

// Columns [tile0 * NR, tile1 * NR) of C = alpha * A * op(B) + beta * C, op(B) packed.
void gemm_packed_tiles(int m, float alpha, const float* a, int lda, const PackedMatrix& b, float beta, float* c,
                       int ldc, int tile0, int tile1, bool backwards) {
  const int n = b.cols(), k = b.rows();
  const int col0 = tile0 * kNR, col1 = std::min(n, tile1 * kNR);
  if (m <= 0 || col1 <= col0) return;
  const bool skip = k <= 0 || alpha == 0.0f;
  scale_c(m, col1 - col0, c + col0, ldc, beta, skip);
  if (skip) return;
  if (b.is_bf16()) {
    thread_local AlignedVector<uint32_t> pa;
    const int block_m = dispatch().mc;
    pa.resize(static_cast<size_t>(kKC / 2) * (block_m + kMaxMR));
    const Bf16Tiles tiles;
    for (int k0 = 0; k0 < k; k0 += kKC) {
      const int kc = std::min(kKC, k - k0), kp = bf16_pair_rows(kc);
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
  if (m <= kSkinnyMaxRows && (m <= kSkinnyRows || m % isa.mr != 0)) {
    // one step of a small batch: every row by the skinny kernels
    for (int k0 = 0; k0 < k; k0 += kKC)
      skinny_block(isa, m, k0, std::min(kKC, k - k0), alpha, a, lda, b, c, ldc, tile0, tile1, beta == 0.0f && k0 == 0, backwards);
    return;
  }
  const int mr = isa.mr;
  thread_local AlignedVector<float> packed_a;
  for (int k0 = 0; k0 < k; k0 += kKC) {
    const int kc = std::min(kKC, k - k0);
    const int block_m = block_rows(isa, kc);
    packed_a.resize(std::max(packed_a.size(), static_cast<size_t>(kc) * (block_m + kMaxMR)));
    for (int m0 = 0; m0 < m; m0 += block_m) {
      const int mc = std::min(block_m, m - m0);
      // Rows in MR-row panels, then (where the ISA has one) panels of MR - 1 rows, so that every row
      // of a count that MR does not divide runs at the micro-kernel's rate: on AVX2, 16 = 6 + 5 + 5
      // and 32 = 6 + 6 + 4 x 5. A few rows left over (B = 8: 6 + 2) go to the skinny kernels
      // instead of an MR-row kernel that would compute rows that do not exist. Every row's values
      // are the same whichever kernel computes them.
      const RowPanels split = row_panels(isa, mc);
      const int full = split.full, shorts = split.shorts, tail = split.tail, body = full + shorts;
      const bool overwrite = beta == 0.0f && k0 == 0;
      // where the ISA has a strided kernel, the whole MR-row panels are read where they lie; the
      // rest is packed (at its place in packed_a)
      const int direct = isa.strided ? full / mr * mr : 0;
      if (full > direct) pack_a(false, a, lda, m0 + direct, full - direct, k0, kc, mr, packed_a.data() + static_cast<long>(direct) * kc);
      if (shorts > 0) pack_a(false, a, lda, m0 + full, shorts, k0, kc, mr - 1, packed_a.data() + static_cast<long>(full) * kc);
      const float* a_block = a + static_cast<long>(m0) * lda + k0;
      const auto panel = [&](int tile) {
        const int col = tile * kNR, block = col / kNC * kNC;
        return b.panel(block, k0) + static_cast<long>(col - block) * kc;
      };
      // the body's rows of one panel of B (cols wide) by the MR-row and the short kernels
      const auto rows_on = [&](const float* bp, int col, int cols) {
        panel_rows(isa, kc, full, direct, a_block, lda, 1, packed_a.data(), bp, 1, alpha, c + static_cast<long>(m0) * ldc + col, ldc, cols,
                   overwrite);
        for (int ir = full; ir < body; ir += mr - 1)
          isa.short_kernel(kc, packed_a.data() + static_cast<long>(ir) * kc, bp, alpha, c + static_cast<long>(m0 + ir) * ldc + col,
                           ldc, mr - 1, cols, overwrite);
      };
      // In runs of kTileRun tiles, the tail rows right after the body's: a run's panels are then
      // read from memory once (B of a 512-unit layer, 4 MB, is far larger than L2; with the tail
      // done over all of it first, every step read it twice).
      for (int run0 = tile0; run0 < tile1 && run0 * kNR < n; run0 += kTileRun) {
        const int run1 = std::min(tile1, run0 + kTileRun);
        for (int tile = run0; body > 0 && tile < run1 && tile * kNR < n;) {
          const int col = tile * kNR;
          // panels at once: within the run, the columns and the block of kNC columns (whose panels lie
          // one after another)
          const int block_end = std::min(n, col / kNC * kNC + kNC);
          const int panels = shorts == 0 ? panels_at_once(isa, std::min(run1 - tile, (block_end - col + kNR - 1) / kNR)) : 1;
          if (panels > 1) {
            panel_rows(isa, kc, full, direct, a_block, lda, 1, packed_a.data(), panel(tile), panels, alpha,
                       c + static_cast<long>(m0) * ldc + col, ldc, std::min(panels * kNR, n - col), overwrite);
            tile += panels;
            continue;
          }
          rows_on(panel(tile), col, std::min(kNR, n - col));
          tile += 1;
        }
        if (tail > 0)
          skinny_block(isa, tail, k0, kc, alpha, a + static_cast<long>(m0 + body) * lda, lda, b, c + static_cast<long>(m0 + body) * ldc,
                       ldc, run0, run1, overwrite, false);
      }
    }
  }
}

// Pair rows of a BF16 packing of depth k: its blocks of kKC rows and the last one's.
static int pair_rows(int k) {
  static_assert(kKC % 32 == 0, "a full depth block is whole AMX tiles");
  return k / kKC * (kKC / 2) + (k % kKC ? bf16_pair_rows(k % kKC) : 0);
}

void PackedMatrix::pack(bool trans, int k, int n, const float* b, int ldb) {
  k_ = k;
  n_ = n;
  bf16_ = bf16_matmul();
  if (bf16_) {
    // the same blocks, in rows of BF16 pairs: a block of kc rows holds bf16_pair_rows(kc) pair rows
    size_t total = 0;
    for (int n0 = 0; n0 < n; n0 += kNC) total += static_cast<size_t>(pair_rows(k)) * ((std::min(kNC, n - n0) + kNR - 1) / kNR * kNR);
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
  // k0 is a multiple of kKC (even, and full blocks hold kKC / 2 pair rows, a multiple of 16), so
  // the pair rows before it are k0 / 2
  const size_t before = static_cast<size_t>(pair_rows(k_)) * n0;
  const int padded = (std::min(kNC, n_ - n0) + kNR - 1) / kNR * kNR;
  return pairs_.data() + before + static_cast<size_t>(k0 / 2) * padded;
}

const float* PackedMatrix::panel(int n0, int k0) const {
  // blocks before n0 are full kNC wide; within the block, k-blocks before k0 are kKC tall
  const size_t before = static_cast<size_t>(k_) * n0;
  const int padded = (std::min(kNC, n_ - n0) + kNR - 1) / kNR * kNR;
  return data_.data() + before + static_cast<size_t>(k0) * padded;
}

bool gemm_packed_serial(int m, const PackedMatrix& b) {
  const int n = b.cols(), k = b.rows();
  const double work = static_cast<double>(m) * n * k * (b.is_bf16() ? 0.5 : 1.0);
  return num_threads() <= 1 || k < kParallelMinK || work < kParallelWork || (n + kNR - 1) / kNR < 2;
}

void gemm_packed(int m, float alpha, const float* a, int lda, const PackedMatrix& b, float beta, float* c, int ldc,
                 bool backwards) {
  const int n = b.cols();
  const int tiles = (n + kNR - 1) / kNR;
  const int threads = num_threads();
  if (gemm_packed_serial(m, b)) {
    gemm_packed_tiles(m, alpha, a, lda, b, beta, c, ldc, 0, tiles, backwards);
    return;
  }
  // B is packed already: a split by columns has every thread pack all of A's rows, a split by
  // rows packs nothing twice, so rows unless they are too few (gemm_cpu's rule otherwise); each
  // element is computed as on one thread
  const int mr = dispatch().mr;
  if (m >= threads * 2 * mr && (m >= n || tiles < threads * 2)) {
    const int panels = (m + mr - 1) / mr;
    parallel_for(threads, [&](int part) {
      const int m0 = std::min(m, panels * part / threads * mr), m1 = std::min(m, panels * (part + 1) / threads * mr);
      if (m1 > m0) gemm_packed_tiles(m1 - m0, alpha, a + static_cast<long>(m0) * lda, lda, b, beta, c + static_cast<long>(m0) * ldc, ldc, 0, tiles);
    });
    return;
  }
  const int parts = std::min(threads, tiles);
  parallel_for(parts, [&](int part) {
    gemm_packed_tiles(m, alpha, a, lda, b, beta, c, ldc, tiles * part / parts, tiles * (part + 1) / parts);
  });
}

// Whether gemm_cpu splits a product between `threads` threads by rows (else by columns). Each thread
// packs all of the operand the split does not cut: a column split repeats A's packing (m x k) in every
// thread, a row split B's (k x n). Cut the larger one: the weight gradients (m = G*H, n = I) and dx
// (m = T*B rows, n = I) split by rows, the input projection (n = G*H) by columns.
static bool split_by_rows(int m, int n, int threads) {
  return n < threads * 2 * kNR || (m >= n && m >= threads * 2 * dispatch().mr);
}

// fn(m0, m1) on every thread of the pool, each on its share of the rows [0, m) in whole MR-row panels.
template <class F>
static void for_row_shares(int m, int threads, F fn) {
  const int mr = dispatch().mr, tiles = (m + mr - 1) / mr, per = (tiles + threads - 1) / threads;
  parallel_for(threads, [&](int t) {
    const int m0 = std::min(m, t * per * mr), m1 = std::min(m, (t + 1) * per * mr);
    if (m1 > m0) fn(m0, m1);
  });
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
  if (!split_by_rows(m, n, threads)) {
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
    for_row_shares(m, threads, [&](int m0, int m1) {
      const float* as = trans_a ? a + m0 : a + static_cast<long>(m0) * lda;
      gemm_serial(trans_a, trans_b, m1 - m0, n, k, alpha, as, lda, b, ldb, beta, c + static_cast<long>(m0) * ldc, ldc);
    });
  }
}

void gemm_cpu_shared_a(bool trans_a, bool trans_b, int m, int k, float alpha, const float* a, int lda, const GemmColumns* parts,
                       int count, float beta, float* row_sums) {
  if (m <= 0) return;
  const int threads = num_threads();
  long n = 0;
  bool rows_split = true;  // gemm_cpu would split every part by rows
  for (int s = 0; s < count; ++s) {
    n += parts[s].n;
    rows_split = rows_split && split_by_rows(m, parts[s].n, threads);
  }
  // rows [m0, m1) of row_sums scaled by beta
  const auto scale_sums = [&](int m0, int m1) {
    if (!row_sums) return;
    for (int i = m0; i < m1; ++i) row_sums[i] = beta == 0.0f ? 0.0f : row_sums[i] * beta;
  };
  const bool serial = threads <= 1 || k < kParallelMinK || static_cast<double>(m) * n * k < kParallelWork;
  // BF16, the degenerate products and the column splits: part by part, and the sums by themselves
  if (bf16_matmul() || k <= 0 || alpha == 0.0f || !(serial || rows_split)) {
    for (int s = 0; s < count; ++s)
      gemm_cpu(trans_a, trans_b, m, parts[s].n, k, alpha, a, lda, parts[s].b, parts[s].ldb, beta, parts[s].c, parts[s].ldc);
    if (!row_sums) return;
    // each row's sum in the order of k, the rows split between the threads as the products' row
    // split would (the values do not depend on it)
    const auto sums = [&](int m0, int m1) {
      scale_sums(m0, m1);
      for (int q = 0; q < k; ++q)
        for (int i = m0; i < m1; ++i) row_sums[i] += trans_a ? a[static_cast<long>(q) * lda + i] : a[static_cast<long>(i) * lda + q];
    };
    if (threads <= 1 || static_cast<double>(m) * k < 1 << 18) sums(0, m);
    else for_row_shares(m, threads, sums);
    return;
  }
  // rows [m0, m1) of every part on one thread, as gemm_cpu's row split cuts each of them
  const auto rows = [&](int m0, int m1) {
    std::vector<GemmColumns> mine(parts, parts + count);
    for (GemmColumns& part : mine) {
      part.c += static_cast<long>(m0) * part.ldc;
      scale_c(m1 - m0, part.n, part.c, part.ldc, beta, false);
    }
    scale_sums(m0, m1);
    gemm_serial_parts(trans_a, trans_b, m1 - m0, k, alpha, trans_a ? a + m0 : a + static_cast<long>(m0) * lda, lda, mine.data(),
                      count, beta, row_sums ? row_sums + m0 : nullptr);
  };
  if (serial) {
    rows(0, m);
    return;
  }
  for_row_shares(m, threads, rows);
}

}  // namespace recurrent
