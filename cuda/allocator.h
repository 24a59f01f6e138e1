// The CUDA memory and stream, the device side of cpp/allocator.h, implemented by allocator.cu.
// Plain C++: binding/ includes it and g++ compiles binding/. Every pointer is device memory
// unless said otherwise; every call is queued on the one stream of the process (stream()), in
// call order, and returns before the GPU has run it; errors at launch throw std::runtime_error.
// Builds without CUDA get throwing stand-ins (api.h).
//
// A caching allocator: blocks freed by tensors are kept by size and handed out again
// without cudaMalloc/cudaFree (which synchronize the device). Safe because every kernel
// runs on the one stream: a block freed while queued kernels still use it is only reused
// by work queued after them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "api.h"

namespace recurrent {
namespace cuda {

// the process's cudaStream_t
RECURRENT_CUDA_FN void* stream() RECURRENT_CUDA_ELSE_THROW;
// count floats (nullptr when count is 0); throws std::bad_alloc
RECURRENT_CUDA_FN float* device_alloc(size_t count) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void device_free(float* data, size_t count) RECURRENT_CUDA_ELSE();
// held in the cache, not in use
RECURRENT_CUDA_FN size_t device_cached_bytes() RECURRENT_CUDA_ELSE(return 0);
// in use by tensors and temporaries
RECURRENT_CUDA_FN size_t device_allocated_bytes() RECURRENT_CUDA_ELSE(return 0);
// waits for the stream, returns the cache to the driver
RECURRENT_CUDA_FN size_t device_release_all() RECURRENT_CUDA_ELSE(return 0);

enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice };
// Device-to-host waits for the stream (the host memory is ready on return). Host-to-device
// returns once the host memory may be reused.
RECURRENT_CUDA_FN void copy(float* dst, const float* src, size_t count, CopyKind kind) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void zero(float* data, size_t count) RECURRENT_CUDA_ELSE_THROW;
// waits for every queued kernel; throws what the GPU reported
RECURRENT_CUDA_FN void synchronize() RECURRENT_CUDA_ELSE();

// `count` int32 values copied to a fresh device block (free with free_ints).
RECURRENT_CUDA_FN int32_t* upload_ints(const int32_t* host, size_t count) RECURRENT_CUDA_ELSE_THROW;
RECURRENT_CUDA_FN void free_ints(int32_t* data, size_t count) RECURRENT_CUDA_ELSE();

}  // namespace cuda
}  // namespace recurrent
