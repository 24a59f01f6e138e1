// The three compiled variants of gates_impl.h and the run-time choice among them.
#include "gates.h"

#include <cstring>

#include "gemm.h"

namespace recurrent {

#define RECURRENT_GATES_NS baseline_gates
typedef float V __attribute__((vector_size(16), aligned(4), may_alias));
typedef int VI __attribute__((vector_size(16), aligned(4), may_alias));
constexpr int W = 4;
#include "gates_impl.h"
#undef RECURRENT_GATES_NS

#if defined(__x86_64__) && defined(__GNUC__)
#define RECURRENT_GATES_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2_types {
typedef float V __attribute__((vector_size(32), aligned(4), may_alias));
typedef int VI __attribute__((vector_size(32), aligned(4), may_alias));
constexpr int W = 8;
}  // namespace avx2_types
#define RECURRENT_GATES_NS avx2_gates
#define V avx2_types::V
#define VI avx2_types::VI
#define W avx2_types::W
#include "gates_impl.h"
#undef V
#undef VI
#undef W
#undef RECURRENT_GATES_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace avx512_types {
typedef float V __attribute__((vector_size(64), aligned(4), may_alias));
typedef int VI __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int W = 16;
}  // namespace avx512_types
#define RECURRENT_GATES_NS avx512_gates
#define V avx512_types::V
#define VI avx512_types::VI
#define W avx512_types::W
#include "gates_impl.h"
#undef V
#undef VI
#undef W
#undef RECURRENT_GATES_NS
#pragma GCC pop_options
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
  return RECURRENT_GATE_SET(baseline_gates);
}

}  // namespace

const GateKernels& gate_kernels() {
  static const GateKernels chosen = choose();
  return chosen;
}

}  // namespace recurrent
