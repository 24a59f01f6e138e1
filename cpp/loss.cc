// Fused softmax cross-entropy (see loss.h). Softmax is recomputed in backward rather
// than stored: one extra exp per logit instead of N*V floats of memory.
#include "loss.h"

#include <algorithm>
#include <cmath>

namespace recurrent {

namespace {
// max and log(sum(exp(x - max))) of one row
void row_stats(const float* x, int64_t classes, float* max, float* log_sum) {
  float m = x[0];
  for (int64_t j = 1; j < classes; ++j) m = std::max(m, x[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(x[j] - m));
  *max = m;
  *log_sum = static_cast<float>(std::log(sum));
}
}  // namespace

void cross_entropy_forward_cpu(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                               int64_t classes, int32_t ignore_index, float smoothing) {
  for (int64_t n = 0; n < rows; ++n) {
    if (targets[n] == ignore_index) {
      losses[n] = 0.0f;
      continue;
    }
    const float* x = logits + n * classes;
    float max, log_sum;
    row_stats(x, classes, &max, &log_sum);
    const float target_term = x[targets[n]] - max - log_sum;  // log p[target]
    if (smoothing == 0.0f) {
      losses[n] = -target_term;
      continue;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) sum += x[j];
    const float mean_term = static_cast<float>(sum / static_cast<double>(classes)) - max - log_sum;  // mean_j log p[j]
    losses[n] = -((1.0f - smoothing) * target_term + smoothing * mean_term);
  }
}

void cross_entropy_backward_cpu(float* grad_logits, const float* logits, const int32_t* targets,
                                const float* grad_losses, int64_t rows, int64_t classes, int32_t ignore_index,
                                float smoothing) {
  for (int64_t n = 0; n < rows; ++n) {
    float* g = grad_logits + n * classes;
    if (targets[n] == ignore_index) {
      std::fill(g, g + classes, 0.0f);
      continue;
    }
    const float* x = logits + n * classes;
    float max, log_sum;
    row_stats(x, classes, &max, &log_sum);
    const float scale = grad_losses[n];
    const float uniform = smoothing / static_cast<float>(classes);
    for (int64_t j = 0; j < classes; ++j) g[j] = (std::exp(x[j] - max - log_sum) - uniform) * scale;
    g[targets[n]] -= (1.0f - smoothing) * scale;
  }
}

}  // namespace recurrent
