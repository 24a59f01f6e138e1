// Caching allocator (see allocator.h).
#include "allocator.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace recurrent {

namespace {

constexpr size_t kMinCachedBytes = size_t{64} << 10;
// Blocks held beyond this are returned to the system (RECURRENT_CACHE_LIMIT_MB overrides).
size_t cache_limit() {
  static const size_t limit = [] {
    const char* env = std::getenv("RECURRENT_CACHE_LIMIT_MB");
    return env ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20 : size_t{2} << 30;
  }();
  return limit;
}

// Size classes at most 1/8 apart, so a block fits requests within 12.5% of its size.
size_t size_class(size_t bytes) {
  size_t top = 1;
  while ((top << 1) <= bytes) top <<= 1;
  const size_t step = top >= 8 * kMinCachedBytes ? top / 8 : kMinCachedBytes;
  return (bytes + step - 1) / step * step;
}

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free_blocks;
  size_t held = 0;
};

// Bytes of tensor memory handed out and not yet freed (what tensors hold, not the cache).
std::atomic<size_t> g_in_use{0};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: blocks may be freed during exit
  return *c;
}

// Zeroed memory on a cache line: calloc's (zero pages from the system for large blocks, no memset)
// moved up to the next line, the block calloc gave kept just before it. glibc's large blocks lie 16
// bytes past a line, and a kernel's 64-byte vector loads and stores of rows there straddle two
// lines each (the optimizers' and the gates' passes over tensors, the GEMMs' rows of C).
constexpr size_t kLine = 64;

void* aligned_calloc(size_t bytes) {
  void* raw = std::calloc(bytes + kLine, 1);
  if (!raw) throw std::bad_alloc();
  const uintptr_t at = (reinterpret_cast<uintptr_t>(raw) + kLine) / kLine * kLine;  // at least 16 bytes past raw
  reinterpret_cast<void**>(at)[-1] = raw;
  return reinterpret_cast<void*>(at);
}

void aligned_free(void* p) {
  if (p) std::free(static_cast<void**>(p)[-1]);
}

}  // namespace

float* cached_alloc(size_t count, bool* zeroed) {
  *zeroed = true;
  if (count == 0) return nullptr;
  const size_t bytes = count * sizeof(float);
  if (bytes < kMinCachedBytes) {
    void* p = aligned_calloc(bytes);
    g_in_use += bytes;
    return static_cast<float*>(p);
  }
  const size_t cls = size_class(bytes);
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.held -= cls;
      *zeroed = false;
      g_in_use += bytes;
      return static_cast<float*>(p);
    }
  }
  void* p = aligned_calloc(cls);
  g_in_use += bytes;
  return static_cast<float*>(p);
}

void cached_free(float* data, size_t count) {
  if (!data) return;
  const size_t bytes = count * sizeof(float);
  g_in_use -= bytes;
  if (bytes < kMinCachedBytes) {
    aligned_free(data);
    return;
  }
  const size_t cls = size_class(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.held + cls <= cache_limit()) {
      c.free_blocks[cls].push_back(data);
      c.held += cls;
      return;
    }
  }
  aligned_free(data);
}

size_t cached_release_all() {
  Cache& c = cache();
  std::map<size_t, std::vector<void*>> blocks;
  size_t released;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.free_blocks);
    released = c.held;
    c.held = 0;
  }
  for (auto& [cls, list] : blocks)
    for (void* p : list) aligned_free(p);
  return released;
}

size_t allocated_bytes() { return g_in_use.load(); }

size_t cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.held;
}

}  // namespace recurrent
