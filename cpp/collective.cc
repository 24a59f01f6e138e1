// MPI loaded at run time, driven from one communication thread (see collective.h).
#include "collective.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace recurrent::collective {

namespace {

// Open MPI's C ABI: every handle is a pointer (MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler)
// and the predefined ones are the addresses of exported objects.
using Handle = void*;
using InitThreadFn = int (*)(int*, char***, int, int*);
using FlagFn = int (*)(int*);
using VoidFn = int (*)();
using CommIntFn = int (*)(Handle, int*);
using AllreduceFn = int (*)(const void*, void*, int, Handle, Handle, Handle);
using BcastFn = int (*)(void*, int, Handle, int, Handle);
using BarrierFn = int (*)(Handle);
using AbortFn = int (*)(Handle, int);
using VersionFn = int (*)(char*, int*);
using ErrorStringFn = int (*)(int, char*, int*);
using SetErrhandlerFn = int (*)(Handle, Handle);

constexpr int kThreadSerialized = 2;  // MPI_THREAD_SERIALIZED (the same in every MPI)
void* const kInPlace = reinterpret_cast<void*>(1);  // Open MPI's MPI_IN_PLACE
constexpr int kMaxVersion = 8192;

struct Mpi {
  void* library = nullptr;
  std::string path;
  InitThreadFn init_thread = nullptr;
  FlagFn initialized = nullptr;
  FlagFn finalized = nullptr;
  VoidFn finalize = nullptr;
  CommIntFn comm_rank = nullptr;
  CommIntFn comm_size = nullptr;
  AllreduceFn allreduce = nullptr;
  BcastFn bcast = nullptr;
  BarrierFn barrier = nullptr;
  AbortFn abort = nullptr;
  VersionFn library_version = nullptr;
  ErrorStringFn error_string = nullptr;
  SetErrhandlerFn comm_set_errhandler = nullptr;
  Handle comm_world = nullptr;
  Handle type_float = nullptr;
  Handle type_double = nullptr;
  Handle type_byte = nullptr;
  Handle op_sum = nullptr;
  Handle op_max = nullptr;
  Handle op_min = nullptr;
  Handle errors_return = nullptr;
};

Mpi g_mpi;
Status g_status;
std::once_flag g_probe_once;

template <typename T>
bool bind(void* library, const char* name, T& out) {
  out = reinterpret_cast<T>(dlsym(library, name));
  return out != nullptr;
}

void probe() {
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("RECURRENT_MPI_LIBRARY"); path && *path) {
    candidates.push_back(path);  // this one only
  } else {
    candidates.push_back("libmpi.so.40");  // Open MPI 3, 4 and 5
    candidates.push_back("libmpi.so");
  }
  std::string tried;
  void* library = nullptr;
  for (const std::string& candidate : candidates) {
    library = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library) {
      g_mpi.path = candidate;
      break;
    }
    const char* error = dlerror();
    tried += (tried.empty() ? "" : "; ") + std::string(error ? error : candidate + ": not found");
  }
  if (!library) {
    g_status.reason = "no MPI library could be loaded (" + tried +
                      "). Install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) "
                      "or point RECURRENT_MPI_LIBRARY at its libmpi.so";
    return;
  }
  g_status.library = g_mpi.path;
  Mpi& m = g_mpi;
  m.library = library;
  if (!bind(library, "ompi_mpi_comm_world", m.comm_world)) {
    g_status.reason = g_mpi.path + " is not Open MPI (only Open MPI's ABI is supported so far)";
    return;
  }
  const bool ok = bind(library, "MPI_Init_thread", m.init_thread) && bind(library, "MPI_Initialized", m.initialized) &&
                  bind(library, "MPI_Finalized", m.finalized) && bind(library, "MPI_Finalize", m.finalize) &&
                  bind(library, "MPI_Comm_rank", m.comm_rank) && bind(library, "MPI_Comm_size", m.comm_size) &&
                  bind(library, "MPI_Allreduce", m.allreduce) && bind(library, "MPI_Bcast", m.bcast) &&
                  bind(library, "MPI_Barrier", m.barrier) && bind(library, "MPI_Abort", m.abort) &&
                  bind(library, "MPI_Get_library_version", m.library_version) &&
                  bind(library, "MPI_Error_string", m.error_string) &&
                  bind(library, "MPI_Comm_set_errhandler", m.comm_set_errhandler) &&
                  bind(library, "ompi_mpi_float", m.type_float) && bind(library, "ompi_mpi_double", m.type_double) &&
                  bind(library, "ompi_mpi_byte", m.type_byte) && bind(library, "ompi_mpi_op_sum", m.op_sum) &&
                  bind(library, "ompi_mpi_op_max", m.op_max) && bind(library, "ompi_mpi_op_min", m.op_min) &&
                  bind(library, "ompi_mpi_errors_return", m.errors_return);
  if (!ok) {
    g_status.reason = g_mpi.path + " lacks MPI-3 functions this library needs (Open MPI >= 3 is required)";
    return;
  }
  // MPI_Get_library_version may be called before MPI_Init (MPI-3.0, 8.1.1).
  std::vector<char> version(kMaxVersion + 1, '\0');
  int length = 0;
  if (m.library_version(version.data(), &length) == 0) {
    std::string text(version.data(), static_cast<size_t>(std::clamp(length, 0, kMaxVersion)));
    const size_t end = text.find_first_of(",\n");
    g_status.engine = end == std::string::npos ? text : text.substr(0, end);
  }
  if (g_status.engine.empty()) g_status.engine = "Open MPI";
  g_status.available = true;
}

