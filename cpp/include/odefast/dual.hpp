// Dual numbers x = v + d ε (ε² = 0): forward-mode derivatives through code templated on the scalar.
//
// Evaluating f on Dual<S> gives f(v) and the directional derivative f'(v) d; evaluating the
// vector-Jacobian product of f on Dual<S> gives the tangent of aᵀ∂f/∂y along (δy, δp, δa),
//     d/dε [ (a + ε δa)ᵀ ∂f/∂y (y + ε δy, p + ε δp) ],
// which is the second-order product the forward-over-reverse Hessian-vector product needs.
// So the dynamics and their vjps are written once and differentiated by the compiler.
//
// Comparisons look at values only: branches (relu, the integrator's clamps) follow the primal
// computation, as the derivative of the computed function does.
#pragma once
#include <cmath>
#include <type_traits>

#include "config.hpp"
#include "math.hpp"

namespace odefast {

template <class R> struct Dual {
  using real = R;
  R v = R(0), d = R(0);
  constexpr Dual() = default;
  template <class U, std::enable_if_t<std::is_arithmetic_v<U>, int> = 0>
  ODEFAST_HD constexpr Dual(U value) : v(R(value)) {}
  ODEFAST_HD constexpr Dual(R value, R tangent) : v(value), d(tangent) {}

  ODEFAST_HD Dual& operator+=(const Dual& o) { v += o.v; d += o.d; return *this; }
  ODEFAST_HD Dual& operator-=(const Dual& o) { v -= o.v; d -= o.d; return *this; }
  ODEFAST_HD Dual& operator*=(const Dual& o) { return *this = *this * o; }
  ODEFAST_HD Dual& operator/=(const Dual& o) { return *this = *this / o; }

  ODEFAST_HD friend Dual operator-(const Dual& a) { return {-a.v, -a.d}; }
  ODEFAST_HD friend Dual operator+(const Dual& a, const Dual& b) { return {a.v + b.v, a.d + b.d}; }
  ODEFAST_HD friend Dual operator-(const Dual& a, const Dual& b) { return {a.v - b.v, a.d - b.d}; }
  ODEFAST_HD friend Dual operator*(const Dual& a, const Dual& b) {
    return {a.v * b.v, std::fma(a.d, b.v, a.v * b.d)};
  }
  ODEFAST_HD friend Dual operator/(const Dual& a, const Dual& b) {
    const R q = a.v / b.v;
    return {q, (a.d - q * b.d) / b.v};
  }
  ODEFAST_HD friend bool operator<(const Dual& a, const Dual& b) { return a.v < b.v; }
  ODEFAST_HD friend bool operator>(const Dual& a, const Dual& b) { return a.v > b.v; }
  ODEFAST_HD friend bool operator<=(const Dual& a, const Dual& b) { return a.v <= b.v; }
  ODEFAST_HD friend bool operator>=(const Dual& a, const Dual& b) { return a.v >= b.v; }
  ODEFAST_HD friend bool operator==(const Dual& a, const Dual& b) { return a.v == b.v; }
  ODEFAST_HD friend bool operator!=(const Dual& a, const Dual& b) { return a.v != b.v; }
};

template <class T> struct is_dual : std::false_type {};
template <class R> struct is_dual<Dual<R>> : std::true_type {};
template <class T> inline constexpr bool is_dual_v = is_dual<T>::value;

// The real type underneath a scalar (S for S and for Dual<S>).
template <class T> struct real_of { using type = T; };
template <class R> struct real_of<Dual<R>> { using type = R; };
template <class T> using real_t = typename real_of<T>::type;

namespace math {

// a b + c with one rounding in the value, as the real kernels compute it.
template <class R> ODEFAST_HD ODEFAST_INLINE Dual<R> fma(const Dual<R>& a, const Dual<R>& b, const Dual<R>& c) {
  return {std::fma(a.v, b.v, c.v), std::fma(a.d, b.v, std::fma(a.v, b.d, c.d))};
}
template <class R> ODEFAST_HD ODEFAST_INLINE Dual<R> sqrt(const Dual<R>& x) {
  const R r = std::sqrt(x.v);
  return {r, x.d / (R(2) * r)};
}
template <class R> ODEFAST_HD ODEFAST_INLINE Dual<R> exp(const Dual<R>& x) {
  const R e = exp(x.v);
  return {e, e * x.d};
}
template <class R> ODEFAST_HD ODEFAST_INLINE Dual<R> tanh(const Dual<R>& x) {
  const R t = tanh(x.v);
  return {t, (R(1) - t * t) * x.d};
}
template <class R> ODEFAST_HD ODEFAST_INLINE Dual<R> sigmoid(const Dual<R>& x) {
  const R s = sigmoid(x.v);
  return {s, s * (R(1) - s) * x.d};
}
template <class R> ODEFAST_HD ODEFAST_INLINE Dual<R> softplus(const Dual<R>& x) {
  return {softplus(x.v), sigmoid(x.v) * x.d};
}

}  // namespace math
}  // namespace odefast
