// CPU kernels for the tensor ops the autograd facade needs: strided copies (which
// also implement transpose, slice, concat, broadcast and sum reductions), elementwise
// maps, softmax, random fills and the embedding gather/scatter.
//
// Strided arguments: `shape` has `rank` sizes; element (i0, .., ir-1) of a strided
// operand lives at sum_k i_k * strides[k] from its base pointer. A stride of 0
// broadcasts (reads) or reduces (accumulating writes) along that dimension.
#pragma once

#include <cstdint>

namespace recurrent {

constexpr int kMaxRank = 8;

// dst[idx] (=|+=) src[idx] over the index space `shape`.
void strided_copy_cpu(float* dst, const int64_t* dst_strides, const float* src,
                      const int64_t* src_strides, const int64_t* shape, int rank, bool accumulate);

enum class UnaryOp : int { kTanh = 0, kSigmoid = 1, kRelu = 2, kExp = 3, kLog = 4, kNeg = 5, kAbs = 6, kSqrt = 7 };
enum class BinaryOp : int { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3 };
// The codes' names, indexed by code: the binding reports them (nativeCodes) so that a test can
// check lib/core/native.ts's tables against these.
inline constexpr const char* kUnaryOpNames[] = {"tanh", "sigmoid", "relu", "exp", "log", "neg", "abs", "sqrt"};
inline constexpr const char* kBinaryOpNames[] = {"add", "sub", "mul", "div"};
static_assert(sizeof(kUnaryOpNames) / sizeof(*kUnaryOpNames) == static_cast<int>(UnaryOp::kSqrt) + 1);
static_assert(sizeof(kBinaryOpNames) / sizeof(*kBinaryOpNames) == static_cast<int>(BinaryOp::kDiv) + 1);

void unary_forward_cpu(UnaryOp op, float* out, const float* in, int64_t n);
// grad_in = grad_out * d op(in)/d in, using whichever of in/out is cheaper.
void unary_backward_cpu(UnaryOp op, float* grad_in, const float* in, const float* out,
                        const float* grad_out, int64_t n);

// out (contiguous, shape) = a op b with strided (possibly broadcast) operands.
void binary_cpu(BinaryOp op, float* out, const float* a, const int64_t* a_strides, const float* b,
                const int64_t* b_strides, const int64_t* shape, int rank);

// out = alpha * in + beta (elementwise; out may alias in).
void affine_cpu(float* out, const float* in, float alpha, float beta, int64_t n);
void fill_cpu(float* out, float value, int64_t n);

// Softmax (or log-softmax) over the last dimension of (rows, cols).
void softmax_forward_cpu(float* out, const float* in, int64_t rows, int64_t cols, bool log);
void softmax_backward_cpu(float* grad_in, const float* out, const float* grad_out, int64_t rows,
                          int64_t cols, bool log);

// Counter-based random fills: element i depends only on (seed, i).
void uniform_fill_cpu(float* out, int64_t n, float low, float high, uint64_t seed);
void normal_fill_cpu(float* out, int64_t n, float mean, float stddev, uint64_t seed);
// Inverted dropout mask: 0 with probability p, else 1 / (1 - p).
void dropout_mask_cpu(float* out, int64_t n, float p, uint64_t seed);

// out (count, dim) = weight[indices[k]]; grad_weight[indices[k]] += grad_out[k].
void embedding_forward_cpu(float* out, const float* weight, const int32_t* indices, int64_t count,
                           int64_t dim);
void embedding_backward_cpu(float* grad_weight, const float* grad_out, const int32_t* indices,
                            int64_t count, int64_t dim);

}  // namespace recurrent
