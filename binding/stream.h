// The stream: an ordered queue of native jobs that runs off the main thread.
//
// In sync mode (the default) every op runs on the calling thread, after any queued
// jobs have finished. In async mode ops are only validated on the main thread; their
// kernels are queued in call order and executed by Node-API async work on a libuv
// worker thread, so the event loop stays free while a training step computes.
// synchronize() returns a promise that settles when the queue is empty. Reading or
// writing tensor memory from JS waits for the queue first, so results are always
// those of program order.
//
// Jobs keep the buffers they touch alive through shared_ptrs, so a tensor collected
// or disposed while its job is queued frees its memory only after the job ran.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace recurrent {

struct Buffer;

class Stream {
 public:
  using Job = std::function<void()>;

  // Runs `job` now (sync mode, after the queue drained) or queues it (async mode).
  // `keep` holds the buffers the job touches.
  void dispatch(Napi::Env env, Job job, std::vector<std::shared_ptr<Buffer>> keep);

  void set_async(bool async) { async_ = async; }
  bool async() const { return async_; }

  // Blocks the calling (main) thread until every queued job has run.
  void wait_idle();

  // A promise settled once the queue is empty: rejected if a queued job failed.
  Napi::Value synchronize(Napi::Env env);

  // Called on the main thread when a worker drained the queue.
  void on_drained(Napi::Env env);

  // Worker side: runs queued jobs until none is left.
  void drain();

 private:
  struct Queued {
    Job job;
    std::vector<std::shared_ptr<Buffer>> keep;
  };

  bool async_ = false;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::deque<Queued> queue_;
  bool running_ = false;
  std::string error_;
  std::vector<Napi::Promise::Deferred> waiters_;
};

// Per-thread list of buffers the op being unpacked touches (filled by span_of).
std::vector<std::shared_ptr<Buffer>>& current_keep();

// The device of the op being unpacked, set by the first storage span_of sees: every
// storage of one op must live on the same device (span_of throws otherwise).
enum class OpDevice { kNone, kCpu, kCuda };
struct OpState {
  OpDevice device = OpDevice::kNone;
  std::string first;  // the argument that set it, for the error message
};
OpState& current_op();

// Starts unpacking an op: clears the keep list and device left by an op that threw halfway.
inline void begin_op() {
  current_keep().clear();
  current_op().device = OpDevice::kNone;
}

inline bool op_on_cuda() { return current_op().device == OpDevice::kCuda; }

Stream& stream_of(Napi::Env env);

// Runs or queues `job` on the env's stream with the buffers collected since begin_op().
void dispatch(Napi::Env env, Stream::Job job);

// Runs the op on the device its storages live on: `cpu` through dispatch (sync or queued),
// `gpu` at once (it queues kernels on the CUDA stream, whose caching allocator keeps freed
// memory safe for the kernels already queued, so no keep list is needed).
template <typename Cpu, typename Gpu>
void run(Napi::Env env, Cpu cpu, Gpu gpu) {
  if (op_on_cuda()) {
    current_keep().clear();
    gpu();
  } else {
    dispatch(env, std::move(cpu));
  }
}

}  // namespace recurrent
