// The native Tensor handle (see storage.h).
#include "storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "../cpp/allocator.h"
#include "../cuda/device.h"
#include "../cuda/allocator.h"
#include "args.h"
#include "stream.h"

namespace recurrent {

namespace {
// Per-environment state, so the addon also works in worker_threads.
struct AddonData {
  Napi::FunctionReference storage_constructor;
  Stream stream;
  std::shared_ptr<std::atomic<int64_t>> unreported_frees = std::make_shared<std::atomic<int64_t>>(0);
  int64_t pending_report = 0;  // net bytes freed and not yet told to V8 (report_external)
};

// V8 hears of growth in external memory at once, and of frees once they come to this much:
// the gradients fit() frees at the start of a step and allocates again at its end (17 MB for
// a 4M-parameter model) then cancel out before V8 hears of them. Told of both, V8 kept
// starting full collections (22-35 in 30 s of G2P training, against 2), though what it was
// told never grew. Growth goes at once so that a loop which drops its tensors without
// dispose() is collected as soon as they pile up (64 MB past the level at the last collection).
constexpr int64_t kFreeStep = int64_t{32} << 20;

// Tells V8 about `change` bytes of external memory, net of what handles collected since the
// last call freed (see storage.h): growth at once, a net decrease once it reaches kFreeStep.
// Call from JS context only.
void report_external(Napi::Env env, AddonData* data, int64_t change) {
  data->pending_report += change - data->unreported_frees->exchange(0);
  if (data->pending_report > 0 || data->pending_report <= -kFreeStep) {
    Napi::MemoryManagement::AdjustExternalMemory(env, data->pending_report);
    data->pending_report = 0;
  }
}
}  // namespace

Stream& stream_of(Napi::Env env) { return env.GetInstanceData<AddonData>()->stream; }

namespace {
std::atomic<bool> g_cuda_used{false};

// Whether 'cuda' can hold tensors here; the reason when it cannot (checked once).
const std::string& cuda_unavailable_reason() {
  static const std::string reason = [] {
    const CudaStatus status = cuda_status();
    if (status.compiled && status.device_count > 0) return std::string();
    return status.reason.empty() ? std::string("no CUDA device") : status.reason;
  }();
  return reason;
}
}  // namespace

bool cuda_used() { return g_cuda_used.load(); }

// In the body, not the initializer list: `zeroed` has a default member initializer that
// would run after `data`'s and overwrite what cached_alloc reported.
Buffer::Buffer(int64_t n, bool on_cuda) : length(n), cuda(on_cuda) {
  if (cuda) {
    data = cuda::device_alloc(static_cast<size_t>(n));
    zeroed = false;
  } else {
    data = cached_alloc(static_cast<size_t>(n), &zeroed);
  }
}

Buffer::~Buffer() {
  if (cuda) cuda::device_free(data, static_cast<size_t>(length));
  else cached_free(data, static_cast<size_t>(length));
}

Napi::Function Storage::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(
      env, "Storage",
      {InstanceAccessor<&Storage::Length>("length"), InstanceAccessor<&Storage::Device>("device"),
       InstanceAccessor<&Storage::Disposed>("disposed"), InstanceAccessor<&Storage::Version>("version"),
       InstanceMethod<&Storage::Read>("read"),
       InstanceMethod<&Storage::Write>("write"), InstanceMethod<&Storage::Dispose>("dispose"),
       InstanceMethod<&Storage::Report>("report")});
  auto* data = new AddonData();
  data->storage_constructor = Napi::Persistent(ctor);
  env.SetInstanceData<AddonData>(data);
  return ctor;
}

namespace {
// Marks the objects the Storage constructor made (napi_type_tag_object): checking the tag costs far
// less than instanceof, which walks the prototype chain on every argument of every op, and unlike
// it cannot be fooled from JS (Object.setPrototypeOf).
constexpr napi_type_tag kStorageTag = {0x7265637572726e74ULL, 0x53746f7261676531ULL};
}  // namespace