void check(int code, const char* what) {
  if (code == 0) return;
  char message[1024] = {0};
  int length = 0;
  if (g_mpi.error_string && g_mpi.error_string(code, message, &length) == 0) {
    throw std::runtime_error(std::string(what) + " failed: " + std::string(message, static_cast<size_t>(std::max(length, 0))));
  }
  throw std::runtime_error(std::string(what) + " failed with MPI error " + std::to_string(code));
}

int env_int(std::initializer_list<const char*> names, int fallback) {
  for (const char* name : names) {
    if (const char* value = std::getenv(name); value && *value) return std::atoi(value);
  }
  return fallback;
}

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"}) {
    if (const char* value = std::getenv(name); value && *value) return true;
  }
  return false;
}

// The communication thread and its queue.
struct Comm {
  std::mutex mutex;
  std::condition_variable wake;
  std::condition_variable idle;  // busy went false
  std::deque<std::packaged_task<void()>> queue;
  bool busy = false;
  bool stop = false;
  std::thread* thread = nullptr;  // never deleted: a thread stuck in MPI at exit is left behind

  void loop() {
    while (true) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex);
        busy = false;
        idle.notify_all();
        wake.wait(lock, [this] { return stop || !queue.empty(); });
        if (queue.empty()) return;  // stop requested and nothing left
        task = std::move(queue.front());
        queue.pop_front();
        busy = true;
      }
      task();  // an exception is stored in the task's future
    }
  }
};

Comm g_comm;
std::mutex g_init_mutex;
World g_world;
bool g_initialized = false;
bool g_finalized = false;

}  // namespace

const Status& status() {
  std::call_once(g_probe_once, probe);
  return g_status;
}

bool initialized() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  return g_initialized;
}

const World& world() { return g_world; }

World init() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (g_initialized) return g_world;
  if (!launched_by_mpi()) {
    g_world = World{};  // a world of one
    g_initialized = true;
    return g_world;
  }
  const Status& s = status();
  if (!s.available) throw std::runtime_error("this process was started by an MPI launcher, but " + s.reason);
  // Open MPI loads its components with dlopen and they expect libmpi's symbols to be global.
  if (!dlopen(g_mpi.path.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) {
    throw std::runtime_error("could not make " + g_mpi.path + "'s symbols global: " + std::string(dlerror()));
  }
  std::promise<World> ready;
  std::future<World> result = ready.get_future();
  g_comm.thread = new std::thread([&ready] {
    try {
      Mpi& m = g_mpi;
      int already = 0;
      check(m.initialized(&already), "MPI_Initialized");
      if (!already) {
        int provided = 0;
        check(m.init_thread(nullptr, nullptr, kThreadSerialized, &provided), "MPI_Init_thread");
      }
      // failures come back as error codes (turned into exceptions), not as an abort
      check(m.comm_set_errhandler(m.comm_world, m.errors_return), "MPI_Comm_set_errhandler");
      World w;
      w.mpi = true;
      check(m.comm_rank(m.comm_world, &w.rank), "MPI_Comm_rank");
      check(m.comm_size(m.comm_world, &w.size), "MPI_Comm_size");
      w.local_rank = env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}, 0);
      w.local_size = env_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, 1);
      ready.set_value(w);
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    g_comm.loop();
  });
  g_world = result.get();  // rethrows an initialization failure
  g_initialized = true;
  return g_world;
}

