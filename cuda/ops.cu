// The device twins of the CPU tensor ops, losses and optimizer updates (see ops.h), and the
// caching allocator and stream they share. Each kernel follows its CPU twin operation by
// operation (double accumulators where the CPU sums in double), so results agree to
// rounding; the random fills compute the same counter-based numbers.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops.h"

namespace recurrent {
namespace cuda {

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(err));
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

cudaStream_t the_stream() {
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    check(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking), "creating the stream");
    return created;
  }();
  return s;
}

// ---------------------------------------------------------------------------
// Caching allocator

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free;  // rounded bytes -> blocks
  size_t cached = 0, allocated = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

// Sizes repeat step after step in training, so exact classes reuse well: 512-byte
// granules below 1 MiB, 2 MiB above.
size_t rounded(size_t bytes) {
  const size_t granule = bytes < (size_t{1} << 20) ? 512 : (size_t{2} << 20);
  return (bytes + granule - 1) / granule * granule;
}

size_t release_locked(Cache& c) {
  size_t released = 0;
  for (auto& [bytes, blocks] : c.free) {
    for (void* p : blocks) {
      cudaFree(p);
      released += bytes;
    }
  }
  c.free.clear();
  c.cached = 0;
  return released;
}

// ---------------------------------------------------------------------------
// Shared device helpers

constexpr int kThreads = 256;

int blocks_for(int64_t n, int threads = kThreads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535 * 8));
}

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
__device__ T block_sum(T v) {
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

__device__ float block_max(float v) {
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

#define GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<long long>(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------------------
// Kernels

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
    float m = -INFINITY;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, x[j]);
    m = block_max(m);
    double s = 0.0;
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += exp(static_cast<double>(x[j] - m));
    s = block_sum(s);
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

// max and log(sum(exp(x - max))) of one row, over the block
__device__ void row_stats(const float* x, long long classes, float* max, float* log_sum) {
  float m = -INFINITY;
  for (long long j = threadIdx.x; j < classes; j += blockDim.x) m = fmaxf(m, x[j]);
  m = block_max(m);
  double s = 0.0;
  for (long long j = threadIdx.x; j < classes; j += blockDim.x) s += exp(static_cast<double>(x[j] - m));
  s = block_sum(s);
  *max = m;
  *log_sum = static_cast<float>(::log(s));
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

__global__ void sgd_kernel(float* param, const float* grad, float* buf, long long n, SgdHyper h, bool first_step) {
  GRID_STRIDE(i, n) {
    float d = grad[i];
    if (h.weight_decay != 0.0f) d += h.weight_decay * param[i];
    if (h.momentum != 0.0f) {
      const float b = first_step ? d : h.momentum * buf[i] + (1.0f - h.dampening) * d;
      buf[i] = b;
      d = h.nesterov ? d + h.momentum * b : b;
    }
    param[i] -= h.lr * d;
  }
}

__global__ void adam_kernel(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, long long n,
                            AdamHyper h, float step_size, float bias2_sqrt, float decay) {
  GRID_STRIDE(i, n) {
    float g = grad[i];
    float p = param[i];
    if (h.decoupled) p *= decay;
    else if (h.weight_decay != 0.0f) g += h.weight_decay * p;
    const float m = exp_avg[i] + (g - exp_avg[i]) * (1.0f - h.beta1);
    const float v = exp_avg_sq[i] * h.beta2 + (1.0f - h.beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const float denom = sqrtf(v) / bias2_sqrt + h.eps;
    param[i] = p - step_size * m / denom;
  }
}

__global__ void rmsprop_kernel(float* param, const float* grad, float* square_avg, float* grad_avg, float* buf,
                               long long n, RmspropHyper h) {
  GRID_STRIDE(i, n) {
    float g = grad[i];
    if (h.weight_decay != 0.0f) g += h.weight_decay * param[i];
    const float sq = square_avg[i] * h.alpha + (1.0f - h.alpha) * g * g;
    square_avg[i] = sq;
    float avg;
    if (h.centered) {
      const float ga = grad_avg[i] + (g - grad_avg[i]) * (1.0f - h.alpha);
      grad_avg[i] = ga;
      avg = sqrtf(sq - ga * ga) + h.eps;
    } else {
      avg = sqrtf(sq) + h.eps;
    }
    if (h.momentum > 0.0f) {
      const float b = buf[i] * h.momentum + g / avg;
      buf[i] = b;
      param[i] -= h.lr * b;
    } else {
      param[i] -= h.lr * g / avg;
    }
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

// ---------------------------------------------------------------------------
// Memory

void* stream() { return the_stream(); }

float* device_alloc(size_t count) {
  if (count == 0) return nullptr;
  const size_t bytes = rounded(count * sizeof(float));
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free.find(bytes);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= bytes;
      c.allocated += bytes;
      return static_cast<float*>(p);
    }
  }
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state of a failed allocation
    // out of memory: give the cache back (after the queued work that may use it) and retry
    cudaStreamSynchronize(the_stream());
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      release_locked(c);
    }
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      throw std::bad_alloc();
    }
  }
  std::lock_guard<std::mutex> lock(c.mutex);
  c.allocated += bytes;
  return static_cast<float*>(p);
}

