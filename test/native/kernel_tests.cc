// C++ kernel tests: every fast recurrent kernel against its double-precision reference,
// forward and backward, for all cells, one and two directions, full and ragged
// lengths. Needs no Node.js; runs under CTest (and compute-sanitizer once CUDA lands).
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpp/attention.h"
#include "cpp/gates.h"
#include "cpp/gemm_internal.h"
#include "cpp/gemm.h"
#include "cpp/recurrent.h"
#include "cpp/thread_pool.h"
#include "cpp/reference.h"

using namespace recurrent;

namespace {

int failures = 0;
// BF16 runs: |diff| <= this share of the tensor's largest |reference| (0: the default tolerances)
double g_share_of_max = 0.0;
bool g_forward_only = false;  // BF16 with ReLU: rounding flips units near zero, whose gradients then differ wholly

std::vector<float> random_vector(std::mt19937& rng, size_t n, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// |a - b| <= atol + rtol * |ref|, printing the first mismatches and the max difference.
void expect_close(const std::string& what, const float* got, const double* ref, size_t n,
                  double atol = 2e-5, double rtol = 1e-3) {
  if (g_share_of_max > 0) {
    double largest = 0;
    for (size_t i = 0; i < n; ++i) largest = std::max(largest, std::fabs(ref[i]));
    atol = g_share_of_max * largest + 1e-6;
    rtol = 0;
  }
  double max_diff = 0.0;
  int shown = 0;
  bool ok = true;
  for (size_t i = 0; i < n; ++i) {
    const double diff = std::fabs(got[i] - ref[i]);
    max_diff = std::max(max_diff, diff);
    if (diff > atol + rtol * std::fabs(ref[i])) {
      ok = false;
      if (shown++ < 3) std::printf("    %s[%zu]: got %.7g, reference %.7g\n", what.c_str(), i, got[i], ref[i]);
    }
  }
  if (!ok) ++failures;
  std::printf("  %-8s %s (max |diff| %.3g)\n", what.c_str(), ok ? "ok" : "MISMATCH", max_diff);
}

// When set, check_layer appends every output it computed (forward and backward) here, so that runs
// under different thread counts and splits can be compared bit for bit.
std::vector<float>* g_capture = nullptr;

void capture(const std::vector<float>& values) {
  if (g_capture) g_capture->insert(g_capture->end(), values.begin(), values.end());
}

// When set, check_layer gives its weights pack caches (as the addon does), so that the layer keeps
// their packed forms, and a split by rows projects each thread's own inputs.
bool g_pack_caches = false;

void check_layer(CellKind cell, int directions, const std::vector<int>& lengths, bool bias, int H = 6, int T = 7) {
  const int B = static_cast<int>(lengths.empty() ? 3 : lengths.size()), I = 5;
  const int G = gate_count(cell), GH = G * H;
  const LayerDims dims{cell, T, B, I, H, directions};
  std::printf("cell %d, D=%d, H=%d, %s lengths, %s bias\n", static_cast<int>(cell), directions, H,
              lengths.empty() ? "full" : "ragged", bias ? "with" : "no");
  std::mt19937 rng(1234 + static_cast<int>(cell) * 10 + directions);
  const size_t state = static_cast<size_t>(directions) * B * H;
  auto x = random_vector(rng, static_cast<size_t>(T) * B * I, 1.0f);
  auto h0 = random_vector(rng, state, 0.5f), c0 = random_vector(rng, state, 0.5f);
  auto dy = random_vector(rng, static_cast<size_t>(T) * B * directions * H, 1.0f);
  auto dhn = random_vector(rng, state, 1.0f), dcn = random_vector(rng, state, 1.0f);
  std::vector<std::vector<float>> w(4 * directions);
  std::vector<std::vector<double>> wd(4 * directions);
  std::vector<LayerWeights> lw(directions);
  std::vector<ReferenceWeights> rw(directions);
  std::vector<PackCache> caches(2 * directions);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  for (int d = 0; d < directions; ++d) {
    const size_t sizes[4] = {static_cast<size_t>(GH) * I, static_cast<size_t>(GH) * H, static_cast<size_t>(GH),
                             static_cast<size_t>(GH)};
    for (int k = 0; k < 4; ++k) {
      w[4 * d + k] = random_vector(rng, sizes[k], scale);
      wd[4 * d + k] = widen(w[4 * d + k]);
    }
    lw[d] = {w[4 * d].data(), w[4 * d + 1].data(), bias ? w[4 * d + 2].data() : nullptr,
             bias ? w[4 * d + 3].data() : nullptr};
    if (g_pack_caches) {
      lw[d].ih_cache = CachedWeight{&caches[2 * d], 1};
      lw[d].hh_cache = CachedWeight{&caches[2 * d + 1], 1};
    }
    rw[d] = {wd[4 * d].data(), wd[4 * d + 1].data(), bias ? wd[4 * d + 2].data() : nullptr,
             bias ? wd[4 * d + 3].data() : nullptr};
  }
  const int* len = lengths.empty() ? nullptr : lengths.data();

  std::vector<float> y(dy.size()), hn(state), cn(state), reserve(layer_reserve_size(dims));
  layer_forward_cpu(dims, y.data(), hn.data(), cn.data(), reserve.data(), x.data(), len, h0.data(), c0.data(),
                    lw.data());
  std::vector<double> yr(dy.size()), hnr(state), cnr(state);
  const auto xd = widen(x), h0d = widen(h0), c0d = widen(c0);
  layer_forward_reference(dims, yr.data(), hnr.data(), cnr.data(), xd.data(), len, h0d.data(), c0d.data(), rw.data());
  expect_close("y", y.data(), yr.data(), y.size());
  expect_close("h_n", hn.data(), hnr.data(), state);
  if (cell == CellKind::kLstm) expect_close("c_n", cn.data(), cnr.data(), state);
  for (const auto* v : {&y, &hn, &cn}) capture(*v);
  // inference (no reserve; small shares of a split by rows run on their own copies of their rows):
  // the same values bit for bit
  {
    std::vector<float> yi(y.size(), -1.0f), hni(state, -1.0f), cni(state, -1.0f);
    layer_forward_cpu(dims, yi.data(), hni.data(), cell == CellKind::kLstm ? cni.data() : nullptr, nullptr, x.data(), len, h0.data(),
                      c0.data(), lw.data());
    const bool same = yi == y && hni == hn && (cell != CellKind::kLstm || cni == cn);
    if (!same) ++failures;
    std::printf("  inference bit-identical to the training forward: %s\n", same ? "ok" : "MISMATCH");
  }
  if (g_forward_only) return;

  std::vector<float> dx(x.size()), dh0(state), dc0(state);
  std::vector<std::vector<float>> g(4 * directions);
  std::vector<std::vector<double>> gd(4 * directions);
  std::vector<LayerGrads> lg(directions);
  std::vector<ReferenceGrads> rg(directions);
  for (int d = 0; d < directions; ++d) {
    for (int k = 0; k < 4; ++k) {
      g[4 * d + k].assign(w[4 * d + k].size(), 0.0f);
      gd[4 * d + k].assign(w[4 * d + k].size(), 0.0);
    }
    lg[d] = {g[4 * d].data(), g[4 * d + 1].data(), bias ? g[4 * d + 2].data() : nullptr,
             bias ? g[4 * d + 3].data() : nullptr};
    rg[d] = {gd[4 * d].data(), gd[4 * d + 1].data(), bias ? gd[4 * d + 2].data() : nullptr,
             bias ? gd[4 * d + 3].data() : nullptr};
  }
  layer_backward_cpu(dims, dx.data(), dh0.data(), dc0.data(), lg.data(), dy.data(), dhn.data(), dcn.data(),
                     reserve.data(), x.data(), len, lw.data());
  std::vector<double> dxr(x.size()), dh0r(state), dc0r(state);
  const auto dyd = widen(dy), dhnd = widen(dhn), dcnd = widen(dcn);
  layer_backward_reference(dims, dxr.data(), dh0r.data(), dc0r.data(), rg.data(), dyd.data(), dhnd.data(),
                           dcnd.data(), xd.data(), len, h0d.data(), c0d.data(), rw.data());
  expect_close("dx", dx.data(), dxr.data(), dx.size());
  expect_close("dh0", dh0.data(), dh0r.data(), state);
  if (cell == CellKind::kLstm) expect_close("dc0", dc0.data(), dc0r.data(), state);
  for (const auto* v : {&dx, &dh0, &dc0}) capture(*v);
  for (const auto& v : g) capture(v);
  const char* names[4] = {"dw_ih", "dw_hh", "db_ih", "db_hh"};
  for (int d = 0; d < directions; ++d)
    for (int k = 0; k < (bias ? 4 : 2); ++k)
      expect_close(std::string(names[k]) + (d ? "_r" : ""), g[4 * d + k].data(), gd[4 * d + k].data(),
                   g[4 * d + k].size());
}

// The vectorized sigmoid and tanh against libm in double: relative error <= 1e-6 over
// a dense sweep and random floats wherever the result is a normal float.
void check_activations() {
  std::vector<float> x;
  for (double v = -40.0; v <= 40.0; v += 1.0 / 4096) x.push_back(static_cast<float>(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 0.625f, -0.625f, 0.62499994f, 87.0f, -87.0f, 88.0f, -88.0f})
    x.push_back(v);
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
  while (x.size() < 2000000) {
    uint32_t u = bits(rng);
    float v;
    std::memcpy(&v, &u, sizeof v);
    if (std::isfinite(v) && std::fabs(v) < 100.0f) x.push_back(v);
  }
  const int n = static_cast<int>(x.size());
  std::vector<float> s(n), t(n);
  gate_kernels().sigmoid(x.data(), s.data(), n - 3);  // an odd length: the tail path too
  gate_kernels().sigmoid(x.data() + n - 3, s.data() + n - 3, 3);
  gate_kernels().tanh(x.data(), t.data(), n);
  double worst_s = 0.0, worst_t = 0.0;
  float at_s = 0.0f, at_t = 0.0f;
  for (int i = 0; i < n; ++i) {
    const double v = x[i];
    const double rs = 1.0 / (1.0 + std::exp(-v)), rt = std::tanh(v);
    if (rs >= 1.18e-38) {
      const double e = std::fabs(s[i] - rs) / rs;
      if (e > worst_s) worst_s = e, at_s = x[i];
    }
    if (std::fabs(rt) >= 1.18e-38) {
      const double e = std::fabs(t[i] - rt) / std::fabs(rt);
      if (e > worst_t) worst_t = e, at_t = x[i];
    } else if (t[i] != 0.0f && std::fabs(t[i]) > 1.2e-38) {
      worst_t = 1.0, at_t = x[i];
    }
  }
  const bool ok = worst_s <= 1e-6 && worst_t <= 1e-6;
  if (!ok) ++failures;
  std::printf("activations (%s): max relative error sigmoid %.3g (x = %.9g), tanh %.3g (x = %.9g) over %d inputs: %s\n",
              gemm_isa(), worst_s, at_s, worst_t, at_t, n, ok ? "ok" : "TOO LARGE");
  // NaN propagates, infinities saturate
  float special[4] = {NAN, INFINITY, -INFINITY, 0.0f}, out[4];
  gate_kernels().sigmoid(special, out, 4);
  // sigmoid(-inf): 0 or a subnormal (true values below x = -87 are subnormal)
  const bool sig_ok = std::isnan(out[0]) && out[1] == 1.0f && out[2] >= 0.0f && out[2] < 1.18e-38f && out[3] == 0.5f;
  std::printf("  sigmoid(NaN, inf, -inf, 0) = %g %g %g %g\n", out[0], out[1], out[2], out[3]);
  gate_kernels().tanh(special, out, 4);
  const bool tanh_ok = std::isnan(out[0]) && out[1] == 1.0f && out[2] == -1.0f && out[3] == 0.0f;
  std::printf("  tanh(NaN, inf, -inf, 0) = %g %g %g %g\n", out[0], out[1], out[2], out[3]);
  if (!sig_ok || !tanh_ok) ++failures;
  std::printf("activations: NaN and infinities %s\n", sig_ok && tanh_ok ? "ok" : "WRONG");

  // Long arrays run several vectors in lockstep, short ones (and tails) one vector at a time:
  // the same bits either way, NaN and infinities inside a long array included.
  std::vector<float> mixed(x.begin(), x.begin() + 100000);
  for (int i = 0; i < 64; ++i) mixed[1000 + 37 * i] = special[i % 4];
  const int m = static_cast<int>(mixed.size());
  long differ = 0;
  for (const auto apply : {gate_kernels().sigmoid, gate_kernels().tanh}) {
    std::vector<float> whole(m), single(m);
    apply(mixed.data(), whole.data(), m);
    for (int i = 0; i < m; ++i) apply(mixed.data() + i, single.data() + i, 1);
    for (int i = 0; i < m; ++i)
      if (std::memcmp(&whole[i], &single[i], sizeof(float)) != 0 && !(std::isnan(whole[i]) && std::isnan(single[i]))) ++differ;
  }
  if (differ) ++failures;
  std::printf("activations: in lockstep and one by one %s (%ld differ)\n", differ ? "DIFFER" : "bit-identical", differ);
}

}  // namespace

// FP32 -> BF16 -> FP32, rounded to nearest even: what the BF16 GEMM multiplies.
double bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, sizeof(r));
  return r;
}

