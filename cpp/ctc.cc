// CTC loss, gradient and decoders on the CPU (see ctc.h).
//
// The fast loss runs the forward-backward recursions over probabilities, rescaled so that they
// stay in range (Graves 2012, section 7.3): first with one scale per step (step_scaled_row), the
// inner loops plain multiply-adds on doubles; a row whose states spread beyond what one scale
// holds (long, uninformative inputs) again with a scale per block of 8 states
// (block_scaled_row); a row that still loses precision (checked at every step) by the log-space
// reference. Threads take whole rows; each row's work is
// O(T_b * (2 S_b + 1)) plus O(T_b * C) for its gradient.
#include "ctc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>

#include "thread_pool.h"

namespace recurrent {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double log_add(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  return a > b ? a + std::log1p(std::exp(b - a)) : b + std::log1p(std::exp(a - b));
}

// The extended sequence l' of a row: blank, l1, blank, l2, ..., blank.
std::vector<int32_t> extended(const int32_t* labels, int32_t count, int32_t blank) {
  std::vector<int32_t> ext(2 * static_cast<size_t>(count) + 1, blank);
  for (int32_t i = 0; i < count; ++i) ext[2 * i + 1] = labels[i];
  return ext;
}

// Whether alpha may skip from s - 2 to s (and beta from s + 2 to s, mirrored).
inline bool can_skip(const std::vector<int32_t>& ext, size_t s, int32_t blank) {
  return s >= 2 && ext[s] != blank && ext[s] != ext[s - 2];
}

// The per-row view of the arguments.
struct Row {
  const float* lp;  // lp[t * stride + c]
  int64_t stride;   // B * C
  int64_t classes;
  int32_t steps;    // T_b
  std::vector<int32_t> ext;
  int32_t blank;
  std::vector<double> skip;  // 1 where alpha may skip into s from s - 2 (two zeros past the end)

