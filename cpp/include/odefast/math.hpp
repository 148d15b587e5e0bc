// Elementary functions written out so that (1) a loop over them vectorises (no libm calls in the
// MLP hot loop) and (2) every code path -- scalar, SIMD lanes, CUDA threads -- computes the
// same bits for the same input: results never depend on batch composition or thread count.
// Accuracy: Cephes-style approximations, about 1 ulp in float64 and float32 (tanh: see there).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "config.hpp"

namespace odefast::math {

template <class S> struct Consts;
template <> struct Consts<double> {
  static constexpr double lo = -708.0, hi = 709.0;            // keeps 2^n a normal number
  static constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
};
template <> struct Consts<float> {
  static constexpr float lo = -87.0f, hi = 88.0f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
};

// 2^n for an integral-valued n inside the normal exponent range, built from the exponent bits.
// (a bit cast, not memcpy: GCC only vectorises loops over the builtin)
ODEFAST_HD ODEFAST_INLINE double pow2i(double n) {
  const std::int64_t bits = (static_cast<std::int64_t>(n) + 1023) << 52;
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(bits);
#else
  return __builtin_bit_cast(double, bits);
#endif
}
ODEFAST_HD ODEFAST_INLINE float pow2i(float n) {
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  return __builtin_bit_cast(float, bits);
#endif
}

// e^r = 1 + r + r^2 q(r) for |r| <= ln2/2, fused (no division): double, q a degree-10
// near-minimax (Chebyshev) fit; float, Cephes' expf polynomial.
ODEFAST_HD ODEFAST_INLINE double exp_reduced(double r) {
  double q = std::fma(2.091478897260216e-09, r, 2.5105359846830094e-08);
  q = std::fma(q, r, 2.7557273397693973e-07);
  q = std::fma(q, r, 2.7557255056538237e-06);
  q = std::fma(q, r, 2.4801587325741483e-05);
  q = std::fma(q, r, 1.9841269875091932e-04);
  q = std::fma(q, r, 1.3888888888883692e-03);
  q = std::fma(q, r, 8.333333333326058e-03);
  q = std::fma(q, r, 4.166666666666667e-02);
  q = std::fma(q, r, 1.666666666666667e-01);
  q = std::fma(q, r, 0.5);
  return 1.0 + std::fma(q, r * r, r);
}
ODEFAST_HD ODEFAST_INLINE float exp_reduced(float r) {
  float q = std::fma(1.9875691500e-4f, r, 1.3981999507e-3f);
  q = std::fma(q, r, 8.3334519073e-3f);
  q = std::fma(q, r, 4.1665795894e-2f);
  q = std::fma(q, r, 1.6666665459e-1f);
  q = std::fma(q, r, 5.0000001201e-1f);
  return 1.0f + std::fma(q, r * r, r);
}

// fma and sqrt under the names the dynamics use, so that dual.hpp can overload them.
template <class S> ODEFAST_HD ODEFAST_INLINE S fma(S a, S b, S c) { return std::fma(a, b, c); }
template <class S> ODEFAST_HD ODEFAST_INLINE S sqrt(S a) { return std::sqrt(a); }

// max/min as plain selects (std::fmax's NaN rules stop GCC from vectorising); callers never
// pass NaN where the difference matters.
template <class S> ODEFAST_HD ODEFAST_INLINE S max(S a, S b) { return a > b ? a : b; }
template <class S> ODEFAST_HD ODEFAST_INLINE S min(S a, S b) { return a < b ? a : b; }
template <class S> ODEFAST_HD ODEFAST_INLINE S abs(S a) { return a < S(0) ? -a : a; }

template <class To, class From> ODEFAST_HD ODEFAST_INLINE To bit_cast(From x) {
#if defined(__CUDA_ARCH__)
  To r;
  memcpy(&r, &x, sizeof r);
  return r;
#else
  return __builtin_bit_cast(To, x);
#endif
}

// Natural logarithm of a positive normal number (fdlibm's reduction to [sqrt(1/2), sqrt(2))
// and its polynomial in s = f / (2 + f)); used by the step-size controller, vectorised over lanes.
ODEFAST_HD ODEFAST_INLINE double log(double x) {
  const std::int64_t bits = bit_cast<std::int64_t>(x);
  // exponent as a double without an int->float conversion (vectorises): 2^52 + e_biased - 2^52
  double e = bit_cast<double>((bits >> 52) | 0x4330000000000000LL) - (4503599627370496.0 + 1023.0);
  double m = bit_cast<double>((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? 0.5 * m : m;
  e = big ? e + 1.0 : e;
  const double f = m - 1.0, s = f / (2.0 + f), z = s * s, w = z * z;
  const double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const double t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01 +
                                                         w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const double hfsq = 0.5 * f * f, R = t1 + t2;
  return e * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + R) + e * 1.90821492927058770002e-10)) - f);
}
ODEFAST_HD ODEFAST_INLINE float log(float x) {
  const std::int32_t bits = bit_cast<std::int32_t>(x);
  float e = bit_cast<float>((bits >> 23) | 0x4B000000) - (8388608.0f + 127.0f);
  float m = bit_cast<float>((bits & 0x007fffff) | 0x3f800000);
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1.0f : e;
  const float f = m - 1.0f, s = f / (2.0f + f), z = s * s, w = z * z;
  const float t1 = w * (4.0000972152e-01f + w * 2.4279078841e-01f);
  const float t2 = z * (6.6666662693e-01f + w * 2.8498786688e-01f);
  const float hfsq = 0.5f * f * f, R = t1 + t2;
  return e * 6.9313812256e-01f - ((hfsq - (s * (hfsq + R) + e * 9.0580006145e-06f)) - f);
}

