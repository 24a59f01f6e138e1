// What every .cu file of the backend shares (device code only; never included by binding/).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "api.h"

namespace recurrent {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(err));
}

inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// The one stream of the process (allocator.cu): every kernel is queued on it.
cudaStream_t the_stream();

// The device's SM count, asked once (every GEMM call sizes its grid by it).
inline int sm_count() {
  static const int sms = [] {
    int device = 0, count = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "SM count");
    return count;
  }();
  return sms;
}

// Element-wise kernels: blocks of kBlockThreads, at most 65535 * 8 of them, each thread
// striding over the grid.
constexpr int kBlockThreads = 256;

inline int grid_blocks(int64_t n, int threads = kBlockThreads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535 * 8));
}

#define GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<long long>(gridDim.x) * blockDim.x)

}  // namespace cuda
}  // namespace recurrent
