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

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace odefast {

// Buffers that kernels load whole registers from start on a cache line: a 64-byte register
// load that straddles two lines costs a second load (a lone MLP evaluation ran 25% slower from
// packed weights 16 bytes off a line, and malloc gives 16-byte alignment). Sections carved out
// of such a buffer start on lines too (lines_for).
constexpr std::size_t kCacheLine = 64;
template <class T> struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U> CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kCacheLine)); }
  template <class U> bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <class U> bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
template <class T> using AlignedVector = std::vector<T, CacheLineAllocator<T>>;
// n values rounded up to whole cache lines (when T tiles a line; dual numbers may not)
template <class T> constexpr std::size_t lines_for(std::size_t n) {
  if constexpr (kCacheLine % sizeof(T) == 0) {
    constexpr std::size_t per_line = kCacheLine / sizeof(T);
    return (n + per_line - 1) / per_line * per_line;
  } else {
    return n;
  }
}

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
