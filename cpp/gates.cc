// The compiled variants of gates_impl.h and the run-time choice among them: AVX-512, AVX2+FMA
// and the portable baseline on x86-64; NEON and the portable baseline on AArch64.
#include "gates.h"

#include <cstring>

#if defined(__aarch64__) && defined(__GNUC__)
#include <arm_neon.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "cells.h"
#include "gemm.h"

namespace recurrent {

#define RECURRENT_GATES_NS baseline_gates
#define RECURRENT_GATES_BYTES 16
#include "gates_impl.h"
#undef RECURRENT_GATES_BYTES
#undef RECURRENT_GATES_NS

#if defined(__x86_64__) && defined(__GNUC__)
#define RECURRENT_GATES_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define RECURRENT_GATES_NS avx2_gates
#define RECURRENT_GATES_BYTES 32
#include "gates_impl.h"
#undef RECURRENT_GATES_BYTES
#undef RECURRENT_GATES_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define RECURRENT_GATES_NS avx512_gates
#define RECURRENT_GATES_BYTES 64
#include "gates_impl.h"
#undef RECURRENT_GATES_BYTES
#undef RECURRENT_GATES_NS
#pragma GCC pop_options
#endif

#if defined(__aarch64__) && defined(__GNUC__)
#define RECURRENT_GATES_ARM 1
#define RECURRENT_GATES_NS neon_gates
#define RECURRENT_GATES_NEON 1
#include "gates_impl.h"
#undef RECURRENT_GATES_NEON
#undef RECURRENT_GATES_NS
#endif

namespace {

#define RECURRENT_GATE_SET(NS)                                                                    \
  GateKernels {                                                                                   \
    NS::sigmoid_array, NS::tanh_array, NS::lstm_forward_block, NS::gru_forward_block,             \
        NS::rnn_forward_block, NS::lstm_backward_block, NS::gru_backward_block, NS::rnn_backward_block \
  }

GateKernels choose() {
#ifdef RECURRENT_GATES_X86
  const char* isa = gemm_isa();
  if (std::strcmp(isa, "avx512") == 0) return RECURRENT_GATE_SET(avx512_gates);
  if (std::strcmp(isa, "avx2") == 0) return RECURRENT_GATE_SET(avx2_gates);
#endif
#ifdef RECURRENT_GATES_ARM
  if (std::strcmp(gemm_isa(), "neon") == 0) return RECURRENT_GATE_SET(neon_gates);
#endif
  return RECURRENT_GATE_SET(baseline_gates);
}

}  // namespace

const GateKernels& gate_kernels() {
  static const GateKernels chosen = choose();
  return chosen;
}

}  // namespace recurrent
