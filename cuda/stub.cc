// Stand-in for the CUDA backend in builds without it (no CUDA compiler found, or
// RECURRENT_CUDA=OFF): cuda_status() says why, and the kernels' entry points exist but
// throw. They are never reached: no tensor can be created on 'cuda' in such a build.
#include <stdexcept>

#include "device.h"
#include "kernels.h"
#include "ops.h"

namespace recurrent {

namespace {
const char* const kReason =
    "this build of recurrent was compiled without CUDA (no CUDA compiler was found, or RECURRENT_CUDA=OFF)";
[[noreturn]] void unavailable() { throw std::runtime_error(kReason); }
}  // namespace

CudaStatus cuda_status() {
  CudaStatus status;
  status.reason = kReason;
  return status;
}

namespace cuda {

void gemm(Stream, bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int, int,
          long, long, long) { unavailable(); }
size_t layer_workspace_size(const LayerDims&) { unavailable(); }
void set_persistent_mode(PersistentMode) {}
void set_tf32(bool) {}
bool uses_persistent(const LayerDims&, bool) { return false; }
void layer_forward(Stream, const LayerDims&, float*, float*, float*, float*, const float*, const int*, const float*,
                   const float*, const LayerWeights*, float*) { unavailable(); }
void layer_backward(Stream, const LayerDims&, float*, float*, float*, const LayerGrads*, const float*, const float*,
                    const float*, const float*, const float*, const int*, const LayerWeights*, float*) { unavailable(); }

void* stream() { unavailable(); }
float* device_alloc(size_t) { unavailable(); }
void device_free(float*, size_t) {}
size_t device_cached_bytes() { return 0; }
size_t device_allocated_bytes() { return 0; }
size_t device_release_all() { return 0; }
void copy(float*, const float*, size_t, CopyKind) { unavailable(); }
void zero(float*, size_t) { unavailable(); }
void synchronize() {}
int32_t* upload_ints(const int32_t*, size_t) { unavailable(); }
void free_ints(int32_t*, size_t) {}

void strided_copy(float*, const int64_t*, const float*, const int64_t*, const int64_t*, int, bool) { unavailable(); }
void unary_forward(UnaryOp, float*, const float*, int64_t) { unavailable(); }
void unary_backward(UnaryOp, float*, const float*, const float*, const float*, int64_t) { unavailable(); }
void binary(BinaryOp, float*, const float*, const int64_t*, const float*, const int64_t*, const int64_t*, int) {
  unavailable();
}
void affine(float*, const float*, float, float, int64_t) { unavailable(); }
void fill(float*, float, int64_t) { unavailable(); }
void softmax_forward(float*, const float*, int64_t, int64_t, bool) { unavailable(); }
void softmax_backward(float*, const float*, const float*, int64_t, int64_t, bool) { unavailable(); }
void uniform_fill(float*, int64_t, float, float, uint64_t) { unavailable(); }
void normal_fill(float*, int64_t, float, float, uint64_t) { unavailable(); }
void dropout_mask(float*, int64_t, float, uint64_t) { unavailable(); }
void embedding_forward(float*, const float*, const int32_t*, int64_t, int64_t) { unavailable(); }
void embedding_backward(float*, const float*, const int32_t*, int64_t, int64_t) { unavailable(); }
void cross_entropy_forward(float*, const float*, const int32_t*, int64_t, int64_t, int32_t) { unavailable(); }
void cross_entropy_backward(float*, const float*, const int32_t*, const float*, int64_t, int64_t, int32_t) {
  unavailable();
}
void sgd_step(float*, const float*, float*, int64_t, const SgdHyper&, bool) { unavailable(); }
void adam_step(float*, const float*, float*, float*, int64_t, const AdamHyper&, int64_t) { unavailable(); }
void rmsprop_step(float*, const float*, float*, float*, float*, int64_t, const RmspropHyper&) { unavailable(); }
void clip_grad_norm(float* const*, const int64_t*, size_t, double, float*) { unavailable(); }
void clamp(float*, int64_t, float, float) { unavailable(); }

}  // namespace cuda
}  // namespace recurrent
