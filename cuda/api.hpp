// Plain C++ entry points of the CUDA backend (cuda/*.cu) and of its host mirror
// (cuda/host_mirror.cpp), called by the binding (cpp/bindings/module.cpp). No CUDA types here.
//
// Every array is a Buffer: host memory (copied to the GPU and back) or device memory (used in
// place: CuPy / PyTorch arrays through __cuda_array_interface__). Shapes as in odefast/api.hpp:
// y0 (B, D), t (N,), params (P,) or (B, P), ys (N, B, D), nfev / steps / rejected (B,) int64,
// status (B,) int32; the adjoint's cot (N, B, D), ybar0 (B, D) without cot[0], pbar (P,) summed
// over trajectories or (B, P), gt (B, N) per-trajectory time gradients (the caller sums them).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "odefast/api.hpp"

namespace odefast::gpu {

struct Buffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  bool device = false;
};

struct Call {
  std::string dtype, method;
  std::int64_t batch = 0;
  int n_times = 0, n_params = 0;
  bool per_trajectory_params = false;
  StepControl control;
  Buffer y0, t, params;                      // inputs
  Buffer ys, nfev, steps, rejected, status;  // solve outputs (the adjoint's host mirror fills them too)
  Buffer cot, ybar0, pbar, gt;               // adjoint
  // adjoint: tape capacity in accepted steps per trajectory (a plain solve's max of sol.stats
  // ["steps"] is exact: the recording solve takes the same steps), and the bytes of GPU memory
  // for tapes and work; the batch runs in chunks that fit (a fixed partition: results do not
  // depend on the GPU's free memory).
  int device_index = 0;  // the GPU that runs the call (device buffers must live on it)
  std::int64_t tape_steps = 0;
  std::size_t memory_budget = std::size_t(1) << 30;
};

// The kernels' per-trajectory bodies (odefast/trajectory_adjoint.hpp) on the CPU, one
// trajectory after another, with the device's memory layouts (host pointers only). The
// adjoint returns the number of trajectories whose tape overflowed (0 unless tape_steps is
// too small).
void host_solve(const DynamicsSpec& dynamics, const Call& call);
std::int64_t host_adjoint(const DynamicsSpec& dynamics, const Call& call);

#ifdef ODEFAST_WITH_CUDA
int device_count();  // 0 without a driver or a GPU (not an error)
// Raise std::runtime_error naming the failed CUDA call and its message.
void solve(const DynamicsSpec& dynamics, const Call& call);
std::int64_t adjoint(const DynamicsSpec& dynamics, const Call& call);
#endif

}  // namespace odefast::gpu
