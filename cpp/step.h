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

}  // namespace recurrent
