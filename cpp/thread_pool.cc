// Persistent thread pool (see thread_pool.h). Workers sleep on a condition variable
// between calls and pick work items from an atomic counter.
#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace recurrent {

namespace {

// Sleep while *word == expected / wake every sleeper: futex on Linux, a yield loop elsewhere.
void wait_while(std::atomic<unsigned>* word, unsigned expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  if (word->load() == expected) std::this_thread::yield();
#endif
}

void wake_all(std::atomic<unsigned>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<unsigned*>(word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

// Spins until ready() or about `micros` have passed; true when ready. Sleeping costs far
// more than it saves between the back-to-back calls of a training step: on virtual
// machines a sleeping core is halted, and waking it takes hundreds of microseconds.
template <class Ready>
bool spin_until(Ready ready, int micros) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  for (int i = 0;; ++i) {
    if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if ((i & 255) == 255 && std::chrono::steady_clock::now() > deadline) return ready();
  }
}

// Set while this thread runs a pool call's work (as its caller or as a worker): a call made from
// there runs serially instead of asking for the pool again (the caller holds its lock).
thread_local bool t_in_call = false;

// Where a team's calling thread adds up the time it waits at the team's barriers (null elsewhere).
thread_local int64_t* t_barrier_wait = nullptr;

struct BarrierWaits {
  explicit BarrierWaits(int64_t* sink) { t_barrier_wait = sink; }
  ~BarrierWaits() { t_barrier_wait = nullptr; }
};

struct InCall {
  InCall() { t_in_call = true; }
  ~InCall() { t_in_call = false; }
};

constexpr int kIdleSpinMicros = 2000;     // a worker waiting for the next call
constexpr int kBarrierSpinMicros = 2000;  // a team thread waiting at a step's barrier

// Another process busy on a worker's core. Then a worker that spins for the next call uses up its
// share of that core and is descheduled, and each call waits for it at the end (or at every step's
// barrier) for up to the OS's time slice: a 70 us call took 2 ms. So when a worker picked a call up
// later than this, and the caller waited for its workers (at the end, or at a team's barriers)
// longer than this in all and for over a quarter of the call (a worker waking from sleep, a late
// worker on a long call, an uneven split: each alone stays below), in two calls in a row, the
// calls of the next stretch run on the caller alone (the values are the same on any number of
// threads); then the pool is tried again. A stretch is 10 ms, or twice the last one (up to 1 s)
// where a call right after it was late again.
constexpr int kLateMicros = 1000;
std::atomic<int> g_late_micros{kLateMicros};  // set_pool_late_micros (tests)
constexpr int64_t kSoloMinNs = 10'000'000;
constexpr int64_t kSoloMaxNs = 1'000'000'000;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }

  ~Pool() { stop(); }

  // Lock-free: asked on every GEMM, also while another caller holds the pool.
  int size() const { return size_.load(); }

  void resize(int threads) {
    std::lock_guard<std::mutex> guard(busy_);
    stop();
    stopping_.store(false);
    // a new worker waits for the next call: had it started from generation 0 after earlier calls, it
    // would take the last call for a new one and count itself done in active_, possibly after the
    // next start() had set active_, and that call's finish() would wait forever
    const unsigned long current = generation_.load();
    for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this, i, current] { work(i, current); });
    size_.store(static_cast<int>(workers_.size()) + 1);
  }

  // Calls made in a stretch after late calls (see kLateMicros) run on their caller alone.
  bool solo() const { return now_ns() < solo_until_.load(std::memory_order_relaxed); }
  long solo_calls() const { return solo_calls_.load(std::memory_order_relaxed); }

  void run(int count, const std::function<void(int)>& fn) {
    std::unique_lock<std::mutex> guard;
    if (!t_in_call) guard = std::unique_lock<std::mutex>(busy_, std::try_to_lock);
    if (guard.owns_lock() && !workers_.empty() && count > 1 && solo()) {
      solo_calls_.fetch_add(1, std::memory_order_relaxed);
      guard.unlock();
    }
    if (!guard.owns_lock() || workers_.empty() || count <= 1) {
      for (int i = 0; i < count; ++i) fn(i);
      return;
    }
    const InCall in_call;
    start(&fn, count, nullptr, 0, nullptr);
    drain();
    finish();
  }

  void run_team(int want, const std::function<void(int, int, Barrier&)>& fn) {
    std::unique_lock<std::mutex> guard;
    if (!t_in_call) guard = std::unique_lock<std::mutex>(busy_, std::try_to_lock);
    if (guard.owns_lock() && want > 1 && !workers_.empty() && solo()) {
      solo_calls_.fetch_add(1, std::memory_order_relaxed);
      guard.unlock();
    }
    const int team = guard.owns_lock() ? std::min(want, static_cast<int>(workers_.size()) + 1) : 1;
    Barrier barrier(std::max(team, 1));
    if (team <= 1) {
      fn(0, 1, barrier);
      return;
    }
    const InCall in_call;
    start(nullptr, 0, &fn, team, &barrier);
    int64_t waited = 0;
    {
      const BarrierWaits counting(&waited);
      fn(0, team, barrier);
    }
    finish(waited);
  }

 private:
  void start(const std::function<void(int)>* fn, int count, const std::function<void(int, int, Barrier&)>* team_fn,
             int team, Barrier* barrier) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = fn;
      count_ = count;
      next_.store(0);
      team_fn_ = team_fn;
      team_ = team;
      barrier_ = barrier;
      active_.store(static_cast<int>(workers_.size()));
      started_ = now_ns();
      latest_arrival_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
  }

  // `waited`: what the caller spent at the call's barriers (a team's steps) before this.
  void finish(int64_t waited = 0) {
    const int64_t ready = now_ns();
    if (!spin_until([this] { return active_.load(std::memory_order_acquire) == 0; }, kIdleSpinMicros)) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return active_.load() == 0; });
    }
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = nullptr;
    team_fn_ = nullptr;
    barrier_ = nullptr;
    const int64_t now = now_ns();
    waited += now - ready;
    const int64_t late = int64_t{g_late_micros.load(std::memory_order_relaxed)} * 1000;
    const int64_t arrival = latest_arrival_.load(std::memory_order_relaxed) - started_;
    // one late call in a row (a burst of V8's own threads on the worker's core) is let pass
    late_calls_ = arrival > late && waited > late && 4 * waited > now - started_ ? late_calls_ + 1 : 0;
    if (late == 0 || late_calls_ >= 2) {
      // late again within one stretch's length of the last one's end: twice as long (another
      // process that stays busy costs one slow call a second at most), else the shortest
      const int64_t window = now - solo_until_.load(std::memory_order_relaxed) < solo_window_ ? std::min(2 * solo_window_, kSoloMaxNs) : kSoloMinNs;
      solo_window_ = window;
      solo_until_.store(now + window, std::memory_order_relaxed);
    }
  }

  void drain() {
    for (int i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) (*fn_)(i);
  }

  void work(int id, unsigned long seen) {
#if defined(__linux__)
    // compute threads yield to the thread that runs the JS event loop (see binding/stream.cc)
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5);
#endif
    while (true) {
      const auto called = [&] { return stopping_.load() || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(called, kIdleSpinMicros)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, called);
      }
      std::unique_lock<std::mutex> lock(mutex_);  // orders the reads of the call's fields below
      if (stopping_.load()) return;
      seen = generation_.load();
      const int64_t arrived = now_ns();
      if (arrived > latest_arrival_.load(std::memory_order_relaxed)) latest_arrival_.store(arrived, std::memory_order_relaxed);
      const auto* team_fn = team_fn_;
      const int team = team_;
      Barrier* barrier = barrier_;
      lock.unlock();
      const InCall in_call;
      if (team_fn) {
        if (id < team) (*team_fn)(id, team, *barrier);
      } else {
        drain();
      }
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> done_lock(mutex_);
        done_.notify_one();
      }
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex busy_;   // held by the caller using the pool
  std::mutex mutex_;  // guards the call's fields below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* fn_ = nullptr;
  const std::function<void(int, int, Barrier&)>* team_fn_ = nullptr;
  int team_ = 0;
  Barrier* barrier_ = nullptr;
  int count_ = 0;
  std::atomic<int> next_{0};
  std::atomic<int> active_{0};
  std::atomic<unsigned long> generation_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int> size_{1};
  int64_t started_ = 0;                     // when the current call started (guarded by mutex_)
  std::atomic<int64_t> latest_arrival_{0};  // when its last worker picked it up (written under mutex_)
  std::atomic<int64_t> solo_until_{0};       // calls before this run on their caller alone
  std::atomic<long> solo_calls_{0};
  int64_t solo_window_ = 0;  // the last solo stretch's length (guarded by mutex_)
  int late_calls_ = 0;       // late calls in a row (guarded by mutex_)
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

