// CPU tensor ops (see ops.h).
#include "ops.h"

#include <algorithm>
#include <cmath>

#include "gates.h"

namespace recurrent {

namespace {

// Calls body(dst_offset, src_offset, inner_count, dst_inner_stride, src_inner_stride)
// once per row of the innermost dimension.
template <typename Body>
void for_each_row(const int64_t* shape, int rank, const int64_t* s0, const int64_t* s1, Body body) {
  if (rank == 0) {
    body(0, 0, 1, 0, 0);
    return;
  }
  for (int k = 0; k < rank; ++k)
    if (shape[k] == 0) return;
  int64_t index[kMaxRank] = {0};
  int64_t o0 = 0, o1 = 0;
  const int last = rank - 1;
  while (true) {
    body(o0, o1, shape[last], s0[last], s1[last]);
    int k = last - 1;
    for (; k >= 0; --k) {
      ++index[k];
      o0 += s0[k];
      o1 += s1[k];
      if (index[k] < shape[k]) break;
      o0 -= s0[k] * shape[k];
      o1 -= s1[k] * shape[k];
      index[k] = 0;
    }
    if (k < 0) return;
  }
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits, element `i` of stream `seed`.
float uniform01(uint64_t seed, uint64_t i) {
  const uint64_t bits = mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1));
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

}  // namespace

void strided_copy_cpu(float* dst, const int64_t* dst_strides, const float* src,
                      const int64_t* src_strides, const int64_t* shape, int rank, bool accumulate) {
  for_each_row(shape, rank, dst_strides, src_strides,
               [&](int64_t od, int64_t os, int64_t n, int64_t sd, int64_t ss) {
                 float* d = dst + od;
                 const float* s = src + os;
                 if (accumulate) {
                   if (sd == 0) {
                     float acc = 0.0f;
                     for (int64_t i = 0; i < n; ++i) acc += s[i * ss];
                     *d += acc;
                   } else {
                     for (int64_t i = 0; i < n; ++i) d[i * sd] += s[i * ss];
                   }
                 } else if (sd == 1 && ss == 1) {
                   std::copy(s, s + n, d);
                 } else {
                   for (int64_t i = 0; i < n; ++i) d[i * sd] = s[i * ss];
                 }
               });
}

void unary_forward_cpu(UnaryOp op, float* out, const float* in, int64_t n) {
  switch (op) {
    // the gate kernels' vectorized activations (the C library's scalar tanhf took 2% of a
    // sequence-to-sequence training step), in pieces that fit their int count
    case UnaryOp::kTanh:
    case UnaryOp::kSigmoid: {
      const GateKernels& k = gate_kernels();
      const auto apply = op == UnaryOp::kTanh ? k.tanh : k.sigmoid;
      constexpr int64_t kPiece = int64_t{1} << 30;
      for (int64_t i = 0; i < n; i += kPiece) apply(in + i, out + i, static_cast<int>(std::min(kPiece, n - i)));
      break;
    }
    case UnaryOp::kRelu: for (int64_t i = 0; i < n; ++i) out[i] = in[i] > 0.0f ? in[i] : 0.0f; break;
    case UnaryOp::kExp: for (int64_t i = 0; i < n; ++i) out[i] = std::exp(in[i]); break;
    case UnaryOp::kLog: for (int64_t i = 0; i < n; ++i) out[i] = std::log(in[i]); break;
    case UnaryOp::kNeg: for (int64_t i = 0; i < n; ++i) out[i] = -in[i]; break;
    case UnaryOp::kAbs: for (int64_t i = 0; i < n; ++i) out[i] = std::fabs(in[i]); break;
    case UnaryOp::kSqrt: for (int64_t i = 0; i < n; ++i) out[i] = std::sqrt(in[i]); break;
  }
}

void unary_backward_cpu(UnaryOp op, float* grad_in, const float* in, const float* out,
                        const float* grad_out, int64_t n) {
  switch (op) {
    case UnaryOp::kTanh: for (int64_t i = 0; i < n; ++i) grad_in[i] = grad_out[i] * (1.0f - out[i] * out[i]); break;
    case UnaryOp::kSigmoid: for (int64_t i = 0; i < n; ++i) grad_in[i] = grad_out[i] * out[i] * (1.0f - out[i]); break;
    case UnaryOp::kRelu: for (int64_t i = 0; i < n; ++i) grad_in[i] = in[i] > 0.0f ? grad_out[i] : 0.0f; break;
    case UnaryOp::kExp: for (int64_t i = 0; i < n; ++i) grad_in[i] = grad_out[i] * out[i]; break;
    case UnaryOp::kLog: for (int64_t i = 0; i < n; ++i) grad_in[i] = grad_out[i] / in[i]; break;
    case UnaryOp::kNeg: for (int64_t i = 0; i < n; ++i) grad_in[i] = -grad_out[i]; break;
    case UnaryOp::kAbs:
      for (int64_t i = 0; i < n; ++i) grad_in[i] = in[i] > 0.0f ? grad_out[i] : in[i] < 0.0f ? -grad_out[i] : 0.0f;
      break;
    case UnaryOp::kSqrt: for (int64_t i = 0; i < n; ++i) grad_in[i] = grad_out[i] * 0.5f / out[i]; break;
  }
}

void binary_cpu(BinaryOp op, float* out, const float* a, const int64_t* a_strides, const float* b,
                const int64_t* b_strides, const int64_t* shape, int rank) {
  // out is contiguous: walk it in order alongside the two strided operands.
  float* o = out;
  for_each_row(shape, rank, a_strides, b_strides,
               [&](int64_t oa, int64_t ob, int64_t n, int64_t sa, int64_t sb) {
                 const float* pa = a + oa;
                 const float* pb = b + ob;
                 switch (op) {
                   case BinaryOp::kAdd: for (int64_t i = 0; i < n; ++i) o[i] = pa[i * sa] + pb[i * sb]; break;
                   case BinaryOp::kSub: for (int64_t i = 0; i < n; ++i) o[i] = pa[i * sa] - pb[i * sb]; break;
                   case BinaryOp::kMul: for (int64_t i = 0; i < n; ++i) o[i] = pa[i * sa] * pb[i * sb]; break;
                   case BinaryOp::kDiv: for (int64_t i = 0; i < n; ++i) o[i] = pa[i * sa] / pb[i * sb]; break;
                 }
                 o += n;
               });
}

void affine_cpu(float* out, const float* in, float alpha, float beta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * in[i] + beta;
}

void fill_cpu(float* out, float value, int64_t n) { std::fill(out, out + n, value); }

void softmax_forward_cpu(float* out, const float* in, int64_t rows, int64_t cols, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * cols;
    float* y = out + r * cols;
    float max = x[0];
    for (int64_t j = 1; j < cols; ++j) max = std::max(max, x[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(static_cast<double>(x[j] - max));
    if (log) {
      const float lse = static_cast<float>(std::log(sum));
      for (int64_t j = 0; j < cols; ++j) y[j] = x[j] - max - lse;
    } else {
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < cols; ++j) y[j] = std::exp(x[j] - max) * inv;
    }
  }
}

void softmax_backward_cpu(float* grad_in, const float* out, const float* grad_out, int64_t rows,
                          int64_t cols, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* y = out + r * cols;
    const float* g = grad_out + r * cols;
    float* dx = grad_in + r * cols;
    if (log) {
      // d logsoftmax: g - softmax * sum(g)
      double sum = 0.0;
      for (int64_t j = 0; j < cols; ++j) sum += g[j];
      for (int64_t j = 0; j < cols; ++j) dx[j] = g[j] - std::exp(y[j]) * static_cast<float>(sum);
    } else {
      // d softmax: y * (g - sum(g * y))
      double dot = 0.0;
      for (int64_t j = 0; j < cols; ++j) dot += static_cast<double>(g[j]) * y[j];
      for (int64_t j = 0; j < cols; ++j) dx[j] = y[j] * (g[j] - static_cast<float>(dot));
    }
  }
}