  // The states of step t a complete alignment can pass: s <= 2t + 1 are reachable, and only
  // s >= L - 2 (T - t) can still finish.
  std::pair<size_t, size_t> band(int32_t t) const {
    const size_t L = ext.size();
    const size_t hi = std::min(L, 2 * static_cast<size_t>(t) + 2);
    const size_t lo = L > 2 * static_cast<size_t>(steps - t) ? L - 2 * static_cast<size_t>(steps - t) : 0;
    return {lo, hi};
  }
};

Row row_of(const float* log_probs, const CtcDims& dims, const int32_t* targets, const int64_t* offsets,
           const int32_t* target_lengths, const int32_t* input_lengths, int64_t b) {
  Row r{log_probs + b * dims.classes, dims.batch * dims.classes, dims.classes, input_lengths[b],
        extended(targets + offsets[b], target_lengths[b], dims.blank), dims.blank, {}};
  r.skip.assign(r.ext.size() + 2, 0.0);
  for (size_t s = 0; s < r.ext.size(); ++s) r.skip[s] = can_skip(r.ext, s, r.blank) ? 1.0 : 0.0;
  return r;
}

// The loss of a row that needs no recursion: 0 or +inf without frames, +inf when the row has
// fewer frames than its labels plus one per repeat (no alignment, as torch); else NaN.
double without_recursion(const Row& r) {
  const size_t L = r.ext.size();
  if (r.steps == 0) return L == 1 ? 0.0 : kInf;
  size_t repeats = 0;
  for (size_t s = 3; s < L; s += 2) repeats += r.ext[s] == r.ext[s - 2];
  if ((L - 1) / 2 + repeats > static_cast<size_t>(r.steps)) return kInf;
  return std::numeric_limits<double>::quiet_NaN();
}

// -------------------------------------------------------------------------------------------
// Reference (double, log space, every alpha and beta stored): the textbook recursion.

template <typename Lp>
double reference_row(const Lp& lp, int32_t T, const std::vector<int32_t>& ext, int32_t blank, int64_t classes,
                     double* grad, int64_t grad_stride) {
  const size_t L = ext.size();
  if (T == 0) return L == 1 ? 0.0 : kInf;
  std::vector<double> alpha(static_cast<size_t>(T) * L, -kInf), beta(static_cast<size_t>(T) * L, -kInf);
  alpha[0] = lp(0, ext[0]);
  if (L > 1) alpha[1] = lp(0, ext[1]);
  for (int32_t t = 1; t < T; ++t)
    for (size_t s = 0; s < L; ++s) {
      double a = alpha[(t - 1) * L + s];
      if (s >= 1) a = log_add(a, alpha[(t - 1) * L + s - 1]);
      if (can_skip(ext, s, blank)) a = log_add(a, alpha[(t - 1) * L + s - 2]);
      alpha[t * L + s] = a + lp(t, ext[s]);
    }
  const double log_p = L > 1 ? log_add(alpha[(T - 1) * L + L - 1], alpha[(T - 1) * L + L - 2]) : alpha[(T - 1) * L];
  if (!grad) return -log_p;
  beta[(T - 1) * L + L - 1] = lp(T - 1, ext[L - 1]);
  if (L > 1) beta[(T - 1) * L + L - 2] = lp(T - 1, ext[L - 2]);
  for (int32_t t = T - 2; t >= 0; --t)
    for (size_t s = 0; s < L; ++s) {
      double b = beta[(t + 1) * L + s];
      if (s + 1 < L) b = log_add(b, beta[(t + 1) * L + s + 1]);
      if (s + 2 < L && can_skip(ext, s + 2, blank)) b = log_add(b, beta[(t + 1) * L + s + 2]);
      beta[t * L + s] = b + lp(t, ext[s]);
    }
  std::vector<double> lcab(static_cast<size_t>(classes));
  for (int32_t t = 0; t < T; ++t) {
    std::fill(lcab.begin(), lcab.end(), -kInf);
    for (size_t s = 0; s < L; ++s) lcab[ext[s]] = log_add(lcab[ext[s]], alpha[t * L + s] + beta[t * L + s]);
    for (int64_t c = 0; c < classes; ++c) grad[t * grad_stride + c] = std::exp(lp(t, c)) - std::exp(lcab[c] - log_p - lp(t, c));
  }
  return -log_p;
}

// -------------------------------------------------------------------------------------------
// Fast: scaled probabilities.

// Scratch of one thread, reused across rows and calls.
struct Scratch {
  std::vector<double> prev, next, beta, beta_next, weight, emit, scale;
  std::vector<double> sigma_prev, sigma_next, tau, tau_next, sigma;  // per block: log scales
  std::vector<float> alpha;  // alpha of every step and reachable state, relative to its block's scale
};

// States per block of the scaled recursions: each block of adjacent states keeps its own log scale.
constexpr size_t kBlock = 8;

// One step of a block-scaled recursion over the states [lo, hi) of `out`: out(s) is the sum of
// in(s + k * dir) * weight_k (k = 0, 1, 2; weight_2 only where `skip2` allows) times emit(s), with
// in relative to the scales in_scale (per block) and out relative to out_scale, which this sets
// (each block of out normalized by its largest value; -inf for a block of zeros).
// dir = -1: alpha (from s, s - 1, s - 2); dir = +1: beta (from s, s + 1, s + 2).
template <int kDir>
void scaled_step(double* out, double* out_scale, const double* in, const double* in_scale, size_t lo, size_t hi, size_t L,
                 const double* emit, const int32_t* label, const double* skip) {
  const size_t first = lo / kBlock, last = (hi - 1) / kBlock, blocks = (L + kBlock - 1) / kBlock;
  for (size_t k = first; k <= last; ++k) {
    const size_t s0 = std::max(lo, k * kBlock), s1 = std::min(hi, (k + 1) * kBlock);
    // the neighbouring block the transitions come from (the one before for alpha, after for beta)
    const size_t other = kDir < 0 ? (k > 0 ? k - 1 : k) : std::min(k + 1, blocks - 1);
    const double ref = std::max(in_scale[k], in_scale[other]);
    if (ref == -kInf) {
      for (size_t s = s0; s < s1; ++s) out[s] = 0.0;
      out_scale[k] = -kInf;
      continue;
    }
    const double own = std::exp(in_scale[k] - ref), near = std::exp(in_scale[other] - ref);
    const auto scaled = [&](size_t from) { return in[from] * (from / kBlock == k ? own : near); };
    double top = 0;
    if (kDir < 0) {
      // a sliding window over in(s - 2), in(s - 1), in(s), each in this block's units
      double before2 = s0 >= 2 ? scaled(s0 - 2) : 0.0, before1 = s0 >= 1 ? scaled(s0 - 1) : 0.0;
      for (size_t s = s0; s < s1; ++s) {
        const double here = in[s] * own;
        const double v = (here + before1 + skip[s] * before2) * emit[label[s]];
        out[s] = v;
        top = std::max(top, v);
        before2 = before1;
        before1 = here;
      }
    } else {
      double after2 = s1 + 1 < L + 2 ? scaled(s1 + 1) : 0.0, after1 = scaled(s1);
      for (size_t s = s1; s-- > s0;) {
        const double here = in[s] * own;
        const double v = (here + after1 + skip[s + 2] * after2) * emit[label[s]];
        out[s] = v;
        top = std::max(top, v);
        after2 = after1;
        after1 = here;
      }
    }
    if (!(top > 0)) {
      out_scale[k] = -kInf;
      continue;
    }
    const double inverse = 1.0 / top;
    for (size_t s = s0; s < s1; ++s) out[s] *= inverse;
    out_scale[k] = ref + std::log(top);
  }
}

// The same with a log scale per block of kBlock states, for the rows step_scaled_row cannot keep
// in range. Returns NaN when it loses precision too (the caller falls back to the reference).
//
// alpha and beta are kept as doubles relative to a log scale per block of kBlock adjacent states,
// so no log or exp runs per state: the states of a step may spread over any range, each block
// within ~1e308. A block whose own states spread further (peaked inputs whose off-path labels
// have probabilities below ~1e-40 over kBlock states) would lose digits; the gradient pass
// checks for it: at every step the occupations sum_s alpha_t(s) beta_t(s) / (y_t(s) p) must sum
// to 1 (within 1e-7), or the row is recomputed in log space.
double block_scaled_row(const Row& r, float* grad, Scratch& w) {
  const int32_t T = r.steps;
  const size_t L = r.ext.size();
  if (const double trivial = without_recursion(r); !std::isnan(trivial)) return trivial;
  const int64_t C = r.classes;
  const double* emit = w.emit.data();  // the emission probabilities of every frame (filled by the caller)
  const int32_t* label = r.ext.data();
  const double* skip = r.skip.data();
  const size_t blocks = (L + kBlock - 1) / kBlock;
  const auto clear_outside = [&](double* v, double* scale, size_t lo, size_t hi) {
    // the arrays hold values of two steps ago: the band moves by at most two states a step, so
    // only the two states below it, and the blocks below its first, can be stale (nothing above
    // it was ever written)
    for (size_t s = lo >= 2 ? lo - 2 : 0; s < lo; ++s) v[s] = 0.0;
    for (size_t k = lo / kBlock; k-- > 0 && scale[k] != -kInf;) scale[k] = -kInf;
    for (size_t k = (hi - 1) / kBlock + 1; k < blocks; ++k) scale[k] = -kInf;
  };

  w.prev.assign(L + 2, 0.0);
  w.next.assign(L + 2, 0.0);
  w.sigma_prev.assign(blocks, -kInf);
  w.sigma_next.assign(blocks, -kInf);
  w.alpha.resize(static_cast<size_t>(T) * L);
  w.sigma.resize(static_cast<size_t>(T) * blocks);
  for (int32_t t = 0; t < T; ++t) {
    const auto [lo, hi] = r.band(t);
    const double* e = emit + t * C;
    if (t == 0) {
      // alpha_0: the first blank and the first label, each its emission probability
      for (size_t s = lo; s < hi; ++s) w.next[s] = e[label[s]];
      for (size_t k = 0; k < blocks; ++k) w.sigma_next[k] = k == 0 ? 0.0 : -kInf;
    } else {
      scaled_step<-1>(w.next.data(), w.sigma_next.data(), w.prev.data(), w.sigma_prev.data(), lo, hi, L, e, label, skip);
    }
    clear_outside(w.next.data(), w.sigma_next.data(), lo, hi);
    float* stored = w.alpha.data() + t * L;
    for (size_t s = lo; s < hi; ++s) stored[s] = static_cast<float>(w.next[s]);
    std::copy(w.sigma_next.begin(), w.sigma_next.end(), w.sigma.begin() + static_cast<long>(t) * blocks);
    std::swap(w.prev, w.next);
    std::swap(w.sigma_prev, w.sigma_next);
  }
  // p: the last step's alphas at the two final symbols
  const auto at = [&](size_t s) { return w.prev[s] > 0 ? std::log(w.prev[s]) + w.sigma_prev[s / kBlock] : -kInf; };
  const double log_p = L > 1 ? log_add(at(L - 1), at(L - 2)) : at(L - 1);
  if (!(log_p > -kInf)) return kInf;

  // beta backwards, one step at a time; at each step the gradient from alpha_t * beta_t
  w.beta.assign(L + 2, 0.0);
  w.beta_next.assign(L + 2, 0.0);
  w.tau.assign(blocks, -kInf);
  w.tau_next.assign(blocks, -kInf);
  w.weight.assign(static_cast<size_t>(C), 0.0);
  for (int32_t t = T - 1; t >= 0; --t) {
    const auto [lo, hi] = r.band(t);
    const double* e = emit + t * C;
    if (t == T - 1) {
      for (size_t s = lo; s < hi; ++s) w.beta[s] = s + 2 >= L ? e[label[s]] : 0.0;
      for (size_t k = 0; k < blocks; ++k) w.tau[k] = -kInf;
      w.tau[(L - 1) / kBlock] = 0.0;
      if (L >= 2) w.tau[(L - 2) / kBlock] = 0.0;
    } else {
      scaled_step<+1>(w.beta.data(), w.tau.data(), w.beta_next.data(), w.tau_next.data(), lo, hi, L, e, label, skip);
    }
    clear_outside(w.beta.data(), w.tau.data(), lo, hi);
    // the occupation of state s: alpha_t(s) beta_t(s) / (y_t(s) p), one scale factor per block
    std::fill(w.weight.begin(), w.weight.end(), 0.0);
    double total = 0;
    const float* alpha = w.alpha.data() + t * L;
    const double* sigma = w.sigma.data() + static_cast<long>(t) * blocks;
    for (size_t k = lo / kBlock; k <= (hi - 1) / kBlock; ++k) {
      const double scale = sigma[k] + w.tau[k] - log_p;
      if (!(scale > -700)) continue;  // nothing of p runs through this block
      const double factor = std::exp(scale);
      for (size_t s = std::max(lo, k * kBlock); s < std::min(hi, (k + 1) * kBlock); ++s) {
        const double y = e[label[s]];
        if (!(y > 0)) continue;
        const double v = static_cast<double>(alpha[s]) * w.beta[s] / y * factor;
        w.weight[label[s]] += v;
        total += v;
      }
    }
    if (!(std::fabs(total - 1.0) <= 1e-7)) return std::numeric_limits<double>::quiet_NaN();
    std::swap(w.beta, w.beta_next);
    std::swap(w.tau, w.tau_next);
    if (!grad) continue;
    float* g = grad + t * r.stride;
    const double norm = 1.0 / total;
    for (int64_t c = 0; c < C; ++c) g[c] = static_cast<float>(e[c] - w.weight[c] * norm);
  }
  return -log_p;
}

// The loss of one row with one scale per step (Graves' rescaling: alpha-hat_t = alpha_t / C_t,
// log p = sum_t log C_t), and its gradient into grad (stride B * C) when not null: the fastest
// recursion. A step's scale keeps its total in range, not its spread: over long sequences a state
// that forward paths rarely reach can fall below 1e-308 of the step's mass while the paths that
// must end the sequence run through it. The backward pass checks for that: at every step,
// sum_s alpha_t(s) beta_t(s) / y_t(s) must equal p, the same number each time; where it does not
// (by 1e-7) this returns NaN and the row runs with a scale per block (block_scaled_row).
double step_scaled_row(const Row& r, float* grad, Scratch& w) {
  const int32_t T = r.steps;
  const size_t L = r.ext.size();
  if (const double trivial = without_recursion(r); !std::isnan(trivial)) return trivial;
  // w.emit: the emission probabilities of every frame (filled by the caller)
  const double* emit = w.emit.data();
  const int64_t C = r.classes;
  const int32_t* label = r.ext.data();
  const double* skip = r.skip.data();
  // the loops run over each step's band (Row::band); the entries just outside it are kept at zero
  w.prev.assign(L + 2, 0.0);
  w.next.assign(L + 2, 0.0);
  w.alpha.resize(static_cast<size_t>(T) * L);
  w.scale.resize(static_cast<size_t>(T));
  double log_p = 0;
  for (int32_t t = 0; t < T; ++t) {
    const auto [lo, hi] = r.band(t);
    const double* e = emit + t * C;
    double* next = w.next.data();
    const double* prev = w.prev.data();
    double sum = 0;
    if (t == 0) {
      for (size_t s = lo; s < hi; ++s) sum += (next[s] = e[label[s]]);
    } else {
      for (size_t s = lo; s < hi; ++s) {
        double a = prev[s];
        if (s >= 1) a += prev[s - 1];
        if (s >= 2) a += skip[s] * prev[s - 2];
        sum += (next[s] = a * e[label[s]]);
      }
    }
    if (!(sum > 1e-290)) return std::numeric_limits<double>::quiet_NaN();
    const double inverse = 1.0 / sum;
    float* stored = w.alpha.data() + t * L;
    for (size_t s = lo; s < hi; ++s) stored[s] = static_cast<float>(next[s] *= inverse);
    if (lo >= 2) next[lo - 2] = next[lo - 1] = 0.0;
    else if (lo == 1) next[0] = 0.0;
    log_p += std::log(sum);
    w.scale[t] = log_p;  // log of the product of C_0 .. C_t
    std::swap(w.prev, w.next);
  }
  // the last step's alphas at the two final symbols, scaled by the product of the C_t
  const double tail = w.prev[L - 1] + (L > 1 ? w.prev[L - 2] : 0.0);
  if (!(tail > 0)) return kInf;
  log_p += std::log(tail);

  // beta backwards, one step at a time; at each step the gradient from alpha_t * beta_t
  w.beta.assign(L + 2, 0.0);
  w.beta_next.assign(L + 2, 0.0);
  w.weight.assign(static_cast<size_t>(C), 0.0);
  double log_d = 0;  // log of the product of D_t .. D_(T-1)
  for (int32_t t = T - 1; t >= 0; --t) {
    const auto [lo, hi] = r.band(t);
    const double* e = emit + t * C;
    double* beta = w.beta.data();
    const double* after = w.beta_next.data();  // beta_(t+1), zero past its band
    double sum = 0;
    if (t == T - 1) {
      for (size_t s = lo; s < hi; ++s) sum += (beta[s] = s + 2 >= L ? e[label[s]] : 0.0);
    } else {
      for (size_t s = lo; s < hi; ++s) {
        double b = after[s] + after[s + 1];
        if (s + 2 < L) b += skip[s + 2] * after[s + 2];
        sum += (beta[s] = b * e[label[s]]);
      }
    }
    if (!(sum > 1e-290)) return std::numeric_limits<double>::quiet_NaN();
    const double inverse = 1.0 / sum;
    for (size_t s = lo; s < hi; ++s) beta[s] *= inverse;
    beta[hi] = beta[hi + 1] = 0.0;  // beta_t past its band, for step t - 1
    log_d += std::log(sum);
    // alpha_t(s) beta_t(s) / y_t(s), normalized over s: that is alpha beta / (y p), whose sum
    // over the s of class c is the occupation the gradient subtracts
    std::fill(w.weight.begin(), w.weight.end(), 0.0);
    double total = 0;
    const float* alpha = w.alpha.data() + t * L;
    for (size_t s = lo; s < hi; ++s) {
      const double y = e[label[s]];
      if (!(y > 0)) continue;
      const double v = static_cast<double>(alpha[s]) * beta[s] / y;
      w.weight[label[s]] += v;
      total += v;
    }
    // alpha-hat_t = alpha_t / prod C, beta-hat_t = beta_t / prod D: total is p / (prod C prod D)
    if (!(std::fabs(std::log(total) + w.scale[t] + log_d - log_p) <= 1e-7 * std::max(1.0, std::fabs(log_p)) + 1e-9))
      return std::numeric_limits<double>::quiet_NaN();
    // beta_t's entries below its band were set two steps ago: clear them for step t - 1
    if (lo >= 2) beta[lo - 2] = beta[lo - 1] = 0.0;
    else if (lo == 1) beta[0] = 0.0;
    std::swap(w.beta, w.beta_next);
    if (!grad) continue;
    float* g = grad + t * r.stride;
    const double norm = total > 0 ? 1.0 / total : 0.0;
    for (int64_t c = 0; c < C; ++c) g[c] = static_cast<float>(e[c] - w.weight[c] * norm);
  }
  return -log_p;
}

}  // namespace

