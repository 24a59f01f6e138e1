// Gate math of the three recurrent cells, for one hidden unit of one batch row, and the
// cell kinds both backends share: written once, for any value type T and any Math that
// supplies sigmoid, tanh and relu on it. The CUDA kernels call it on floats (ScalarMath,
// __host__ __device__ under nvcc, plain inline under g++); the CPU's vectorized gate kernels
// (gates_impl.h) call it on SIMD vectors, with their own polynomial sigmoid and tanh. Both
// are tested against the double-precision reference (reference.cc).
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

#include "host_device.h"

// The gate functions are always inlined: the SIMD kernels instantiate them from code compiled
// for AVX2 or AVX-512, and they must be compiled there, not as functions of their own.
#if defined(__CUDACC__)
#define RECURRENT_CELL RECURRENT_HD
#elif defined(__GNUC__)
#define RECURRENT_CELL inline __attribute__((always_inline))
#else
#define RECURRENT_CELL inline
#endif

namespace recurrent {

enum class CellKind : int { kRnnTanh = 0, kRnnRelu = 1, kLstm = 2, kGru = 3 };
// indexed by code (reported by the binding's nativeCodes, checked against lib/core/native.ts)
inline constexpr const char* kCellNames[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};

// Number of gates G: weight_ih is (G*H, I), weight_hh is (G*H, H).
RECURRENT_HD int gate_count(CellKind cell) {
  return cell == CellKind::kLstm ? 4 : cell == CellKind::kGru ? 3 : 1;
}

// The activations on one float, with the C library's expf and tanhf.
struct ScalarMath {
  static RECURRENT_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
  static RECURRENT_HD float tanh(float x) { return tanhf(x); }
  static RECURRENT_HD float relu(float x) { return x > 0.0f ? x : 0.0f; }
  // dh where the unit was active (h > 0), else 0
  static RECURRENT_HD float relu_grad(float h, float dh) { return h > 0.0f ? dh : 0.0f; }
};

RECURRENT_HD float sigmoid(float x) { return ScalarMath::sigmoid(x); }

// ---------------------------------------------------------------------------
// RNN
template <typename T, typename Math = ScalarMath>
RECURRENT_CELL T rnn_cell_forward(T pre, bool relu) {
  return relu ? Math::relu(pre) : Math::tanh(pre);
}

// da: gradient of the pre-activation, from the new state h and its gradient dh.
template <typename T, typename Math = ScalarMath>
RECURRENT_CELL T rnn_cell_backward(T h, T dh, bool relu) {
  return relu ? Math::relu_grad(h, dh) : dh * (1.0f - h * h);
}

// ---------------------------------------------------------------------------
// LSTM. a_* are full pre-activations (both projections and both biases).
template <typename T>
struct LstmGatesOf {
  T i, f, g, o;
};
using LstmGates = LstmGatesOf<float>;

// The new cell state from the activated gates (also recomputed by backward, and used by the
// vectorized kernels, which activate the gates of many units at once: gates_impl.h)
template <typename T>
RECURRENT_CELL T lstm_cell_state(const LstmGatesOf<T>& gates, T c_prev) {
  return gates.f * c_prev + gates.i * gates.g;
}

template <typename T, typename Math = ScalarMath>
RECURRENT_CELL LstmGatesOf<T> lstm_cell_forward(T a_i, T a_f, T a_g, T a_o, T c_prev, T* c, T* h) {
  LstmGatesOf<T> gates{Math::sigmoid(a_i), Math::sigmoid(a_f), Math::tanh(a_g), Math::sigmoid(a_o)};
  *c = lstm_cell_state(gates, c_prev);
  *h = gates.o * Math::tanh(*c);
  return gates;
}

// Given the saved gates, the previous cell state and the gradients flowing into
// h' and c', returns the pre-activation gradients and the gradient of c.
// (in two parts: tanh(c') from lstm_cell_state, then the rest)
template <typename T>
RECURRENT_CELL LstmGatesOf<T> lstm_cell_backward_given(const LstmGatesOf<T>& gates, T c_prev, T tanh_c, T dh, T dc, T* dc_prev) {
  const T dc_total = dc + dh * gates.o * (1.0f - tanh_c * tanh_c);
  *dc_prev = dc_total * gates.f;
  LstmGatesOf<T> da;
  da.i = dc_total * gates.g * gates.i * (1.0f - gates.i);
  da.f = dc_total * c_prev * gates.f * (1.0f - gates.f);
  da.g = dc_total * gates.i * (1.0f - gates.g * gates.g);
  da.o = dh * tanh_c * gates.o * (1.0f - gates.o);
  return da;
}

template <typename T, typename Math = ScalarMath>
RECURRENT_CELL LstmGatesOf<T> lstm_cell_backward(const LstmGatesOf<T>& gates, T c_prev, T dh, T dc, T* dc_prev) {
  return lstm_cell_backward_given(gates, c_prev, Math::tanh(lstm_cell_state(gates, c_prev)), dh, dc, dc_prev);
}

// ---------------------------------------------------------------------------
// GRU. x_* include b_i*, h_* include b_h*.
template <typename T>
struct GruGatesOf {
  T r, z, n;
};
using GruGates = GruGatesOf<float>;

// The new state from the activated gates
template <typename T>
RECURRENT_CELL T gru_cell_state(const GruGatesOf<T>& gates, T h_prev) {
  return (1.0f - gates.z) * gates.n + gates.z * h_prev;
}

template <typename T, typename Math = ScalarMath>
RECURRENT_CELL GruGatesOf<T> gru_cell_forward(T x_r, T x_z, T x_n, T h_r, T h_z, T h_n, T h_prev, T* h) {
  GruGatesOf<T> gates;
  gates.r = Math::sigmoid(x_r + h_r);
  gates.z = Math::sigmoid(x_z + h_z);
  gates.n = Math::tanh(x_n + gates.r * h_n);
  *h = gru_cell_state(gates, h_prev);
  return gates;
}

// Gradients of the input-side pre-activations (da_x) and of the hidden-side ones
// (da_h: equal for r and z, times r for n); *dh_prev_direct is the part of dh_prev
// that bypasses the recurrent matmul (dh * z).
template <typename T>
struct GruGradsOf {
  T r, z, n_x, n_h;
};
using GruGrads = GruGradsOf<float>;

template <typename T>
RECURRENT_CELL GruGradsOf<T> gru_cell_backward(const GruGatesOf<T>& gates, T h_n, T h_prev, T dh, T* dh_prev_direct) {
  GruGradsOf<T> da;
  const T dn = dh * (1.0f - gates.z);
  const T dz = dh * (h_prev - gates.n);
  da.n_x = dn * (1.0f - gates.n * gates.n);
  da.n_h = da.n_x * gates.r;
  da.r = da.n_x * h_n * gates.r * (1.0f - gates.r);
  da.z = dz * gates.z * (1.0f - gates.z);
  *dh_prev_direct = dh * gates.z;
  return da;
}

}  // namespace recurrent
