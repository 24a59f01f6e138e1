// Node-API glue for the tensor ops: unpack, re-check what memory safety needs, call
// the kernel. No math here.
#include "ops.h"

#include <algorithm>
#include <string>

#include "../cpp/attention.h"
#include "../cpp/gemm.h"
#include "../cpp/ops.h"
#include "../cuda/allocator.h"
#include "../cuda/gemm.h"
#include "../cuda/ops.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 34;

int64_t total(Napi::Env env, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s != 0 && n > kMaxElements / s) throw_range(env, "shape has too many elements");
    n *= s;
  }
  return n;
}

void same_rank(Napi::Env env, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
               const char* name) {
  if (strides.size() != shape.size())
    throw_range(env, std::string(name) + " must have one stride per dimension (" +
                         std::to_string(shape.size()) + "), received " + std::to_string(strides.size()));
}

}  // namespace

// stridedCopy(dst, dstOffset, dstStrides, src, srcOffset, srcStrides, shape, accumulate)
Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 8, "stridedCopy");
  const auto shape = int_list_arg(info[6], "shape", kMaxRank);
  const auto dst_strides = int_list_arg(info[2], "dstStrides", kMaxRank);
  const auto src_strides = int_list_arg(info[5], "srcStrides", kMaxRank);
  same_rank(env, shape, dst_strides, "dstStrides");
  same_rank(env, shape, src_strides, "srcStrides");
  const int rank = static_cast<int>(shape.size());
  float* dst = strided_span_of(info[0], "dst", int_arg(info[1], "dstOffset", 0, kMaxElements),
                               shape.data(), dst_strides.data(), rank);
  const float* src = read_strided_span_of(info[3], "src", int_arg(info[4], "srcOffset", 0, kMaxElements),
                                     shape.data(), src_strides.data(), rank);
  const bool accumulate = bool_arg(info[7], "accumulate");
  run(env, [=] { strided_copy_cpu(dst, dst_strides.data(), src, src_strides.data(), shape.data(), rank, accumulate); },
      [&] { cuda::strided_copy(dst, dst_strides.data(), src, src_strides.data(), shape.data(), rank, accumulate); });
  return env.Undefined();
}

// unary(op, out, in, count)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 4, "unary");
  const auto op = static_cast<UnaryOp>(int_arg(info[0], "op", 0, 7));
  const int64_t n = int_arg(info[3], "count", 0, kMaxElements);
  float* out = span_of(info[1], "out", 0, n);
  const float* in = read_span_of(info[2], "input", 0, n);
  run(info.Env(), [=] { unary_forward_cpu(op, out, in, n); }, [&] { cuda::unary_forward(op, out, in, n); });
  return info.Env().Undefined();
}

// unaryBackward(op, gradIn, input, output, gradOut, count)
Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 6, "unaryBackward");
  const auto op = static_cast<UnaryOp>(int_arg(info[0], "op", 0, 7));
  const int64_t n = int_arg(info[5], "count", 0, kMaxElements);
  float* grad_in = span_of(info[1], "gradIn", 0, n);
  const float* in = read_span_of(info[2], "input", 0, n);
  const float* out = read_span_of(info[3], "output", 0, n);
  const float* grad_out = read_span_of(info[4], "gradOut", 0, n);
  run(info.Env(), [=] { unary_backward_cpu(op, grad_in, in, out, grad_out, n); },
      [&] { cuda::unary_backward(op, grad_in, in, out, grad_out, n); });
  return info.Env().Undefined();
}

// binary(op, out, a, aOffset, aStrides, b, bOffset, bStrides, shape)
Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 9, "binary");
  const auto op = static_cast<BinaryOp>(int_arg(info[0], "op", 0, 3));
  const auto shape = int_list_arg(info[8], "shape", kMaxRank);
  const auto a_strides = int_list_arg(info[4], "aStrides", kMaxRank);
  const auto b_strides = int_list_arg(info[7], "bStrides", kMaxRank);
  same_rank(env, shape, a_strides, "aStrides");
  same_rank(env, shape, b_strides, "bStrides");
  const int rank = static_cast<int>(shape.size());
  float* out = span_of(info[1], "out", 0, total(env, shape));
  const float* a = read_strided_span_of(info[2], "a", int_arg(info[3], "aOffset", 0, kMaxElements), shape.data(),
                                   a_strides.data(), rank);
  const float* b = read_strided_span_of(info[5], "b", int_arg(info[6], "bOffset", 0, kMaxElements), shape.data(),
                                   b_strides.data(), rank);
  run(env, [=] { binary_cpu(op, out, a, a_strides.data(), b, b_strides.data(), shape.data(), rank); },
      [&] { cuda::binary(op, out, a, a_strides.data(), b, b_strides.data(), shape.data(), rank); });
  return env.Undefined();
}

