// Stand-in for the CUDA backend in builds without it (no CUDA compiler found, or RECURRENT_CUDA=OFF).
#include "device.h"

namespace recurrent {

CudaStatus cuda_status() {
  CudaStatus status;
  status.reason = "this build of recurrent was compiled without CUDA (no CUDA compiler was found, or RECURRENT_CUDA=OFF)";
  return status;
}

}  // namespace recurrent