CtcInputCheck ctc_loss_cpu(float* losses, float* grad, const float* log_probs, const CtcDims& dims,
                           const int32_t* targets, const int64_t* target_offsets, const int32_t* target_lengths,
                           const int32_t* input_lengths, bool zero_infinity) {
  std::vector<CtcInputCheck> checks(static_cast<size_t>(dims.batch));
  parallel_for(static_cast<int>(dims.batch), [&](int b) {
    const Row r = row_of(log_probs, dims, targets, target_offsets, target_lengths, input_lengths, b);
    thread_local Scratch scratch;
    // the emission probabilities of every frame, once (the recursions read each several times);
    // they also show whether the input is log-probabilities: each frame's sum is 1
    scratch.emit.resize(static_cast<size_t>(r.steps) * dims.classes);
    for (int32_t t = 0; t < r.steps; ++t) {
      const float* lp = r.lp + t * r.stride;
      double* e = scratch.emit.data() + t * dims.classes;
      double sum = 0;
      for (int64_t c = 0; c < dims.classes; ++c) sum += (e[c] = std::exp(static_cast<double>(lp[c])));
      const double lse = std::log(sum);
      if (!(std::fabs(lse) <= 1e-3) && checks[b].row < 0) checks[b] = {b, t, lse};
    }
    float* row_grad = grad ? grad + b * dims.classes : nullptr;
    double loss = step_scaled_row(r, row_grad, scratch);
    if (std::isnan(loss)) loss = block_scaled_row(r, row_grad, scratch);
    if (std::isnan(loss)) {
      // underflow of the scaled probabilities: the log-space recursion, in double
      std::vector<double> g(row_grad ? static_cast<size_t>(r.steps) * dims.classes : 0);
      const auto lp = [&](int32_t t, int64_t c) { return static_cast<double>(r.lp[t * r.stride + c]); };
      loss = reference_row(lp, r.steps, r.ext, r.blank, dims.classes, row_grad ? g.data() : nullptr, dims.classes);
      if (row_grad)
        for (int32_t t = 0; t < r.steps; ++t)
          for (int64_t c = 0; c < dims.classes; ++c) row_grad[t * r.stride + c] = static_cast<float>(g[t * dims.classes + c]);
    }
    const bool dropped = zero_infinity && std::isinf(loss);
    losses[b] = dropped ? 0.0f : static_cast<float>(loss);
    if (row_grad) {
      // steps past the input length get no gradient; an impossible row's gradient is NaN, as
      // torch's is, or zero with zero_infinity
      const float fill = std::isinf(loss) && !dropped ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
      for (int64_t t = std::isinf(loss) ? 0 : r.steps; t < dims.steps; ++t)
        std::fill(row_grad + t * r.stride, row_grad + t * r.stride + dims.classes, t < r.steps ? fill : 0.0f);
    }
  });
  for (const CtcInputCheck& c : checks)
    if (c.row >= 0) return c;
  return {};
}

