// Greedy and beam search over an attention encoder-decoder (see seq2seq.h).
#include "seq2seq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "attention.h"
#include "gates.h"
#include "gemm.h"
#include "step.h"
#include "thread_pool.h"

namespace recurrent {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// out (N, cols) = x (N, rows) * w^T + b, with w (cols, rows) packed once per version of its storage
void linear_rows(int n, int rows, int cols, const float* x, const float* w, const float* b, const CachedWeight& cache,
                 PackedMatrix& scratch, float* out) {
  const PackedWeight packed = forward_input(cache, w, rows, cols, scratch);
  if (b)
    for (int i = 0; i < n; ++i) std::memcpy(out + static_cast<size_t>(i) * cols, b, cols * sizeof(float));
  gemm_packed(n, 1.0f, x, rows, *packed, b ? 1.0f : 0.0f, out, cols);
}

}  // namespace

void seq2seq_step_cpu(const DecoderWeights& w, const EncoderMemory& m, int rows, const int* tokens, const int* src,
                      float* h, float* c, float* log_probs) {
  const int N = rows, H = w.hidden, C = w.classes, Hv = w.value_size, K = w.key_size, B = m.sources;
  thread_local std::vector<float> top, query, cat, attended;
  thread_local PackedMatrix query_scratch, combine_scratch, out_scratch;
  top.resize(static_cast<size_t>(N) * H);
  // with context feeding only layer 1 steps before the attention
  const int lower = w.context_feeding ? 1 : w.layers;
  const StepDims dims{w.cell, N, w.embed, H, lower, 0};
  stack_step_cpu(dims, top.data(), h, c, tokens, w.embedding, nullptr, w.rnn, nullptr, nullptr, {});
  const float* features = top.data();
  if (w.attention != AttentionKind::kNone) {
    const bool additive = w.attention == AttentionKind::kBahdanau;
    if (additive) {
      query.resize(static_cast<size_t>(N) * K);
      linear_rows(N, H, K, top.data(), w.query_w, w.query_b, w.query_cache, query_scratch, query.data());
    }
    const int width = Hv + H;
    cat.resize(static_cast<size_t>(N) * width);
    // rows are independent: split them over the pool (a chunk of rows per task); the lambda runs on
    // other threads, so it reads this thread's buffers through plain pointers, not thread_local names
    const float* tops = top.data();
    const float* queries = query.data();
    float* cats = cat.data();
    const int chunk = 16;
    parallel_for((N + chunk - 1) / chunk, [&, tops, queries, cats](int task) {
      std::vector<double> scores(m.steps);
      std::vector<float> raw(m.steps), scratch(2 * static_cast<size_t>(K));
      for (int n = task * chunk; n < std::min(N, (task + 1) * chunk); ++n) {
        const int b = src[n];
        const int S = m.lengths[b];
        const float* q = additive ? queries + static_cast<size_t>(n) * K : tops + static_cast<size_t>(n) * H;
        double best = -std::numeric_limits<double>::infinity();
        if (additive) {
          additive_scores(q, m.keys + static_cast<size_t>(b) * K, static_cast<int64_t>(B) * K, S, K, w.score_v, raw.data(), scratch.data());
          for (int j = 0; j < S; ++j) scores[j] = raw[j];
        } else {
          for (int j = 0; j < S; ++j) {
            const float* key = m.keys + (static_cast<size_t>(j) * B + b) * K;
            float s = 0.0f;
            for (int k = 0; k < K; ++k) s += q[k] * key[k];
            scores[j] = s;
          }
        }
        for (int j = 0; j < S; ++j) best = std::max(best, scores[j]);
        double total = 0.0;
        for (int j = 0; j < S; ++j) total += (scores[j] = std::exp(scores[j] - best));
        float* row = cats + static_cast<size_t>(n) * width;
        std::fill(row, row + Hv, 0.0f);
        for (int j = 0; j < S; ++j) {
          const float weight = static_cast<float>(scores[j] / total);
          const float* value = m.values + (static_cast<size_t>(j) * B + b) * Hv;
          for (int k = 0; k < Hv; ++k) row[k] += weight * value[k];
        }
        std::memcpy(row + Hv, tops + static_cast<size_t>(n) * H, H * sizeof(float));
      }
    });
    if (w.context_feeding) {
      // layers 2..L step on [c_t; h_t of layer 1] (cat's rows as they are); then cat's second half
      // becomes the top layer's new state, the attentional layer's input
      const size_t state = static_cast<size_t>(N) * H;
      const StepDims upper{w.cell, N, width, H, w.layers - 1, 0};
      stack_step_cpu(upper, top.data(), h + state, c ? c + state : nullptr, nullptr, nullptr, cat.data(), w.rnn + 1, nullptr, nullptr, {});
      for (int n = 0; n < N; ++n)
        std::memcpy(cats + static_cast<size_t>(n) * width + Hv, tops + static_cast<size_t>(n) * H, H * sizeof(float));
    }
    attended.resize(static_cast<size_t>(N) * H);
    linear_rows(N, width, H, cat.data(), w.combine_w, w.combine_b, w.combine_cache, combine_scratch, attended.data());
    // the graph's tanh op (unary_forward_cpu): the same function, so the search scores what training computes
    gate_kernels().tanh(attended.data(), attended.data(), static_cast<int>(attended.size()));
    features = attended.data();
  }
  linear_rows(N, H, C, features, w.out_w, w.out_b, w.out_cache, out_scratch, log_probs);
  for (int n = 0; n < N; ++n) {
    float* row = log_probs + static_cast<size_t>(n) * C;
    const float top_logit = *std::max_element(row, row + C);
    double total = 0.0;
    for (int k = 0; k < C; ++k) total += std::exp(static_cast<double>(row[k]) - top_logit);
    const float shift = top_logit + static_cast<float>(std::log(total));
    for (int k = 0; k < C; ++k) row[k] -= shift;
  }
}