Storage* Storage::From(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kStorageTag))
    throw_type(env, std::string(name) + " must be a native Storage (a Tensor's memory)");
  Storage* storage = Unwrap(value.As<Napi::Object>());
  if (storage->released_) throw_type(env, std::string(name) + " refers to a disposed tensor");
  return storage;
}

// new Storage(length[, uninitialized[, device[, report]]]): float32 memory of `length` elements on
// 'cpu' (the default) or 'cuda', zero-filled unless `uninitialized` is true (for outputs a
// kernel overwrites entirely). report === false leaves the memory out of V8's external count
// until report() (memory.ts: a scope() frees it when it ends, so it never waits for GC).
Storage::Storage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Storage>(info) {
  Napi::Env env = info.Env();
  expect_args(info, 1, "Storage");
  const bool uninitialized = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  bool on_cuda = false;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    const std::string device = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    if (device != "cpu" && device != "cuda") throw_type(env, "device must be 'cpu' or 'cuda'");
    on_cuda = device == "cuda";
  }
  if (on_cuda && !cuda_unavailable_reason().empty()) {
    Napi::TypeError error = Napi::TypeError::New(env, "Cannot create a tensor on 'cuda': " + cuda_unavailable_reason());
    error.Set("code", Napi::String::New(env, "ERR_CUDA_UNAVAILABLE"));
    throw error;
  }
  // 2^34 floats = 64 GiB: far beyond any sensible tensor, small enough to never overflow.
  length_ = int_arg(info[0], "length", 0, int64_t{1} << 34);
  info.This().As<Napi::Object>().TypeTag(&kStorageTag);
  try {
    buffer_ = std::make_shared<Buffer>(length_, on_cuda);
  } catch (const std::bad_alloc&) {
    throw_range(env, std::string("out of ") + (on_cuda ? "GPU " : "") + "memory allocating a tensor of " +
                         std::to_string(length_) + " floats");
  }
  AddonData* data = env.GetInstanceData<AddonData>();
  unreported_frees_ = data->unreported_frees;
  const bool report = info.Length() < 4 || !info[3].IsBoolean() || info[3].As<Napi::Boolean>().Value();
  reported_bytes_ = report ? length_ * static_cast<int64_t>(sizeof(float)) : 0;
  report_external(env, data, reported_bytes_);
  if (on_cuda) {
    g_cuda_used = true;
    if (!uninitialized) cuda::zero(buffer_->data, static_cast<size_t>(length_));
    return;
  }
  if (!buffer_->zeroed && !uninitialized) {
    // A reused block: zero it as an op of its own, so in async mode the worker thread
    // does it (in order, before any op that uses this tensor) instead of the main thread.
    begin_op();
    current_keep().push_back(buffer_);
    float* data = buffer_->data;
    const size_t bytes = static_cast<size_t>(length_) * sizeof(float);
    dispatch(env, [data, bytes] { std::memset(data, 0, bytes); });
  }
}

// Garbage collection reached the handle (this runs inside GC: no napi or V8 calls).
Storage::~Storage() {
  if (released_) return;
  if (buffer_) buffer_->released = true;
  buffer_.reset();  // a queued job may still hold it; it is freed after that job
  if (reported_bytes_ > 0) *unreported_frees_ += reported_bytes_;
}

void Storage::Release(Napi::Env env) {
  if (released_) return;
  released_ = true;
  if (buffer_) buffer_->released = true;
  buffer_.reset();  // a queued job may still hold it; it is freed after that job
  report_external(env, env.GetInstanceData<AddonData>(), -reported_bytes_);
  reported_bytes_ = 0;
}

Napi::Value Storage::Length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(length_));
}

Napi::Value Storage::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), on_cuda() ? "cuda" : "cpu");
}

Napi::Value Storage::Disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), released_);
}

// How many ops that may write the storage were called so far (the version packed weights are kept at).
Napi::Value Storage::Version(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), released_ ? 0.0 : static_cast<double>(buffer_->version));
}

