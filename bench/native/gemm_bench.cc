// recurrent's GEMM against OpenBLAS sgemm (Debian's libopenblas-dev, benchmark only) at the
// shapes of a recurrent layer with B = 32: the per-step recurrent product, the input
// projection over all steps, and the weight gradient.
//   gemm_bench [threads...]
#include <cblas.h>

#include <random>

#include "bench/native/common.h"
#include "cpp/gemm.h"
#include "cpp/thread_pool.h"

extern "C" void openblas_set_num_threads(int);

int main(int argc, char** argv) {
  std::vector<int> thread_counts;
  for (int i = 1; i < argc; ++i) thread_counts.push_back(std::atoi(argv[i]));
  if (thread_counts.empty()) thread_counts.push_back(recurrent::num_threads());
  struct Shape {
    const char* what;
    int m, n, k;
    bool trans_a, trans_b;
  };
  std::vector<Shape> shapes;
  for (int h : {128, 512}) {
    shapes.push_back({"step: h (B,H) x W_hh^T (H,4H)", 32, 4 * h, h, false, true});
    shapes.push_back({"input projection: x (TB,I) x W_ih^T", 32 * 32, 4 * h, h, false, true});
    shapes.push_back({"weight gradient: dG^T (4H,TB) x x (TB,I)", 4 * h, h, 32 * 32, true, false});
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Shape& s : shapes) {
    std::vector<float> a(static_cast<size_t>(s.m) * s.k), b(static_cast<size_t>(s.k) * s.n), c(static_cast<size_t>(s.m) * s.n);
    for (float& v : a) v = dist(rng);
    for (float& v : b) v = dist(rng);
    const int lda = s.trans_a ? s.m : s.k, ldb = s.trans_b ? s.k : s.n;
    const double flop = 2.0 * s.m * s.n * s.k;
    for (int threads : thread_counts) {
      recurrent::set_num_threads(threads);
      openblas_set_num_threads(threads);
      const double ours = bench::median_seconds([&] {
        recurrent::gemm_cpu(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
      }, 3, 30, 0.3);
      const double blas = bench::median_seconds([&] {
        cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                    1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
      }, 3, 30, 0.3);
      std::printf("{\"shape\":\"%s\",\"m\":%d,\"n\":%d,\"k\":%d,\"threads\":%d,\"recurrentGflops\":%.1f,\"openblasGflops\":%.1f}\n",
                  s.what, s.m, s.n, s.k, threads, flop / ours / 1e9, flop / blas / 1e9);
    }
  }
  return 0;
}
