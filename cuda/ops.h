// The CUDA side of the tensor ops, the losses and the optimizers: the device twins of
// cpp/ops.h, cpp/loss.h and cpp/optim.h, with the same arguments and semantics (counter-based
// random fills give the same numbers on both devices). Plain C++: binding/ includes it and
// g++ compiles binding/. Implemented by cuda/ops.cu; cuda/stub.cc throws in builds without
// CUDA, where no tensor can be on 'cuda' in the first place.
//
// Every pointer is device memory unless said otherwise. Every call is queued on the one
// stream of the process (stream()), in call order, and returns before the GPU has run it;
// errors at launch throw std::runtime_error.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpp/ops.h"
#include "cpp/optim.h"

namespace recurrent {
namespace cuda {

// ---- memory ---------------------------------------------------------------------------
// A caching allocator: blocks freed by tensors are kept by size and handed out again
// without cudaMalloc/cudaFree (which synchronize the device). Safe because every kernel
// runs on the one stream: a block freed while queued kernels still use it is only reused
// by work queued after them.

void* stream();                             // the process's cudaStream_t
float* device_alloc(size_t count);          // count floats (nullptr when count is 0); throws std::bad_alloc
void device_free(float* data, size_t count);
size_t device_cached_bytes();               // held in the cache, not in use
size_t device_allocated_bytes();            // in use by tensors and temporaries
size_t device_release_all();                // waits for the stream, returns the cache to the driver

enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice };
// Device-to-host waits for the stream (the host memory is ready on return). Host-to-device
// returns once the host memory may be reused.
void copy(float* dst, const float* src, size_t count, CopyKind kind);
void zero(float* data, size_t count);
void synchronize();  // waits for every queued kernel; throws what the GPU reported

// `count` int32 values copied to a fresh device block (free with free_ints).
int32_t* upload_ints(const int32_t* host, size_t count);
void free_ints(int32_t* data, size_t count);

// ---- tensor ops (cpp/ops.h) -------------------------------------------------------------
void strided_copy(float* dst, const int64_t* dst_strides, const float* src, const int64_t* src_strides,
                  const int64_t* shape, int rank, bool accumulate);
void unary_forward(UnaryOp op, float* out, const float* in, int64_t n);
void unary_backward(UnaryOp op, float* grad_in, const float* in, const float* out, const float* grad_out, int64_t n);
void binary(BinaryOp op, float* out, const float* a, const int64_t* a_strides, const float* b,
            const int64_t* b_strides, const int64_t* shape, int rank);
void affine(float* out, const float* in, float alpha, float beta, int64_t n);
void fill(float* out, float value, int64_t n);
void softmax_forward(float* out, const float* in, int64_t rows, int64_t cols, bool log);
void softmax_backward(float* grad_in, const float* out, const float* grad_out, int64_t rows, int64_t cols, bool log);
void uniform_fill(float* out, int64_t n, float low, float high, uint64_t seed);
void normal_fill(float* out, int64_t n, float mean, float stddev, uint64_t seed);
void dropout_mask(float* out, int64_t n, float p, uint64_t seed);
// indices: device memory (upload_ints)
void embedding_forward(float* out, const float* weight, const int32_t* indices, int64_t count, int64_t dim);
void embedding_backward(float* grad_weight, const float* grad_out, const int32_t* indices, int64_t count, int64_t dim);

// ---- losses (cpp/loss.h); targets: device memory ----------------------------------------
void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows, int64_t classes,
                           int32_t ignore_index);
void cross_entropy_backward(float* grad_logits, const float* logits, const int32_t* targets, const float* grad_losses,
                            int64_t rows, int64_t classes, int32_t ignore_index);

// ---- optimizers (cpp/optim.h) --------------------------------------------------------
void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& h, bool first_step);
void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, const AdamHyper& h,
               int64_t step);
void rmsprop_step(float* param, const float* grad, float* square_avg, float* grad_avg, float* momentum_buf, int64_t n,
                  const RmspropHyper& h);
// The L2 norm of all `count` gradients (host arrays of device pointers and sizes) into
// norm_out[0]; the gradients scaled by max_norm / (norm + 1e-6) where that is below 1.
// Nothing is read back to the host.
void clip_grad_norm(float* const* grads, const int64_t* sizes, size_t count, double max_norm, float* norm_out);
void clamp(float* x, int64_t n, float low, float high);

}  // namespace cuda
}  // namespace recurrent
