// The device twins of the CPU optimizer updates (cpp/optim.h, see optim.h). The per-element
// update is cpp/optim_math.h, the very code the CPU loops run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "allocator.h"
#include "common.cuh"
#include "cpp/optim_math.h"
#include "optim.h"
#include "reduce.cuh"

namespace recurrent {
namespace cuda {

namespace {

__global__ void sgd_kernel(float* param, const float* grad, float* buf, long long n, SgdHyper h, bool first_step) {
  float unused = 0.0f;
  GRID_STRIDE(i, n) sgd_update(param[i], grad[i], buf ? buf[i] : unused, h, first_step);
}

__global__ void adam_kernel(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, long long n,
                            AdamHyper h, AdamStepConstants k) {
  GRID_STRIDE(i, n) adam_update(param[i], grad[i], exp_avg[i], exp_avg_sq[i], h, k);
}

__global__ void rmsprop_kernel(float* param, const float* grad, float* square_avg, float* grad_avg, float* buf,
                               long long n, RmspropHyper h) {
  float unused_avg = 0.0f, unused_buf = 0.0f;
  GRID_STRIDE(i, n) {
    rmsprop_update(param[i], grad[i], square_avg[i], grad_avg ? grad_avg[i] : unused_avg, buf ? buf[i] : unused_buf, h);
  }
}

__global__ void sum_squares_kernel(const float* x, long long n, double* total) {
  double s = 0.0;
  GRID_STRIDE(i, n) s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(total, s);
}

// scratch[0]: the sum of squares; scratch[1]: the clip coefficient
__global__ void clip_coefficient_kernel(double* scratch, double max_norm, float* norm_out) {
  const double norm = sqrt(scratch[0]);
  *norm_out = static_cast<float>(norm);
  scratch[1] = max_norm / (norm + 1e-6);
}

__global__ void clip_scale_kernel(float* x, long long n, const double* scratch) {
  const double coef = scratch[1];
  if (coef >= 1.0) return;
  const float scale = static_cast<float>(coef);
  GRID_STRIDE(i, n) x[i] *= scale;
}

__global__ void clamp_kernel(float* x, long long n, float low, float high) {
  GRID_STRIDE(i, n) x[i] = fminf(fmaxf(x[i], low), high);
}

}  // namespace

void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& h, bool first_step) {
  if (n == 0) return;
  sgd_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(param, grad, momentum_buf, n, h, first_step);
  check_launch("SGD step");
}

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, const AdamHyper& h,
               int64_t step) {
  if (n == 0) return;
  adam_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(param, grad, exp_avg, exp_avg_sq, n, h,
                                                                  adam_step_constants(h, step));
  check_launch("Adam step");
}

void rmsprop_step(float* param, const float* grad, float* square_avg, float* grad_avg, float* momentum_buf, int64_t n,
                  const RmspropHyper& h) {
  if (n == 0) return;
  rmsprop_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(param, grad, square_avg, grad_avg, momentum_buf, n, h);
  check_launch("RMSprop step");
}

void clip_grad_norm(float* const* grads, const int64_t* sizes, size_t count, double max_norm, float* norm_out) {
  // two doubles of scratch, in a float block of the cache (blocks are 512-byte aligned)
  float* block = device_alloc(4);
  auto* scratch = reinterpret_cast<double*>(block);
  try {
    check(cudaMemsetAsync(scratch, 0, 2 * sizeof(double), the_stream()), "memset");
    for (size_t i = 0; i < count; ++i) {
      if (sizes[i] == 0) continue;
      sum_squares_kernel<<<std::min(grid_blocks(sizes[i]), 1024), kBlockThreads, 0, the_stream()>>>(grads[i], sizes[i], scratch);
    }
    clip_coefficient_kernel<<<1, 1, 0, the_stream()>>>(scratch, max_norm, norm_out);
    for (size_t i = 0; i < count; ++i) {
      if (sizes[i] == 0) continue;
      clip_scale_kernel<<<grid_blocks(sizes[i]), kBlockThreads, 0, the_stream()>>>(grads[i], sizes[i], scratch);
    }
    check_launch("gradient norm clipping");
  } catch (...) {
    device_free(block, 4);
    throw;
  }
  device_free(block, 4);
}

void clamp(float* x, int64_t n, float low, float high) {
  if (n == 0) return;
  clamp_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(x, n, low, high);
  check_launch("clamp");
}

}  // namespace cuda
}  // namespace recurrent
