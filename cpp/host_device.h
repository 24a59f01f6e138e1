// RECURRENT_HD marks the small functions that both backends compile: __host__ __device__
// under nvcc, plain inline under g++ (cells.h, layout.h, optim_math.h).
#pragma once

#if defined(__CUDACC__)
#define RECURRENT_HD __host__ __device__ __forceinline__
#else
#define RECURRENT_HD inline
#endif
