// Connectionist Temporal Classification (Graves et al., 2006): the loss of a label sequence
// given per-frame log-probabilities, summed over every alignment, its gradient, and the two
// decoders. Semantics follow torch.nn.functional.ctc_loss (PyTorch's CPU kernel).
//
// Shapes: log_probs is (T, B, C), time-major, log-probabilities over C classes (one of them
// the blank). targets holds the B label sequences back to back (row b starts at
// target_offsets[b] and has target_lengths[b] labels, none equal to blank).
//
// The recursions run in log space in double precision over the extended sequence
// l' = (blank, l1, blank, l2, ..., blank) of L' = 2S + 1 symbols; a skip from l'(s-2) to
// l'(s) is allowed when l'(s) is a label that differs from l'(s-2) (repeated labels need a
// blank between them). Rows of the batch are independent: threads take whole rows.
#pragma once

#include <cstdint>
#include <vector>

namespace recurrent {

struct CtcDims {
  int64_t steps;    // T
  int64_t batch;    // B
  int64_t classes;  // C
  int32_t blank;
};

// Why a row's log_probs are not log-probabilities: the first frame (within its input length)
// whose logsumexp over the classes is not 0 (within 1e-3), or holds NaN. row < 0: all are.
struct CtcInputCheck {
  int64_t row = -1, step = -1;
  double logsumexp = 0;
};

// losses (B) = -log p(target_b | log_probs_b) (+inf where no alignment exists).
// grad (T, B, C), when not null: torch's gradient with respect to log_probs,
//   exp(lp[t,b,c]) - exp(log(sum over s with l'(s) = c of alpha_t(s) beta_t(s)) + loss_b - lp[t,b,c]),
// zero past a row's input length — not yet scaled by the loss's incoming gradient. A row with no
// alignment has loss +inf and a NaN gradient (as torch's), or with zero_infinity loss 0 and a zero
// gradient. Returns the first row whose input is not log-probabilities.
CtcInputCheck ctc_loss_cpu(float* losses, float* grad, const float* log_probs, const CtcDims& dims,
                           const int32_t* targets, const int64_t* target_offsets, const int32_t* target_lengths,
                           const int32_t* input_lengths, bool zero_infinity);

// The double-precision reference: the same loss from the textbook recursion over probabilities
// scaled per step (Graves' rescaling), and its gradient by the same definition; for the tests.
void ctc_loss_reference(double* losses, double* grad, const double* log_probs, const CtcDims& dims,
                        const int32_t* targets, const int64_t* target_offsets, const int32_t* target_lengths,
                        const int32_t* input_lengths);

// Best path: the most likely class of each frame, repeats merged, blanks dropped.
std::vector<std::vector<int32_t>> ctc_greedy_decode_cpu(const float* log_probs, const CtcDims& dims,
                                                        const int32_t* input_lengths);

// Prefix beam search (Hannun et al., 2014): the beam_width likeliest label prefixes, each
// scored by the total probability of the alignments ending in a blank and in its last label;
// returns the best prefix of each row.
std::vector<std::vector<int32_t>> ctc_beam_search_cpu(const float* log_probs, const CtcDims& dims,
                                                      const int32_t* input_lengths, int beam_width);

}  // namespace recurrent