void device_free(float* data, size_t count) {
  if (data == nullptr) return;
  const size_t bytes = rounded(count * sizeof(float));
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.free[bytes].push_back(data);
  c.cached += bytes;
  c.allocated -= bytes;
}

size_t device_cached_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().cached;
}

size_t device_allocated_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().allocated;
}

size_t device_release_all() {
  check(cudaStreamSynchronize(the_stream()), "synchronizing");
  std::lock_guard<std::mutex> lock(cache().mutex);
  return release_locked(cache());
}

void copy(float* dst, const float* src, size_t count, CopyKind kind) {
  if (count == 0) return;
  const cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                             : cudaMemcpyDeviceToDevice;
  check(cudaMemcpyAsync(dst, src, count * sizeof(float), k, the_stream()), "copy");
  // pageable host memory: wait for the copy to land (host to device returns once staged,
  // device to host must finish before the caller reads)
  if (kind == CopyKind::kDeviceToHost) check(cudaStreamSynchronize(the_stream()), "copy to host");
}

void zero(float* data, size_t count) {
  if (count == 0) return;
  check(cudaMemsetAsync(data, 0, count * sizeof(float), the_stream()), "memset");
}

void synchronize() { check(cudaStreamSynchronize(the_stream()), "synchronize"); }

int32_t* upload_ints(const int32_t* host, size_t count) {
  if (count == 0) return nullptr;
  static_assert(sizeof(int32_t) == sizeof(float), "ints travel in float-sized blocks");
  auto* p = reinterpret_cast<int32_t*>(device_alloc(count));
  check(cudaMemcpyAsync(p, host, count * sizeof(int32_t), cudaMemcpyHostToDevice, the_stream()), "upload");
  return p;
}

void free_ints(int32_t* data, size_t count) { device_free(reinterpret_cast<float*>(data), count); }

// ---------------------------------------------------------------------------
// Ops

void strided_copy(float* dst, const int64_t* dst_strides, const float* src, const int64_t* src_strides,
                  const int64_t* shape, int rank, bool accumulate) {
  long long n = 0;
  const Walk all = make_walk(shape, dst_strides, src_strides, rank, &n);
  if (n == 0) return;
  if (!accumulate) {
    copy_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(dst, src, all, n);
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
    reduce_serial_kernel<<<blocks_for(n_out), kThreads, 0, the_stream()>>>(dst, src, outer, inner, n_out, n_red);
  } else {
    reduce_block_kernel<<<static_cast<int>(std::min<long long>(n_out, 65535 * 8)), kThreads, 0, the_stream()>>>(
        dst, src, outer, inner, n_out, n_red);
  }
  check_launch("strided sum");
}

void unary_forward(UnaryOp op, float* out, const float* in, int64_t n) {
  if (n == 0) return;
  unary_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(op, out, in, n);
  check_launch("unary");
}

void unary_backward(UnaryOp op, float* grad_in, const float* in, const float* out, const float* grad_out, int64_t n) {
  if (n == 0) return;
  unary_backward_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(op, grad_in, in, out, grad_out, n);
  check_launch("unary backward");
}

void binary(BinaryOp op, float* out, const float* a, const int64_t* a_strides, const float* b,
            const int64_t* b_strides, const int64_t* shape, int rank) {
  long long n = 0;
  const Walk w = make_walk(shape, a_strides, b_strides, rank, &n);
  if (n == 0) return;
  binary_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(op, out, a, b, w, n);
  check_launch("binary");
}

