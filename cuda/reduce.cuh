// Warp and block reductions of the element-wise kernels (ops.cu, loss.cu, optim.cu).
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace recurrent {
namespace cuda {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
template <typename T>
__device__ inline T block_sum(T v) {
  __shared__ T partial[32];
  __shared__ T total;
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : T(0);
    v = warp_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  v = warp_max(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : -INFINITY;
    v = warp_max(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

// The largest value of a row (into *max) and sum(exp(x - max)) in double, over the block (the
// softmax and the cross entropy; the CPU sums in double too).
__device__ inline double row_exp_sum(const float* x, long long n, float* max) {
  float m = -INFINITY;
  for (long long j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, x[j]);
  m = block_max(m);
  double s = 0.0;
  for (long long j = threadIdx.x; j < n; j += blockDim.x) s += exp(static_cast<double>(x[j] - m));
  *max = m;
  return block_sum(s);
}

}  // namespace cuda
}  // namespace recurrent
