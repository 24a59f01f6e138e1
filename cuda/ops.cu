// The device twins of the CPU tensor ops (cpp/ops.h, see ops.h). Each kernel follows its CPU
// twin operation by operation (double accumulators where the CPU sums in double), so results
// agree to rounding; the random fills compute the same counter-based numbers.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "common.cuh"
#include "ops.h"
#include "reduce.cuh"

namespace recurrent {
namespace cuda {

namespace {

// Index space of up to 8 dimensions walked by two strided operands.
struct Walk {
  int rank;
  long long shape[kMaxRank];
  long long s0[kMaxRank];
  long long s1[kMaxRank];
};

__device__ __forceinline__ void offsets(const Walk& w, long long i, long long& o0, long long& o1) {
  o0 = 0;
  o1 = 0;
  for (int k = w.rank - 1; k >= 0; --k) {
    const long long idx = i % w.shape[k];
    i /= w.shape[k];
    o0 += idx * w.s0[k];
    o1 += idx * w.s1[k];
  }
}


__global__ void copy_kernel(float* dst, const float* src, Walk w, long long n) {
  GRID_STRIDE(i, n) {
    long long od, os;
    offsets(w, i, od, os);
    dst[od] = src[os];
  }
}

// One output element per thread, summing its (short) reduction serially.
__global__ void reduce_serial_kernel(float* dst, const float* src, Walk outer, Walk inner, long long n_out,
                                     long long n_red) {
  GRID_STRIDE(i, n_out) {
    long long od, os;
    offsets(outer, i, od, os);
    float acc = 0.0f;
    for (long long r = 0; r < n_red; ++r) {
      long long unused, rs;
      offsets(inner, r, unused, rs);
      acc += src[os + rs];
    }
    dst[od] += acc;
  }
}

// One block per output element, its threads splitting the reduction.
__global__ void reduce_block_kernel(float* dst, const float* src, Walk outer, Walk inner, long long n_out,
                                    long long n_red) {
  for (long long o = blockIdx.x; o < n_out; o += gridDim.x) {
    long long od, os;
    offsets(outer, o, od, os);
    float acc = 0.0f;
    for (long long r = threadIdx.x; r < n_red; r += blockDim.x) {
      long long unused, rs;
      offsets(inner, r, unused, rs);
      acc += src[os + rs];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dst[od] += acc;
  }
}

__global__ void unary_kernel(UnaryOp op, float* out, const float* in, long long n) {
  GRID_STRIDE(i, n) {
    const float x = in[i];
    float y;
    switch (op) {
      case UnaryOp::kTanh: y = tanhf(x); break;
      case UnaryOp::kSigmoid: y = 1.0f / (1.0f + expf(-x)); break;
      case UnaryOp::kRelu: y = x > 0.0f ? x : 0.0f; break;
      case UnaryOp::kExp: y = expf(x); break;
      case UnaryOp::kLog: y = logf(x); break;
      case UnaryOp::kNeg: y = -x; break;
      case UnaryOp::kAbs: y = fabsf(x); break;
      default: y = sqrtf(x); break;
    }
    out[i] = y;
  }
}

__global__ void unary_backward_kernel(UnaryOp op, float* grad_in, const float* in, const float* out,
                                      const float* grad_out, long long n) {
  GRID_STRIDE(i, n) {
    const float g = grad_out[i];
    float d;
    switch (op) {
      case UnaryOp::kTanh: d = g * (1.0f - out[i] * out[i]); break;
      case UnaryOp::kSigmoid: d = g * out[i] * (1.0f - out[i]); break;
      case UnaryOp::kRelu: d = in[i] > 0.0f ? g : 0.0f; break;
      case UnaryOp::kExp: d = g * out[i]; break;
      case UnaryOp::kLog: d = g / in[i]; break;
      case UnaryOp::kNeg: d = -g; break;
      case UnaryOp::kAbs: d = in[i] > 0.0f ? g : in[i] < 0.0f ? -g : 0.0f; break;
      default: d = g * 0.5f / out[i]; break;
    }
    grad_in[i] = d;
  }
}

__global__ void binary_kernel(BinaryOp op, float* out, const float* a, const float* b, Walk w, long long n) {
  GRID_STRIDE(i, n) {
    long long oa, ob;
    offsets(w, i, oa, ob);
    const float x = a[oa], y = b[ob];
    float r;
    switch (op) {
      case BinaryOp::kAdd: r = x + y; break;
      case BinaryOp::kSub: r = x - y; break;
      case BinaryOp::kMul: r = x * y; break;
      default: r = x / y; break;
    }
    out[i] = r;
  }
}

__global__ void affine_kernel(float* out, const float* in, float alpha, float beta, long long n) {
  GRID_STRIDE(i, n) out[i] = alpha * in[i] + beta;
}

__global__ void fill_kernel(float* out, float value, long long n) {
  GRID_STRIDE(i, n) out[i] = value;
}

__global__ void softmax_kernel(float* out, const float* in, long long rows, long long cols, bool log) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    float m;
    const double s = row_exp_sum(x, cols, &m);
    if (log) {
      const float lse = static_cast<float>(::log(s));
      for (long long j = threadIdx.x; j < cols; j += blockDim.x) y[j] = x[j] - m - lse;
    } else {
      const float inv = static_cast<float>(1.0 / s);
      for (long long j = threadIdx.x; j < cols; j += blockDim.x) y[j] = expf(x[j] - m) * inv;
    }
  }
}

__global__ void softmax_backward_kernel(float* grad_in, const float* out, const float* grad_out, long long rows,
                                        long long cols, bool log) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* y = out + r * cols;
    const float* g = grad_out + r * cols;
    float* dx = grad_in + r * cols;
    double s = 0.0;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += log ? static_cast<double>(g[j]) : static_cast<double>(g[j]) * y[j];
    const float sum = static_cast<float>(block_sum(s));
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) dx[j] = log ? g[j] - expf(y[j]) * sum : y[j] * (g[j] - sum);
  }
}