// One case of the GEMM checks below: random operands of a shape, a transpose pair, alpha 0.75
// and beta 0.5 (0 for the last pair, where C is only written).
struct GemmCase {
  int m, n, k;
  bool ta, tb;
  float alpha, beta;
  int lda, ldb;
  std::vector<float> a, b, c;

  float a_at(int i, int q) const { return ta ? a[static_cast<size_t>(q) * lda + i] : a[static_cast<size_t>(i) * lda + q]; }
  float b_at(int q, int j) const { return tb ? b[static_cast<size_t>(j) * ldb + q] : b[static_cast<size_t>(q) * ldb + j]; }

  std::vector<float> product() const {
    std::vector<float> out = c;
    gemm_cpu(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, out.data(), n);
    return out;
  }

  // The same product through a packed B (the recurrent weights), in ranges of 3 tiles (A and B
  // not transposed as stored: only for !ta && tb). *bf16: whether B was packed in BF16.
  std::vector<float> packed_tiles(bool* bf16 = nullptr) const {
    PackedMatrix packed;
    packed.pack(true, k, n, b.data(), ldb);
    if (bf16) *bf16 = packed.is_bf16();
    std::vector<float> out = c;
    const int count = (n + kGemmTile - 1) / kGemmTile;
    for (int t0 = 0; t0 < count; t0 += 3)
      gemm_packed_tiles(m, alpha, a.data(), lda, packed, beta, out.data(), n, t0, std::min(count, t0 + 3));
    return out;
  }

