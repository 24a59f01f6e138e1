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

__global__ void cross_entropy_kernel(float* losses, const float* logits, const int32_t* targets, long long rows,
                                     long long classes, int32_t ignore) {
  for (long long n = blockIdx.x; n < rows; n += gridDim.x) {
    const int32_t t = targets[n];
    if (t == ignore) {
      if (threadIdx.x == 0) losses[n] = 0.0f;
      continue;
    }
    const float* x = logits + n * classes;
    float m, lse;
    row_stats(x, classes, &m, &lse);
    if (threadIdx.x == 0) losses[n] = -(x[t] - m - lse);
  }
}

__global__ void cross_entropy_backward_kernel(float* grad_logits, const float* logits, const int32_t* targets,
                                              const float* grad_losses, long long rows, long long classes,
                                              int32_t ignore) {
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
    for (long long j = threadIdx.x; j < classes; j += blockDim.x) {
      const float v = expf(x[j] - m - lse) * scale;
      g[j] = j == t ? v - scale : v;
    }
  }
}

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows, int64_t classes,
                           int32_t ignore_index) {
  if (rows == 0) return;
  cross_entropy_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(
      losses, logits, targets, rows, classes, ignore_index);
  check_launch("cross entropy");
}

void cross_entropy_backward(float* grad_logits, const float* logits, const int32_t* targets, const float* grad_losses,
                            int64_t rows, int64_t classes, int32_t ignore_index) {
  if (rows == 0) return;
  cross_entropy_backward_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(
      grad_logits, logits, targets, grad_losses, rows, classes, ignore_index);
  check_launch("cross entropy backward");
}

}  // namespace cuda
}  // namespace recurrent
