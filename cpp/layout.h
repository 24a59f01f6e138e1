// How a recurrent layer lays out its reserve and walks time, on both backends: the reserve that
// forward fills on the CPU means the same on the GPU (cpp/recurrent.cc, cuda/recurrent.cu).
//
// Per direction, one after the other (rows = T * B, time-major like y):
//   gates  (T, B, G*H)  the activated gates; RNN: the new state
//   h_prev (T, B, H)    the state entering step t
//   c_prev (T, B, H)    LSTM: the cell entering step t
//   h_n    (T, B, H)    GRU: W_hn h + b_hn (the reset gate multiplies it)
#pragma once

#include <cstddef>

#include "host_device.h"
#include "recurrent.h"

namespace recurrent {

struct ReserveViews {
  float* gates;
  float* h_prev;
  float* c_prev;  // null unless LSTM
  float* h_n;     // null unless GRU
};

inline size_t reserve_per_direction(const LayerDims& d) {
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t extra = (d.cell == CellKind::kLstm || d.cell == CellKind::kGru) ? 1 : 0;
  return rows * d.hidden_size * (gate_count(d.cell) + 1 + extra);
}

inline ReserveViews reserve_views(const LayerDims& d, float* base, int direction) {
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t gh = static_cast<size_t>(gate_count(d.cell)) * d.hidden_size;
  float* p = base + reserve_per_direction(d) * direction;
  ReserveViews r{p, p + rows * gh, nullptr, nullptr};
  if (d.cell == CellKind::kLstm) r.c_prev = r.h_prev + rows * d.hidden_size;
  if (d.cell == CellKind::kGru) r.h_n = r.h_prev + rows * d.hidden_size;
  return r;
}

// The time index of the step-th step of a direction: forward 0 .. T-1, reverse T-1 .. 0.
RECURRENT_HD int time_of(int direction, int step, int steps) { return direction == 0 ? step : steps - 1 - step; }

// Packed-sequence semantics: row b takes part in step t when t < lengths[b] (null: all do).
RECURRENT_HD bool is_active(const int* lengths, int b, int t) { return !lengths || lengths[b] > t; }

}  // namespace recurrent