  // The same over all tiles in one call, B's panels taken last first (`backwards`).
  std::vector<float> packed_backwards() const {
    PackedMatrix packed;
    packed.pack(true, k, n, b.data(), ldb);
    std::vector<float> out = c;
    gemm_packed_tiles(m, alpha, a.data(), lda, packed, beta, out.data(), n, 0, (n + kGemmTile - 1) / kGemmTile, true);
    return out;
  }

  // The same with C's columns cut in three parts at n / 3 and n / 2 (not on a tile's edge), one
  // op(A) for all of them (gemm_cpu_shared_a, as the weight gradients of w_ih and w_hh).
  // *sums: beta * sums + op(A)'s row sums, as the same call gives them (a bias's gradient).
  std::vector<float> shared_a(std::vector<float>* sums = nullptr) const {
    std::vector<float> out = c;
    const int cut[] = {0, n / 3, n / 2, n};
    std::vector<GemmColumns> parts;
    for (int s = 0; s < 3; ++s)
      parts.push_back({tb ? b.data() + static_cast<size_t>(cut[s]) * ldb : b.data() + cut[s], ldb, cut[s + 1] - cut[s],
                       out.data() + cut[s], n});
    if (sums) *sums = std::vector<float>(c.begin(), c.begin() + m);
    gemm_cpu_shared_a(ta, tb, m, k, alpha, a.data(), lda, parts.data(), 3, beta, sums ? sums->data() : nullptr);
    return out;
  }

  // The same through gemm_packed (the whole product, split over the pool as it chooses).
  std::vector<float> packed_whole() const {
    PackedMatrix packed;
    packed.pack(true, k, n, b.data(), ldb);
    std::vector<float> out = c;
    gemm_packed(m, alpha, a.data(), lda, packed, beta, out.data(), n);
    return out;
  }
};

