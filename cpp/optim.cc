// Fused optimizer updates (see optim.h), written to match torch.optim's single-tensor
// implementations operation by operation.
#include "optim.h"

#include <algorithm>
#include <cmath>

namespace recurrent {

void sgd_step_cpu(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& h,
                  bool first_step) {
  for (int64_t i = 0; i < n; ++i) {
    float d = grad[i];
    if (h.weight_decay != 0.0f) d += h.weight_decay * param[i];
    if (h.momentum != 0.0f) {
      float& buf = momentum_buf[i];
      buf = first_step ? d : h.momentum * buf + (1.0f - h.dampening) * d;
      d = h.nesterov ? d + h.momentum * buf : buf;
    }
    param[i] -= h.lr * d;
  }
}

void adam_step_cpu(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                   const AdamHyper& h, int64_t step) {
  const double bias1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(h.lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float decay = 1.0f - h.lr * h.weight_decay;
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (h.decoupled) param[i] *= decay;
    else if (h.weight_decay != 0.0f) g += h.weight_decay * param[i];
    exp_avg[i] += (g - exp_avg[i]) * (1.0f - h.beta1);  // lerp, as torch does
    exp_avg_sq[i] = exp_avg_sq[i] * h.beta2 + (1.0f - h.beta2) * g * g;
    const float denom = std::sqrt(exp_avg_sq[i]) / bias2_sqrt + h.eps;
    param[i] -= step_size * exp_avg[i] / denom;
  }
}

void rmsprop_step_cpu(float* param, const float* grad, float* square_avg, float* grad_avg,
                      float* momentum_buf, int64_t n, const RmspropHyper& h) {
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (h.weight_decay != 0.0f) g += h.weight_decay * param[i];
    square_avg[i] = square_avg[i] * h.alpha + (1.0f - h.alpha) * g * g;
    float avg;
    if (h.centered) {
      grad_avg[i] += (g - grad_avg[i]) * (1.0f - h.alpha);
      avg = std::sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + h.eps;
    } else {
      avg = std::sqrt(square_avg[i]) + h.eps;
    }
    if (h.momentum > 0.0f) {
      momentum_buf[i] = momentum_buf[i] * h.momentum + g / avg;
      param[i] -= h.lr * momentum_buf[i];
    } else {
      param[i] -= h.lr * g / avg;
    }
  }
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
