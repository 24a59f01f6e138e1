// Device discovery for the CUDA backend. The runtime is linked statically, so this
// loads on machines without CUDA; there cudaGetDeviceCount fails and we report why.
#include <cuda_runtime.h>

#include "device.h"

namespace recurrent {

CudaStatus cuda_status() {
  CudaStatus status;
  status.compiled = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    status.reason = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    return status;
  }
  if (count == 0) {
    status.reason = "no CUDA device found";
    return status;
  }
  status.device_count = count;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    CudaDeviceInfo info;
    info.name = prop.name;
    info.major = prop.major;
    info.minor = prop.minor;
    info.total_memory = prop.totalGlobalMem;
    status.devices.push_back(info);
  }
  return status;
}

}  // namespace recurrent
