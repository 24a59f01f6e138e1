// Vectorized sigmoid/tanh and the fused gate kernels of the CPU recurrent layer, for
// one batch row and a run of `blocks` whole blocks of kGateBlock hidden units (see gates_impl.h
// for the layouts). Compiled for AVX-512, AVX2+FMA, NEON and the portable baseline; gate_kernels()
// returns the set matching the GEMM's choice (gemm_isa(), RECURRENT_ISA).
#pragma once

namespace recurrent {

constexpr int kGateBlock = 16;

struct GateKernels {
  void (*sigmoid)(const float* x, float* y, int n);
  void (*tanh)(const float* x, float* y, int n);
  void (*lstm_forward)(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                       float* c, float* h, float* y, float* gates, int blocks);
  void (*gru_forward)(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                      const float* h_prev, float* h, float* y, float* gates, float* h_n, int blocks);
  void (*rnn_forward)(const float* xp, const float* b_ih, const float* b_hh, const float* hp, bool relu,
                      float* h, float* y, float* gates, int blocks);
  void (*lstm_backward)(const float* gates, int gs, const float* c_prev, float* dh, float* dc, float* dgx, int blocks);
  void (*gru_backward)(const float* gates, int gs, const float* h_n, const float* h_prev, float* dh, float* dgx,
                       float* dgh, int blocks);
  void (*rnn_backward)(const float* h, bool relu, float* dh, float* dgx, int blocks);
};

const GateKernels& gate_kernels();

}  // namespace recurrent
