// The CUDA backend's entry points (cuda/api.hpp): device discovery, and the dtype dispatch to
// the kernels' launch code (solve.cuh, adjoint.cuh; instantiated per dtype in *_float*.cu).
#include "api.hpp"
#include "check.cuh"

namespace odefast::gpu {

template <class S> void solve_typed(const DynamicsSpec&, const Call&);              // solve_float*.cu
template <class S> std::int64_t adjoint_typed(const DynamicsSpec&, const Call&);   // adjoint_float*.cu

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error: CPU only, not a failure
    return 0;
  }
  return n;
}

// The caller's GPU for this host thread (odefast's CUDA runtime is linked statically, so its
// current device is its own, whatever other libraries in the process have selected).
void select(const Call& call) {
  int n = device_count();
  if (call.device_index < 0 || call.device_index >= n)
    throw std::invalid_argument("device index " + std::to_string(call.device_index) + " out of range: " +
                                std::to_string(n) + " CUDA device(s) visible");
  ODEFAST_CUDA_CHECK(cudaSetDevice(call.device_index));
}

void solve(const DynamicsSpec& dynamics, const Call& call) {
  select(call);
  if (call.dtype == "float32") return solve_typed<float>(dynamics, call);
  if (call.dtype == "float64") return solve_typed<double>(dynamics, call);
  throw std::invalid_argument("unsupported dtype '" + call.dtype + "'; supported: float32, float64");
}

std::int64_t adjoint(const DynamicsSpec& dynamics, const Call& call) {
  select(call);
  if (call.dtype == "float32") return adjoint_typed<float>(dynamics, call);
  if (call.dtype == "float64") return adjoint_typed<double>(dynamics, call);
  throw std::invalid_argument("unsupported dtype '" + call.dtype + "'; supported: float32, float64");
}

}  // namespace odefast::gpu
