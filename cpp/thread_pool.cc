// Persistent thread pool (see thread_pool.h). Workers sleep on a condition variable
// between calls and pick work items from an atomic counter.
#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace recurrent {

namespace {

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }

  ~Pool() { stop(); }

  // Lock-free: asked on every GEMM, also while another caller holds the pool.
  int size() const { return size_.load(); }

  void resize(int threads) {
    std::lock_guard<std::mutex> guard(busy_);
    stop();
    stopping_ = false;
    for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this] { work(); });
    size_.store(static_cast<int>(workers_.size()) + 1);
  }

  void run(int count, const std::function<void(int)>& fn) {
    std::unique_lock<std::mutex> guard(busy_, std::try_to_lock);
    if (!guard.owns_lock() || workers_.empty() || count <= 1) {
      for (int i = 0; i < count; ++i) fn(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      count_ = count;
      next_.store(0);
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return active_ == 0; });
    fn_ = nullptr;
  }

 private:
  void drain() {
    for (int i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) (*fn_)(i);
  }

  void work() {
#if defined(__linux__)
    // compute threads yield to the thread that runs the JS event loop (see binding/stream.cc)
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5);
#endif
    unsigned long seen = 0;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      drain();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex busy_;   // held by the caller using the pool
  std::mutex mutex_;  // guards the fields below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* fn_ = nullptr;
  int count_ = 0;
  std::atomic<int> next_{0};
  int active_ = 0;
  unsigned long generation_ = 0;
  bool stopping_ = false;
  std::atomic<int> size_{1};
};

int default_threads() {
  if (const char* env = std::getenv("RECURRENT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return std::min(n, 256);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  // never destroyed: threads are left to the process exit (joining at static destruction
  // time can deadlock when the addon is unloaded from a worker thread)
  static Pool* p = new Pool(default_threads());
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int threads) { pool().resize(std::min(std::max(threads, 1), 256)); }

void parallel_for(int count, const std::function<void(int)>& fn) { pool().run(count, fn); }

}  // namespace recurrent
