// The ordered job queue behind async mode (see stream.h).
#include "stream.h"

#include <exception>
#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <utility>

#include "storage.h"

namespace recurrent {

namespace {

// Node-API async work that drains the stream on a libuv worker thread.
class StreamWorker : public Napi::AsyncWorker {
 public:
  StreamWorker(Napi::Env env, Stream* stream) : Napi::AsyncWorker(env, "recurrent:stream"), stream_(stream) {}
  // The kernels run a little below the event loop's priority (Linux nice +5 for this
  // thread while it drains), so on a machine whose cores are all busy computing, the
  // main thread still gets a core as soon as a timer or I/O needs it.
  void Execute() override {
#if defined(__linux__)
    const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
    const int before = getpriority(PRIO_PROCESS, tid);
    setpriority(PRIO_PROCESS, tid, before + 5);
    stream_->drain();
    setpriority(PRIO_PROCESS, tid, before);  // lowering back may be refused; the thread stays polite
#else
    stream_->drain();
#endif
  }
  void OnOK() override { stream_->on_drained(Env()); }

 private:
  Stream* stream_;
};

// The rejection of synchronize() when a queued job threw: coded like every other error.
Napi::Value queued_failure(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, "a queued native op failed: " + message);
  error.Set("code", Napi::String::New(env, "ERR_QUEUED_OP"));
  return error.Value();
}

}  // namespace

std::vector<std::shared_ptr<Buffer>>& current_keep() {
  thread_local std::vector<std::shared_ptr<Buffer>> keep;
  return keep;
}

OpState& current_op() {
  thread_local OpState state;
  return state;
}

void dispatch(Napi::Env env, Stream::Job job) {
  std::vector<std::shared_ptr<Buffer>> keep;
  keep.swap(current_keep());
  stream_of(env).dispatch(env, std::move(job), std::move(keep));
}

void Stream::dispatch(Napi::Env env, Job job, std::vector<std::shared_ptr<Buffer>> keep) {
  if (!async_) {
    wait_idle();
    job();
    return;
  }
  bool start = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(Queued{std::move(job), std::move(keep)});
    if (!running_) {
      running_ = true;
      start = true;
    }
  }
  if (start) (new StreamWorker(env, this))->Queue();
}

void Stream::drain() {
  while (true) {
    Queued item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (queue_.empty()) {
        running_ = false;
        idle_.notify_all();
        return;
      }
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      item.job();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error_.empty()) error_ = e.what();
    }
    // item (and the buffers it kept alive) is released here, on the worker thread
  }
}

void Stream::wait_idle() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return !running_ && queue_.empty(); });
}

void Stream::on_drained(Napi::Env env) {
  std::string error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (running_ || !queue_.empty()) return;  // a newer worker will settle the waiters
    error.swap(error_);
  }
  std::vector<Napi::Promise::Deferred> waiters;
  waiters.swap(waiters_);
  for (auto& deferred : waiters) {
    if (error.empty()) deferred.Resolve(env.Undefined());
    else deferred.Reject(queued_failure(env, error));
  }
}

Napi::Value Stream::synchronize(Napi::Env env) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  bool idle;
  std::string error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    idle = !running_ && queue_.empty();
    if (idle) error.swap(error_);
  }
  if (!idle) {
    waiters_.push_back(deferred);
  } else if (error.empty()) {
    deferred.Resolve(env.Undefined());
  } else {
    deferred.Reject(queued_failure(env, error));
  }
  return deferred.Promise();
}

}  // namespace recurrent