void affine(float* out, const float* in, float alpha, float beta, int64_t n) {
  if (n == 0) return;
  affine_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(out, in, alpha, beta, n);
  check_launch("affine");
}

void fill(float* out, float value, int64_t n) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(out, value, n);
  check_launch("fill");
}

void softmax_forward(float* out, const float* in, int64_t rows, int64_t cols, bool log) {
  if (rows == 0) return;
  softmax_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kThreads, 0, the_stream()>>>(out, in, rows, cols, log);
  check_launch("softmax");
}

void softmax_backward(float* grad_in, const float* out, const float* grad_out, int64_t rows, int64_t cols, bool log) {
  if (rows == 0) return;
  softmax_backward_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kThreads, 0, the_stream()>>>(
      grad_in, out, grad_out, rows, cols, log);
  check_launch("softmax backward");
}

void uniform_fill(float* out, int64_t n, float low, float high, uint64_t seed) {
  if (n == 0) return;
  uniform_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(out, n, low, high, seed);
  check_launch("uniform fill");
}

void normal_fill(float* out, int64_t n, float mean, float stddev, uint64_t seed) {
  if (n == 0) return;
  normal_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(out, n, mean, stddev, seed);
  check_launch("normal fill");
}

void dropout_mask(float* out, int64_t n, float p, uint64_t seed) {
  if (n == 0) return;
  dropout_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(out, n, p, 1.0f / (1.0f - p), seed);
  check_launch("dropout mask");
}

void embedding_forward(float* out, const float* weight, const int32_t* indices, int64_t count, int64_t dim) {
  if (count == 0 || dim == 0) return;
  embedding_kernel<<<blocks_for(count * dim), kThreads, 0, the_stream()>>>(out, weight, indices, count, dim);
  check_launch("embedding");
}

void embedding_backward(float* grad_weight, const float* grad_out, const int32_t* indices, int64_t count, int64_t dim) {
  if (count == 0 || dim == 0) return;
  embedding_backward_kernel<<<blocks_for(count * dim), kThreads, 0, the_stream()>>>(grad_weight, grad_out, indices, count, dim);
  check_launch("embedding backward");
}

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows, int64_t classes,
                           int32_t ignore_index) {
  if (rows == 0) return;
  cross_entropy_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kThreads, 0, the_stream()>>>(
      losses, logits, targets, rows, classes, ignore_index);
  check_launch("cross entropy");
}

void cross_entropy_backward(float* grad_logits, const float* logits, const int32_t* targets, const float* grad_losses,
                            int64_t rows, int64_t classes, int32_t ignore_index) {
  if (rows == 0) return;
  cross_entropy_backward_kernel<<<static_cast<int>(std::min<int64_t>(rows, 65535 * 8)), kThreads, 0, the_stream()>>>(
      grad_logits, logits, targets, grad_losses, rows, classes, ignore_index);
  check_launch("cross entropy backward");
}

void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdHyper& h, bool first_step) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(param, grad, momentum_buf, n, h, first_step);
  check_launch("SGD step");
}

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, const AdamHyper& h,
               int64_t step) {
  if (n == 0) return;
  // the step's constants on the host in double, as adam_step_cpu computes them
  const double bias1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(h.lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float decay = 1.0f - h.lr * h.weight_decay;
  adam_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(param, grad, exp_avg, exp_avg_sq, n, h, step_size,
                                                            bias2_sqrt, decay);
  check_launch("Adam step");
}

void rmsprop_step(float* param, const float* grad, float* square_avg, float* grad_avg, float* momentum_buf, int64_t n,
                  const RmspropHyper& h) {
  if (n == 0) return;
  rmsprop_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(param, grad, square_avg, grad_avg, momentum_buf, n, h);
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
      sum_squares_kernel<<<std::min(blocks_for(sizes[i]), 1024), kThreads, 0, the_stream()>>>(grads[i], sizes[i], scratch);
    }
    clip_coefficient_kernel<<<1, 1, 0, the_stream()>>>(scratch, max_norm, norm_out);
    for (size_t i = 0; i < count; ++i) {
      if (sizes[i] == 0) continue;
      clip_scale_kernel<<<blocks_for(sizes[i]), kThreads, 0, the_stream()>>>(grads[i], sizes[i], scratch);
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
  clamp_kernel<<<blocks_for(n), kThreads, 0, the_stream()>>>(x, n, low, high);
  check_launch("clamp");
}

}  // namespace cuda
}  // namespace recurrent