// read(offset, count[, out]): a copy of elements [offset, offset + count) as a Float32Array, new
// or `out` (a Float32Array of at least count elements, whose first count are written: a loop that
// reads every step allocates nothing). Waits for queued jobs first, so it sees the result of every
// op called before it.
Napi::Value Storage::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "read");
  if (released_) throw_type(env, "cannot read a disposed tensor");
  const int64_t offset = int_arg(info[0], "offset", 0, length_);
  const int64_t count = int_arg(info[1], "count", 0, length_ - offset);
  const bool given = info.Length() > 2 && !info[2].IsUndefined();
  if (given && (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array))
    throw_type(env, "out must be a Float32Array");
  Napi::Float32Array out = given ? info[2].As<Napi::Float32Array>() : Napi::Float32Array::New(env, static_cast<size_t>(count));
  if (given && static_cast<int64_t>(out.ElementLength()) < count)
    throw_range(env, "out holds " + std::to_string(out.ElementLength()) + " elements; reading " + std::to_string(count) + " needs that many");
  if (count == 0) return out;
  if (on_cuda()) {
    cuda::copy(out.Data(), buffer_->data + offset, static_cast<size_t>(count), cuda::CopyKind::kDeviceToHost);
    return out;
  }
  stream_of(env).wait_idle();
  std::memcpy(out.Data(), buffer_->data + offset, static_cast<size_t>(count) * sizeof(float));
  return out;
}

// write(values: Float32Array, offset): copies values into [offset, offset + values.length).
Napi::Value Storage::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "write");
  if (released_) throw_type(env, "cannot write a disposed tensor");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type(env, "values must be a Float32Array");
  Napi::Float32Array values = info[0].As<Napi::Float32Array>();
  const int64_t count = static_cast<int64_t>(values.ElementLength());
  const int64_t offset = int_arg(info[1], "offset", 0, length_);
  if (count > length_ - offset)
    throw_range(env, "writing " + std::to_string(count) + " values at offset " + std::to_string(offset) +
                         " overflows a tensor of " + std::to_string(length_) + " elements");
  if (count == 0) return env.Undefined();
  ++buffer_->version;
  if (on_cuda()) {
    cuda::copy(buffer_->data + offset, values.Data(), static_cast<size_t>(count), cuda::CopyKind::kHostToDevice);
    return env.Undefined();
  }
  Stream& stream = stream_of(env);
  if (buffer_.use_count() > 1 && stream.async()) {
    // queued jobs may still use this buffer: the write becomes a job too, in order
    std::vector<float> copy(values.Data(), values.Data() + count);
    begin_op();
    current_keep().push_back(buffer_);
    float* dst = buffer_->data + offset;
    dispatch(env, [dst, copy = std::move(copy)] { std::memcpy(dst, copy.data(), copy.size() * sizeof(float)); });
    return env.Undefined();
  }
  // only this handle owns the buffer (or we are in sync mode): write at once
  if (buffer_.use_count() > 1) stream.wait_idle();
  std::memcpy(buffer_->data + offset, values.Data(), static_cast<size_t>(count) * sizeof(float));
  return env.Undefined();
}

Napi::Value Storage::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());
  return info.Env().Undefined();
}

// report(): adds memory created with report === false to V8's external count (once; a
// disposed storage holds none).
Napi::Value Storage::Report(const Napi::CallbackInfo& info) {
  if (!released_ && reported_bytes_ == 0 && length_ > 0) {
    reported_bytes_ = length_ * static_cast<int64_t>(sizeof(float));
    report_external(info.Env(), info.Env().GetInstanceData<AddonData>(), reported_bytes_);
  }
  return info.Env().Undefined();
}

// externalMemory(): V8's count of external memory, which this addon adds to as report_external
// says (for tests: the count is not observable from JS otherwise).
Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