// affine(out, in, alpha, beta, count): out = alpha * in + beta
Napi::Value Affine(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 5, "affine");
  const int64_t n = int_arg(info[4], "count", 0, kMaxElements);
  float* out = span_of(info[0], "out", 0, n);
  const float* in = read_span_of(info[1], "input", 0, n);
  const float alpha = static_cast<float>(number_arg(info[2], "alpha"));
  const float beta = static_cast<float>(number_arg(info[3], "beta"));
  run(info.Env(), [=] { affine_cpu(out, in, alpha, beta, n); }, [&] { cuda::affine(out, in, alpha, beta, n); });
  return info.Env().Undefined();
}

// fill(out, value, offset, count)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 4, "fill");
  const int64_t offset = int_arg(info[2], "offset", 0, kMaxElements);
  const int64_t n = int_arg(info[3], "count", 0, kMaxElements);
  float* out = span_of(info[0], "out", offset, n);
  const float value = static_cast<float>(number_arg(info[1], "value"));
  run(info.Env(), [=] { fill_cpu(out, value, n); }, [&] { cuda::fill(out, value, n); });
  return info.Env().Undefined();
}

// gemm(transA, transB, m, n, k, alpha, a, aOffset, lda, b, bOffset, ldb, beta, c, cOffset, ldc,
//      batch, strideA, strideB, strideC): batch independent row-major GEMMs.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  begin_op();
  expect_args(info, 20, "gemm");
  const int32_t kMaxDim = 0x7fffffff;
  const bool ta = bool_arg(info[0], "transA"), tb = bool_arg(info[1], "transB");
  const int64_t m = int_arg(info[2], "m", 0, kMaxDim), n = int_arg(info[3], "n", 0, kMaxDim);
  const int64_t k = int_arg(info[4], "k", 0, kMaxDim);
  const float alpha = static_cast<float>(number_arg(info[5], "alpha"));
  const int64_t lda = int_arg(info[8], "lda", 1, kMaxDim), ldb = int_arg(info[11], "ldb", 1, kMaxDim);
  const float beta = static_cast<float>(number_arg(info[12], "beta"));
  const int64_t ldc = int_arg(info[15], "ldc", 1, kMaxDim);
  const int64_t batch = int_arg(info[16], "batch", 0, kMaxDim);
  const int64_t stride_a = int_arg(info[17], "strideA", 0, kMaxElements);
  const int64_t stride_b = int_arg(info[18], "strideB", 0, kMaxElements);
  const int64_t stride_c = int_arg(info[19], "strideC", 0, kMaxElements);
  // Matrix X with `rows` rows of stride ld covering `cols` columns.
  auto extent = [](int64_t rows, int64_t cols, int64_t ld) { return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols; };
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  if (a_cols > lda || b_cols > ldb || n > ldc) throw_range(env, "gemm: leading dimension smaller than a row");
  if (batch == 0) return env.Undefined();
  const int64_t last = batch - 1;
  const float* a = read_span_of(info[6], "a", int_arg(info[7], "aOffset", 0, kMaxElements),
                     last * stride_a + extent(a_rows, a_cols, lda));
  const float* b = read_span_of(info[9], "b", int_arg(info[10], "bOffset", 0, kMaxElements),
                     last * stride_b + extent(b_rows, b_cols, ldb));
  float* c = span_of(info[13], "c", int_arg(info[14], "cOffset", 0, kMaxElements),
                     last * stride_c + extent(m, n, ldc));
  run(
      env,
      [=] {
        for (int64_t i = 0; i < batch; ++i)
          gemm_cpu(ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a + i * stride_a,
                   static_cast<int>(lda), b + i * stride_b, static_cast<int>(ldb), beta, c + i * stride_c,
                   static_cast<int>(ldc));
      },
      [&] {
        cuda::gemm(cuda::stream(), ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
                   static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc),
                   static_cast<int>(batch), stride_a, stride_b, stride_c);
      });
  return env.Undefined();
}

