// C++ kernel tests: every fast recurrent kernel against its double-precision reference,
// forward and backward, for all cells, one and two directions, full and ragged
// lengths. Needs no Node.js; runs under CTest (and compute-sanitizer once CUDA lands).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpp/recurrent.h"
#include "cpp/reference.h"

using namespace recurrent;

namespace {

int failures = 0;

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

void check_layer(CellKind cell, int directions, const std::vector<int>& lengths, bool bias) {
  const int T = 7, B = static_cast<int>(lengths.empty() ? 3 : lengths.size()), I = 5, H = 6;
  const int G = gate_count(cell), GH = G * H;
  const LayerDims dims{cell, T, B, I, H, directions};
  std::printf("cell %d, D=%d, %s lengths, %s bias\n", static_cast<int>(cell), directions,
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
  const char* names[4] = {"dw_ih", "dw_hh", "db_ih", "db_hh"};
  for (int d = 0; d < directions; ++d)
    for (int k = 0; k < (bias ? 4 : 2); ++k)
      expect_close(std::string(names[k]) + (d ? "_r" : ""), g[4 * d + k].data(), gd[4 * d + k].data(),
                   g[4 * d + k].size());
}

}  // namespace

int main() {
  const CellKind cells[] = {CellKind::kRnnTanh, CellKind::kRnnRelu, CellKind::kLstm, CellKind::kGru};
  for (CellKind cell : cells) {
    for (int directions = 1; directions <= 2; ++directions) {
      check_layer(cell, directions, {}, true);
      check_layer(cell, directions, {7, 5, 5, 2}, true);     // sorted: prefix GEMMs
      check_layer(cell, directions, {3, 7, 1, 6, 7}, false);  // unsorted, no bias
    }
  }
  if (failures) {
    std::printf("%d comparisons FAILED\n", failures);
    return 1;
  }
  std::printf("all kernel comparisons passed\n");
  return 0;
}
