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
#include <cstddef>
#include <type_traits>

#include "config.hpp"
#include "math.hpp"
#include "simd.hpp"

namespace odefast {

// The N tangents of a dual number and their arithmetic: add, sub, scale (x s) and fma
// (x s + y, one rounding). A plain array in general; on AVX-512 hosts, tangents that fill one
// register are that register (a GCC vector), so a dual number's arithmetic stays in registers
// instead of passing through the stack at every operation. Both give the same bits.
template <class R, int N, class = void> struct Tangents {
  struct type {
    R x[N] = {};
    ODEFAST_HD R& operator[](int i) { return x[i]; }
    ODEFAST_HD const R& operator[](int i) const { return x[i]; }
  };
#define ODEFAST_TANGENT_OP(name, expr)                                    \
  ODEFAST_HD static ODEFAST_INLINE type name(const type& a, const type& b) { \
    type r;                                                               \
    for (int i = 0; i < N; ++i) r.x[i] = expr;                            \
    return r;                                                             \
  }
  ODEFAST_TANGENT_OP(add, a.x[i] + b.x[i])
  ODEFAST_TANGENT_OP(sub, a.x[i] - b.x[i])
#undef ODEFAST_TANGENT_OP
  ODEFAST_HD static ODEFAST_INLINE type scale(const type& a, R s) {
    type r;
    for (int i = 0; i < N; ++i) r.x[i] = a.x[i] * s;
    return r;
  }
  ODEFAST_HD static ODEFAST_INLINE type fma(const type& a, R s, const type& b) {
    type r;
    for (int i = 0; i < N; ++i) r.x[i] = std::fma(a.x[i], s, b.x[i]);
    return r;
  }
};
#if ODEFAST_HAVE_AVX512
template <class R, int N>
struct Tangents<R, N, std::enable_if_t<simd::has_pack<R> && N == simd::Pack<R>::width>> {
  using P = simd::Pack<R>;
  using type = typename P::reg;
  static type add(type a, type b) { return P::add(a, b); }
  static type sub(type a, type b) { return a - b; }
  static type scale(type a, R s) { return P::mul(a, P::broadcast(s)); }
  static type fma(type a, R s, type b) { return P::fma(a, P::broadcast(s), b); }
};
#endif

// N tangents share one value: N directional derivatives for the price of one primal
// computation, the tangent loops vectorising over the directions.
template <class R, int N = 1> struct Dual {
  using real = R;
  static constexpr int directions = N;
  using Tan = Tangents<R, N>;
  alignas(sizeof(R) * N) typename Tan::type d = {};  // tangents first, aligned: whole-register loads
  R v = R(0);
  constexpr Dual() = default;
  template <class U, std::enable_if_t<std::is_arithmetic_v<U>, int> = 0>
  ODEFAST_HD constexpr Dual(U value) : v(R(value)) {}
  // value with tangents d[i] = tangent[i * stride]
  ODEFAST_HD Dual(R value, const R* tangent, std::ptrdiff_t stride = 1) : v(value) {
    for (int i = 0; i < N; ++i) d[i] = tangent[i * stride];
  }

  ODEFAST_HD Dual& operator+=(const Dual& o) {
    v += o.v;
    d = Tan::add(d, o.d);
    return *this;
  }
  ODEFAST_HD Dual& operator-=(const Dual& o) {
    v -= o.v;
    d = Tan::sub(d, o.d);
    return *this;
  }
  ODEFAST_HD Dual& operator*=(const Dual& o) { return *this = *this * o; }
  ODEFAST_HD Dual& operator/=(const Dual& o) { return *this = *this / o; }

  // x -> (f(x.v), f'(x.v) x.d): the chain rule of every elementary function
  ODEFAST_HD Dual chain(R value, R slope) const {
    Dual r;
    r.v = value;
    r.d = Tan::scale(d, slope);
    return r;
  }

  ODEFAST_HD friend Dual operator-(const Dual& a) { return a.chain(-a.v, R(-1)); }
  ODEFAST_HD friend Dual operator+(Dual a, const Dual& b) { return a += b; }
  ODEFAST_HD friend Dual operator-(Dual a, const Dual& b) { return a -= b; }
  ODEFAST_HD friend Dual operator*(const Dual& a, const Dual& b) {
    Dual r;
    r.v = a.v * b.v;
    r.d = Tan::fma(a.d, b.v, Tan::scale(b.d, a.v));
    return r;
  }
  ODEFAST_HD friend Dual operator/(const Dual& a, const Dual& b) {
    Dual r;
    r.v = a.v / b.v;
    const R inv = R(1) / b.v;
    r.d = Tan::scale(Tan::sub(a.d, Tan::scale(b.d, r.v)), inv);
    return r;
  }
  ODEFAST_HD friend bool operator<(const Dual& a, const Dual& b) { return a.v < b.v; }
  ODEFAST_HD friend bool operator>(const Dual& a, const Dual& b) { return a.v > b.v; }
  ODEFAST_HD friend bool operator<=(const Dual& a, const Dual& b) { return a.v <= b.v; }
  ODEFAST_HD friend bool operator>=(const Dual& a, const Dual& b) { return a.v >= b.v; }
  ODEFAST_HD friend bool operator==(const Dual& a, const Dual& b) { return a.v == b.v; }
  ODEFAST_HD friend bool operator!=(const Dual& a, const Dual& b) { return a.v != b.v; }
};

template <class T> struct is_dual : std::false_type {};
template <class R, int N> struct is_dual<Dual<R, N>> : std::true_type {};
template <class T> inline constexpr bool is_dual_v = is_dual<T>::value;

// The real type underneath a scalar (S for S and for Dual<S, N>).
template <class T> struct real_of { using type = T; };
template <class R, int N> struct real_of<Dual<R, N>> { using type = R; };
template <class T> using real_t = typename real_of<T>::type;

namespace math {

// a b + c with one rounding in the value, as the real kernels compute it.
template <class R, int N>
ODEFAST_HD ODEFAST_INLINE Dual<R, N> fma(const Dual<R, N>& a, const Dual<R, N>& b, const Dual<R, N>& c) {
  Dual<R, N> r;
  r.v = std::fma(a.v, b.v, c.v);
  using Tan = Tangents<R, N>;
  r.d = Tan::fma(a.d, b.v, Tan::fma(b.d, a.v, c.d));
  return r;
}
template <class R, int N> ODEFAST_HD ODEFAST_INLINE Dual<R, N> sqrt(const Dual<R, N>& x) {
  const R r = std::sqrt(x.v);
  return x.chain(r, R(0.5) / r);
}
template <class R, int N> ODEFAST_HD ODEFAST_INLINE Dual<R, N> exp(const Dual<R, N>& x) {
  const R e = exp(x.v);
  return x.chain(e, e);
}
template <class R, int N> ODEFAST_HD ODEFAST_INLINE Dual<R, N> tanh(const Dual<R, N>& x) {
  const R t = tanh(x.v);
  return x.chain(t, R(1) - t * t);
}
template <class R, int N> ODEFAST_HD ODEFAST_INLINE Dual<R, N> sigmoid(const Dual<R, N>& x) {
  const R s = sigmoid(x.v);
  return x.chain(s, s * (R(1) - s));
}
template <class R, int N> ODEFAST_HD ODEFAST_INLINE Dual<R, N> softplus(const Dual<R, N>& x) {
  return x.chain(softplus(x.v), sigmoid(x.v));
}

}  // namespace math
}  // namespace odefast