// softmax(out, in, rows, cols, log)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 5, "softmax");
  const int64_t rows = int_arg(info[2], "rows", 0, kMaxElements);
  const int64_t cols = int_arg(info[3], "cols", 1, kMaxElements);
  if (rows > kMaxElements / cols) throw_range(info.Env(), "softmax: too many elements");
  float* out = span_of(info[0], "out", 0, rows * cols);
  const float* in = read_span_of(info[1], "input", 0, rows * cols);
  const bool log = bool_arg(info[4], "log");
  run(info.Env(), [=] { softmax_forward_cpu(out, in, rows, cols, log); },
      [&] { cuda::softmax_forward(out, in, rows, cols, log); });
  return info.Env().Undefined();
}

// softmaxBackward(gradIn, out, gradOut, rows, cols, log)
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 6, "softmaxBackward");
  const int64_t rows = int_arg(info[3], "rows", 0, kMaxElements);
  const int64_t cols = int_arg(info[4], "cols", 1, kMaxElements);
  if (rows > kMaxElements / cols) throw_range(info.Env(), "softmaxBackward: too many elements");
  const int64_t n = rows * cols;
  float* grad_in = span_of(info[0], "gradIn", 0, n);
  const float* out = read_span_of(info[1], "output", 0, n);
  const float* grad_out = read_span_of(info[2], "gradOut", 0, n);
  const bool log = bool_arg(info[5], "log");
  run(info.Env(), [=] { softmax_backward_cpu(grad_in, out, grad_out, rows, cols, log); },
      [&] { cuda::softmax_backward(grad_in, out, grad_out, rows, cols, log); });
  return info.Env().Undefined();
}

namespace {

// (B, T, S, A) of the additive attention ops at info[at..at+3], each product checked
struct AttentionDims {
  int B, T, S, A;
};

AttentionDims attention_dims_arg(const Napi::CallbackInfo& info, size_t at) {
  const int32_t kMax = 1 << 30;
  AttentionDims d{static_cast<int>(int_arg(info[at], "B", 0, kMax)), static_cast<int>(int_arg(info[at + 1], "T", 0, kMax)),
                  static_cast<int>(int_arg(info[at + 2], "S", 0, kMax)), static_cast<int>(int_arg(info[at + 3], "A", 1, kMax))};
  if (static_cast<double>(d.B) * std::max(d.T, d.S) * std::max(d.S, d.A) >= 2147483647.0 * 8)
    throw_range(info.Env(), "additiveAttention: too many elements");
  return d;
}

}  // namespace

// additiveAttention(scores, q, k, v, B, T, S, A): scores (B, T, S) = v . tanh(q (B, T, A) + k (B, S, A))
Napi::Value AdditiveAttention(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 8, "additiveAttention");
  const AttentionDims d = attention_dims_arg(info, 4);
  const int64_t B = d.B, T = d.T, S = d.S, A = d.A;
  float* scores = span_of(info[0], "scores", 0, B * T * S);
  const float* q = read_span_of(info[1], "q", 0, B * T * A);
  const float* k = read_span_of(info[2], "k", 0, B * S * A);
  const float* v = read_span_of(info[3], "v", 0, A);
  run(info.Env(), [=] { additive_attention_forward_cpu(scores, q, k, v, d.B, d.T, d.S, d.A); },
      [&] { throw_type(info.Env(), "additiveAttention runs on the CPU"); });
  return info.Env().Undefined();
}

// additiveAttentionBackward(dq, dk, dv, grad, q, k, v, B, T, S, A)
Napi::Value AdditiveAttentionBackward(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 11, "additiveAttentionBackward");
  const AttentionDims d = attention_dims_arg(info, 7);
  const int64_t B = d.B, T = d.T, S = d.S, A = d.A;
  float* dq = span_of(info[0], "dq", 0, B * T * A);
  float* dk = span_of(info[1], "dk", 0, B * S * A);
  float* dv = span_of(info[2], "dv", 0, A);
  const float* grad = read_span_of(info[3], "grad", 0, B * T * S);
  const float* q = read_span_of(info[4], "q", 0, B * T * A);
  const float* k = read_span_of(info[5], "k", 0, B * S * A);
  const float* v = read_span_of(info[6], "v", 0, A);
  run(info.Env(), [=] { additive_attention_backward_cpu(dq, dk, dv, grad, q, k, v, d.B, d.T, d.S, d.A); },
      [&] { throw_type(info.Env(), "additiveAttentionBackward runs on the CPU"); });
  return info.Env().Undefined();
}