struct GemmShape {
  int m, n, k;
};

// check(case) for every shape and transpose pair; the operands drawn from rng in a fixed order.
template <class Check>
void for_each_gemm_case(std::mt19937& rng, std::initializer_list<GemmShape> shapes, Check check) {
  for (const GemmShape& sh : shapes)
    for (int t = 0; t < 4; ++t) {
      GemmCase g{sh.m, sh.n, sh.k, (t & 1) != 0, (t & 2) != 0, 0.75f, t == 3 ? 0.0f : 0.5f, 0, 0, {}, {}, {}};
      g.lda = g.ta ? g.m : g.k;
      g.ldb = g.tb ? g.k : g.n;
      g.a = random_vector(rng, static_cast<size_t>(g.m) * g.k, 1.0f);
      g.b = random_vector(rng, static_cast<size_t>(g.k) * g.n, 1.0f);
      g.c = random_vector(rng, static_cast<size_t>(g.m) * g.n, 1.0f);
      check(g);
    }
}

// FP32 GEMMs at odd sizes and at the layer's shapes, every transpose, alpha and beta: within
// FP32's accumulation error of a double product, bit-identical for 1, 2 and 3 threads (column
// and row splits both), and through a packed B or with C's columns in parts sharing op(A)
// (gemm_cpu_shared_a) bit-identical to gemm_cpu, op(A)'s row sums with the latter bit-identical
// to a sum in the order of k. The sizes reach the
// packers' vector paths (full 8-row A panels, 16-column B panels, depths past 8) and their
// scalar tails.
void check_fp32_gemm() {
  std::printf("FP32 GEMM (%s)\n", gemm_isa());
  std::mt19937 rng(78);
  // (1 to 8 rows: the skinny kernels, past a block of kNC columns and of kKC rows too; 33 rows: 6-
  // and (AVX2) 5-row panels across a block of kNC columns; 16, 32: 6 + 5 + 5 and 6 + 6 + 4 x 5 in
  // runs of tiles; 19: 18 rows and a skinny tail of 1; 64 and 80 columns: 4 and 5 tiles, taken
  // 3 + 1 and 3 + 2 by the AVX-512 kernels; 2 x 25000: the skinny kernels' runs over 13 blocks
  // of kNC columns, forwards and backwards; 40 x 200 x 8192 on 2 and 3 threads:
  // gemm_cpu_shared_a part by part, its row sums split between the threads)
  const auto shapes = {GemmShape{1, 1, 1}, {7, 13, 5},      {9, 33, 257},    {33, 47, 300},   {64, 2048, 512}, {1030, 80, 72},
                       {40, 2048, 64},     {64, 520, 136},  {2, 2100, 600},  {33, 2100, 100}, {3, 47, 513},    {4, 520, 136},
                       {5, 96, 64},        {6, 33, 9},      {8, 1030, 257},  {16, 2100, 100}, {32, 520, 136},  {19, 300, 513},
                       {24, 64, 40},       {40, 80, 33},    {2, 25000, 3},   {40, 200, 8192}};
  for_each_gemm_case(rng, shapes, [](const GemmCase& g) {
    set_num_threads(1);
    const std::vector<float> first = g.product();
    bool ok = true, same = true;
    double worst = 0;
    for (int i = 0; i < g.m; ++i)
      for (int j = 0; j < g.n; ++j) {
        double e = 0, scale = 0;
        for (int q = 0; q < g.k; ++q) {
          e += static_cast<double>(g.a_at(i, q)) * g.b_at(q, j);
          scale += std::fabs(static_cast<double>(g.a_at(i, q)) * g.b_at(q, j));
        }
        const size_t at = static_cast<size_t>(i) * g.n + j;
        const double want = g.alpha * e + (g.beta == 0.0f ? 0.0 : g.beta * static_cast<double>(g.c[at]));
        const double diff = std::fabs(first[at] - want) / (scale + 1.0);
        worst = std::max(worst, diff);
        if (!(diff <= 1e-6 * std::sqrt(static_cast<double>(g.k) + 1.0))) ok = false;
      }
    // op(A)'s row sums in the order of k, from beta * (the first m values of C)
    std::vector<float> want_sums(g.c.begin(), g.c.begin() + g.m), sums;
    for (int i = 0; i < g.m; ++i) {
      want_sums[i] = g.beta == 0.0f ? 0.0f : want_sums[i] * g.beta;
      for (int q = 0; q < g.k; ++q) want_sums[i] += g.a_at(i, q);
    }
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      same = same && (threads == 1 || g.product() == first) && g.shared_a(&sums) == first && sums == want_sums;
    }
    if (!g.ta && g.tb) {
      same = same && g.packed_tiles() == first && g.packed_backwards() == first;
      for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        same = same && g.packed_whole() == first;
      }
    }
    if (!ok || !same) ++failures;
    std::printf("  gemm %4dx%4dx%3d ta=%d tb=%d %s (max |diff| %.3g of sum |ab|; threads, shared A and packed tiles %s)\n", g.m, g.n, g.k,
                g.ta, g.tb, ok ? "ok" : "TOO LARGE", worst, same ? "bit-identical" : "DIFFER");
  });
  set_num_threads(1);
  // every panel of a packed B on a cache line (a 64-byte panel row across two lines halves the
  // rate of a skinny product over an L2-held weight): the first panel of each block of columns
  // and depth
  for (const GemmShape shape : {GemmShape{1, 768, 192}, {1, 2100, 600}, {1, 47, 513}, {1, 33, 9}}) {
    std::vector<float> b(static_cast<size_t>(shape.n) * shape.k, 1.0f);
    PackedMatrix packed;
    packed.pack(true, shape.k, shape.n, b.data(), shape.k);
    bool aligned = true;
    for (int n0 = 0; n0 < shape.n; n0 += gemm_detail::kNC)
      for (int k0 = 0; k0 < shape.k; k0 += gemm_detail::kKC) aligned = aligned && reinterpret_cast<uintptr_t>(packed.panel(n0, k0)) % 64 == 0;
    if (!aligned) ++failures;
    std::printf("  packed %d x %d: panels %s\n", shape.k, shape.n, aligned ? "on cache lines" : "NOT ON CACHE LINES");
  }
}

