// Fused optimizer updates (see optim.h): loops over the per-element updates of optim_math.h,
// which the CUDA kernels share, on the range they are given; for_each_chunk splits one step over
// all of a model's parameters and the thread pool (binding/optim.cc).
#include "optim.h"

#include "optim_math.h"
#include "thread_pool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace recurrent {

namespace {

// The element loops run eight elements at a time where the CPU has AVX2 (and RECURRENT_ISA does not
// force the baseline), four elsewhere. target("avx2") does not enable FMA, so nothing is contracted:
// both give the same values, operation by operation torch's.
#if defined(__x86_64__) && defined(__GNUC__)
#define RECURRENT_LOOP_AVX2 __attribute__((target("avx2")))
bool loops_avx2() {
  static const bool on = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && std::strcmp(gemm_isa(), "baseline") != 0;
  }();
  return on;
}
#else
#define RECURRENT_LOOP_AVX2
bool loops_avx2() { return false; }
#endif

// (The hyperparameters are copied: through a reference they might alias the arrays, and the loop
// would stay scalar.)
__attribute__((always_inline)) inline void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m,
                                                    float* __restrict v, int64_t lo, int64_t hi, const AdamHyper& hyper,
                                                    const AdamStepConstants& constants) {
  const AdamHyper h = hyper;
  const AdamStepConstants k = constants;
#pragma GCC ivdep
  for (int64_t i = lo; i < hi; ++i) adam_update(p[i], g[i], m[i], v[i], h, k);
}
void adam_range(float* p, const float* g, float* m, float* v, int64_t lo, int64_t hi, const AdamHyper& h,
                const AdamStepConstants& k) {
  adam_loop(p, g, m, v, lo, hi, h, k);
}
RECURRENT_LOOP_AVX2 void adam_range_avx2(float* p, const float* g, float* m, float* v, int64_t lo, int64_t hi,
                                         const AdamHyper& h, const AdamStepConstants& k) {
  adam_loop(p, g, m, v, lo, hi, h, k);
}

}  // namespace

void sgd_step_cpu(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& hyper,
                  bool first_step) {
  const SgdHyper h = hyper;  // a copy: through the reference it might alias the arrays (see adam_loop)
  float* __restrict p = param;
  const float* __restrict g = grad;
  if (!momentum_buf) {
    float unused = 0.0f;
    for (int64_t i = 0; i < n; ++i) sgd_update(p[i], g[i], unused, h, first_step);
    return;
  }
  float* __restrict buf = momentum_buf;
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) sgd_update(p[i], g[i], buf[i], h, first_step);
}

void adam_step_cpu(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                   const AdamHyper& h, int64_t step) {
  const AdamStepConstants k = adam_step_constants(h, step);
  (loops_avx2() ? adam_range_avx2 : adam_range)(param, grad, exp_avg, exp_avg_sq, 0, n, h, k);
}

void rmsprop_step_cpu(float* param, const float* grad, float* square_avg, float* grad_avg,
                      float* momentum_buf, int64_t n, const RmspropHyper& h) {
  float unused_avg = 0.0f, unused_buf = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    rmsprop_update(param[i], grad[i], square_avg[i], grad_avg ? grad_avg[i] : unused_avg,
                   momentum_buf ? momentum_buf[i] : unused_buf, h);
}

void for_each_chunk(const int64_t* sizes, size_t count, const std::function<bool(size_t)>& take,
                    const std::function<void(size_t, int64_t, int64_t)>& update) {
  // 16k elements: an Adam chunk takes ~10 us, a pool call a few
  constexpr int64_t kChunk = int64_t{1} << 14;
  struct Chunk {
    size_t tensor;
    int64_t lo, hi;
  };
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < count; ++i) {
    if (!take(i)) continue;
    for (int64_t lo = 0; lo < sizes[i]; lo += kChunk) chunks.push_back({i, lo, std::min(sizes[i], lo + kChunk)});
  }
  if (chunks.size() < 2 || num_threads() <= 1) {
    for (size_t i = 0; i < count; ++i)
      if (take(i)) update(i, 0, sizes[i]);
    return;
  }
  parallel_for(static_cast<int>(chunks.size()), [&](int c) { update(chunks[c].tensor, chunks[c].lo, chunks[c].hi); });
}

double sum_squares_cpu(const float* x, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

void clamp_cpu(float* x, int64_t n, float low, float high) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], low), high);
}

double clip_grad_norm_cpu(float* const* grads, const int64_t* sizes, size_t count, double max_norm) {
  double total = 0.0;
  for (size_t i = 0; i < count; ++i) total += sum_squares_cpu(grads[i], sizes[i]);
  const double norm = std::sqrt(total);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float scale = static_cast<float>(coef);
    for (size_t i = 0; i < count; ++i)
      for (int64_t j = 0; j < sizes[i]; ++j) grads[i][j] *= scale;
  }
  return norm;
}

}  // namespace recurrent
