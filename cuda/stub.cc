// Stand-in for the CUDA backend when the build found no CUDA compiler.
#include "device.h"

namespace recurrent {

CudaStatus cuda_status() {
  CudaStatus status;
  status.reason = "this build of recurrent was compiled without CUDA (no CUDA compiler found)";
  return status;
}

}  // namespace recurrent
