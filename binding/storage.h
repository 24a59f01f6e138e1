// The native Tensor handle: a block of float32 memory owned by C++ on one device.
// JS keeps shapes and autograd; this object only owns memory, reports it to V8 so
// that garbage collection sees it, and frees it on dispose() or finalization (or,
// when a queued job still uses it, right after that job).
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

namespace recurrent {

struct Buffer {
  float* data = nullptr;
  int64_t length = 0;
  bool zeroed = true;  // false: a reused block whose zero-fill is still to be done
  explicit Buffer(int64_t n);
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
  void Finalize(Napi::Env env) override;

  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  int64_t length() const { return length_; }

 private:
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void Release(Napi::Env env);

  std::shared_ptr<Buffer> buffer_;
  int64_t length_ = 0;
  bool released_ = false;
};

// A pointer to elements [offset, offset + count) of a storage argument, after
// checking that it is a live Storage and that the range lies inside it. The buffer
// joins the current op's keep list (see stream.h).
float* span_of(const Napi::Value& value, const char* name, int64_t offset, int64_t count);

// Checks that a strided walk (shape, strides from offset) stays inside a storage and
// returns the base pointer.
float* strided_span_of(const Napi::Value& value, const char* name, int64_t offset,
                       const int64_t* shape, const int64_t* strides, int rank);

}  // namespace recurrent
