// How cuda/*.h declare the CUDA backend's entry points, once for both kinds of build.
//
// With a CUDA compiler (CMakeLists.txt defines RECURRENT_WITH_CUDA) the declarations are plain
// and cuda/*.cu define them. Without one, each declaration is also its definition, an inline
// stand-in: what configures or reports does nothing or reports nothing, the rest throws. The
// throwing ones are never reached, since no tensor can be on 'cuda' in such a build.
//
//   RECURRENT_CUDA_FN void zero(float* data, size_t count) RECURRENT_CUDA_ELSE_THROW;
//   RECURRENT_CUDA_FN size_t device_cached_bytes() RECURRENT_CUDA_ELSE(return 0);
#pragma once

#include <stdexcept>

#if defined(RECURRENT_WITH_CUDA)
#define RECURRENT_CUDA_FN
#define RECURRENT_CUDA_ELSE(...)
#else
#define RECURRENT_CUDA_FN inline
#define RECURRENT_CUDA_ELSE(...) \
  { __VA_ARGS__; }
#endif
#define RECURRENT_CUDA_ELSE_THROW RECURRENT_CUDA_ELSE(::recurrent::cuda::unavailable())

namespace recurrent {
namespace cuda {

using Stream = void*;  // a cudaStream_t (null: the default stream)

constexpr const char* kNotCompiledReason =
    "this build of recurrent was compiled without CUDA (no CUDA compiler was found, or RECURRENT_CUDA=OFF)";

[[noreturn]] inline void unavailable() { throw std::runtime_error(kNotCompiledReason); }

}  // namespace cuda
}  // namespace recurrent