// The CPU's counter-based generator (cpp/ops.cc), bit for bit.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t i) {
  const uint64_t bits = mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1));
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

__global__ void uniform_kernel(float* out, long long n, float low, float high, uint64_t seed) {
  GRID_STRIDE(i, n) out[i] = low + (high - low) * uniform01(seed, static_cast<uint64_t>(i));
}

__global__ void normal_kernel(float* out, long long n, float mean, float stddev, uint64_t seed) {
  GRID_STRIDE(i, n) {
    const double u1 = 1.0 - uniform01(seed, 2 * static_cast<uint64_t>(i));
    const double u2 = uniform01(seed, 2 * static_cast<uint64_t>(i) + 1);
    const double z = sqrt(-2.0 * ::log(u1)) * cos(6.283185307179586 * u2);
    out[i] = mean + stddev * static_cast<float>(z);
  }
}

__global__ void dropout_kernel(float* out, long long n, float p, float keep, uint64_t seed) {
  GRID_STRIDE(i, n) out[i] = uniform01(seed, static_cast<uint64_t>(i)) < p ? 0.0f : keep;
}

__global__ void embedding_kernel(float* out, const float* weight, const int32_t* indices, long long count, long long dim) {
  GRID_STRIDE(i, count * dim) {
    const long long k = i / dim, j = i % dim;
    out[i] = weight[static_cast<long long>(indices[k]) * dim + j];
  }
}

__global__ void embedding_backward_kernel(float* grad_weight, const float* grad_out, const int32_t* indices,
                                          long long count, long long dim) {
  GRID_STRIDE(i, count * dim) {
    const long long k = i / dim, j = i % dim;
    atomicAdd(grad_weight + static_cast<long long>(indices[k]) * dim + j, grad_out[i]);
  }
}

Walk make_walk(const int64_t* shape, const int64_t* s0, const int64_t* s1, int rank, long long* count) {
  Walk w{};
  w.rank = rank;
  long long n = 1;
  for (int k = 0; k < rank; ++k) {
    w.shape[k] = shape[k];
    w.s0[k] = s0 ? s0[k] : 0;
    w.s1[k] = s1 ? s1[k] : 0;
    n *= shape[k];
  }
  *count = n;
  return w;
}

}  // namespace

