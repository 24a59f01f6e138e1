// The CUDA memory and stream: the device twin of cpp/allocator.h. A caching allocator keeps the
// blocks tensors free, by size, and hands them out again without cudaMalloc / cudaFree (which
// synchronize the device); every kernel runs on the one stream of the process.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "allocator.h"
#include "common.cuh"

namespace recurrent {
namespace cuda {

cudaStream_t the_stream() {
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    check(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking), "creating the stream");
    return created;
  }();
  return s;
}

namespace {

// ---------------------------------------------------------------------------
// Caching allocator

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free;  // rounded bytes -> blocks
  size_t cached = 0, allocated = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

// Sizes repeat step after step in training, so exact classes reuse well: 512-byte
// granules below 1 MiB, 2 MiB above.
size_t rounded(size_t bytes) {
  const size_t granule = bytes < (size_t{1} << 20) ? 512 : (size_t{2} << 20);
  return (bytes + granule - 1) / granule * granule;
}

size_t release_locked(Cache& c) {
  size_t released = 0;
  for (auto& [bytes, blocks] : c.free) {
    for (void* p : blocks) {
      cudaFree(p);
      released += bytes;
    }
  }
  c.free.clear();
  c.cached = 0;
  return released;
}


}  // namespace

void* stream() { return the_stream(); }

float* device_alloc(size_t count) {
  if (count == 0) return nullptr;
  const size_t bytes = rounded(count * sizeof(float));
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free.find(bytes);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= bytes;
      c.allocated += bytes;
      return static_cast<float*>(p);
    }
  }
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state of a failed allocation
    // out of memory: give the cache back (after the queued work that may use it) and retry
    cudaStreamSynchronize(the_stream());
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      release_locked(c);
    }
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      throw std::bad_alloc();
    }
  }
  std::lock_guard<std::mutex> lock(c.mutex);
  c.allocated += bytes;
  return static_cast<float*>(p);
}

void device_free(float* data, size_t count) {
  if (data == nullptr) return;
  const size_t bytes = rounded(count * sizeof(float));
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.free[bytes].push_back(data);
  c.cached += bytes;
  c.allocated -= bytes;
}

size_t device_cached_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().cached;
}

size_t device_allocated_bytes() {
  std::lock_guard<std::mutex> lock(cache().mutex);
  return cache().allocated;
}

size_t device_release_all() {
  check(cudaStreamSynchronize(the_stream()), "synchronizing");
  std::lock_guard<std::mutex> lock(cache().mutex);
  return release_locked(cache());
}

void copy(float* dst, const float* src, size_t count, CopyKind kind) {
  if (count == 0) return;
  const cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                             : cudaMemcpyDeviceToDevice;
  check(cudaMemcpyAsync(dst, src, count * sizeof(float), k, the_stream()), "copy");
  // pageable host memory: wait for the copy to land (host to device returns once staged,
  // device to host must finish before the caller reads)
  if (kind == CopyKind::kDeviceToHost) check(cudaStreamSynchronize(the_stream()), "copy to host");
}

void zero(float* data, size_t count) {
  if (count == 0) return;
  check(cudaMemsetAsync(data, 0, count * sizeof(float), the_stream()), "memset");
}

void synchronize() { check(cudaStreamSynchronize(the_stream()), "synchronize"); }

int32_t* upload_ints(const int32_t* host, size_t count) {
  if (count == 0) return nullptr;
  static_assert(sizeof(int32_t) == sizeof(float), "ints travel in float-sized blocks");
  auto* p = reinterpret_cast<int32_t*>(device_alloc(count));
  check(cudaMemcpyAsync(p, host, count * sizeof(int32_t), cudaMemcpyHostToDevice, the_stream()), "upload");
  return p;
}

void free_ints(int32_t* data, size_t count) { device_free(reinterpret_cast<float*>(data), count); }


}  // namespace cuda
}  // namespace recurrent
