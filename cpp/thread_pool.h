// A persistent pool of worker threads for splitting one kernel call across cores.
//
// parallel_for(count, fn) runs fn(0..count-1) on the calling thread and the workers and
// returns when all are done. One caller at a time uses the pool; a second concurrent
// caller (another worker thread or Node environment) just runs its loop serially, so
// results never depend on who got the pool. Size: the machine's cores, or
// RECURRENT_NUM_THREADS, or set_num_threads().
#pragma once

#include <atomic>
#include <functional>

namespace recurrent {

int num_threads();
// Pool calls that ran on their caller alone because an earlier call had waited long for its
// workers (another process busy on their cores; see thread_pool.cc): a count since the process
// started.
long solo_calls();
// For tests: the wait (microseconds) past which a call counts as late; negative restores the
// default; at 0 every call counts as late.
void set_pool_late_micros(int micros);
void set_num_threads(int threads);
void parallel_for(int count, const std::function<void(int)>& fn);

// A barrier for the threads of one team: spins briefly, then sleeps (futex on Linux).
class Barrier {
 public:
  explicit Barrier(int threads) : threads_(threads) {}
  void wait();

 private:
  const int threads_;
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> phase_{0};
  std::atomic<int> sleepers_{0};
};

// A count one thread of a team raises and others wait on (a pipeline's progress: "chunks done").
// wait_for spins briefly, then sleeps (futex on Linux), like Barrier.
class Progress {
 public:
  void publish(unsigned value);
  void wait_for(unsigned value);

 private:
  std::atomic<unsigned> value_{0};
  std::atomic<int> sleepers_{0};
};

// Runs fn(id, team, barrier) on `team` threads at once (ids 0..team-1, the caller is 0),
// team = min(want, num_threads()), or 1 when another caller holds the pool. The threads
// may synchronize on the barrier (all of them must call wait() the same number of times).
// A call made from inside fn (or inside a parallel_for) runs on its own thread alone.
void run_team(int want, const std::function<void(int id, int team, Barrier& barrier)>& fn);

}  // namespace recurrent