// BF16 GEMMs (gemm_cpu and the packed tiles) at odd sizes, every transpose, alpha and beta:
// against a double product of the BF16-rounded operands (tight: only FP32 accumulation
// differs) and of the FP32 operands (BF16's own error).
void check_bf16_gemm() {
  std::printf("BF16 GEMM\n");
  std::mt19937 rng(77);
  // (AMX: 16-row tiles of 32 depths; 40 x 70 x 700 two depth blocks, the second not whole tiles;
  // 17 x 2100 x 40 two column blocks)
  const auto shapes = {GemmShape{1, 1, 1}, {7, 13, 5}, {9, 33, 257}, {33, 47, 300}, {64, 2048, 512}, {3, 100, 1},
                       {40, 70, 700}, {17, 2100, 40}};
  for_each_gemm_case(rng, shapes, [](const GemmCase& g) {
    const std::vector<float> got = g.product();
    bool ok = true;
    double worst_rounded = 0, worst_exact = 0;
    for (int i = 0; i < g.m; ++i)
      for (int j = 0; j < g.n; ++j) {
        double e = 0, r = 0, s2 = 0;
        for (int q = 0; q < g.k; ++q) {
          const float av = g.a_at(i, q), bv = g.b_at(q, j);
          e += static_cast<double>(av) * bv;
          r += bf16_round(av) * bf16_round(bv);
          s2 += std::fabs(bf16_round(av) * bf16_round(bv));
        }
        const size_t at = static_cast<size_t>(i) * g.n + j;
        const double base = g.beta == 0.0f ? 0.0 : g.beta * static_cast<double>(g.c[at]);
        const double dr = std::fabs(got[at] - (g.alpha * r + base)), de = std::fabs(got[at] - (g.alpha * e + base));
        worst_rounded = std::max(worst_rounded, dr);
        worst_exact = std::max(worst_exact, de / (s2 + 1e-3));
        if (dr > 2e-6 * (s2 + 1.0) || de > 1e-2 * (s2 + 1.0)) ok = false;
      }
    if (!ok) ++failures;
    std::printf("  gemm %3dx%4dx%3d ta=%d tb=%d %s (max |diff| vs rounded %.3g, vs FP32 %.3g of sum |ab|)\n", g.m, g.n, g.k, g.ta,
                g.tb, ok ? "ok" : "MISMATCH", worst_rounded, worst_exact);
    if (!g.ta && g.tb) {
      bool bf16 = false;
      const bool same = g.packed_tiles(&bf16) == got && bf16;
      if (!same) ++failures;
      std::printf("  packed tiles %s\n", same ? "ok (bit-identical to gemm_cpu)" : "MISMATCH");
    }
  });
}

// A team split by batch rows (each thread its own rows through every step, no barrier) and the
// same batches split by hidden units: 48 rows, ragged (sorted: prefix GEMMs, and unsorted), 2 and
// 3 threads (16 rows each, or 24 and 24), and 10 rows (AVX2 splits them 4 and 6); with the
// weights' pack caches (where a split by rows projects each thread's own inputs) and without;
// every output and gradient bit-identical to one thread.
// Under BF16 the ReLU RNN is checked forward only (see main).
template <size_t N>
void check_team_splits(const CellKind (&cells)[N], bool bf16 = false) {
  std::vector<int> sorted48, unsorted48, unsorted10;
  for (int b = 0; b < 48; ++b) {
    sorted48.push_back(9 - b * 8 / 48);
    unsorted48.push_back(1 + (b * 7) % 9);
  }
  for (int b = 0; b < 10; ++b) unsorted10.push_back(1 + (b * 3) % 5);
  std::vector<int> sorted13;  // 3 threads split 13 rows 4 + 4 + 5
  for (int b = 0; b < 13; ++b) sorted13.push_back(8 - b / 2);
  const auto run_all = [&](TeamSplit split, int threads) {
    std::vector<float> out;
    g_capture = &out;
    set_team_split(split);
    set_num_threads(threads);
    std::printf("team split by %s, %d threads%s\n", split == TeamSplit::kRows ? "rows" : "units", threads, bf16 ? ", BF16" : "");
    for (CellKind cell : cells) {
      g_forward_only = bf16 && cell == CellKind::kRnnRelu;
      for (int directions = 1; directions <= 2; ++directions) {
        for (bool caches : {false, true}) {
          g_pack_caches = caches;
          check_layer(cell, directions, sorted48, true, 37, 9);
          check_layer(cell, directions, unsorted48, false, 20, 9);
        }
        g_pack_caches = true;
        check_layer(cell, directions, unsorted10, true, 37, 5);
        check_layer(cell, directions, sorted13, false, 20, 8);
        // H a whole number of tiles: split by units, each thread projects its own units' inputs
        check_layer(cell, directions, unsorted10, true, 32, 5);
        check_layer(cell, directions, sorted13, true, 48, 8);
        g_pack_caches = false;
      }
    }
    g_forward_only = false;
    g_capture = nullptr;
    return out;
  };
  const std::vector<float> one = run_all(TeamSplit::kUnits, 1);
  for (TeamSplit split : {TeamSplit::kRows, TeamSplit::kUnits})
    for (int threads : {2, 3}) {
      const bool same = run_all(split, threads) == one;
      if (!same) ++failures;
      std::printf("  bit-identical to one thread: %s\n", same ? "yes" : "NO");
    }
  set_team_split(TeamSplit::kAuto);
}

