// One time step of a stacked, one-directional recurrent model, for inference (generation,
// streaming): an optional embedding lookup, the L recurrent layers (each a layer_forward_cpu at
// T = 1, on its kept packed weights) and an optional linear head, in one call, with the state
// updated in place. The values are those of the same model's forward at T = 1, bit for bit.
//
// Shapes (row-major, float32):
//   tokens (B) ids into embedding (vocab, E), or x (B, I) without an embedding
//   h, c (L, B, H): the state, read and written in place (c: LSTM only, else null)
//   layers[l]: w_ih (G*H, E or I for l = 0, H after), w_hh (G*H, H), biases (G*H) or null
//   head: w (V, H), b (V) or null; out (B, V); no head (V = 0): out (B, H), the last layer's h
//
// With an embedding whose storage has a cache (embedding_cache), the first layer's input
// projection is looked up, not multiplied: the table embedding * w_ih^T (vocab, G*H), computed by
// the same product the layer would run on each row, is kept in the embedding's cache, keyed by
// both weights' versions (a write to either makes it again). A row of that product does not depend
// on the rows beside it in FP32 (gemm_internal.h), so the values are the same bit for bit; in BF16
// that is not promised and the step multiplies. The table is kept where it costs at most twice the
// floats of w_ih, or 1 MB: for the demo's character model (80 ids, E = 64, H = 192) it takes
// 196 KB of weights off each step's reads for 246 KB kept (memoryStats().packedWeightBytes).
#pragma once

#include <cstdint>
#include <vector>

#include "cells.h"
#include "pack_cache.h"
#include "recurrent.h"

namespace recurrent {

struct StepDims {
  CellKind cell;
  int batch;        // B
  int input_size;   // I, or E with an embedding
  int hidden_size;  // H
  int layers;       // L
  int outputs;      // V: the head's outputs, 0 without a head
  int vocab = 0;    // the embedding's rows (0: not known, no token table)
};

void stack_step_cpu(const StepDims& dims, float* out, float* h, float* c, const int* tokens, const float* embedding,
                    const float* x, const LayerWeights* layers, const float* head_w, const float* head_b,
                    CachedWeight head_cache, CachedWeight embedding_cache = {});

// lib/core/random.ts's generator (mulberry32 over a 64-bit Weyl sequence): the same state gives the
// same draws on both sides, so a native loop that samples continues the JS generator's stream.
struct RandomStream {
  uint32_t counter = 0, high = 0;
  uint32_t next32();
  // A uniform number in [0, 1), as random(): next32() / 2^32.
  double uniform() { return next32() / 4294967296.0; }
};

// How a token is drawn from a row of logits: lib/apps/text.ts's sampleLogits(logits, temperature,
// topK) on the row with the excluded ids set to -Infinity first.
struct SampleSpec {
  double temperature = 1;    // 0: the most likely id (the first of equals)
  int top_k = 0;             // 0: every id
  const uint8_t* excluded;   // one flag per id (1: never drawn), or null
};

// One id drawn from `logits` (n values), the draw sampleLogits makes with the same generator state,
// in double precision as JS computes it. `weights` and `order` are scratch.
int sample_logits(const float* logits, int n, const SampleSpec& spec, RandomStream& rng, std::vector<double>& weights,
                  std::vector<int>& order);

// Autoregressive sampling: `length` times, each of the B rows of out (B, V), which holds the logits
// of the step before, draws an id (rows in order, from one stream), tokens[i * B + b], and the ids
// are the next step's input (stack_step_cpu with tokens), which writes the next logits into out and
// moves the state on. So afterwards out and h, c are those after the last drawn ids were read, as a
// loop of step() calls leaves them. Needs an embedding and a head.
void stack_sample_cpu(const StepDims& dims, float* out, float* h, float* c, const float* embedding,
                      const LayerWeights* layers, const float* head_w, const float* head_b, CachedWeight head_cache,
                      CachedWeight embedding_cache, int length, const SampleSpec& spec, RandomStream& rng, int* tokens);

}  // namespace recurrent
