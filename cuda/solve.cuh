// Forward ensemble kernels: one GPU thread per trajectory, the whole solve in one kernel.
// Each thread runs BlockIntegrator<S, M, Dyn, 1> (odefast/trajectory_adjoint.hpp:
// trajectory_solve) -- its own adaptive steps, max_steps / step-underflow / non-finite statuses
// (never an error or an endless loop inside the kernel: every trajectory stops after at most
// max_steps attempts), dense output -- and writes its rows of ys and its counters.
//
// Memory per thread:
// - dynamics with a compile-time dimension (Lorenz): the integrator's work, (s + 4) D scalars,
//   is a local array (registers / local memory, interleaved across threads by the hardware);
// - other dynamics: a slice of one global scratch buffer, (s + 4) D + f.scratch_size(1) scalars;
// - MLP with shared weights whose hidden width fits W (32 or 64): a fused block kernel that
//   copies the parameters into shared memory once per block, with the work and the layer
//   buffers as local arrays sized by W.
// Parameters are read through a const pointer in global memory (per trajectory: row b of (B, P)).
#pragma once
#include <algorithm>
#include <cstdint>

#include "dispatch.hpp"
#include "memory.cuh"
#include "odefast/trajectory_adjoint.hpp"

namespace odefast::gpu {

constexpr int kSolveThreads = 128;

template <class S> struct SolveArgs {
  const S* y0;
  const S* t;
  int n_times, P;
  const S* params;
  bool per_traj;
  StepControl ctl;
  SolveOutput<S> out;
  S* work;                  // global scratch (dynamic-dimension dynamics): work_stride per thread
  std::int64_t work_stride;
  std::int64_t n_integ;     // the integrator's part of a slice; the dynamics' scratch follows
};

template <class S, class M, class Dyn>
__global__ void __launch_bounds__(kSolveThreads) solve_kernel(Dyn f, SolveArgs<S> a) {
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= a.out.batch) return;
  const S* p = a.per_traj ? a.params + b * a.P : a.params;
  constexpr int kD = StaticDim<Dyn>::value;
  if constexpr (kD > 0) {
    S work[trajectory_forward_work<M>(kD)];
    trajectory_solve<S, M>(f, a.y0 + b * kD, a.t, a.n_times, p, a.ctl, b, a.out, work, static_cast<S*>(nullptr));
  } else {
    S* w = a.work + b * a.work_stride;
    trajectory_solve<S, M>(f, a.y0 + b * f.dim(), a.t, a.n_times, p, a.ctl, b, a.out, w, w + a.n_integ);
  }
}

// MLP, shared parameters in shared memory, every layer at most W wide, state dimension at most
// kFusedMaxDim (the integrator's work is a local array sized by it, not by W).
constexpr int kFusedMaxDim = 16;
// MLP, shared parameters in shared memory, every layer at most W wide.
template <class S, class M, int W>
__global__ void __launch_bounds__(kSolveThreads) mlp_shared_kernel(MLP<S> f, SolveArgs<S> a) {
  extern __shared__ __align__(16) unsigned char smem[];
  S* sp = reinterpret_cast<S*>(smem);
  for (int j = threadIdx.x; j < a.P; j += blockDim.x) sp[j] = a.params[j];
  __syncthreads();
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= a.out.batch) return;
  S work[trajectory_forward_work<M>(kFusedMaxDim)];  // the integrator's (s + 4) D, D <= kFusedMaxDim
  S scratch[2 * W];  // MLP::layer_generic's two layer buffers (max_width each)
  trajectory_solve<S, M>(f, a.y0 + b * f.dim(), a.t, a.n_times, static_cast<const S*>(sp), a.ctl, b, a.out,
                         work, scratch);
}

// Widths of the fused MLP kernels (template parameter: local arrays sized at compile time).
constexpr int kFusedWidths[] = {32, 64};

template <class S, class M, int W>
bool try_mlp_shared(const MLP<S>& f, const SolveArgs<S>& a, int device) {
  if (f.max_width > W || (W == 64 && f.max_width <= 32) || f.dim() > kFusedMaxDim) return false;
  const std::size_t smem = std::size_t(a.P) * sizeof(S);
  int optin = 0;
  ODEFAST_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (smem > std::size_t(optin)) return false;
  if (smem > 48 * 1024)
    ODEFAST_CUDA_CHECK(cudaFuncSetAttribute(mlp_shared_kernel<S, M, W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(smem)));
  mlp_shared_kernel<S, M, W><<<blocks_for(a.out.batch, kSolveThreads), kSolveThreads, smem>>>(f, a);
  ODEFAST_CUDA_CHECK_LAUNCH();
  return true;
}

template <class S> void solve_typed(const DynamicsSpec& spec, const Call& c) {
  int device = 0;
  ODEFAST_CUDA_CHECK(cudaGetDevice(&device));
  Staged y0 = Staged::input(c.y0), t = Staged::input(c.t), params = Staged::input(c.params);
  Staged ys = Staged::output(c.ys), nfev = Staged::output(c.nfev), steps = Staged::output(c.steps),
         rejected = Staged::output(c.rejected), status = Staged::output(c.status);
  // t is read on the host too (for nothing but its length here); the kernels read it on the GPU
  with_dynamics<S>(spec, [&](const auto& f) {
    using Dyn = std::decay_t<decltype(f)>;
    with_method(c.method, [&](auto method) {
      using M = decltype(method);
      SolveArgs<S> a{y0.get<const S>(), t.get<const S>(), c.n_times, c.n_params, params.get<const S>(),
                     c.per_trajectory_params, c.control,
                     SolveOutput<S>{ys.get<S>(), c.batch, nfev.get<std::int64_t>(), steps.get<std::int64_t>(),
                                    rejected.get<std::int64_t>(), status.get<std::int32_t>()},
                     nullptr, 0, 0};
      if (c.batch == 0) return;
      if constexpr (std::is_same_v<Dyn, MLP<S>>) {
        if (!c.per_trajectory_params &&
            (try_mlp_shared<S, M, 32>(f, a, device) || try_mlp_shared<S, M, 64>(f, a, device)))
          return;
      }
      DeviceMemory work;
      if constexpr (StaticDim<Dyn>::value == 0) {
        a.n_integ = std::int64_t(trajectory_forward_work<M>(f.dim()));
        a.work_stride = a.n_integ + std::int64_t(f.scratch_size(1));
        work.allocate(std::size_t(a.work_stride) * c.batch * sizeof(S));
        a.work = work.get<S>();
      }
      solve_kernel<S, M, Dyn><<<blocks_for(c.batch, kSolveThreads), kSolveThreads>>>(f, a);
      ODEFAST_CUDA_CHECK_LAUNCH();
      ODEFAST_CUDA_CHECK(cudaDeviceSynchronize());
      work.release();
    });
  });
  ODEFAST_CUDA_CHECK(cudaDeviceSynchronize());
  for (Staged* s : {&ys, &nfev, &steps, &rejected, &status}) s->finish();
}

}  // namespace odefast::gpu