void uniform_fill_cpu(float* out, int64_t n, float low, float high, uint64_t seed) {
  for (int64_t i = 0; i < n; ++i) out[i] = low + (high - low) * uniform01(seed, static_cast<uint64_t>(i));
}

void normal_fill_cpu(float* out, int64_t n, float mean, float stddev, uint64_t seed) {
  // Box-Muller on pairs of uniforms; element i uses the pair (2i, 2i+1).
  for (int64_t i = 0; i < n; ++i) {
    const double u1 = 1.0 - uniform01(seed, 2 * static_cast<uint64_t>(i));  // (0, 1]
    const double u2 = uniform01(seed, 2 * static_cast<uint64_t>(i) + 1);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    out[i] = mean + stddev * static_cast<float>(z);
  }
}

void dropout_mask_cpu(float* out, int64_t n, float p, uint64_t seed) {
  const float keep = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) out[i] = uniform01(seed, static_cast<uint64_t>(i)) < p ? 0.0f : keep;
}

void embedding_forward_cpu(float* out, const float* weight, const int32_t* indices, int64_t count,
                           int64_t dim) {
  for (int64_t k = 0; k < count; ++k)
    std::copy(weight + indices[k] * dim, weight + (indices[k] + 1) * dim, out + k * dim);
}

void embedding_backward_cpu(float* grad_weight, const float* grad_out, const int32_t* indices,
                            int64_t count, int64_t dim) {
  for (int64_t k = 0; k < count; ++k) {
    float* row = grad_weight + static_cast<int64_t>(indices[k]) * dim;
    const float* g = grad_out + k * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += g[j];
  }
}

}  // namespace recurrent