std::shared_future<void> submit(std::function<void()> job) {
  std::packaged_task<void()> task(std::move(job));
  std::shared_future<void> future = task.get_future().share();
  if (!g_world.mpi || !g_comm.thread) {
    task();
    return future;
  }
  {
    std::lock_guard<std::mutex> lock(g_comm.mutex);
    if (g_comm.stop) throw std::runtime_error("the distributed runtime was shut down");
    g_comm.queue.push_back(std::move(task));
  }
  g_comm.wake.notify_one();
  return future;
}

namespace {
Handle op_handle(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax: return g_mpi.op_max;
    case ReduceOp::kMin: return g_mpi.op_min;
    default: return g_mpi.op_sum;
  }
}
}  // namespace

void allreduce_floats(float* data, int64_t count, ReduceOp op, float scale) {
  if (g_world.mpi && g_world.size > 1) {
    constexpr int64_t kChunk = int64_t{1} << 30;
    for (int64_t start = 0; start < count; start += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, count - start));
      check(g_mpi.allreduce(kInPlace, data + start, n, g_mpi.type_float, op_handle(op), g_mpi.comm_world), "MPI_Allreduce");
    }
  }
  if (scale != 1.0f) {
    for (int64_t i = 0; i < count; ++i) data[i] *= scale;
  }
}

void allreduce_doubles(double* data, int count, ReduceOp op) {
  if (!g_world.mpi || g_world.size == 1 || count == 0) return;
  check(g_mpi.allreduce(kInPlace, data, count, g_mpi.type_double, op_handle(op), g_mpi.comm_world), "MPI_Allreduce");
}

void broadcast_bytes(void* data, int64_t bytes, int root) {
  if (!g_world.mpi || g_world.size == 1) return;
  constexpr int64_t kChunk = int64_t{1} << 30;
  char* p = static_cast<char*>(data);
  for (int64_t start = 0; start < bytes; start += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, bytes - start));
    check(g_mpi.bcast(p + start, n, g_mpi.type_byte, root, g_mpi.comm_world), "MPI_Bcast");
  }
}

void barrier_now() {
  if (!g_world.mpi || g_world.size == 1) return;
  check(g_mpi.barrier(g_mpi.comm_world), "MPI_Barrier");
}

void abort_all(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (g_world.mpi && g_mpi.abort) g_mpi.abort(g_mpi.comm_world, code);
  std::_Exit(code);
}

void shutdown() {
  std::unique_lock<std::mutex> init_lock(g_init_mutex);
  if (!g_world.mpi || !g_comm.thread || g_finalized) return;
  g_finalized = true;
  {
    std::unique_lock<std::mutex> lock(g_comm.mutex);
    // a job that just completed its future may not have marked the thread idle yet: give it a
    // moment (a collective still waiting for other ranks after that is stuck for good)
    g_comm.idle.wait_for(lock, std::chrono::seconds(2), [] { return !g_comm.busy && g_comm.queue.empty(); });
    if (g_comm.busy || !g_comm.queue.empty()) {
      // a collective is still waiting for other ranks: do not wait for it (the launcher
      // ends the job when this process exits without finalizing)
      g_comm.stop = true;
      g_comm.wake.notify_one();
      g_comm.thread->detach();
      return;
    }
    g_comm.queue.push_back(std::packaged_task<void()>([] {
      int done = 0;
      if (g_mpi.finalized(&done) == 0 && !done) g_mpi.finalize();
    }));
    g_comm.stop = true;
  }
  g_comm.wake.notify_one();
  g_comm.thread->join();
}

}  // namespace recurrent::collective
