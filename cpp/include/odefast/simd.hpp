// One-register SIMD packs for the CPU hot loops (MLP layers, lane flags) and the register form
// of math.hpp's templated functions (tanh). Every lane computes exactly what the scalar code
// computes (the same single IEEE operations, explicit fma), so SIMD and scalar paths agree bit
// for bit. Without AVX-512 (or in CUDA code) the callers fall back to plain loops.
#pragma once

#include <type_traits>

#include "math.hpp"

#if defined(__AVX512F__) && !defined(__CUDACC__)
#include <immintrin.h>
#define ODEFAST_HAVE_AVX512 1
#else
#define ODEFAST_HAVE_AVX512 0
#endif

namespace odefast::simd {

#if ODEFAST_HAVE_AVX512
// Real scalars have a register form; others (dual numbers) only get the register width that
// lane-block sizes are computed from, and take the plain-loop kernels.
template <class S> inline constexpr bool has_pack = std::is_same_v<S, float> || std::is_same_v<S, double>;
template <class S> struct Pack {
  using reg = S;
  static constexpr int width = 64 / int(sizeof(S));
};
template <> struct Pack<float> {
  using reg = __m512;
  static constexpr int width = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg broadcast(float x) { return _mm512_set1_ps(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static unsigned nonzero(reg a) { return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NEQ_UQ); }
  using index = int;  // lane index of permute2
  static reg permute2(reg a, __m512i idx, reg b) { return _mm512_permutex2var_ps(a, idx, b); }
};
template <> struct Pack<double> {
  using reg = __m512d;
  static constexpr int width = 8;
  static reg load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static reg broadcast(double x) { return _mm512_set1_pd(x); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static unsigned nonzero(reg a) { return _mm512_cmp_pd_mask(a, _mm512_setzero_pd(), _CMP_NEQ_UQ); }
  using index = long long;
  static reg permute2(reg a, __m512i idx, reg b) { return _mm512_permutex2var_pd(a, idx, b); }
};

// Transposes a W x W tile of registers (W = the width) in place: r[l][k] becomes r[k][l].
// log2(W) rounds; round b swaps the off-diagonal b x b blocks of every 2b x 2b block.
template <class S> struct TransposeIndices {
  using P = Pack<S>;
  static constexpr int W = P::width, rounds = W == 8 ? 3 : 4;
  // round r (b = 2^r): lane e of the new row i from row i (index < W) or row i + b (>= W)
  struct Table {
    alignas(64) typename P::index lo[rounds][W], hi[rounds][W];
    constexpr Table() : lo{}, hi{} {
      for (int r = 0; r < rounds; ++r)
        for (int e = 0; e < W; ++e) {
          const int b = 1 << r;
          lo[r][e] = (e & b) ? W + e - b : e;
          hi[r][e] = (e & b) ? W + e : e + b;
        }
    }
  };
  static constexpr Table table{};
};
template <class S> inline void transpose_tile(typename Pack<S>::reg* r) {
  using P = Pack<S>;
  using I = TransposeIndices<S>;
  constexpr int W = P::width;
  for (int round = 0; round < I::rounds; ++round) {
    const int b = 1 << round;
    const __m512i ilo = _mm512_load_si512(I::table.lo[round]), ihi = _mm512_load_si512(I::table.hi[round]);
    for (int i = 0; i < W; ++i)
      if (!(i & b)) {
        const typename P::reg a = r[i], c = r[i + b];
        r[i] = P::permute2(a, ilo, c);
        r[i + b] = P::permute2(a, ihi, c);
      }
  }
}

// xT[l n + k] = x[k W + l] for a lane block of W = width lanes (x: n rows of W lanes), a tile
// of W inputs at a time; returns the first input k it left (the tail, n mod W of them).
template <class S> inline int transpose_lanes(const S* x, int n, S* xT) {
  using P = Pack<S>;
  constexpr int W = P::width;
  int k0 = 0;
  for (; k0 + W <= n; k0 += W) {
    typename P::reg r[W];
    for (int k = 0; k < W; ++k) r[k] = P::load(x + (k0 + k) * W);
    transpose_tile<S>(r);
    for (int l = 0; l < W; ++l) P::store(xT + l * n + k0, r[l]);
  }
  return k0;
}

// Eight lanes of S (a ymm of float, a zmm of double): a lone trajectory's narrow MLP layers
// hold their eight interleaved partial sums in one of these (dynamics.hpp, MLP::dot_units).
template <class S> struct Lanes8;
template <> struct Lanes8<float> {
  using reg = __m256;
  static reg first_lane(float x) { return _mm256_zextps128_ps256(_mm_set_ss(x)); }  // (x, 0, ..., 0)
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load_lanes(unsigned m, const float* p) { return _mm256_maskz_loadu_ps(__mmask8(m), p); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg fma_lanes(unsigned m, reg a, reg b, reg c) { return _mm256_mask3_fmadd_ps(a, b, c, __mmask8(m)); }
  // lane 0 of the halving folds v_q += v_{q+h} (q < h; h = 4, 2, 1)
  static float fold_sum(reg v) {
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
  }
};
template <> struct Lanes8<double> : Pack<double> {  // a whole register: Pack's load and fma
  static reg first_lane(double x) { return _mm512_zextpd128_pd512(_mm_set_sd(x)); }
  static reg load_lanes(unsigned m, const double* p) { return _mm512_maskz_loadu_pd(__mmask8(m), p); }
  static reg fma_lanes(unsigned m, reg a, reg b, reg c) { return _mm512_mask3_fmadd_pd(a, b, c, __mmask8(m)); }
  static double fold_sum(reg v) {
    const __m256d h4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    const __m128d h2 = _mm_add_pd(_mm256_castpd256_pd128(h4), _mm256_extractf128_pd(h4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h2, _mm_unpackhi_pd(h2, h2)));
  }
};

// math::ScalarOps for whole registers (see math.hpp): the same IEEE operation in every lane.
template <class S> struct Ops512;
template <> struct Ops512<float> {
  using T = __m512;
  using Mask = __mmask16;
  static T c(double v) { return _mm512_set1_ps(float(v)); }
  static T fma(T a, T b, T d) { return _mm512_fmadd_ps(a, b, d); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T abs(T a) { return _mm512_abs_ps(a); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }  // b when either is NaN, as a < b ? a : b
  static T rint(T a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static T floor(T a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static T scale2(T a, T n) { return _mm512_scalef_ps(a, n); }
  static T with_sign_of(T a, T x) {
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(a), _mm512_castps_si512(x),
                                                         _mm512_set1_epi32(0x7fffffff), 0xE4));  // (a & m) | (x & ~m)
  }
  static Mask gt(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static T select(Mask m, T a, T b) { return _mm512_mask_blend_ps(m, b, a); }
};
template <> struct Ops512<double> {
  using T = __m512d;
  using Mask = __mmask8;
  static T c(double v) { return _mm512_set1_pd(v); }
  static T fma(T a, T b, T d) { return _mm512_fmadd_pd(a, b, d); }
  static T mul(T a, T b) { return _mm512_mul_pd(a, b); }
  static T add(T a, T b) { return _mm512_add_pd(a, b); }
  static T sub(T a, T b) { return _mm512_sub_pd(a, b); }
  static T div(T a, T b) { return _mm512_div_pd(a, b); }
  static T abs(T a) { return _mm512_abs_pd(a); }
  static T min(T a, T b) { return _mm512_min_pd(a, b); }
  static T rint(T a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static T floor(T a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static T scale2(T a, T n) { return _mm512_scalef_pd(a, n); }
  static T with_sign_of(T a, T x) {
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(_mm512_castpd_si512(a), _mm512_castpd_si512(x),
                                                         _mm512_set1_epi64(0x7fffffffffffffffLL), 0xE4));
  }
  static Mask gt(T a, T b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static T select(Mask m, T a, T b) { return _mm512_mask_blend_pd(m, b, a); }
};

// Whether any of v[0 .. n) is non-zero (n a multiple of the register width): the lane flags
// of the integrator (a plain loop over them compiles to one compare and branch per lane).
template <class S> inline bool any_nonzero(const S* v, int n) {
  using P = Pack<S>;
  unsigned m = 0;
  for (int i = 0; i < n; i += P::width) m |= P::nonzero(P::load(v + i));
  return m != 0;
}

// tanh of every lane, bit for bit math::tanh.
inline __m512 tanh(__m512 x) { return math::tanh_f32<Ops512<float>>(x); }
inline __m512d tanh(__m512d x) { return math::tanh_f64<Ops512<double>>(x); }
#endif

}  // namespace odefast::simd
