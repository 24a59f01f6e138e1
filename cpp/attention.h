// Bahdanau's additive attention score, fused: scores (B, T, S) = v . tanh(q (B, T, A) + k (B, S, A)),
// for every query t and key j of each batch row b, and its gradient, without the (B, T, S, A)
// intermediate that the same score written as tensor ops makes (and reads back in backward).
// tanh is the gate kernels' vectorized one (gates.h); backward recomputes it.
#pragma once

#include <cstdint>

namespace recurrent {

// One query against S keys: scores[j] = v . tanh(q + keys[j * key_stride ..]); scratch holds 2 * A floats.
void additive_scores(const float* q, const float* keys, int64_t key_stride, int S, int A, const float* v, float* scores,
                     float* scratch);

void additive_attention_forward_cpu(float* scores, const float* q, const float* k, const float* v, int B, int T, int S, int A);

// dq (B, T, A), dk (B, S, A), dv (A) from grad (B, T, S); all three overwritten.
void additive_attention_backward_cpu(float* dq, float* dk, float* dv, const float* grad, const float* q, const float* k,
                                     const float* v, int B, int T, int S, int A);

}  // namespace recurrent