// A stack of one-direction layers in inference (stack_forward_cpu): the outputs of every layer and
// the final states against the double reference run layer after layer, with the pipeline over time
// forced on (2 and 3 threads: each thread its layers; chunks of 1, 3 and the automatic size, a
// partial last one) and off; every run bit-identical to the stack on one thread. Ragged sorted and
// unsorted lengths, with and without initial states, with pack caches.
template <size_t N>
void check_stack_pipeline(const CellKind (&cells)[N]) {
  struct Case {
    int layers, H, T;
    std::vector<int> lengths;
    bool h0;
  };
  // (the next two: batches that a split by rows cuts into shares of at most 8 rows, which run the
  // whole stack on their own copies of their rows; the last two: a few steps of 2 layers of H = 512,
  // whose weights pass 8 MB for the LSTM and the GRU, so that the split is by units)
  const std::vector<Case> cases = {{2, 37, 11, {}, true},
                                   {3, 20, 9, {9, 7, 7, 3, 1}, false},
                                   {4, 16, 10, {2, 10, 5}, true},
                                   {2, 20, 6, {6, 2, 5, 6, 1, 3, 6, 4, 2}, true},
                                   {3, 16, 7, {7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1}, false},
                                   {2, 512, 1, {1, 1, 1, 1, 1, 1, 1, 1}, true},
                                   {2, 512, 3, {3, 3, 2, 3, 1, 3, 2, 3}, false}};
  const auto run_all = [&](StackPipeline mode, int threads, const char* chunk, TeamSplit split = TeamSplit::kAuto) {
    set_stack_pipeline(mode);
    set_num_threads(threads);
    set_team_split(split);
    set_pipeline_chunk(chunk ? std::atoi(chunk) : 0);
    std::vector<float> out;
    std::printf("stack of layers, pipeline %s, %d threads, chunks of %s\n", mode == StackPipeline::kOn ? "on" : "off", threads,
                chunk ? chunk : "auto");
    for (CellKind cell : cells)
      for (const Case& c : cases) {
        const int B = c.lengths.empty() ? 4 : static_cast<int>(c.lengths.size()), I = 5, H = c.H, T = c.T, L = c.layers;
        const int GH = gate_count(cell) * H;
        std::mt19937 rng(99 + static_cast<int>(cell) + L);
        const size_t state = static_cast<size_t>(B) * H;
        auto x = random_vector(rng, static_cast<size_t>(T) * B * I, 1.0f);
        auto h0 = random_vector(rng, L * state, 0.5f), c0 = random_vector(rng, L * state, 0.5f);
        std::vector<std::vector<float>> w(4 * L);
        std::vector<PackCache> caches(2 * L);
        std::vector<LayerWeights> lw(L);
        const float scale = 1.0f / std::sqrt(static_cast<float>(H));
        for (int l = 0; l < L; ++l) {
          const int in = l == 0 ? I : H;
          const size_t sizes[4] = {static_cast<size_t>(GH) * in, static_cast<size_t>(GH) * H, static_cast<size_t>(GH),
                                   static_cast<size_t>(GH)};
          for (int k = 0; k < 4; ++k) w[4 * l + k] = random_vector(rng, sizes[k], scale);
          lw[l] = {w[4 * l].data(), w[4 * l + 1].data(), w[4 * l + 2].data(), w[4 * l + 3].data(),
                   CachedWeight{&caches[2 * l], 1}, CachedWeight{&caches[2 * l + 1], 1}};
        }
        const int* len = c.lengths.empty() ? nullptr : c.lengths.data();
        std::vector<std::vector<float>> ys(L, std::vector<float>(static_cast<size_t>(T) * B * H, -1.0f));
        std::vector<float*> y_ptrs;
        for (auto& y : ys) y_ptrs.push_back(y.data());
        std::vector<float> hn(L * state), cn(L * state);
        const LayerDims dims{cell, T, B, I, H, 1};
        stack_forward_cpu(dims, L, y_ptrs.data(), hn.data(), cell == CellKind::kLstm ? cn.data() : nullptr, x.data(), len,
                          c.h0 ? h0.data() : nullptr, c.h0 && cell == CellKind::kLstm ? c0.data() : nullptr, lw.data());
        // the reference, layer after layer, each on the previous layer's reference output
        std::vector<double> input = widen(x);
        for (int l = 0; l < L; ++l) {
          const int in = l == 0 ? I : H;
          std::vector<std::vector<double>> wd(4);
          for (int k = 0; k < 4; ++k) wd[k] = widen(w[4 * l + k]);
          const ReferenceWeights rw{wd[0].data(), wd[1].data(), wd[2].data(), wd[3].data()};
          std::vector<double> yr(static_cast<size_t>(T) * B * H), hnr(state), cnr(state);
          std::vector<double> h0d(h0.begin() + l * state, h0.begin() + (l + 1) * state);
          std::vector<double> c0d(c0.begin() + l * state, c0.begin() + (l + 1) * state);
          if (!c.h0) std::fill(h0d.begin(), h0d.end(), 0.0), std::fill(c0d.begin(), c0d.end(), 0.0);
          layer_forward_reference(LayerDims{cell, T, B, in, H, 1}, yr.data(), hnr.data(), cnr.data(), input.data(), len,
                                  h0d.data(), c0d.data(), &rw);
          expect_close("y" + std::to_string(l), ys[l].data(), yr.data(), yr.size());
          expect_close("h_n" + std::to_string(l), hn.data() + l * state, hnr.data(), state);
          if (cell == CellKind::kLstm) expect_close("c_n" + std::to_string(l), cn.data() + l * state, cnr.data(), state);
          input = yr;
        }
        for (const auto& y : ys) out.insert(out.end(), y.begin(), y.end());
        out.insert(out.end(), hn.begin(), hn.end());
        out.insert(out.end(), cn.begin(), cn.end());
      }
    set_pipeline_chunk(0);
    return out;
  };
  const std::vector<float> one = run_all(StackPipeline::kOff, 1, nullptr);
  struct Run {
    StackPipeline mode;
    int threads;
    const char* chunk;
    TeamSplit split;
  };
  for (const Run& r : {Run{StackPipeline::kOff, 2, nullptr, TeamSplit::kAuto}, Run{StackPipeline::kOn, 2, nullptr, TeamSplit::kAuto},
                       Run{StackPipeline::kOn, 2, "1", TeamSplit::kAuto}, Run{StackPipeline::kOn, 3, "3", TeamSplit::kAuto},
                       Run{StackPipeline::kOn, 3, nullptr, TeamSplit::kAuto}, Run{StackPipeline::kAuto, 2, nullptr, TeamSplit::kRows},
                       Run{StackPipeline::kAuto, 3, nullptr, TeamSplit::kRows}}) {
    if (r.split == TeamSplit::kRows) std::printf("  (batches split by rows)\n");
    const bool same = run_all(r.mode, r.threads, r.chunk, r.split) == one;
    if (!same) ++failures;
    std::printf("  bit-identical to one thread: %s\n", same ? "yes" : "NO");
  }
  set_stack_pipeline(StackPipeline::kAuto);
  set_team_split(TeamSplit::kAuto);
}

