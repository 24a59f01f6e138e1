// Double-precision reference of a recurrent layer, written as plainly as possible:
// loops over time, batch rows and units, matrix-vector products by hand, the
// equations spelled out again rather than taken from cells.h. Tests compare the fast
// float32 kernels with it and check its gradients by finite differences.
// Same shapes and conventions as recurrent.h.
#pragma once

#include "recurrent.h"

namespace recurrent {

struct ReferenceWeights {
  const double* w_ih;
  const double* w_hh;
  const double* b_ih;  // null: no bias
  const double* b_hh;
};

struct ReferenceGrads {
  double* w_ih;
  double* w_hh;
  double* b_ih;
  double* b_hh;
};

void layer_forward_reference(const LayerDims& dims, double* y, double* h_n, double* c_n,
                             const double* x, const int* lengths, const double* h0,
                             const double* c0, const ReferenceWeights* weights);

void layer_backward_reference(const LayerDims& dims, double* dx, double* dh0, double* dc0,
                              const ReferenceGrads* grads, const double* dy, const double* dh_n,
                              const double* dc_n, const double* x, const int* lengths,
                              const double* h0, const double* c0,
                              const ReferenceWeights* weights);

}  // namespace recurrent
