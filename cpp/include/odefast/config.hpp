// Build-wide configuration shared by the CPU and CUDA translation units.
#pragma once

#if defined(__CUDACC__)
#define ODEFAST_HD __host__ __device__
#define ODEFAST_INLINE __forceinline__
#else
#define ODEFAST_HD
#define ODEFAST_INLINE inline __attribute__((always_inline))
#endif

// Device code keeps calls to the dynamics (eval, vjp) as calls: one body per dynamics in each
// kernel instead of an inlined copy at every stage of every method, which would multiply the
// kernels' compile time (measured: 120 s -> 25 s for one architecture's float32 solve kernels)
// and code size by the stage count (dynamics with a compile-time dimension stay inlined: their
// state lives in registers). Host builds inline them as before.
#if defined(__CUDACC__)
#define ODEFAST_DEVICE_NOINLINE __noinline__
#else
#define ODEFAST_DEVICE_NOINLINE ODEFAST_INLINE
#endif

// Marks a loop over the lanes of a block: no cross-lane dependences, vectorise it
// (host compilers, with -fopenmp-simd, which needs no OpenMP runtime).
#if defined(__CUDACC__)
#define ODEFAST_LANES
#else
#define ODEFAST_LANES _Pragma("omp simd")
#endif

#include <cstdint>

namespace odefast {

// Per-trajectory outcome of a solve; the values are part of the Python API (sol.status).
enum Status : std::int32_t {
  kSuccess = 0,
  kMaxSteps = 1,        // max_steps attempted steps were used before reaching t[-1]
  kStepUnderflow = 2,   // the step size fell below the floating-point resolution of t
  kNonFinite = 3,       // the state or its derivative became inf/NaN
};

// Widest lane block the CPU integrator uses: one AVX-512 register of float32 trajectories.
constexpr int kMaxLanes = 16;

}  // namespace odefast
