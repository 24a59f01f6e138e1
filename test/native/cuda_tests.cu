// CUDA kernel tests: the GEMM against the CPU GEMM, and the recurrent layer (every cell,
// one and two directions, full and ragged lengths, with and without bias) forward and
// backward against the double-precision reference, as kernel_tests.cc does for the CPU.
// Without a usable device the test says why and exits 77, which CTest reports as skipped
// (never as passed). Run it under compute-sanitizer on a GPU machine:
//   compute-sanitizer --tool memcheck build/ctest/cuda_tests
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpp/gemm.h"
#include "cpp/reference.h"
#include "cuda/gemm.h"
#include "cuda/recurrent.h"

using namespace recurrent;

namespace {

int failures = 0;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::printf("CUDA error in %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

template <class T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)), "cudaMalloc");
  if (!v.empty()) check(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "copy to device");
  return p;
}

std::vector<float> to_host(const float* p, size_t n) {
  std::vector<float> v(n);
  check(cudaDeviceSynchronize(), "synchronize");
  check(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), "copy to host");
  return v;
}

std::vector<float> random_vector(std::mt19937& rng, size_t n, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double expect_close(const std::string& what, const std::vector<float>& got, const double* ref, size_t n,
                  double atol = 2e-5, double rtol = 1e-3) {
  double max_diff = 0.0;
  bool ok = got.size() >= n;
  for (size_t i = 0; i < n && ok; ++i) {
    const double diff = std::fabs(got[i] - ref[i]);
    max_diff = std::max(max_diff, diff);
    if (!(diff <= atol + rtol * std::fabs(ref[i]))) {
      std::printf("    %s[%zu]: got %.7g, expected %.7g\n", what.c_str(), i, got[i], ref[i]);
      ok = false;
    }
  }
  if (!ok) ++failures;
  std::printf("  %-8s %s (max |diff| %.3g)\n", what.c_str(), ok ? "ok" : "MISMATCH", max_diff);
  return max_diff;
}

void check_gemm(bool ta, bool tb, int m, int n, int k, float beta, int batch, bool tf32 = false) {
  std::mt19937 rng(m * 31 + n * 7 + k);
  const int lda = ta ? m : k, ldb = tb ? k : n;
  const long sa = static_cast<long>(m) * k, sb = static_cast<long>(k) * n, sc = static_cast<long>(m) * n;
  auto a = random_vector(rng, sa * batch, 1.0f), b = random_vector(rng, sb * batch, 1.0f), c = random_vector(rng, sc * batch, 1.0f);
  std::vector<double> expected(c.size());
  for (int z = 0; z < batch; ++z) {
    std::vector<float> out(c.begin() + z * sc, c.begin() + (z + 1) * sc);
    gemm_cpu(ta, tb, m, n, k, 0.5f, a.data() + z * sa, lda, b.data() + z * sb, ldb, beta, out.data(), n);
    for (long i = 0; i < sc; ++i) expected[z * sc + i] = out[i];
  }
  float *da = to_device(a), *db = to_device(b), *dc = to_device(c);
  cuda::set_tf32(tf32);
  cuda::gemm(nullptr, ta, tb, m, n, k, 0.5f, da, lda, db, ldb, beta, dc, n, batch, sa, sb, sc);
  cuda::set_tf32(false);
  char name[96];
  std::snprintf(name, sizeof name, "gemm%s %c%c %dx%dx%d b%g x%d", tf32 ? " tf32" : "", ta ? 'T' : 'N', tb ? 'T' : 'N', m,
                n, k, beta, batch);
  // TF32 rounds the inputs to 10-bit mantissas: looser, and it must differ from FP32 (the
  // tensor cores really ran)
  const double tol = tf32 ? 2e-2 : 1e-4;
  const double max_diff = expect_close(name, to_host(dc, c.size()), expected.data(), c.size(), tol, tol);
  if (tf32 && max_diff < 1e-5) {
    std::printf("    %s: identical to FP32, so TF32 was not used\n", name);
    ++failures;
  }
  cudaFree(da), cudaFree(db), cudaFree(dc);
}

std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

void check_layer(CellKind cell, int directions, const std::vector<int>& lengths, bool bias, int H) {
  const int T = 7, B = static_cast<int>(lengths.empty() ? 3 : lengths.size()), I = 5;
  const int GH = gate_count(cell) * H;
  const LayerDims dims{cell, T, B, I, H, directions};
  std::printf("cell %d, D=%d, H=%d, B=%d, %s lengths, %s bias, %s forward, %s backward\n", static_cast<int>(cell),
              directions, H, B, lengths.empty() ? "full" : "ragged", bias ? "with" : "no",
              cuda::uses_persistent(dims, false) ? "persistent" : "stepwise",
              cuda::uses_persistent(dims, true) ? "persistent" : "stepwise");
  std::mt19937 rng(99 + static_cast<int>(cell) * 10 + directions);
  const size_t state = static_cast<size_t>(directions) * B * H, ysize = static_cast<size_t>(T) * B * directions * H;
  auto x = random_vector(rng, static_cast<size_t>(T) * B * I, 1.0f);
  auto h0 = random_vector(rng, state, 0.5f), c0 = random_vector(rng, state, 0.5f);
  auto dy = random_vector(rng, ysize, 1.0f), dhn = random_vector(rng, state, 1.0f), dcn = random_vector(rng, state, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  std::vector<std::vector<float>> w(4 * directions);
  std::vector<std::vector<double>> wd(4 * directions);
  std::vector<float*> wdev(4 * directions), gdev(4 * directions);
  std::vector<LayerWeights> lw(directions);
  std::vector<LayerGrads> lg(directions);
  std::vector<ReferenceWeights> rw(directions);
  std::vector<std::vector<double>> gd(4 * directions);
  std::vector<ReferenceGrads> rg(directions);
  for (int d = 0; d < directions; ++d) {
    const size_t sizes[4] = {static_cast<size_t>(GH) * I, static_cast<size_t>(GH) * H, static_cast<size_t>(GH), static_cast<size_t>(GH)};
    for (int k = 0; k < 4; ++k) {
      w[4 * d + k] = random_vector(rng, sizes[k], scale);
      wd[4 * d + k] = widen(w[4 * d + k]);
      wdev[4 * d + k] = to_device(w[4 * d + k]);
      gdev[4 * d + k] = to_device(std::vector<float>(sizes[k], NAN));  // every gradient must be written
      gd[4 * d + k].assign(sizes[k], 0.0);
    }
    lw[d] = {wdev[4 * d], wdev[4 * d + 1], bias ? wdev[4 * d + 2] : nullptr, bias ? wdev[4 * d + 3] : nullptr};
    lg[d] = {gdev[4 * d], gdev[4 * d + 1], bias ? gdev[4 * d + 2] : nullptr, bias ? gdev[4 * d + 3] : nullptr};
    rw[d] = {wd[4 * d].data(), wd[4 * d + 1].data(), bias ? wd[4 * d + 2].data() : nullptr, bias ? wd[4 * d + 3].data() : nullptr};
    rg[d] = {gd[4 * d].data(), gd[4 * d + 1].data(), bias ? gd[4 * d + 2].data() : nullptr, bias ? gd[4 * d + 3].data() : nullptr};
  }
  const int* len = lengths.empty() ? nullptr : lengths.data();
  int* dlen = lengths.empty() ? nullptr : to_device(lengths);
  float *dx_in = to_device(x), *dh0 = to_device(h0), *dc0 = to_device(c0), *ddy = to_device(dy), *ddhn = to_device(dhn), *ddcn = to_device(dcn);
  float* y = to_device(std::vector<float>(ysize, NAN));
  float* hn = to_device(std::vector<float>(state, NAN));
  float* cn = to_device(std::vector<float>(state, NAN));
  float* reserve = to_device(std::vector<float>(layer_reserve_size(dims), 0.0f));
  float* workspace = to_device(std::vector<float>(cuda::layer_workspace_size(dims), NAN));
  cuda::layer_forward(nullptr, dims, y, hn, cn, reserve, dx_in, dlen, dh0, dc0, lw.data(), workspace);

  std::vector<double> yr(ysize), hnr(state), cnr(state);
  const auto xd = widen(x), h0d = widen(h0), c0d = widen(c0);
  layer_forward_reference(dims, yr.data(), hnr.data(), cnr.data(), xd.data(), len, h0d.data(), c0d.data(), rw.data());
  expect_close("y", to_host(y, ysize), yr.data(), ysize);
  expect_close("h_n", to_host(hn, state), hnr.data(), state);
  if (cell == CellKind::kLstm) expect_close("c_n", to_host(cn, state), cnr.data(), state);

  float* gx = to_device(std::vector<float>(x.size(), NAN));
  float* gh0 = to_device(std::vector<float>(state, NAN));
  float* gc0 = to_device(std::vector<float>(state, NAN));
  cuda::layer_backward(nullptr, dims, gx, gh0, gc0, lg.data(), ddy, ddhn, ddcn, reserve, dx_in, dlen, lw.data(), workspace);
  std::vector<double> dxr(x.size()), dh0r(state), dc0r(state);
  const auto dyd = widen(dy), dhnd = widen(dhn), dcnd = widen(dcn);
  layer_backward_reference(dims, dxr.data(), dh0r.data(), dc0r.data(), rg.data(), dyd.data(), dhnd.data(), dcnd.data(),
                           xd.data(), len, h0d.data(), c0d.data(), rw.data());
  expect_close("dx", to_host(gx, x.size()), dxr.data(), x.size());
  expect_close("dh0", to_host(gh0, state), dh0r.data(), state);
  if (cell == CellKind::kLstm) expect_close("dc0", to_host(gc0, state), dc0r.data(), state);
  const char* names[4] = {"dw_ih", "dw_hh", "db_ih", "db_hh"};
  for (int d = 0; d < directions; ++d)
    for (int k = 0; k < (bias ? 4 : 2); ++k)
      expect_close(std::string(names[k]) + (d ? "_r" : ""), to_host(gdev[4 * d + k], gd[4 * d + k].size()), gd[4 * d + k].data(),
                   gd[4 * d + k].size());
  for (float* p : wdev) cudaFree(p);
  for (float* p : gdev) cudaFree(p);
  for (float* p : {dx_in, dh0, dc0, ddy, ddhn, ddcn, y, hn, cn, reserve, workspace, gx, gh0, gc0}) cudaFree(p);
  if (dlen) cudaFree(dlen);
}

}  // namespace

int main() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("no usable CUDA device (%s): the CUDA kernel tests are SKIPPED, not passed\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "no device found");
    return 77;
  }
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "device properties");
  std::printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  // RECURRENT_CUDA_TESTS_QUICK=1: a subset that still reaches every kernel (for the slow
  // compute-sanitizer tools)
  const bool quick = std::getenv("RECURRENT_CUDA_TESTS_QUICK") != nullptr;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      if (quick && ta != tb) continue;
      check_gemm(ta, tb, 37, 29, 53, 0.0f, 1);
      check_gemm(ta, tb, 128, 96, 300, 1.0f, 1);
      check_gemm(ta, tb, 5, 70, 17, 0.5f, 3);
      // few tiles, long K: the split-K path (partial products added with atomics)
      check_gemm(ta, tb, 8, 100, 2048, 0.0f, 1);
      check_gemm(ta, tb, 8, 100, 2048, 1.0f, 1);
      check_gemm(ta, tb, 3, 64, 1000, 0.5f, 1);
      // many tiles: the 128 x 128 kernel (FP32, then TF32 tensor cores), edges included
      // few 128 x 128 tiles, long K: those tiles with K split (the layer's per-step products at large batch)
      check_gemm(ta, tb, 256, 512, 2048, 0.5f, 1);
      check_gemm(ta, tb, 300, 700, 1500, 0.0f, 1);
      check_gemm(ta, tb, 256, 512, 2048, 1.0f, 1, true);
      check_gemm(ta, tb, 1061, 2053, 77, 0.5f, 1);
      check_gemm(ta, tb, 300, 257, 40, 0.0f, 20);
      check_gemm(ta, tb, 1061, 2053, 77, 0.5f, 1, true);
      check_gemm(ta, tb, 300, 257, 40, 0.0f, 20, true);
    }
  const CellKind cells[] = {CellKind::kRnnTanh, CellKind::kRnnRelu, CellKind::kLstm, CellKind::kGru};
  // every layer case on both paths: the per-step kernels and the persistent kernels
  for (cuda::PersistentMode mode : {cuda::PersistentMode::kNever, cuda::PersistentMode::kAlways}) {
    cuda::set_persistent_mode(mode);
    for (CellKind cell : cells)
      for (int directions = 1; directions <= 2; ++directions) {
        if (quick && (directions == 1 || cell == CellKind::kRnnRelu)) continue;
        check_layer(cell, directions, {}, true, 6);
        check_layer(cell, directions, {7, 5, 5, 2}, true, 6);
        check_layer(cell, directions, {3, 7, 1, 6, 7}, false, 37);
        // more units than SMs: several units per block, the last block partly empty
        check_layer(cell, directions, {7, 2, 6}, true, 301);
      }
  }
  // a large batch on the per-step path: its products take the split-K 128 x 128 tiles
  if (!quick) {
    cuda::set_persistent_mode(cuda::PersistentMode::kNever);
    std::vector<int> lengths(256, 7);
    for (int b = 0; b < 256; b += 5) lengths[b] = 1 + b % 7;
    check_layer(CellKind::kLstm, 1, lengths, true, 512);
  }
  cuda::set_persistent_mode(cuda::PersistentMode::kAuto);
  if (failures) {
    std::printf("%d CUDA comparisons FAILED\n", failures);
    return 1;
  }
  std::printf("all CUDA kernel comparisons passed\n");
  return 0;
}
