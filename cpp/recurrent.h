// One recurrent layer (RNN, LSTM or GRU; one or two directions) over a whole
// sequence, forward and backward, on the CPU.
//
// Shapes (time-major, row-major, float32):
//   x (T, B, I)            y (T, B, D*H)            lengths (B) or null
//   h0, h_n (D, B, H)      c0, c_n (D, B, H), LSTM only
//   per direction d: w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H), b_hh (G*H) (null: no bias)
// D = 2 runs the reverse direction on the same input and writes its output to
// y[..., H:2H]. Null h0/c0/dy/dh_n/dc_n mean zeros.
//
// Variable lengths follow packed-sequence semantics: for row b, steps t >= lengths[b]
// output zeros and leave the state alone, so h_n holds the state after the row's last
// step; the reverse direction starts at t = lengths[b] - 1.
#pragma once

#include <cstddef>

#include "cells.h"
#include "pack_cache.h"

namespace recurrent {

struct LayerDims {
  CellKind cell;
  int steps;       // T
  int batch;       // B
  int input_size;  // I
  int hidden_size; // H
  int directions;  // D: 1 or 2
};

struct LayerWeights {
  const float* w_ih;
  const float* w_hh;
  const float* b_ih;  // null when the layer has no bias
  const float* b_hh;
  // Where the packed forms of w_ih and w_hh are kept between calls, with the versions of their
  // storages at this call (pack_cache.h); no cache: packed for this call only.
  CachedWeight ih_cache = {};
  CachedWeight hh_cache = {};
  // x holds the input projection x * w_ih^T already, rows of G*H floats (w_ih is not read):
  // layer_forward_cpu in inference, one direction (a step's first layer from its token table).
  bool input_projected = false;
  // The order of a step's weight reads, for a caller that schedules steps (stack_sample_cpu), at
  // T = 1 in inference, one direction, no lengths; the values are the same in any order:
  //  - recurrent_projected: the recurrent product h0 * w_hh^T of this step, made already by
  //    recurrent_product_cpu (w_hh is not read);
  //  - recurrent_first: the recurrent product before the input's (else after it);
  //  - backwards: both products over their weights' panels last to first (gemm_packed_tiles);
  //  - recurrent_next: where the next step's recurrent product h_n * w_hh^T goes, made at the end
  //    of the call by the threads of its team, each its own columns (each over its own share of
  //    w_hh, in the direction of `backwards`).
  const float* recurrent_projected = nullptr;
  bool recurrent_first = false;
  bool backwards = false;
  float* recurrent_next = nullptr;
};

struct LayerGrads {
  float* w_ih;
  float* w_hh;
  float* b_ih;  // null when the layer has no bias
  float* b_hh;
};

// Time steps per chunk of the input-side GEMMs (0: chosen by size, the default). Forward
// projects the input of one chunk just before its steps; backward works out dx and the weight
// gradients of a chunk right after its steps. The chunk's projections and gate gradients are
// then still in cache when they are read, and the scratch does not grow with T. Results do not
// depend on it, but for the order in which the weight gradients of the chunks are summed.
// RECURRENT_TIME_CHUNK in the environment sets the starting value.
void set_time_chunk(int steps);

// How the threads of a team share a sequence's steps (see recurrent.cc): kAuto picks by size;
// kUnits splits every step by hidden units (a barrier per step), kRows gives each thread its own
// batch rows (no barrier; only where a thread gets 16 rows or more). Results are the same in
// every case. RECURRENT_TEAM_SPLIT=units|rows in the environment sets the starting value.
enum class TeamSplit : int { kAuto = 0, kUnits = 1, kRows = 2 };
void set_team_split(TeamSplit split);

// The weight bytes of a whole inference call (every layer of a stack: stack_forward_cpu and
// stack_step_cpu set it; a lone layer_forward_cpu counts its own) while it runs on this thread.
// A call of a few steps whose weights are large splits by units, not by rows: split by rows, every
// thread reads all of the weights (see team_for in recurrent.cc).
class CallWeightsScope {
 public:
  explicit CallWeightsScope(double bytes);
  ~CallWeightsScope();
  CallWeightsScope(const CallWeightsScope&) = delete;
  CallWeightsScope& operator=(const CallWeightsScope&) = delete;

 private:
  double saved_;
};
// The weight bytes of `layers` layers of dims (the first layer's input size; the others' H).
double stack_weight_bytes(const LayerDims& dims, int layers);

// Floats of the reserve that forward fills for backward (all directions).
size_t layer_reserve_size(const LayerDims& dims);

// reserve may be null (inference): the kernel then uses its own scratch.
void layer_forward_cpu(const LayerDims& dims, float* y, float* h_n, float* c_n, float* reserve,
                       const float* x, const int* lengths, const float* h0, const float* c0,
                       const LayerWeights* weights);

// The recurrent product of one step, h (B, H) * w_hh^T, in the layout a step of layer_forward_cpu
// reads (LayerWeights::recurrent_projected): B rows of recurrent_product_cols(dims) floats, its
// columns in unit blocks (block, gate, unit). One direction, on the calling thread; `backwards` as
// in LayerWeights.
int recurrent_product_cols(const LayerDims& dims);
void recurrent_product_cpu(const LayerDims& dims, const LayerWeights& w, const float* h, float* out, bool backwards);

// Inference through a stack of `layers` one-direction layers (dims: the first layer's; the
// others read the previous layer's output, input size H). ys[l] (T, B, H) receives layer l's
// output; h0, c0, h_n, c_n are (layers, B, H) (h0, c0 may be null). With two or more threads,
// where a layer's steps are too short to split over them, the layers run as a pipeline: each
// thread owns consecutive layers and runs them chunk by chunk of time steps, a chunk as soon as
// the layer below has written it (layer l at chunk k while layer l-1 runs chunk k+1). The results
// are bit-identical to layer_forward_cpu layer after layer, which is what runs otherwise.
void stack_forward_cpu(const LayerDims& dims, int layers, float* const* ys, float* h_n, float* c_n,
                       const float* x, const int* lengths, const float* h0, const float* c0,
                       const LayerWeights* weights);

// RECURRENT_STACK_PIPELINE=on|off in the environment (or this) forces the pipeline of
// stack_forward_cpu on or off where two threads and two layers allow it; kAuto picks by size.
enum class StackPipeline : int { kAuto = 0, kOn = 1, kOff = 2 };
void set_stack_pipeline(StackPipeline mode);
// Time steps per chunk of that pipeline (0: chosen by size, the default; results do not depend on
// it). RECURRENT_PIPELINE_CHUNK in the environment sets the starting value.
void set_pipeline_chunk(int steps);

// Writes (does not accumulate) every gradient. dx and dh0/dc0 may be null when not wanted (dx: an
// input that needs no gradient, which then costs no product with w_ih).
// dh_steps (D, T, B, H), when not null, receives dL/dh_t of every step: the total gradient
// of the state after step t (from y_t and from the steps after it), zero past a row's length
// (diagnostics: gradient flow over time).
void layer_backward_cpu(const LayerDims& dims, float* dx, float* dh0, float* dc0,
                        const LayerGrads* grads, const float* dy, const float* dh_n,
                        const float* dc_n, const float* reserve, const float* x,
                        const int* lengths, const LayerWeights* weights, float* dh_steps = nullptr);

}  // namespace recurrent