// Which machines get BF16 products: every kind of machine, by its CPU's facts.
void check_bf16_choice() {
  std::printf("BF16 choice by machine\n");
  struct Machine {
    const char* name;
    CpuFacts facts;
    bool bf16, amx;
  };
  const Machine machines[] = {
      {"AMD Zen 2 (AVX2 only)", {false, false, false, false}, false, false},
      {"AMD Zen 4/5 (AVX512_BF16)", {false, true, true, false}, true, false},
      {"AMD Zen 5 with RECURRENT_ISA=avx2", {false, false, true, false}, false, false},
      {"Intel Ice Lake (AVX-512, no BF16)", {true, true, false, false}, false, false},
      {"Intel Cooper Lake (AVX512_BF16 at half rate)", {true, true, true, false}, false, false},
      {"Intel Sapphire Rapids (AMX-BF16)", {true, true, true, true}, true, true},
      {"Intel Sapphire Rapids, RECURRENT_ISA=avx512", {true, true, true, false}, false, false},
      {"Intel Sapphire Rapids, RECURRENT_ISA=avx2", {true, false, true, false}, false, false},
  };
  for (const Machine& m : machines) {
    bool amx = !m.amx;
    const char* reason = bf16_choice(m.facts, &amx);
    const bool ok = (reason[0] == '\0') == m.bf16 && amx == m.amx && (m.bf16 || std::strlen(reason) > 10);
    if (!ok) ++failures;
    std::printf("  %-46s %s (%s)\n", m.name, ok ? "ok" : "WRONG", reason[0] ? reason : amx ? "BF16 products on AMX" : "BF16 products on AVX512_BF16");
  }
}

// Bahdanau's fused score (cpp/attention.h) against a double loop, and its gradient against central
// differences of that loop, at odd sizes, on 1 to 3 threads (bit-identical across them).
void check_additive_attention() {
  std::printf("additive attention\n");
  const int B = 3, T = 4, S = 5, A = 19;
  std::mt19937 rng(7);
  const std::vector<float> q = random_vector(rng, B * T * A, 1.0f), k = random_vector(rng, B * S * A, 1.0f),
                           v = random_vector(rng, A, 1.0f), g = random_vector(rng, B * T * S, 1.0f);
  auto score = [&](const std::vector<double>& qd, const std::vector<double>& kd, const std::vector<double>& vd, int b, int t, int j) {
    double s = 0;
    for (int a = 0; a < A; ++a) s += vd[a] * std::tanh(qd[(b * T + t) * A + a] + kd[(b * S + j) * A + a]);
    return s;
  };
  std::vector<double> qd = widen(q), kd = widen(k), vd = widen(v);
  auto objective = [&]() {  // sum(g * scores)
    double total = 0;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < S; ++j) total += g[(b * T + t) * S + j] * score(qd, kd, vd, b, t, j);
    return total;
  };
  std::vector<double> ref(B * T * S);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < S; ++j) ref[(b * T + t) * S + j] = score(qd, kd, vd, b, t, j);
  auto differences = [&](std::vector<double>& x) {
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double keep = x[i];
      x[i] = keep + 1e-6;
      const double up = objective();
      x[i] = keep - 1e-6;
      const double down = objective();
      x[i] = keep;
      out[i] = (up - down) / 2e-6;
    }
    return out;
  };
  const std::vector<double> dq_ref = differences(qd), dk_ref = differences(kd), dv_ref = differences(vd);
  std::vector<float> first;
  const int default_threads = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<float> scores(B * T * S), dq(B * T * A), dk(B * S * A), dv(A);
    additive_attention_forward_cpu(scores.data(), q.data(), k.data(), v.data(), B, T, S, A);
    additive_attention_backward_cpu(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), B, T, S, A);
    expect_close("scores", scores.data(), ref.data(), ref.size(), 1e-5, 1e-4);
    expect_close("dq", dq.data(), dq_ref.data(), dq.size());
    expect_close("dk", dk.data(), dk_ref.data(), dk.size());
    expect_close("dv", dv.data(), dv_ref.data(), dv.size());
    std::vector<float> all = scores;
    all.insert(all.end(), dq.begin(), dq.end());
    all.insert(all.end(), dk.begin(), dk.end());
    all.insert(all.end(), dv.begin(), dv.end());
    if (first.empty()) first = all;
    const bool same = std::memcmp(first.data(), all.data(), all.size() * sizeof(float)) == 0;
    if (!same) ++failures;
    std::printf("  %d threads: %s\n", threads, same ? "bit-identical to 1 thread" : "DIFFERS from 1 thread");
  }
  set_num_threads(default_threads);
}