long solo_calls() { return pool().solo_calls(); }

void set_pool_late_micros(int micros) { g_late_micros.store(micros < 0 ? kLateMicros : micros); }

void set_num_threads(int threads) { pool().resize(std::min(std::max(threads, 1), 256)); }

void parallel_for(int count, const std::function<void(int)>& fn) { pool().run(count, fn); }

void run_team(int want, const std::function<void(int, int, Barrier&)>& fn) { pool().run_team(want, fn); }

void Barrier::wait() {
  if (threads_ <= 1) return;
  const unsigned phase = phase_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
    arrived_.store(0, std::memory_order_relaxed);
    phase_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(&phase_);
    return;
  }
  const int64_t since = t_barrier_wait ? now_ns() : 0;
  // a step takes microseconds: spin (see spin_until), sleep in the kernel only after ~2 ms
  if (!spin_until([&] { return phase_.load(std::memory_order_acquire) != phase; }, kBarrierSpinMicros)) {
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (phase_.load(std::memory_order_seq_cst) == phase) wait_while(&phase_, phase);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (t_barrier_wait) *t_barrier_wait += now_ns() - since;
}

void Progress::publish(unsigned value) {
  value_.store(value, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all(&value_);
}

void Progress::wait_for(unsigned value) {
  const auto reached = [&] { return value_.load(std::memory_order_acquire) >= value; };
  if (spin_until(reached, kBarrierSpinMicros)) return;
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  for (unsigned seen = value_.load(std::memory_order_seq_cst); seen < value; seen = value_.load(std::memory_order_seq_cst))
    wait_while(&value_, seen);
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace recurrent
