// What the CUDA side can do on this machine. Plain C++: binding/ includes it and g++
// compiles binding/. Implemented by cuda/device.cu when a CUDA compiler was found at
// build time; otherwise it says so (api.h).
#pragma once

#include <string>
#include <vector>

#include "api.h"

namespace recurrent {

struct CudaDeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  size_t total_memory = 0;
};

struct CudaStatus {
  bool compiled = false;    // the addon carries CUDA kernels
  int device_count = 0;     // usable devices (0 without a driver or GPU)
  std::string reason;       // why CUDA is not usable, when it is not
  std::vector<CudaDeviceInfo> devices;
};

RECURRENT_CUDA_FN CudaStatus cuda_status()
    RECURRENT_CUDA_ELSE(return CudaStatus{false, 0, cuda::kNotCompiledReason, {}});

}  // namespace recurrent