namespace {

// Row i of every layer of `to` (L, rows.size(), H) = row rows[i] of the same layer of `from`
// (L, from_rows, H): a state's rows picked, repeated or reordered (`to` is another buffer).
void gather_state(const float* from, size_t from_rows, const std::vector<int>& rows, size_t layers, size_t H,
                  std::vector<float>& to) {
  const size_t M = rows.size();
  to.resize(layers * M * H);
  for (size_t l = 0; l < layers; ++l)
    for (size_t i = 0; i < M; ++i)
      std::memcpy(to.data() + (l * M + i) * H, from + (l * from_rows + rows[i]) * H, H * sizeof(float));
}

// The models of a search stepping together (one model, or an ensemble), each with its own state
// for the same rows. A step's log-probabilities are the models' own where there is one, else the
// log of their mean probability (as fairseq ensembles: logsumexp over the models - log K).
class Members {
 public:
  explicit Members(const std::vector<DecoderModel>& models) : models_(models), states_(models.size()) {}

  int classes() const { return models_[0].weights->classes; }

  // every model's state for rows that start from the sources src[n] (h, and c for an LSTM)
  void start(const std::vector<int>& src) {
    for (size_t i = 0; i < models_.size(); ++i) {
      const DecoderWeights& w = *models_[i].weights;
      const EncoderMemory& m = *models_[i].memory;
      State& s = states_[i];
      gather_state(m.h0, m.sources, src, w.layers, w.hidden, s.h);
      if (w.cell == CellKind::kLstm) gather_state(m.c0, m.sources, src, w.layers, w.hidden, s.c);
      else s.c.clear();
    }
  }