void ctc_loss_reference(double* losses, double* grad, const double* log_probs, const CtcDims& dims,
                        const int32_t* targets, const int64_t* target_offsets, const int32_t* target_lengths,
                        const int32_t* input_lengths) {
  const int64_t stride = dims.batch * dims.classes;
  if (grad) std::fill(grad, grad + dims.steps * stride, 0.0);
  for (int64_t b = 0; b < dims.batch; ++b) {
    const auto lp = [&](int32_t t, int64_t c) { return log_probs[t * stride + b * dims.classes + c]; };
    const std::vector<int32_t> ext = extended(targets + target_offsets[b], target_lengths[b], dims.blank);
    losses[b] = reference_row(lp, input_lengths[b], ext, dims.blank, dims.classes, grad ? grad + b * dims.classes : nullptr, stride);
  }
}

// -------------------------------------------------------------------------------------------
// Decoders

std::vector<std::vector<int32_t>> ctc_greedy_decode_cpu(const float* log_probs, const CtcDims& dims,
                                                        const int32_t* input_lengths) {
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(dims.batch));
  const int64_t stride = dims.batch * dims.classes;
  for (int64_t b = 0; b < dims.batch; ++b) {
    int32_t last = -1;
    for (int32_t t = 0; t < input_lengths[b]; ++t) {
      const float* lp = log_probs + t * stride + b * dims.classes;
      const int32_t best = static_cast<int32_t>(std::max_element(lp, lp + dims.classes) - lp);
      if (best != dims.blank && best != last) out[b].push_back(best);
      last = best;
    }
  }
  return out;
}

