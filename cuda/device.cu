// Device discovery for the CUDA backend. The runtime is linked statically, so this
// loads on machines without CUDA; there cudaGetDeviceCount fails and we report why.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include "device.h"

namespace recurrent {

namespace {

// Whether the NVIDIA driver's library is installed: cudart reports a machine without it as
// cudaErrorInsufficientDriver, which reads as "update your driver" to someone who has no GPU.
bool driver_library_present() {
  void* handle = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (handle == nullptr) return false;
  dlclose(handle);
  return true;
}

std::string unusable_reason(cudaError_t err) {
  const bool driver = driver_library_present();
  if (!driver) return "no CUDA driver or GPU found on this machine (libcuda.so.1 is not installed)";
  if (err == cudaErrorNoDevice) return "no CUDA device found (the NVIDIA driver sees no GPU)";
  if (err == cudaErrorInsufficientDriver) {
    return std::string("the NVIDIA driver is older than this build's CUDA runtime (") + std::to_string(CUDART_VERSION / 1000) +
           "." + std::to_string(CUDART_VERSION % 1000 / 10) + "): update the driver";
  }
  return std::string("no usable CUDA device: ") + cudaGetErrorString(err);
}

}  // namespace

CudaStatus cuda_status() {
  CudaStatus status;
  status.compiled = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    status.reason = unusable_reason(err);
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
