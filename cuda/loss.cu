// The device twins of the CPU losses (cpp/loss.h, see loss.h): one block per row, the row's
// log-sum-exp accumulated in double as on the CPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "common.cuh"
#include "loss.h"
#include "reduce.cuh"

namespace recurrent {
namespace cuda {

namespace {

// max and log(sum(exp(x - max))) of one row, over the block
__device__ void row_stats(const float* x, long long classes, float* max, float* log_sum) {
  *log_sum = static_cast<float>(::log(row_exp_sum(x, classes, max)));
}

// sum(x) of one row in double, over the block (every thread of the block must call it)
__device__ double row_sum(const float* x, long long classes) {
  double s = 0.0;
  for (long long j = threadIdx.x; j < classes; j += blockDim.x) s += x[j];
  return block_sum(s);
}

__global__ void cross_entropy_kernel(float* losses, const float* logits, const int32_t* targets, long long rows,
                                     long long classes, int32_t ignore, float smoothing) {
  for (long long n = blockIdx.x; n < rows; n += gridDim.x) {
    const int32_t t = targets[n];
    if (t == ignore) {
      if (threadIdx.x == 0) losses[n] = 0.0f;
      continue;
    }
    const float* x = logits + n * classes;
    float m, lse;
    row_stats(x, classes, &m, &lse);
    const float target_term = x[t] - m - lse;  // log p[target]
    if (smoothing == 0.0f) {
      if (threadIdx.x == 0) losses[n] = -target_term;
      continue;
    }
    const double sum = row_sum(x, classes);
    const float mean_term = static_cast<float>(sum / static_cast<double>(classes)) - m - lse;  // mean_j log p[j]
    if (threadIdx.x == 0) losses[n] = -((1.0f - smoothing) * target_term + smoothing * mean_term);
  }
}

__global__ void cross_entropy_backward_kernel(float* grad_logits, const float* logits, const int32_t* targets,
                                              const float* grad_losses, long long rows, long long classes,
                                              int32_t ignore, float smoothing) {
  for (long long n = blockIdx.x; n < rows; n += gridDim.x) {
    float* g = grad_logits + n * classes;
    const int32_t t = targets[n];
    if (t == ignore) {
      for (long long j = threadIdx.x; j < classes; j += blockDim.x) g[j] = 0.0f;
      continue;
    }
    const float* x = logits + n * classes;
    float m, lse;
    row_stats(x, classes, &m, &lse);
    const float scale = grad_losses[n];
    const float uniform = smoothing / static_cast<float>(classes);
    for (long long j = threadIdx.x; j < classes; j += blockDim.x) {
      const float v = (expf(x[j] - m - lse) - uniform) * scale;
      g[j] = j == t ? v - (1.0f - smoothing) * scale : v;
    }
  }
}

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows, int64_t classes,
                           int32_t ignore_index, float smoothing) {
  if (rows == 0) return;
  cross_entropy_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(
      losses, logits, targets, rows, classes, ignore_index, smoothing);
  check_launch("cross entropy");
}

void cross_entropy_backward(float* grad_logits, const float* logits, const int32_t* targets, const float* grad_losses,
                            int64_t rows, int64_t classes, int32_t ignore_index, float smoothing) {
  if (rows == 0) return;
  cross_entropy_backward_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(
      grad_logits, logits, targets, grad_losses, rows, classes, ignore_index, smoothing);
  check_launch("cross entropy backward");
}

}  // namespace cuda
}  // namespace recurrent
