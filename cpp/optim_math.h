// The optimizer updates of one parameter element, written once for both backends: the CPU
// loops (optim.cc) and the CUDA kernels (cuda/optim.cu) call these. Operation by operation
// torch.optim's single-tensor implementations (SGD, Adam / AdamW, RMSprop).
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"
#include "optim.h"

namespace recurrent {

// momentum_buf is read and written only when h.momentum != 0.
RECURRENT_HD void sgd_update(float& param, float grad, float& momentum_buf, const SgdHyper& h, bool first_step) {
  float d = grad;
  if (h.weight_decay != 0.0f) d += h.weight_decay * param;
  if (h.momentum != 0.0f) {
    const float b = first_step ? d : h.momentum * momentum_buf + (1.0f - h.dampening) * d;
    momentum_buf = b;
    d = h.nesterov ? d + h.momentum * b : b;
  }
  param -= h.lr * d;
}

// The constants of one Adam step, worked out once per parameter on the host in double.
struct AdamStepConstants {
  float step_size;   // lr / (1 - beta1^step)
  float bias2_sqrt;  // sqrt(1 - beta2^step)
  float decay;       // AdamW: 1 - lr * weight_decay
};

inline AdamStepConstants adam_step_constants(const AdamHyper& h, int64_t step) {
  const double bias1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(step));
  return {static_cast<float>(h.lr / bias1), static_cast<float>(std::sqrt(bias2)), 1.0f - h.lr * h.weight_decay};
}

RECURRENT_HD void adam_update(float& param, float grad, float& exp_avg, float& exp_avg_sq, const AdamHyper& h,
                              const AdamStepConstants& k) {
  float g = grad;
  float p = param;
  if (h.decoupled) p *= k.decay;
  else if (h.weight_decay != 0.0f) g += h.weight_decay * p;
  const float m = exp_avg + (g - exp_avg) * (1.0f - h.beta1);  // lerp, as torch does
  const float v = exp_avg_sq * h.beta2 + (1.0f - h.beta2) * g * g;
  exp_avg = m;
  exp_avg_sq = v;
  const float denom = sqrtf(v) / k.bias2_sqrt + h.eps;
  param = p - k.step_size * m / denom;
}

// grad_avg is used only when h.centered, momentum_buf only when h.momentum > 0.
RECURRENT_HD void rmsprop_update(float& param, float grad, float& square_avg, float& grad_avg, float& momentum_buf,
                                 const RmspropHyper& h) {
  float g = grad;
  if (h.weight_decay != 0.0f) g += h.weight_decay * param;
  const float sq = square_avg * h.alpha + (1.0f - h.alpha) * g * g;
  square_avg = sq;
  float avg;
  if (h.centered) {
    const float ga = grad_avg + (g - grad_avg) * (1.0f - h.alpha);
    grad_avg = ga;
    avg = sqrtf(sq - ga * ga) + h.eps;
  } else {
    avg = sqrtf(sq) + h.eps;
  }
  if (h.momentum > 0.0f) {
    const float b = momentum_buf * h.momentum + g / avg;
    momentum_buf = b;
    param -= h.lr * b;
  } else {
    param -= h.lr * g / avg;
  }
}

}  // namespace recurrent
