// Gate math of the three recurrent cells, for one hidden unit of one batch row, and the
// cell kinds both backends share. The CUDA kernels call these functions (__host__
// __device__ under nvcc, plain inline under g++); the CPU's vectorized gate kernels
// (gates_impl.h) write the same equations on SIMD vectors, with their own sigmoid and
// tanh, and are tested against the double-precision reference (reference.cc).
//
// Equations and gate orders are PyTorch's (nn.RNN, nn.LSTM, nn.GRU):
//   RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh | relu
//   LSTM  gates i, f, g, o:  i = s(.), f = s(.), g = tanh(.), o = s(.)
//         c' = f * c + i * g,  h' = o * tanh(c')
//   GRU   gates r, z, n:     r = s(x_r + h_r), z = s(x_z + h_z),
//         n = tanh(x_n + r * h_n)   (reset applied after the recurrent matmul)
//         h' = (1 - z) * n + z * h
// where x_* = W_i* x + b_i* and h_* = W_h* h + b_h*, s = logistic sigmoid.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define RECURRENT_HD __host__ __device__ __forceinline__
#else
#define RECURRENT_HD inline
#endif

namespace recurrent {

enum class CellKind : int { kRnnTanh = 0, kRnnRelu = 1, kLstm = 2, kGru = 3 };

// Number of gates G: weight_ih is (G*H, I), weight_hh is (G*H, H).
RECURRENT_HD int gate_count(CellKind cell) {
  return cell == CellKind::kLstm ? 4 : cell == CellKind::kGru ? 3 : 1;
}

RECURRENT_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// ---------------------------------------------------------------------------
// RNN
RECURRENT_HD float rnn_cell_forward(float pre, bool relu) {
  return relu ? (pre > 0.0f ? pre : 0.0f) : tanhf(pre);
}

// da: gradient of the pre-activation, from the new state h and its gradient dh.
RECURRENT_HD float rnn_cell_backward(float h, float dh, bool relu) {
  return relu ? (h > 0.0f ? dh : 0.0f) : dh * (1.0f - h * h);
}

// ---------------------------------------------------------------------------
// LSTM. a_* are full pre-activations (both projections and both biases).
struct LstmGates {
  float i, f, g, o;
};

RECURRENT_HD LstmGates lstm_cell_forward(float a_i, float a_f, float a_g, float a_o,
                                         float c_prev, float* c, float* h) {
  LstmGates gates{sigmoid(a_i), sigmoid(a_f), tanhf(a_g), sigmoid(a_o)};
  *c = gates.f * c_prev + gates.i * gates.g;
  *h = gates.o * tanhf(*c);
  return gates;
}

// Given the saved gates, the previous cell state and the gradients flowing into
// h' and c', returns the pre-activation gradients and the gradient of c.
RECURRENT_HD LstmGates lstm_cell_backward(const LstmGates& gates, float c_prev, float dh,
                                          float dc, float* dc_prev) {
  const float c = gates.f * c_prev + gates.i * gates.g;
  const float tanh_c = tanhf(c);
  const float dc_total = dc + dh * gates.o * (1.0f - tanh_c * tanh_c);
  *dc_prev = dc_total * gates.f;
  LstmGates da;
  da.i = dc_total * gates.g * gates.i * (1.0f - gates.i);
  da.f = dc_total * c_prev * gates.f * (1.0f - gates.f);
  da.g = dc_total * gates.i * (1.0f - gates.g * gates.g);
  da.o = dh * tanh_c * gates.o * (1.0f - gates.o);
  return da;
}

// ---------------------------------------------------------------------------
// GRU. x_* include b_i*, h_* include b_h*.
struct GruGates {
  float r, z, n;
};

RECURRENT_HD GruGates gru_cell_forward(float x_r, float x_z, float x_n, float h_r, float h_z,
                                       float h_n, float h_prev, float* h) {
  GruGates gates;
  gates.r = sigmoid(x_r + h_r);
  gates.z = sigmoid(x_z + h_z);
  gates.n = tanhf(x_n + gates.r * h_n);
  *h = (1.0f - gates.z) * gates.n + gates.z * h_prev;
  return gates;
}

// Gradients of the input-side pre-activations (da_x) and of the hidden-side ones
// (da_h: equal for r and z, times r for n); *dh_prev_direct is the part of dh_prev
// that bypasses the recurrent matmul (dh * z).
struct GruGrads {
  float r, z, n_x, n_h;
};

RECURRENT_HD GruGrads gru_cell_backward(const GruGates& gates, float h_n, float h_prev,
                                        float dh, float* dh_prev_direct) {
  GruGrads da;
  const float dn = dh * (1.0f - gates.z);
  const float dz = dh * (h_prev - gates.n);
  da.n_x = dn * (1.0f - gates.n * gates.n);
  da.n_h = da.n_x * gates.r;
  da.r = da.n_x * h_n * gates.r * (1.0f - gates.r);
  da.z = dz * gates.z * (1.0f - gates.z);
  *dh_prev_direct = dh * gates.z;
  return da;
}

}  // namespace recurrent
