// One-register SIMD packs for the CPU hot loops (MLP layers). Only load, store, broadcast and
// fused multiply-add are needed; each lane computes exactly what the scalar std::fma path
// computes, so SIMD and scalar code agree bit for bit. Without AVX-512 (or in CUDA code) the
// callers fall back to plain loops.
#pragma once

#if defined(__AVX512F__) && !defined(__CUDACC__)
#include <immintrin.h>
#define ODEFAST_HAVE_AVX512 1
#else
#define ODEFAST_HAVE_AVX512 0
#endif

namespace odefast::simd {

#if ODEFAST_HAVE_AVX512
template <class S> struct Pack;
template <> struct Pack<float> {
  using reg = __m512;
  static constexpr int width = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg broadcast(float x) { return _mm512_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
};
template <> struct Pack<double> {
  using reg = __m512d;
  static constexpr int width = 8;
  static reg load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static reg broadcast(double x) { return _mm512_set1_pd(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
};
#endif

}  // namespace odefast::simd