namespace {
Storage* checked_storage(const Napi::Value& value, const char* name, int64_t offset, int64_t count) {
  Storage* storage = Storage::From(value, name);
  OpState& op = current_op();
  const OpDevice device = storage->on_cuda() ? OpDevice::kCuda : OpDevice::kCpu;
  if (op.device == OpDevice::kNone) {
    op.device = device;
    op.first = name;
  } else if (op.device != device) {
    const char* here = device == OpDevice::kCuda ? "cuda" : "cpu";
    const char* there = device == OpDevice::kCuda ? "cpu" : "cuda";
    Napi::TypeError error = Napi::TypeError::New(
        value.Env(), std::string(name) + " is on '" + here + "' but " + op.first + " is on '" + there +
                         "': every tensor of an op must be on the same device (move them with .to())");
    error.Set("code", Napi::String::New(value.Env(), "ERR_DEVICE_MISMATCH"));
    throw error;
  }
  if (offset < 0 || count < 0 || offset > storage->length() || count > storage->length() - offset)
    throw_range(value.Env(), std::string(name) + ": elements [" + std::to_string(offset) + ", " +
                                 std::to_string(offset + count) + ") lie outside a tensor of " +
                                 std::to_string(storage->length()) + " elements");
  current_keep().push_back(storage->buffer());
  return storage;
}
}  // namespace

float* span_of(const Napi::Value& value, const char* name, int64_t offset, int64_t count) {
  Buffer& buffer = *checked_storage(value, name, offset, count)->buffer();
  ++buffer.version;
  return buffer.data + offset;
}

const float* read_span_of(const Napi::Value& value, const char* name, int64_t offset, int64_t count) {
  return checked_storage(value, name, offset, count)->buffer()->data + offset;
}

CachedWeight cached_weight_of(const Napi::Value& value) {
  Buffer& buffer = *Storage::From(value, "weight")->buffer();
  // device memory is not packed by the CPU's GEMM
  return buffer.cuda ? CachedWeight{} : CachedWeight{&buffer.packs, buffer.version};
}

Napi::Value CopyBetween(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "copyBetween");
  Storage* dst = Storage::From(info[0], "dst");
  Storage* src = Storage::From(info[2], "src");
  const int64_t dst_offset = int_arg(info[1], "dstOffset", 0, dst->length());
  const int64_t src_offset = int_arg(info[3], "srcOffset", 0, src->length());
  const int64_t count = int_arg(info[4], "count", 0, std::min(dst->length() - dst_offset, src->length() - src_offset));
  if (count == 0) return env.Undefined();
  ++dst->buffer()->version;
  float* to = dst->buffer()->data + dst_offset;
  const float* from = src->buffer()->data + src_offset;
  const size_t n = static_cast<size_t>(count);
  // host memory may still be in use by queued CPU jobs: let them finish first
  if (!dst->on_cuda() || !src->on_cuda()) stream_of(env).wait_idle();
  if (dst->on_cuda() && src->on_cuda()) cuda::copy(to, from, n, cuda::CopyKind::kDeviceToDevice);
  else if (dst->on_cuda()) cuda::copy(to, from, n, cuda::CopyKind::kHostToDevice);
  else if (src->on_cuda()) cuda::copy(to, from, n, cuda::CopyKind::kDeviceToHost);
  else std::memcpy(to, from, n * sizeof(float));
  return env.Undefined();
}

namespace {
// Elements from `offset` to the last one a strided walk reaches (0 for an empty shape).
int64_t strided_extent(int64_t offset, const int64_t* shape, const int64_t* strides, int rank) {
  int64_t last = offset;
  for (int k = 0; k < rank; ++k) {
    if (shape[k] == 0) return 0;
    last += (shape[k] - 1) * strides[k];
  }
  return last - offset + 1;
}
}  // namespace

float* strided_span_of(const Napi::Value& value, const char* name, int64_t offset,
                       const int64_t* shape, const int64_t* strides, int rank) {
  return span_of(value, name, offset, strided_extent(offset, shape, strides, rank));
}

const float* read_strided_span_of(const Napi::Value& value, const char* name, int64_t offset,
                                  const int64_t* shape, const int64_t* strides, int rank) {
  return read_span_of(value, name, offset, strided_extent(offset, shape, strides, rank));
}

}  // namespace recurrent