  // the log-probabilities (N, C) of the next token for the N rows, every state stepped
  void step(int N, const int* tokens, const int* src, std::vector<float>& log_probs) {
    const size_t C = classes();
    log_probs.resize(static_cast<size_t>(N) * C);
    if (models_.size() == 1) {
      State& s = states_[0];
      seq2seq_step_cpu(*models_[0].weights, *models_[0].memory, N, tokens, src, s.h.data(), s.c.empty() ? nullptr : s.c.data(),
                       log_probs.data());
      return;
    }
    for (size_t i = 0; i < models_.size(); ++i) {
      State& s = states_[i];
      s.log_probs.resize(log_probs.size());
      seq2seq_step_cpu(*models_[i].weights, *models_[i].memory, N, tokens, src, s.h.data(), s.c.empty() ? nullptr : s.c.data(),
                       s.log_probs.data());
    }
    const double log_k = std::log(static_cast<double>(models_.size()));
    for (size_t j = 0; j < log_probs.size(); ++j) {
      float top = kNegInf;
      for (const State& s : states_) top = std::max(top, s.log_probs[j]);
      if (top == kNegInf) {
        log_probs[j] = kNegInf;
        continue;
      }
      double total = 0.0;
      for (const State& s : states_) total += std::exp(static_cast<double>(s.log_probs[j]) - top);
      log_probs[j] = static_cast<float>(top + std::log(total) - log_k);
    }
  }

  // row i of every state = row rows[i] of what it was (N rows)
  void gather(int N, const std::vector<int>& rows) {
    for (size_t i = 0; i < models_.size(); ++i) {
      const DecoderWeights& w = *models_[i].weights;
      State& s = states_[i];
      gather_state(s.h.data(), N, rows, w.layers, w.hidden, s.h_next);
      s.h.swap(s.h_next);
      if (!s.c.empty()) {
        gather_state(s.c.data(), N, rows, w.layers, w.hidden, s.c_next);
        s.c.swap(s.c_next);
      }
    }
  }

