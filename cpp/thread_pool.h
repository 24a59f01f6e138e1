// A persistent pool of worker threads for splitting one kernel call across cores.
//
// parallel_for(count, fn) runs fn(0..count-1) on the calling thread and the workers and
// returns when all are done. One caller at a time uses the pool; a second concurrent
// caller (another worker thread or Node environment) just runs its loop serially, so
// results never depend on who got the pool. Size: the machine's cores, or
// RECURRENT_NUM_THREADS, or set_num_threads().
#pragma once

#include <functional>

namespace recurrent {

int num_threads();
void set_num_threads(int threads);
void parallel_for(int count, const std::function<void(int)>& fn);

}  // namespace recurrent