// e^x, saturating outside the normal range (inputs there only occur in tanh/sigmoid tails).
template <class S> ODEFAST_HD ODEFAST_INLINE S exp(S x) {
  x = x < Consts<S>::lo ? Consts<S>::lo : (x > Consts<S>::hi ? Consts<S>::hi : x);
  const S n = std::floor(std::fma(S(1.4426950408889634), x, S(0.5)));
  const S r = std::fma(n, -Consts<S>::ln2_lo, std::fma(n, -Consts<S>::ln2_hi, x));  // x - n ln2
  return exp_reduced(r) * pow2i(n);
}

// Elementary operations for the kernels below, written once over an operation set `O`:
// ScalarOps here, and simd::Ops512 (simd.hpp) for whole AVX-512 registers. Each operation is a
// single correctly rounded IEEE operation (or exact: abs, min, copysign, scaling by 2^n), so a
// register lane computes exactly the bits the scalar code computes.
template <class S> struct ScalarOps {
  using T = S;
  using Mask = bool;
  ODEFAST_HD static T c(double v) { return S(v); }
  ODEFAST_HD static T fma(T a, T b, T d) { return std::fma(a, b, d); }
  ODEFAST_HD static T mul(T a, T b) { return a * b; }
  ODEFAST_HD static T add(T a, T b) { return a + b; }
  ODEFAST_HD static T sub(T a, T b) { return a - b; }
  ODEFAST_HD static T div(T a, T b) { return a / b; }
  ODEFAST_HD static T abs(T a) { return std::fabs(a); }
  ODEFAST_HD static T min(T a, T b) { return a < b ? a : b; }  // b when either is NaN
  ODEFAST_HD static T rint(T a) { return std::nearbyint(a); }  // ties to even
  ODEFAST_HD static T floor(T a) { return std::floor(a); }
  ODEFAST_HD static T scale2(T a, T n) { return a * pow2i(n); }  // a 2^n, n integral, in range
  ODEFAST_HD static T with_sign_of(T a, T x) { return std::copysign(a, x); }  // a >= 0
  ODEFAST_HD static Mask gt(T a, T b) { return a > b; }
  ODEFAST_HD static T select(Mask m, T a, T b) { return m ? a : b; }
};