// uniformFill(out, count, low, high, seed)
Napi::Value UniformFill(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 5, "uniformFill");
  const int64_t n = int_arg(info[1], "count", 0, kMaxElements);
  float* out = span_of(info[0], "out", 0, n);
  const float low = static_cast<float>(number_arg(info[2], "low"));
  const float high = static_cast<float>(number_arg(info[3], "high"));
  const uint64_t seed = seed_arg(info[4], "seed");
  run(info.Env(), [=] { uniform_fill_cpu(out, n, low, high, seed); }, [&] { cuda::uniform_fill(out, n, low, high, seed); });
  return info.Env().Undefined();
}

// normalFill(out, count, mean, std, seed)
Napi::Value NormalFill(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 5, "normalFill");
  const int64_t n = int_arg(info[1], "count", 0, kMaxElements);
  float* out = span_of(info[0], "out", 0, n);
  const float mean = static_cast<float>(number_arg(info[2], "mean"));
  const float stddev = static_cast<float>(number_arg(info[3], "std"));
  const uint64_t seed = seed_arg(info[4], "seed");
  run(info.Env(), [=] { normal_fill_cpu(out, n, mean, stddev, seed); },
      [&] { cuda::normal_fill(out, n, mean, stddev, seed); });
  return info.Env().Undefined();
}

// dropoutMask(out, count, p, seed)
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  begin_op();
  expect_args(info, 4, "dropoutMask");
  const int64_t n = int_arg(info[1], "count", 0, kMaxElements);
  const double p = number_arg(info[2], "p");
  if (!(p >= 0.0 && p < 1.0)) throw_range(info.Env(), "p must be in [0, 1)");
  float* out = span_of(info[0], "out", 0, n);
  const uint64_t seed = seed_arg(info[3], "seed");
  run(info.Env(), [=] { dropout_mask_cpu(out, n, static_cast<float>(p), seed); },
      [&] { cuda::dropout_mask(out, n, static_cast<float>(p), seed); });
  return info.Env().Undefined();
}

namespace {
// Indices as an Int32Array whose every entry is a valid row of `rows`.
// A copy, since the job may run after JS changed or dropped the array.
std::vector<int32_t> indices_arg(const Napi::Value& value, int64_t rows) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, "indices must be an Int32Array");
  Napi::Int32Array array = value.As<Napi::Int32Array>();
  std::vector<int32_t> indices(array.Data(), array.Data() + array.ElementLength());
  for (int32_t index : indices)
    if (index < 0 || index >= rows)
      throw_range(env, "index " + std::to_string(index) + " is out of range for an embedding of " +
                           std::to_string(rows) + " rows");
  return indices;
}
}  // namespace

// embeddingForward(out, weight, indices, rows, dim): out[i] = weight[indices[i]]
// embeddingBackward(gradWeight, gradOut, indices, rows, dim): gradWeight[indices[i]] += gradOut[i]
// (one body: the two differ in which operand is the table and which the gathered rows)
template <bool kBackward>
Napi::Value EmbeddingCall(const Napi::CallbackInfo& info) {
  begin_op();
  const char* name = kBackward ? "embeddingBackward" : "embeddingForward";
  expect_args(info, 5, name);
  const int64_t rows = int_arg(info[3], "rows", 0, kMaxElements);
  const int64_t dim = int_arg(info[4], "dim", 0, kMaxElements);
  std::vector<int32_t> indices = indices_arg(info[2], rows);
  const int64_t count = static_cast<int64_t>(indices.size());
  // the table is rows x dim, the gathered rows count x dim
  float* written = span_of(info[0], kBackward ? "gradWeight" : "out", 0, (kBackward ? rows : count) * dim);
  const float* read = read_span_of(info[1], kBackward ? "gradOut" : "weight", 0, (kBackward ? count : rows) * dim);
  run(info.Env(), [=] {
    if (kBackward) embedding_backward_cpu(written, read, indices.data(), count, dim);
    else embedding_forward_cpu(written, read, indices.data(), count, dim);
  }, [&] {
    DeviceInts on_device(indices);
    if (kBackward) cuda::embedding_backward(written, read, on_device.data, count, dim);
    else cuda::embedding_forward(written, read, on_device.data, count, dim);
  });
  return info.Env().Undefined();
}

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) { return EmbeddingCall<false>(info); }
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) { return EmbeddingCall<true>(info); }

}  // namespace recurrent
