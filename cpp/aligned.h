// Cache-line-aligned scratch vectors.
//
// A std::vector's data is 16-byte aligned (malloc's). Where the threads of a team each write their
// own rows of one buffer (the recurrent layers' split by batch rows), a row boundary inside a cache
// line makes that line bounce between the cores at every step (false sharing), which costs
// microseconds a step where the cores are far apart. Rows of a multiple of 16 floats start on a
// line of their own in a buffer that starts on one.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace recurrent {

constexpr std::size_t kCacheLine = 64;

template <typename T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kCacheLine)); }
  template <typename U>
  bool operator==(const CacheAligned<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const CacheAligned<U>&) const noexcept { return false; }
};

template <typename T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

}  // namespace recurrent