void strided_copy(float* dst, const int64_t* dst_strides, const float* src, const int64_t* src_strides,
                  const int64_t* shape, int rank, bool accumulate) {
  long long n = 0;
  const Walk all = make_walk(shape, dst_strides, src_strides, rank, &n);
  if (n == 0) return;
  if (!accumulate) {
    copy_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(dst, src, all, n);
    check_launch("strided copy");
    return;
  }
  // Accumulating: dimensions where dst has stride 0 are reduced (sum), the others index
  // distinct dst elements.
  int64_t kept_shape[kMaxRank], kept_d[kMaxRank], kept_s[kMaxRank], red_shape[kMaxRank], red_s[kMaxRank];
  int kept = 0, red = 0;
  for (int k = 0; k < rank; ++k) {
    if (dst_strides[k] == 0 && shape[k] > 1) {
      red_shape[red] = shape[k];
      red_s[red++] = src_strides[k];
    } else {
      kept_shape[kept] = shape[k];
      kept_d[kept] = dst_strides[k];
      kept_s[kept++] = src_strides[k];
    }
  }
  long long n_out = 0, n_red = 0;
  const Walk outer = make_walk(kept_shape, kept_d, kept_s, kept, &n_out);
  const Walk inner = make_walk(red_shape, nullptr, red_s, red, &n_red);
  if (n_red < 64) {
    reduce_serial_kernel<<<grid_blocks(n_out), kBlockThreads, 0, the_stream()>>>(dst, src, outer, inner, n_out, n_red);
  } else {
    reduce_block_kernel<<<static_cast<int>(std::min<long long>(n_out, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(
        dst, src, outer, inner, n_out, n_red);
  }
  check_launch("strided sum");
}

void unary_forward(UnaryOp op, float* out, const float* in, int64_t n) {
  if (n == 0) return;
  unary_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(op, out, in, n);
  check_launch("unary");
}

void unary_backward(UnaryOp op, float* grad_in, const float* in, const float* out, const float* grad_out, int64_t n) {
  if (n == 0) return;
  unary_backward_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(op, grad_in, in, out, grad_out, n);
  check_launch("unary backward");
}

void binary(BinaryOp op, float* out, const float* a, const int64_t* a_strides, const float* b,
            const int64_t* b_strides, const int64_t* shape, int rank) {
  long long n = 0;
  const Walk w = make_walk(shape, a_strides, b_strides, rank, &n);
  if (n == 0) return;
  binary_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(op, out, a, b, w, n);
  check_launch("binary");
}

void affine(float* out, const float* in, float alpha, float beta, int64_t n) {
  if (n == 0) return;
  affine_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(out, in, alpha, beta, n);
  check_launch("affine");
}

void fill(float* out, float value, int64_t n) {
  if (n == 0) return;
  fill_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(out, value, n);
  check_launch("fill");
}

void softmax_forward(float* out, const float* in, int64_t rows, int64_t cols, bool log) {
  if (rows == 0) return;
  softmax_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(out, in, rows, cols, log);
  check_launch("softmax");
}

void softmax_backward(float* grad_in, const float* out, const float* grad_out, int64_t rows, int64_t cols, bool log) {
  if (rows == 0) return;
  softmax_backward_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kBlockThreads, 0, the_stream()>>>(
      grad_in, out, grad_out, rows, cols, log);
  check_launch("softmax backward");
}

void uniform_fill(float* out, int64_t n, float low, float high, uint64_t seed) {
  if (n == 0) return;
  uniform_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(out, n, low, high, seed);
  check_launch("uniform fill");
}

void normal_fill(float* out, int64_t n, float mean, float stddev, uint64_t seed) {
  if (n == 0) return;
  normal_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(out, n, mean, stddev, seed);
  check_launch("normal fill");
}

void dropout_mask(float* out, int64_t n, float p, uint64_t seed) {
  if (n == 0) return;
  dropout_kernel<<<grid_blocks(n), kBlockThreads, 0, the_stream()>>>(out, n, p, 1.0f / (1.0f - p), seed);
  check_launch("dropout mask");
}

void embedding_forward(float* out, const float* weight, const int32_t* indices, int64_t count, int64_t dim) {
  if (count == 0 || dim == 0) return;
  embedding_kernel<<<grid_blocks(count * dim), kBlockThreads, 0, the_stream()>>>(out, weight, indices, count, dim);
  check_launch("embedding");
}

void embedding_backward(float* grad_weight, const float* grad_out, const int32_t* indices, int64_t count, int64_t dim) {
  if (count == 0 || dim == 0) return;
  embedding_backward_kernel<<<grid_blocks(count * dim), kBlockThreads, 0, the_stream()>>>(grad_weight, grad_out, indices, count, dim);
  check_launch("embedding backward");
}

}  // namespace cuda
}  // namespace recurrent
