// Fused softmax cross-entropy over logits (N, V) with integer targets (N).
// Rows whose target equals ignore_index get loss 0 and gradient 0.
#pragma once

#include <cstdint>

namespace recurrent {

// With label smoothing s (PyTorch's label_smoothing), the target distribution is
// q = (1 - s) onehot(target) + s / V; s = 0 is the plain loss.

// losses (N) = -sum_j q[j] log softmax(logits)[j]
void cross_entropy_forward_cpu(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                               int64_t classes, int32_t ignore_index, float smoothing);

// grad_logits (N, V) = (softmax(logits) - q) * grad_losses[n]
void cross_entropy_backward_cpu(float* grad_logits, const float* logits, const int32_t* targets,
                                const float* grad_losses, int64_t rows, int64_t classes, int32_t ignore_index,
                                float smoothing);

}  // namespace recurrent