namespace {

struct PrefixHash {
  size_t operator()(const std::vector<int32_t>& v) const {
    size_t h = 1469598103934665603ull;
    for (int32_t x : v) h = (h ^ static_cast<uint32_t>(x)) * 1099511628211ull;
    return h;
  }
};

struct Beam {
  double blank = -kInf, label = -kInf;  // log P(prefix, alignment ends in a blank / in its last label)
  double total() const { return log_add(blank, label); }
};

}  // namespace

std::vector<std::vector<int32_t>> ctc_beam_search_cpu(const float* log_probs, const CtcDims& dims,
                                                      const int32_t* input_lengths, int beam_width) {
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(dims.batch));
  const int64_t stride = dims.batch * dims.classes;
  parallel_for(static_cast<int>(dims.batch), [&](int b) {
    using Beams = std::unordered_map<std::vector<int32_t>, Beam, PrefixHash>;
    Beams beams;
    beams[{}].blank = 0.0;
    for (int32_t t = 0; t < input_lengths[b]; ++t) {
      const float* lp = log_probs + t * stride + b * dims.classes;
      Beams next;
      for (const auto& [prefix, beam] : beams) {
        // a blank: the prefix stays and now ends in a blank
        Beam& same = next[prefix];
        same.blank = log_add(same.blank, beam.total() + lp[dims.blank]);
        for (int32_t c = 0; c < dims.classes; ++c) {
          if (c == dims.blank) continue;
          const double p = lp[c];
          if (!prefix.empty() && prefix.back() == c) {
            // the last label again: merged into it, unless a blank came between
            same.label = log_add(same.label, beam.label + p);
            std::vector<int32_t> longer = prefix;
            longer.push_back(c);
            Beam& grown = next[longer];
            grown.label = log_add(grown.label, beam.blank + p);
          } else {
            std::vector<int32_t> longer = prefix;
            longer.push_back(c);
            Beam& grown = next[longer];
            grown.label = log_add(grown.label, beam.total() + p);
          }
        }
      }
      // keep the beam_width likeliest (ties: the shorter, then the smaller prefix)
      std::vector<std::pair<std::vector<int32_t>, Beam>> ranked(next.begin(), next.end());
      const auto better = [](const auto& x, const auto& y) {
        const double a = x.second.total(), b2 = y.second.total();
        if (a != b2) return a > b2;
        return x.first < y.first;
      };
      const size_t keep = std::min(ranked.size(), static_cast<size_t>(beam_width));
      std::partial_sort(ranked.begin(), ranked.begin() + keep, ranked.end(), better);
      beams.clear();
      for (size_t i = 0; i < keep; ++i) beams.emplace(std::move(ranked[i].first), ranked[i].second);
    }
    const std::vector<int32_t>* best = nullptr;
    double best_score = -kInf;
    for (const auto& [prefix, beam] : beams) {
      const double score = beam.total();
      if (!best || score > best_score || (score == best_score && prefix < *best)) {
        best = &prefix;
        best_score = score;
      }
    }
    out[b] = best ? *best : std::vector<int32_t>{};
  });
  return out;
}

}  // namespace recurrent
