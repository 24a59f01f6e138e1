// The native Tensor handle: a block of float32 memory owned by C++ on one device.
// JS keeps shapes and autograd; this object only owns memory, reports it to V8 so
// that garbage collection sees it, and frees it on dispose() or when V8 collects the
// handle (or, when a queued job still uses it, right after that job).
//
// Collection frees the memory inside the garbage collection itself, not at the next
// turn of the event loop: the addon registers as Node-API "experimental" (addon.cc),
// under which Node runs finalizers synchronously from GC, and the handle has no
// Finalize() override, so node-addon-api deletes it right there. Code that runs inside
// GC must not call into JS or V8, so the destructor only frees memory and records the
// bytes in a per-environment counter, which the next allocation or dispose() nets into what it
// tells V8 (napi_adjust_external_memory, from ordinary JS context; see report_external).
//
// Memory that a scope() will free when it ends is not reported (until it outlives the
// scope): V8 starts a full collection whenever external memory grows 64 MB past what it
// was at the last one, so a training step that allocates more than that and frees it all
// at the end would start one every step, marking the whole JS heap each time (on a data
// set held in JS, that halved G2P training at a batch of 128).
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "../cpp/pack_cache.h"
#include "../cuda/allocator.h"

namespace recurrent {

struct Buffer {
  float* data = nullptr;
  int64_t length = 0;
  bool zeroed = true;  // false: a reused block whose zero-fill is still to be done
  bool cuda = false;   // device memory (cuda/allocator.h's caching allocator)
  // Bumped by every op that may write the buffer, when the op is called (PyTorch's
  // tensor._version): span_of, write(), copyBetween(). Read on the main thread only.
  uint64_t version = 0;
  // Set when the tensor is disposed (its handle lets go of the buffer; a queued job may still hold
  // it): what a step plan's weak pointers check (binding/recurrent.cc).
  bool released = false;
  // The packed forms of this buffer as a layer's weight, stamped with the version they were
  // packed from (cpp/pack_cache.h); freed with the buffer.
  PackCache packs;
  Buffer(int64_t n, bool on_cuda);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

class Storage : public Napi::ObjectWrap<Storage> {
 public:
  static Napi::Function Init(Napi::Env env);
  // The Storage behind `value`, or a TypeError naming `name`.
  static Storage* From(const Napi::Value& value, const char* name);

  explicit Storage(const Napi::CallbackInfo& info);
  ~Storage() override;

  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  int64_t length() const { return length_; }
  bool on_cuda() const { return buffer_ && buffer_->cuda; }

 private:
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Version(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Report(const Napi::CallbackInfo& info);
  void Release(Napi::Env env);

  std::shared_ptr<Buffer> buffer_;
  int64_t length_ = 0;
  int64_t reported_bytes_ = 0;  // what this handle added to V8's external memory
  bool released_ = false;
  // Bytes freed during GC and not yet subtracted from V8's count (shared with the
  // environment's AddonData, so it outlives whichever of the two goes first).
  std::shared_ptr<std::atomic<int64_t>> unreported_frees_;
};

// A pointer to elements [offset, offset + count) of a storage argument, after
// checking that it is a live Storage, that the range lies inside it and that it lives
// on the same device as the op's other storages. The buffer joins the current op's keep
// list (see stream.h), and its version is bumped: the op may write it.
float* span_of(const Napi::Value& value, const char* name, int64_t offset, int64_t count);

// span_of for an argument the op only reads: the same checks, without bumping the version.
// Use it only where the kernel never writes through the pointer.
const float* read_span_of(const Napi::Value& value, const char* name, int64_t offset, int64_t count);

// The storage behind an argument that read_span_of or span_of accepted: its cache and version.
CachedWeight cached_weight_of(const Napi::Value& value);

// copyBetween(dst, dstOffset, src, srcOffset, count): copies between any two storages,
// across devices too (Tensor.to).
Napi::Value CopyBetween(const Napi::CallbackInfo& info);
Napi::Value ExternalMemory(const Napi::CallbackInfo& info);

// Whether any tensor was ever put on 'cuda' in this process (synchronize and the memory
// statistics then include the GPU).
bool cuda_used();

// Checks that a strided walk (shape, strides from offset) stays inside a storage and
// returns the base pointer.
float* strided_span_of(const Napi::Value& value, const char* name, int64_t offset,
                       const int64_t* shape, const int64_t* strides, int rank);
// The same for an argument the op only reads (no version bump, as read_span_of).
const float* read_strided_span_of(const Napi::Value& value, const char* name, int64_t offset,
                                  const int64_t* shape, const int64_t* strides, int rank);

// Device memory for one op's temporaries (workspace, a reserve nobody keeps, integer
// arguments), back in the cache when the op has been queued: the stream keeps it safe.
struct DeviceFloats {
  float* data;
  size_t count;
  explicit DeviceFloats(size_t n) : data(cuda::device_alloc(n)), count(n) {}
  ~DeviceFloats() { cuda::device_free(data, count); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
};

struct DeviceInts {
  int32_t* data;
  size_t count;
  DeviceInts(const int32_t* host, size_t n) : data(cuda::upload_ints(host, n)), count(n) {}
  template <typename Vector>
  explicit DeviceInts(const Vector& v) : DeviceInts(reinterpret_cast<const int32_t*>(v.data()), v.size()) {
    static_assert(sizeof(v[0]) == sizeof(int32_t), "32-bit integers");
  }
  ~DeviceInts() { cuda::free_ints(data, count); }
  DeviceInts(const DeviceInts&) = delete;
  DeviceInts& operator=(const DeviceInts&) = delete;
};

}  // namespace recurrent