// tanh, the MLP's hot activation (a lane block spends about as long in tanh as in its matrix
// products): tanh|x| = m / (m + 2) with m = expm1(2|x|) = 2^n expm1(r) + (2^n - 1), one
// division and no branch (the expm1 form needs no separate small-|x| polynomial, as
// 1 - 2 / (e^{2|x|} + 1) would). Rounding n down from 2|x|/ln2 + 1/4 keeps r in
// [-ln2/4, 3 ln2/4), so the sum never cancels badly; expm1(r) = r + r^2 q(r) with q a
// near-minimax polynomial on that interval (degree 4 for float, 10 for double). Odd by
// construction, saturates exactly, NaN propagates. Max error: float 2.6 ulp (every float
// checked), double 2.4 ulp (sampled).
template <class O> ODEFAST_HD ODEFAST_INLINE typename O::T tanh_f32(typename O::T x) {
  using T = typename O::T;
  const T ax = O::abs(x);
  const T y = O::mul(O::c(2.0), O::min(O::c(9.0), ax));       // tanh(9) rounds to 1
  const T n = O::floor(O::fma(y, O::c(1.44269504088896341), O::c(0.25)));
  T r = O::fma(n, O::c(-0.693359375), y);                     // y - n ln2 (Cody-Waite)
  r = O::fma(n, O::c(2.12194440e-4), r);
  T q = O::fma(O::c(1.602706665e-03), r, O::c(8.282050367e-03));
  q = O::fma(q, r, O::c(4.166177745e-02));
  q = O::fma(q, r, O::c(1.666683914e-01));
  q = O::fma(q, r, O::c(5.000000304e-01));
  const T scale = O::scale2(O::c(1.0), n);
  const T m = O::fma(scale, O::fma(q, O::mul(r, r), r), O::sub(scale, O::c(1.0)));
  return O::with_sign_of(O::div(m, O::add(m, O::c(2.0))), x);
}
// double: the same with a finer reduction split (the Cody-Waite pair of double) and q of
// degree 10.
template <class O> ODEFAST_HD ODEFAST_INLINE typename O::T tanh_f64(typename O::T x) {
  using T = typename O::T;
  const T ax = O::abs(x);
  const T y = O::mul(O::c(2.0), O::min(O::c(19.5), ax));      // tanh(19.5) rounds to 1
  const T n = O::floor(O::fma(y, O::c(1.4426950408889634), O::c(0.25)));
  T r = O::fma(n, O::c(-6.93147180369123816490e-01), y);     // y - n ln2 (Cody-Waite)
  r = O::fma(n, O::c(-1.90821492927058770002e-10), r);
  T q = O::fma(O::c(2.4221347167442983e-09), r, O::c(2.481336376684998e-08));
  q = O::fma(q, r, O::c(2.7563620960983223e-07));
  q = O::fma(q, r, O::c(2.7557355590595922e-06));
  q = O::fma(q, r, O::c(2.4801582842048566e-05));
  q = O::fma(q, r, O::c(1.9841269879644809e-04));
  q = O::fma(q, r, O::c(1.3888888889765137e-03));
  q = O::fma(q, r, O::c(8.333333333323345e-03));
  q = O::fma(q, r, O::c(4.166666666666607e-02));
  q = O::fma(q, r, O::c(1.666666666666667e-01));
  q = O::fma(q, r, O::c(0.5));
  const T scale = O::scale2(O::c(1.0), n);
  const T m = O::fma(scale, O::fma(q, O::mul(r, r), r), O::sub(scale, O::c(1.0)));
  return O::with_sign_of(O::div(m, O::add(m, O::c(2.0))), x);
}
ODEFAST_HD ODEFAST_INLINE float tanh(float x) { return tanh_f32<ScalarOps<float>>(x); }
ODEFAST_HD ODEFAST_INLINE double tanh(double x) { return tanh_f64<ScalarOps<double>>(x); }

template <class S> ODEFAST_HD ODEFAST_INLINE S sigmoid(S x) {
  const S e = exp(x < S(0) ? x : -x);  // e^{-|x|} never overflows
  return x < S(0) ? e / (S(1) + e) : S(1) / (S(1) + e);
}

// log(1 + e^x) = max(x, 0) + log1p(e^{-|x|})
template <class S> ODEFAST_HD ODEFAST_INLINE S softplus(S x) {
  const S ax = x < S(0) ? -x : x;
  return (x > S(0) ? x : S(0)) + std::log1p(exp(-ax));
}

}  // namespace odefast::math
