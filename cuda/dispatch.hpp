// The CUDA backend's dispatch (and its host mirror's): odefast/dispatch.hpp's, with no
// host-side caches in the dynamics. Plain C++ (compiled by nvcc for the kernels' launch code and
// by the host compiler for cuda/host_mirror.cpp); the CPU backend's is cpp/src/dispatch.hpp.
#pragma once
#include "odefast/dispatch.hpp"

namespace odefast::gpu {

// Calls fn(dynamics) with the configured dynamics object for scalar S. Nothing points to host
// memory (MLP::packed stays null: device threads read the weights from the parameters, with the
// plain loops that the AVX-512 kernels agree with bit for bit).
template <class S, class Fn> void with_dynamics(const DynamicsSpec& spec, Fn&& fn) {
  with_plain_dynamics<S>(spec, [&](const auto& f) { fn(f); });
}

}  // namespace odefast::gpu
