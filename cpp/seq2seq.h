// Decoding an attention encoder-decoder (lib/nn/seq2seq.ts): greedy search and beam search, the
// whole search in one call. Each step is one fused pass over every live hypothesis of every
// source: the decoder's embedding and L recurrent layers (stack_step_cpu), the attention over
// that source's encoder outputs, the attentional layer, the output projection and a log-softmax.
//
// The step computes what the model's training graph computes at one position (Luong et al.,
// 2015, without input feeding):
//   h_t            the top layer's new state (with context feeding: layer 1's, and the layers
//                  above then step on [c_t; h_t]; ~h_t below reads the top layer's new state)
//   score(h_t, j)  dot: h_t . k_j;  general: h_t . k_j with k = W_a v (the caller projects);
//                  bahdanau: w . tanh(W_q h_t + b_q + k_j) with k = W_k v
//   a_t            softmax over the source's first lengths[b] positions
//   c_t            sum_j a_tj v_j
//   ~h_t           tanh(W_c [c_t; h_t] + b_c)   (attention 'none': ~h_t = h_t)
//   log p(y_t)     log_softmax(W_o ~h_t + b_o)
//
// Shapes (row-major, float32): values (S, B, Hv) and keys (S, B, K) time-major, as the encoder
// writes them; h0, c0 (L, B, H).
#pragma once

#include <vector>

#include "cells.h"
#include "pack_cache.h"
#include "recurrent.h"

namespace recurrent {

enum class AttentionKind : int { kNone = 0, kDot = 1, kGeneral = 2, kBahdanau = 3 };

struct DecoderWeights {
  CellKind cell;
  int layers;      // L
  int embed;       // E: the decoder embedding's width
  int hidden;      // H
  int classes;     // C: output classes
  AttentionKind attention;
  int key_size;    // K: H for dot and general, the attention size A for bahdanau
  int value_size;  // Hv: the encoder outputs' width
  bool context_feeding;  // GNMT: layer 1's state queries the attention, layer 2 reads [c_t; h_t of layer 1]
  const float* embedding;  // (rows, E)
  const LayerWeights* rnn; // L layers
  const float* query_w;    // bahdanau: (A, H), with query_b (A) or null
  const float* query_b;
  CachedWeight query_cache;
  const float* score_v;    // bahdanau: (A)
  const float* combine_w;  // (H, Hv + H), with combine_b (H) or null; not for 'none'
  const float* combine_b;
  CachedWeight combine_cache;
  const float* out_w;      // (C, H), with out_b (C) or null
  const float* out_b;
  CachedWeight out_cache;
};

struct EncoderMemory {
  int sources;          // B
  int steps;            // S, the padded source length
  const float* values;  // (S, B, Hv)
  const float* keys;    // (S, B, K)
  const int* lengths;   // (B), each in [1, S]
  const float* h0;      // (L, B, H): the decoder's initial state
  const float* c0;      // LSTM only
};

struct SearchOptions {
  int beam_width;        // 0: greedy
  int max_length;        // output tokens at most (the end token not counted)
  double length_penalty; // alpha of GNMT's ((5 + length) / 6)^alpha; 0: raw log-probability
  int start_token;       // the decoder's first input
  int end_token;         // the class that ends a hypothesis
  int n_best = 1;        // hypotheses returned per source by seq2seq_decode_nbest_cpu, in [1, beam_width]
};

struct Hypothesis {
  std::vector<int> tokens;  // without the end token
  double log_prob;          // sum of the log-probabilities of its tokens (and of the end token when it ended)
  bool ended;               // ended on the end token (else cut at max_length)
};

// The score a beam search ranks a hypothesis by: its log-probability over GNMT's length penalty
// ((5 + length) / 6)^alpha, the length counting the end token where it ended (alpha 0: the log-probability).
double length_normalized(const Hypothesis& hyp, double alpha);

// The best hypothesis of every source.
std::vector<Hypothesis> seq2seq_decode_cpu(const DecoderWeights& w, const EncoderMemory& m, const SearchOptions& o);

// One model of an ensemble: its weights and its encoder's memory of the same sources.
struct DecoderModel {
  const DecoderWeights* weights;
  const EncoderMemory* memory;
};

// The best hypothesis of every source under an ensemble of models that share the classes and the
// sources (each with its own architecture and encoder memory): each step's distribution is the
// mean of the models' probabilities (their log-probabilities through logsumexp - log K, as
// fairseq's ensembles). One model gives exactly what the single-model search gives.
std::vector<Hypothesis> seq2seq_decode_cpu(const std::vector<DecoderModel>& models, const SearchOptions& o);

// The o.n_best best ended hypotheses of every source (fewer where the search ended fewer), best
// first by the ranking score (log-probability, divided by the length penalty). The beam search
// goes on until n_best ended hypotheses beat every live one (the single best's rule at n_best 1),
// so that the list is the beam's n best, not only the first that ended: candidates for reranking
// by another model (another direction, a language model). Greedy search gives one.
std::vector<std::vector<Hypothesis>> seq2seq_decode_nbest_cpu(const std::vector<DecoderModel>& models, const SearchOptions& o);

// The log-probabilities (N, C) of one step for N rows (row n reads source src[n] and feeds token
// tokens[n]), with the state h, c (L, N, H) updated in place. What the searches run each step.
void seq2seq_step_cpu(const DecoderWeights& w, const EncoderMemory& m, int rows, const int* tokens, const int* src,
                      float* h, float* c, float* log_probs);

}  // namespace recurrent
