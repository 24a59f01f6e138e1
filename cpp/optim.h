// Fused optimizer updates: one pass over a parameter updates it and its state in place.
// Semantics follow torch.optim (SGD, Adam, AdamW, RMSprop) exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace recurrent {

// The optimizers the binding's optimizerStep runs, and the order of each one's hyperparameters
// in the array it is given (the structs' field order: they are filled by aggregate
// initialisation). lib/core/native.ts has the same tables; test/10 checks they agree.
enum class OptimizerKind : int { kSgd = 0, kAdam = 1, kRmsprop = 2 };
inline constexpr const char* kOptimizerNames[] = {"SGD", "Adam", "RMSprop"};
inline constexpr const char* kSgdHyperFields[] = {"lr", "momentum", "dampening", "weightDecay", "nesterov"};
inline constexpr const char* kAdamHyperFields[] = {"lr", "beta1", "beta2", "eps", "weightDecay", "decoupled"};
inline constexpr const char* kRmspropHyperFields[] = {"lr", "alpha", "eps", "weightDecay", "momentum", "centered"};
template <typename T, size_t N>
constexpr size_t field_count(T (&)[N]) { return N; }

struct SgdHyper {
  float lr, momentum, dampening, weight_decay;
  bool nesterov;
};

// momentum_buf may be null when momentum == 0. first_step: the buffer starts as the gradient.
void sgd_step_cpu(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& h,
                  bool first_step);

struct AdamHyper {
  float lr, beta1, beta2, eps, weight_decay;
  bool decoupled;  // AdamW: weight decay applied to the parameter, not the gradient
};

// step: this parameter's step count after this update (1 on the first step).
void adam_step_cpu(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                   const AdamHyper& h, int64_t step);

struct RmspropHyper {
  float lr, alpha, eps, weight_decay, momentum;
  bool centered;
};

// grad_avg only when centered, momentum_buf only when momentum > 0.
void rmsprop_step_cpu(float* param, const float* grad, float* square_avg, float* grad_avg,
                      float* momentum_buf, int64_t n, const RmspropHyper& h);

// Runs update(i, lo, hi) over the elements [lo, hi) of every tensor i in [0, count) with
// take(i), sizes[i] elements each: in chunks spread over the thread pool when they come to two
// or more, else in one pass on the calling thread. An optimizer updates each element on its own,
// so the values do not depend on the split; one call over all parameters lets a model of many
// small tensors (an LSTM's four: 99k elements at H = 128) use both threads.
void for_each_chunk(const int64_t* sizes, size_t count, const std::function<bool(size_t)>& take,
                    const std::function<void(size_t, int64_t, int64_t)>& update);

// Sum of squares in double precision.
double sum_squares_cpu(const float* x, int64_t n);

// x = clamp(x, low, high)
void clamp_cpu(float* x, int64_t n, float low, float high);

// torch.nn.utils.clip_grad_norm_: the L2 norm of all `count` gradients (in double), and when it
// exceeds max_norm every gradient scaled by max_norm / (norm + 1e-6). Returns the norm.
double clip_grad_norm_cpu(float* const* grads, const int64_t* sizes, size_t count, double max_norm);

}  // namespace recurrent