 private:
  struct State {
    std::vector<float> h, c, h_next, c_next, log_probs;
  };
  const std::vector<DecoderModel>& models_;
  std::vector<State> states_;
};

std::vector<Hypothesis> greedy(const std::vector<DecoderModel>& models, const SearchOptions& o) {
  const int B = models[0].memory->sources;
  Members members(models);
  const int C = members.classes();
  std::vector<Hypothesis> out(B);
  // the rows still running, compacted after each step
  std::vector<int> src(B), tokens(B, o.start_token);
  for (int b = 0; b < B; ++b) src[b] = b;
  std::vector<float> log_probs;
  members.start(src);
  for (int t = 0; t < o.max_length && !src.empty(); ++t) {
    const int N = static_cast<int>(src.size());
    members.step(N, tokens.data(), src.data(), log_probs);
    std::vector<int> keep;
    for (int n = 0; n < N; ++n) {
      const float* row = log_probs.data() + static_cast<size_t>(n) * C;
      const int best = static_cast<int>(std::max_element(row, row + C) - row);  // the first of equal maxima
      Hypothesis& hyp = out[src[n]];
      hyp.log_prob += row[best];
      if (best == o.end_token) {
        hyp.ended = true;
      } else {
        hyp.tokens.push_back(best);
        tokens[n] = best;
        keep.push_back(n);
      }
    }
    if (static_cast<int>(keep.size()) == N) continue;
    // drop the ended rows from the state
    const size_t M = keep.size();
    members.gather(N, keep);
    std::vector<int> next_src(M), next_tokens(M);
    for (size_t i = 0; i < M; ++i) {
      next_src[i] = src[keep[i]];
      next_tokens[i] = tokens[keep[i]];
    }
    src.swap(next_src);
    tokens.swap(next_tokens);
  }
  return out;
}

struct Candidate {
  double score;
  int beam;
  int token;
};

// Beam search with batched beams: source b owns rows b * W .. b * W + W - 1. A source is done when
// W hypotheses have ended, when (without a length penalty) its n_best best ended hypotheses beat
// every live one, or at max_length, where its live hypotheses end as they are. Each source's ended
// hypotheses, best first (ties: the first to end).
std::vector<std::vector<Hypothesis>> beam_search(const std::vector<DecoderModel>& models, const SearchOptions& o) {
  const int B = models[0].memory->sources, W = o.beam_width;
  Members members(models);
  const int C = members.classes();
  std::vector<std::vector<Hypothesis>> ended(B);
  std::vector<Hypothesis> live(static_cast<size_t>(B) * W);
  std::vector<double> live_score(live.size(), -std::numeric_limits<double>::infinity());
  std::vector<char> done(B, 0);
  for (int b = 0; b < B; ++b) live_score[static_cast<size_t>(b) * W] = 0.0;  // one live hypothesis to start
  // the rows of the sources not done, in source order
  std::vector<int> rows_src;  // the source of each computed row
  std::vector<int> tokens;
  std::vector<float> log_probs;
  {
    std::vector<int> src;
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < W; ++k) src.push_back(b);
    members.start(src);
    rows_src = src;
    tokens.assign(src.size(), o.start_token);
  }
  std::vector<Candidate> candidates;
  std::vector<double> scores;
  const int n_best = std::clamp(o.n_best, 1, W);
  for (int t = 0; t < o.max_length && !rows_src.empty(); ++t) {
    const int N = static_cast<int>(rows_src.size());
    members.step(N, tokens.data(), rows_src.data(), log_probs);
    // the next rows: W per source still running, each from a parent row
    std::vector<int> next_src, next_tokens, parent;
    std::vector<Hypothesis> next_live(live.size());
    std::vector<double> next_score(live.size(), -std::numeric_limits<double>::infinity());
    for (int first = 0; first < N; first += W) {
      const int b = rows_src[first];
      candidates.clear();
      for (int k = 0; k < W; ++k) {
        const double base = live_score[static_cast<size_t>(b) * W + k];
        if (base == -std::numeric_limits<double>::infinity()) continue;
        const float* row = log_probs.data() + static_cast<size_t>(first + k) * C;
        for (int y = 0; y < C; ++y)
          if (row[y] != kNegInf) candidates.push_back({base + row[y], k, y});
      }
      // the best 2W (so that W live ones remain after those that end), ties to the lower beam, then token
      const size_t keep = std::min<size_t>(candidates.size(), 2 * static_cast<size_t>(W));
      std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(), [](const Candidate& x, const Candidate& y) {
        if (x.score != y.score) return x.score > y.score;
        if (x.beam != y.beam) return x.beam < y.beam;
        return x.token < y.token;
      });
      int alive = 0;
      for (size_t i = 0; i < keep && alive < W; ++i) {
        const Candidate& cand = candidates[i];
        const Hypothesis& from = live[static_cast<size_t>(b) * W + cand.beam];
        if (cand.token == o.end_token) {
          // an ending counts while it ranks among the best W
          if (i < static_cast<size_t>(W)) ended[b].push_back({from.tokens, cand.score, true});
          continue;
        }
        const size_t slot = static_cast<size_t>(b) * W + alive;
        next_live[slot] = from;
        next_live[slot].tokens.push_back(cand.token);
        next_live[slot].log_prob = cand.score;
        next_score[slot] = cand.score;
        next_src.push_back(b);
        next_tokens.push_back(cand.token);
        parent.push_back(first + cand.beam);
        ++alive;
      }
      bool finished = static_cast<int>(ended[b].size()) >= W || alive == 0;
      if (!finished && o.length_penalty == 0.0 && static_cast<int>(ended[b].size()) >= n_best) {
        // live scores only fall: once the n_best best ended ones beat them all, nothing can overtake them
        scores.clear();
        for (const Hypothesis& hyp : ended[b]) scores.push_back(hyp.log_prob);
        std::nth_element(scores.begin(), scores.begin() + (n_best - 1), scores.end(), std::greater<double>());
        finished = scores[n_best - 1] >= next_score[static_cast<size_t>(b) * W];
      }
      if (!finished && alive < W) {
        // fewer than W continuations (a small vocabulary): pad with empty slots that never extend
        for (int k = alive; k < W; ++k) {
          next_src.push_back(b);
          next_tokens.push_back(o.start_token);
          parent.push_back(first);
        }
      }
      if (finished) {
        done[b] = 1;
        // drop this source's rows just added
        const size_t drop = next_src.size() - std::count(next_src.begin(), next_src.end(), b);
        next_src.resize(drop);
        next_tokens.resize(drop);
        parent.resize(drop);
      }
    }
    // gather the parents' states into the new rows
    members.gather(N, parent);
    // sources still running keep their live hypotheses; finished ones keep theirs for the end
    for (int b = 0; b < B; ++b) {
      if (done[b]) continue;
      for (int k = 0; k < W; ++k) {
        const size_t slot = static_cast<size_t>(b) * W + k;
        live[slot] = std::move(next_live[slot]);
        live_score[slot] = next_score[slot];
      }
    }
    rows_src.swap(next_src);
    tokens.swap(next_tokens);
  }
  // at max_length the live hypotheses end as they are
  for (int b = 0; b < B; ++b) {
    if (done[b]) continue;
    for (int k = 0; k < W; ++k) {
      const size_t slot = static_cast<size_t>(b) * W + k;
      if (live_score[slot] != -std::numeric_limits<double>::infinity()) ended[b].push_back({live[slot].tokens, live_score[slot], false});
    }
  }
  for (std::vector<Hypothesis>& list : ended)
    std::stable_sort(list.begin(), list.end(), [&](const Hypothesis& x, const Hypothesis& y) {
      return length_normalized(x, o.length_penalty) > length_normalized(y, o.length_penalty);
    });
  return ended;
}

}  // namespace

