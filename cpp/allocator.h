// A caching allocator for tensor memory on the CPU.
//
// Training allocates the same sizes every step. Returning large blocks to the OS and
// faulting fresh pages in again costs far more than the math on them (tens of
// milliseconds per step on some kernels and sandboxes), so freed blocks of 64 KiB and
// more are kept in size classes and handed out again, zeroed. Thread-safe: blocks may
// be freed on the worker thread that ran the last job using them.
#pragma once

#include <cstddef>

namespace recurrent {

// Memory for `count` floats (nullptr only when count is 0). *zeroed tells whether it
// is already zero-filled (fresh from the system); a reused block is not, and the
// caller zeroes it where that costs least (see binding/storage.cc).
float* cached_alloc(size_t count, bool* zeroed);
void cached_free(float* data, size_t count);

// Returns every cached block to the system; the number of bytes released.
size_t cached_release_all();

// Bytes of tensor memory in use: handed out by cached_alloc and not yet freed.
size_t allocated_bytes();

// Bytes currently held in the cache (not in use by any tensor).
size_t cached_bytes();

}  // namespace recurrent