// A worker that picks a call up late (another process busy on its core) sends the calls of the next
// stretch to their caller alone (thread_pool.cc): a team of one there, every item of a parallel_for
// on the caller, and teams again once the stretch is over.
void check_pool_solo() {
  set_num_threads(2);
  const auto team_size = [] {
    int size = 0;
    run_team(2, [&](int id, int team, Barrier&) { if (id == 0) size = team; });
    return size;
  };
  // with no call counted late, teams of 2 once any stretch of solo calls (at most 1 s) is over
  const auto teams_again = [&] {
    set_pool_late_micros(1 << 30);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    bool two = false;
    while (!two && std::chrono::steady_clock::now() < until) two = team_size() == 2;
    return two;
  };
  const bool two = teams_again();
  set_pool_late_micros(0);  // every call is late
  const long before = solo_calls();
  for (int i = 0; i < 100 && solo_calls() == before; ++i) team_size();
  const bool went_solo = solo_calls() > before && team_size() == 1;
  std::vector<int> ran(64, -1);
  parallel_for(64, [&](int i) { ran[i] = i; });
  bool all_items = true;
  for (int i = 0; i < 64; ++i) all_items = all_items && ran[i] == i;
  const bool back = teams_again();
  set_pool_late_micros(-1);
  std::printf("pool: team of 2 %s, solo after a late call %s, items all run %s, teams again %s\n", two ? "yes" : "NO",
              went_solo ? "yes" : "NO", all_items ? "yes" : "NO", back ? "yes" : "NO");
  if (!two || !went_solo || !all_items || !back) ++failures;
}

int main() {
  check_pool_solo();
  check_activations();
  check_additive_attention();
  check_bf16_choice();
  check_fp32_gemm();
  const CellKind cells[] = {CellKind::kRnnTanh, CellKind::kRnnRelu, CellKind::kLstm, CellKind::kGru};
  for (CellKind cell : cells) {
    for (int directions = 1; directions <= 2; ++directions) {
      check_layer(cell, directions, {}, true);
      check_layer(cell, directions, {7, 5, 5, 2}, true);     // sorted: prefix GEMMs
      check_layer(cell, directions, {3, 7, 1, 6, 7}, false);  // unsorted, no bias
      // several blocks of 16 units, a partial last block, one or more threads
      for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        check_layer(cell, directions, {9, 9, 4, 2, 1, 1}, true, 37, 9);
        check_layer(cell, directions, {5, 9, 1, 9}, true, 64, 9);
      }
    }
  }
  check_team_splits(cells);
  check_stack_pipeline(cells);
  // the input projections and the weight gradients in chunks of time steps (set_time_chunk):
  // chunks of 2 and 4 steps over T = 9 (a partial chunk at the end of each direction's sweep)
  for (int chunk : {2, 4}) {
    set_time_chunk(chunk);
    std::printf("time chunks of %d steps\n", chunk);
    for (CellKind cell : cells)
      for (int directions = 1; directions <= 2; ++directions)
        for (int threads : {1, 2}) {
          set_num_threads(threads);
          check_layer(cell, directions, {9, 9, 4, 2, 1, 1}, true, 37, 9);
          check_layer(cell, directions, {5, 9, 1, 9}, false, 64, 9);
        }
  }
  set_time_chunk(0);
  // BF16 matrix products (setFloat32MatmulPrecision('medium')) where the CPU has them: the
  // GEMMs exactly, the layers within BF16's tolerance
  if (set_bf16_matmul(true)) {
    std::printf("BF16 matrix products on %s\n", matmul_path());
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      check_bf16_gemm();
    }
    // the GEMMs above are exact; through the layers BF16's rounding (about 0.4% per operand)
    // adds up over the steps: each tensor within a share of its largest value
    for (CellKind cell : cells) {
      // a ReLU unit near zero that rounding flips passes (or blocks) its whole gradient: forward only
      g_share_of_max = 0.03;
      g_forward_only = cell == CellKind::kRnnRelu;
      for (int directions = 1; directions <= 2; ++directions) {
        check_layer(cell, directions, {9, 9, 4, 2, 1, 1}, true, 37, 9);
        check_layer(cell, directions, {5, 9, 1, 9}, false, 64, 9);
      }
    }
    check_team_splits(cells, true);
    g_share_of_max = 0.0;
    g_forward_only = false;
    set_bf16_matmul(false);
  } else {
    std::printf("BF16 matrix products skipped: %s\n", bf16_unavailable_reason());
  }
  if (failures) {
    std::printf("%d comparisons FAILED\n", failures);
    return 1;
  }
  std::printf("all kernel comparisons passed\n");
  return 0;
}
