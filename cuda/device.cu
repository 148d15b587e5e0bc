// Device discovery. The solver kernels (issue: CUDA backend) build on the same headers.
#include "check.cuh"

namespace odefast::cuda {

// Number of usable GPUs; 0 when there is no driver or no device (not an error: CPU only).
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

}  // namespace odefast::cuda
