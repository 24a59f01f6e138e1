// Collectives across processes (data-parallel training): rank, world size, all-reduce,
// broadcast and barrier over MPI, loaded at run time.
//
// The addon never links against MPI: libmpi is opened with dlopen the first time it is
// asked for, so the same binary installs and runs where no MPI exists (status() then
// says why not). Only Open MPI's ABI is bound (handles are pointers to its predefined
// objects, found with dlsym); the engine sits behind these functions so that NCCL or
// another MPI can be added without changing callers.
//
// Every MPI call runs on one communication thread owned by this module (MPI is
// initialized there, at MPI_THREAD_SERIALIZED), in submission order. Callers queue work
// with submit() and get a future: the training step's stream worker keeps computing the
// rest of backward while earlier gradient buckets are being reduced. All ranks must
// submit the same collectives in the same order.
//
// A process started without an MPI launcher (no OMPI_COMM_WORLD_SIZE / PMIX_RANK in the
// environment) is a world of one: init() succeeds without loading MPI and every
// collective is the identity.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <string>

namespace recurrent::collective {

struct Status {
  bool available = false;  // libmpi could be loaded (and is a supported engine)
  std::string engine;      // e.g. "Open MPI v4.1.4, ..." (first line of MPI_Get_library_version)
  std::string library;     // the file that was opened
  std::string reason;      // why not available
};

// Probes (once) whether an MPI library can be loaded. Does not initialize MPI.
const Status& status();

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // among the ranks on this host
  int local_size = 1;
  bool mpi = false;    // false: a world of one without MPI
};

// Initializes MPI once (later calls return the same world). Throws std::runtime_error with
// the reason when launched by MPI but the library cannot be loaded or initialized.
World init();
bool initialized();
const World& world();

enum class ReduceOp { kSum, kMax, kMin };

// Queues `job` on the communication thread; the future holds its exception, if any.
// In a world of one without MPI the job runs at once on the caller's thread.
std::shared_future<void> submit(std::function<void()> job);

// These run on the communication thread (call them from a submitted job):
// in-place all-reduce of `count` floats (counts past INT_MAX are split), times `scale` after
void allreduce_floats(float* data, int64_t count, ReduceOp op, float scale);
void allreduce_doubles(double* data, int count, ReduceOp op);
void broadcast_bytes(void* data, int64_t bytes, int root);
void barrier_now();

// Ends every rank of the job (MPI_Abort); in a world of one, exits the process.
[[noreturn]] void abort_all(int code);

// MPI_Finalize on the communication thread when it is idle, then stops it. Called at
// environment teardown; a thread still stuck in a collective is left behind.
void shutdown();

}  // namespace recurrent::collective