double length_normalized(const Hypothesis& hyp, double alpha) {
  if (alpha == 0.0) return hyp.log_prob;
  const double length = static_cast<double>(hyp.tokens.size() + (hyp.ended ? 1 : 0));
  return hyp.log_prob / std::pow((5.0 + length) / 6.0, alpha);
}

std::vector<std::vector<Hypothesis>> seq2seq_decode_nbest_cpu(const std::vector<DecoderModel>& models, const SearchOptions& o) {
  const int B = models.at(0).memory->sources;
  if (B == 0) return {};
  if (o.max_length == 0) return std::vector<std::vector<Hypothesis>>(B, std::vector<Hypothesis>(1));
  if (o.beam_width == 0) {
    std::vector<std::vector<Hypothesis>> out;
    for (Hypothesis& hyp : greedy(models, o)) out.push_back({std::move(hyp)});
    return out;
  }
  std::vector<std::vector<Hypothesis>> out = beam_search(models, o);
  for (std::vector<Hypothesis>& list : out) {
    if (static_cast<int>(list.size()) > o.n_best) list.resize(std::max(o.n_best, 1));
    // a source whose every continuation was impossible (all -inf) gets an empty hypothesis, as before
    if (list.empty()) list.emplace_back();
  }
  return out;
}

std::vector<Hypothesis> seq2seq_decode_cpu(const std::vector<DecoderModel>& models, const SearchOptions& o) {
  SearchOptions one = o;
  one.n_best = 1;
  std::vector<Hypothesis> out;
  for (std::vector<Hypothesis>& list : seq2seq_decode_nbest_cpu(models, one)) out.push_back(std::move(list[0]));
  return out;
}

std::vector<Hypothesis> seq2seq_decode_cpu(const DecoderWeights& w, const EncoderMemory& m, const SearchOptions& o) {
  return seq2seq_decode_cpu(std::vector<DecoderModel>{{&w, &m}}, o);
}

}  // namespace recurrent
