// Additive attention scores and their gradient (see attention.h).
#include "attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gates.h"
#include "thread_pool.h"

namespace recurrent {

void additive_scores(const float* q, const float* keys, int64_t key_stride, int S, int A, const float* v, float* scores,
                     float* scratch) {
  const GateKernels& kernels = gate_kernels();
  float* sum = scratch;
  float* u = scratch + A;
  for (int j = 0; j < S; ++j) {
    const float* key = keys + j * key_stride;
    for (int a = 0; a < A; ++a) sum[a] = q[a] + key[a];
    kernels.tanh(sum, u, A);
    float s = 0.0f;
    for (int a = 0; a < A; ++a) s += v[a] * u[a];
    scores[j] = s;
  }
}

void additive_attention_forward_cpu(float* scores, const float* q, const float* k, const float* v, int B, int T, int S, int A) {
  const int64_t rows = static_cast<int64_t>(B) * T;
  const int64_t per_task = std::max<int64_t>(1, (64 * 1024) / (static_cast<int64_t>(S) * A + 1));
  parallel_for(static_cast<int>((rows + per_task - 1) / per_task), [&](int task) {
    std::vector<float> scratch(2 * static_cast<size_t>(A));
    for (int64_t r = task * per_task; r < std::min(rows, (task + 1) * per_task); ++r) {
      const int64_t b = r / T;
      additive_scores(q + r * A, k + b * S * A, A, S, A, v, scores + r * S, scratch.data());
    }
  });
}

void additive_attention_backward_cpu(float* dq, float* dk, float* dv, const float* grad, const float* q, const float* k,
                                     const float* v, int B, int T, int S, int A) {
  const GateKernels& kernels = gate_kernels();
  // a batch row per task: it owns its dq and dk rows; dv is summed per row, then over rows in order
  std::vector<float> dv_rows(static_cast<size_t>(B) * A, 0.0f);
  parallel_for(B, [&](int b) {
    std::vector<float> sum(A), u(A);
    float* dk_b = dk + static_cast<int64_t>(b) * S * A;
    float* dv_b = dv_rows.data() + static_cast<size_t>(b) * A;
    std::fill(dk_b, dk_b + static_cast<int64_t>(S) * A, 0.0f);
    for (int t = 0; t < T; ++t) {
      const int64_t r = static_cast<int64_t>(b) * T + t;
      const float* q_r = q + r * A;
      float* dq_r = dq + r * A;
      std::fill(dq_r, dq_r + A, 0.0f);
      for (int j = 0; j < S; ++j) {
        const float g = grad[r * S + j];
        if (g == 0.0f) continue;
        const float* key = k + (static_cast<int64_t>(b) * S + j) * A;
        for (int a = 0; a < A; ++a) sum[a] = q_r[a] + key[a];
        kernels.tanh(sum.data(), u.data(), A);
        float* dk_j = dk_b + static_cast<int64_t>(j) * A;
        for (int a = 0; a < A; ++a) {
          const float d = g * v[a] * (1.0f - u[a] * u[a]);
          dq_r[a] += d;
          dk_j[a] += d;
          dv_b[a] += g * u[a];
        }
      }
    }
  });
  std::fill(dv, dv + A, 0.0f);
  for (int b = 0; b < B; ++b)
    for (int a = 0; a < A; ++a) dv[a] += dv_rows[static_cast<size_t>(b) * A + a];
}

}  // namespace recurrent
