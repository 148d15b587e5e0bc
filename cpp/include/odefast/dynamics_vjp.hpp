// Vector-Jacobian products of the built-in dynamics, on lane blocks (see dynamics.hpp):
//   gy = a^T df/dy,   gp += a^T df/dp,   gt = a^T df/dt.
// gp is per lane (gp[j * L + l]) for per-lane parameters and summed over the lanes, in lane
// order, for shared ones (gp[j]); callers sum blocks in a fixed order, so gradients never
// depend on the thread count.
// Analytic; templated on the scalar so that a dual-number scalar gives second-order products.
// `work` is scratch of vjp_work_size(f, L) scalars.
#pragma once
#include <cmath>
#include <cstddef>

#include "config.hpp"
#include "dynamics.hpp"
#include "math.hpp"
#include "simd.hpp"

namespace odefast {

// gp += v for parameter j of lane l (see above).
template <int L, bool PerLane, class S> ODEFAST_HD ODEFAST_INLINE void add_param(S* gp, int j, int l, const S& v) {
  if constexpr (PerLane) gp[j * L + l] += v;
  else gp[j] += v;
}

template <class S> std::size_t vjp_work_size(const Lorenz<S>&, int) { return 0; }
template <class S> std::size_t vjp_work_size(const Linear<S>&, int) { return 0; }
template <class S> std::size_t vjp_work_size(const NBody<S>&, int) { return 0; }
template <class S> std::size_t vjp_work_size(const MLP<S>& f, int L) {
  std::size_t n = 0;
  for (int i = 0; i < f.n_layers; ++i) n += std::size_t(f.sizes[i] + f.sizes[i + 1]) * L;
  return n + std::size_t(3) * f.max_width * L;
}

// Lorenz: f = (sigma (y - x), x (rho - z) - y, x y - beta z); params (sigma, rho, beta).
template <int L, bool PerLane, class S>
ODEFAST_HD void vjp(const Lorenz<S>&, const S*, const S* y, const S* p, const S* a, S* gy, S* gp,
                    S* gt, S*) {
  for (int l = 0; l < L; ++l) {
    const S sigma = param<L, PerLane>(p, 0, l), rho = param<L, PerLane>(p, 1, l),
            beta = param<L, PerLane>(p, 2, l);
    const S x = y[l], yy = y[L + l], z = y[2 * L + l];
    const S a0 = a[l], a1 = a[L + l], a2 = a[2 * L + l];
    gy[l] = -sigma * a0 + (rho - z) * a1 + yy * a2;
    gy[L + l] = sigma * a0 - a1 + x * a2;
    gy[2 * L + l] = -x * a1 - beta * a2;
    add_param<L, PerLane>(gp, 0, l, (yy - x) * a0);
    add_param<L, PerLane>(gp, 1, l, x * a1);
    add_param<L, PerLane>(gp, 2, l, -z * a2);
    gt[l] = S(0);
  }
}

// Linear: f = A y + b; gy = A^T a, gA_ij = a_i y_j, gb = a.
template <int L, bool PerLane, class S>
ODEFAST_HD void vjp(const Linear<S>& f, const S*, const S* y, const S* p, const S* a, S* gy, S* gp,
                    S* gt, S*) {
  const int D = f.D;
  for (int q = 0; q < D * L; ++q) gy[q] = S(0);
  for (int i = 0; i < D; ++i)
    for (int j = 0; j < D; ++j)
      for (int l = 0; l < L; ++l) {
        gy[j * L + l] += param<L, PerLane>(p, i * D + j, l) * a[i * L + l];
        add_param<L, PerLane>(gp, i * D + j, l, a[i * L + l] * y[j * L + l]);
      }
  for (int i = 0; i < D; ++i)
    for (int l = 0; l < L; ++l) add_param<L, PerLane>(gp, D * D + i, l, a[i * L + l]);
  for (int l = 0; l < L; ++l) gt[l] = S(0);
}

// NBody: acc_i = sum_{j != i} G m_j d_ij / r_ij^3 with d_ij = x_j - x_i, r^2 = |d|^2 + eps^2.
// With K_ij = I / r^3 - 3 d d^T / r^5 (symmetric in i, j):
//   gx_j = sum_{i != j} K_ij (G m_j av_i - G m_i av_j),  gm_j = sum_{i != j} G d_ij . av_i / r_ij^3,
//   gv = ax (the position rows of a).
template <int L, bool PerLane, class S>
ODEFAST_HD void vjp(const NBody<S>& f, const S*, const S* y, const S* p, const S* a, S* gy, S* gp,
                    S* gt, S*) {
  constexpr int kMaxSpace = 3;  // dim_space is 1, 2 or 3 (checked by the binding)
  const int n = f.n, dim = f.dim_space < kMaxSpace ? f.dim_space : kMaxSpace, half = n * f.dim_space;
  const S eps2 = f.softening * f.softening;
  const S* av = a + half * L;
  for (int q = 0; q < half * L; ++q) {
    gy[half * L + q] = a[q];
    gy[q] = S(0);
  }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      for (int l = 0; l < L; ++l) {
        S d[kMaxSpace], w[kMaxSpace], r2 = eps2, dw = S(0), dav = S(0);
        const S mi = param<L, PerLane>(p, i, l), mj = param<L, PerLane>(p, j, l);
        for (int c = 0; c < dim; ++c) {
          d[c] = y[(j * dim + c) * L + l] - y[(i * dim + c) * L + l];
          r2 += d[c] * d[c];
          w[c] = f.G * (mj * av[(i * dim + c) * L + l] - mi * av[(j * dim + c) * L + l]);
          dw += d[c] * w[c];
          dav += d[c] * av[(i * dim + c) * L + l];
        }
        const S inv3 = S(1) / (r2 * math::sqrt(r2)), inv5 = inv3 / r2;
        for (int c = 0; c < dim; ++c) gy[(j * dim + c) * L + l] += inv3 * w[c] - S(3) * inv5 * dw * d[c];
        add_param<L, PerLane>(gp, j, l, f.G * inv3 * dav);
      }
    }
  for (int l = 0; l < L; ++l) gt[l] = S(0);
}

// d act / dz from the pre-activation z and the activation h = act(z). Only softplus needs z;
// the others are functions of h (relu: h > 0 iff z > 0), so a traced forward pass (MLP::trace,
// activations only) serves them.
template <Activation A> constexpr bool grad_from_output = A != Activation::Softplus;
template <Activation A, class S> ODEFAST_HD ODEFAST_INLINE S activate_grad(S z, S h) {
  if constexpr (A == Activation::Tanh) {
    return S(1) - h * h;
  } else if constexpr (A == Activation::Relu) {
    return h > S(0) ? S(1) : S(0);
  } else if constexpr (A == Activation::Softplus) {
    return math::sigmoid(z);
  } else if constexpr (A == Activation::Sigmoid) {
    return h * (S(1) - h);
  } else {
    return S(1);
  }
}

// h = act(z) over an array; tanh a register at a time where AVX-512 is available.
template <Activation A, class S> ODEFAST_HD void activate_array(const S* __restrict z, S* __restrict h, int n) {
  int j = 0;
#if ODEFAST_HAVE_AVX512
  if constexpr (A == Activation::Tanh && simd::has_pack<S>) {
    using V = simd::Pack<S>;
    for (; j + V::width <= n; j += V::width) V::store(h + j, simd::tanh(V::load(z + j)));
  }
#endif
  for (; j < n; ++j) h[j] = activate<A>(z[j]);
}

#if ODEFAST_HAVE_AVX512
// Shared-weight cotangent of JB rows of a layer: gw[jj n_in + k] += sum_l g[jj][l] xT[l n_in + k]
// (one fma per lane, lanes in order), a register of inputs k at a time; returns the first k it
// left (the tail). Written with registers because compilers vectorise the scalar form over
// the rows jj instead.
template <int JB, int L, class S>
ODEFAST_INLINE int weight_cotangent_registers(const S (&g)[JB][L], int nj, const S* xT, int n_in, S* gw) {
  using V = simd::Pack<S>;
  using reg = typename V::reg;
  int k = 0;
  for (; k + V::width <= n_in; k += V::width) {
    reg sum[JB];
    for (int jj = 0; jj < JB; ++jj) sum[jj] = jj < nj ? V::load(gw + jj * n_in + k) : V::broadcast(S(0));
    for (int l = 0; l < L; ++l) {
      const reg x = V::load(xT + l * n_in + k);
      for (int jj = 0; jj < JB; ++jj) sum[jj] = V::fma(V::broadcast(g[jj][l]), x, sum[jj]);
    }
    for (int jj = 0; jj < nj; ++jj) V::store(gw + jj * n_in + k, sum[jj]);
  }
  return k;
}

// gx = W^T g for a lane block of one register (L = width), KB inputs at a time: KB sums over
// the units j, each one fma chain in j order (as the plain loop below forms them); W
// row-major (n_out, n_in), g and gx [unit][lane]. Returns the first input it left (the tail).
template <int KB, class S> ODEFAST_INLINE int input_cotangent_registers(const S* W, int n_in, int n_out, const S* g, S* gx) {
  using V = simd::Pack<S>;
  using reg = typename V::reg;
  constexpr int L = V::width;
  int k0 = 0;
  for (; k0 + KB <= n_in; k0 += KB) {
    reg acc[KB];
    for (int kk = 0; kk < KB; ++kk) acc[kk] = V::broadcast(S(0));
    const S* w = W + k0;
    for (int j = 0; j < n_out; ++j, w += n_in) {
      const reg gj = V::load(g + j * L);
      for (int kk = 0; kk < KB; ++kk) acc[kk] = V::fma(V::broadcast(w[kk]), gj, acc[kk]);
    }
    for (int kk = 0; kk < KB; ++kk) V::store(gx + (k0 + kk) * L, acc[kk]);
  }
  return k0;
}
#endif

// L lanes: every inner loop runs over the lanes (one vector of trajectories). With shared
// weights the weight cotangent is summed over the lanes as it is formed: for each unit j,
// gW[j, :] += sum_l g_jl x_l^T over the inputs of the lanes transposed (xT), so each stored
// weight cotangent takes L fused updates per load and store.
template <Activation A, int L, bool PerLane, class S>
ODEFAST_HD void mlp_vjp(const MLP<S>& f, const S* t, const S* y, const S* p, const S* a, S* gy,
                        S* gp, S* gt, S* work) {
  constexpr int kJB = 4, kKB = 8, kGB = 8;
  const int nl = f.n_layers, D = f.dim();
  // forward, keeping each layer's input x_i and pre-activation z_i
  S* in[MLP<S>::kMaxLayers];
  S* pre[MLP<S>::kMaxLayers];
  S* cursor = work;
  for (int i = 0; i < nl; ++i) {
    in[i] = cursor;
    cursor += f.sizes[i] * L;
    pre[i] = cursor;
    cursor += f.sizes[i + 1] * L;
  }
  S* g = cursor;
  S* gx = g + f.max_width * L;
  S* xT = gx + f.max_width * L;  // shared weights: the layer's inputs, [lane][input]
  for (int q = 0; q < D * L; ++q) in[0][q] = y[q];
  if (f.time_input)
    for (int l = 0; l < L; ++l) in[0][D * L + l] = t[l];
  const bool traced = grad_from_output<A> && f.trace != nullptr;  // eval at y left the activations
  if (traced) {
    S* tr = f.trace;
    for (int i = 0; i + 1 < nl; tr += f.sizes[i + 1] * L, ++i) in[i + 1] = tr;
  }
  for (int i = 0; i < nl && !traced; ++i) {
    const int n_in = f.sizes[i], n_out = f.sizes[i + 1];
    const int wo = f.w_offset[i], bo = f.b_offset[i];
    // z_j = b_j + sum_k W_jk x_k, kJB units at a time (independent sums hide the add latency)
    for (int j0 = 0; j0 < n_out; j0 += kJB) {
      const int nj = n_out - j0 < kJB ? n_out - j0 : kJB;
      S acc[kJB][L];
      for (int jj = 0; jj < kJB; ++jj)
        for (int l = 0; l < L; ++l) acc[jj][l] = jj < nj ? param<L, PerLane>(p, bo + j0 + jj, l) : S(0);
      for (int k = 0; k < n_in; ++k) {
        const S* x = in[i] + k * L;
        for (int jj = 0; jj < kJB; ++jj) {
          const int j = j0 + (jj < nj ? jj : 0);
          ODEFAST_LANES
          for (int l = 0; l < L; ++l) acc[jj][l] = math::fma(param<L, PerLane>(p, wo + j * n_in + k, l), x[l], acc[jj][l]);
        }
      }
      for (int jj = 0; jj < nj; ++jj)
        for (int l = 0; l < L; ++l) pre[i][(j0 + jj) * L + l] = acc[jj][l];
    }
    if (i + 1 < nl) activate_array<A>(pre[i], in[i + 1], n_out * L);
  }
  // backward
  for (int q = 0; q < D * L; ++q) g[q] = a[q];
  for (int i = nl - 1; i >= 0; --i) {
    const int n_in = f.sizes[i], n_out = f.sizes[i + 1];
    const int wo = f.w_offset[i], bo = f.b_offset[i];
    const S* x = in[i];
    if constexpr (!PerLane) {
      int k = 0;
#if ODEFAST_HAVE_AVX512
      if constexpr (simd::has_pack<S> && L == simd::Pack<S>::width) k = simd::transpose_lanes(x, n_in, xT);
#endif
      for (; k < n_in; ++k)
        for (int l = 0; l < L; ++l) xT[l * n_in + k] = x[k * L + l];
    }
    for (int j = 0; j < n_out; ++j)
      for (int l = 0; l < L; ++l) add_param<L, PerLane>(gp, bo + j, l, g[j * L + l]);
    if constexpr (PerLane) {
      for (int j = 0; j < n_out; ++j)
        for (int k = 0; k < n_in; ++k) {
          S* gw = gp + (wo + j * n_in + k) * L;
          ODEFAST_LANES
          for (int l = 0; l < L; ++l) gw[l] = math::fma(g[j * L + l], x[k * L + l], gw[l]);
        }
    } else {  // kGB rows of gW at a time, vectorised over the inputs k; lanes summed in order
      for (int j0 = 0; j0 < n_out; j0 += kGB) {
        const int nj = n_out - j0 < kGB ? n_out - j0 : kGB;
        S gjl[kGB][L];
        for (int jj = 0; jj < kGB; ++jj)
          for (int l = 0; l < L; ++l) gjl[jj][l] = jj < nj ? g[(j0 + jj) * L + l] : S(0);
        S* gw = gp + wo + j0 * n_in;
        int k = 0;
#if ODEFAST_HAVE_AVX512
        if constexpr (simd::has_pack<S>) k = weight_cotangent_registers(gjl, nj, xT, n_in, gw);
#endif
        for (; k < n_in; ++k) {  // the same sums, one input at a time (the tail, dual numbers)
          S sum[kGB];
          for (int jj = 0; jj < kGB; ++jj) sum[jj] = jj < nj ? gw[jj * n_in + k] : S(0);
          for (int l = 0; l < L; ++l) {
            const S xk = xT[l * n_in + k];
            for (int jj = 0; jj < kGB; ++jj) sum[jj] = math::fma(gjl[jj][l], xk, sum[jj]);
          }
          for (int jj = 0; jj < nj; ++jj) gw[jj * n_in + k] = sum[jj];
        }
      }
    }
    // gx = W^T g: kKB inputs at a time, their sums over j kept in registers (kKB independent
    // fma chains: enough to cover the fma latency at two fma per cycle)
    int k0 = 0;
#if ODEFAST_HAVE_AVX512
    if constexpr (!PerLane && simd::has_pack<S> && L == simd::Pack<S>::width)
      k0 = input_cotangent_registers<kKB>(p + wo, n_in, n_out, g, gx);
#endif
    for (; k0 < n_in; k0 += kKB) {
      const int nk = n_in - k0 < kKB ? n_in - k0 : kKB;
      S acc[kKB][L] = {};
      for (int j = 0; j < n_out; ++j) {
        const S* gj = g + j * L;
        for (int kk = 0; kk < kKB; ++kk) {
          const int k = k0 + (kk < nk ? kk : 0);
          ODEFAST_LANES
          for (int l = 0; l < L; ++l) acc[kk][l] = math::fma(param<L, PerLane>(p, wo + j * n_in + k, l), gj[l], acc[kk][l]);
        }
      }
      for (int kk = 0; kk < nk; ++kk)
        for (int l = 0; l < L; ++l) gx[(k0 + kk) * L + l] = acc[kk][l];
    }
    if (i > 0) {
      for (int q = 0; q < n_in * L; ++q) g[q] = gx[q] * activate_grad<A>(pre[i - 1][q], in[i][q]);
    }
  }
  for (int q = 0; q < D * L; ++q) gy[q] = gx[q];
  for (int l = 0; l < L; ++l) gt[l] = f.time_input ? gx[D * L + l] : S(0);
}

// A lone trajectory (L = 1): every inner loop runs over contiguous memory without a
// reduction, so it vectorises — the forward pass reads the packed (k-major) weights when the
// parameters are shared, the backward pass reads W row by row. Each sum is formed with the
// same fma chain, in the same order, as mlp_vjp's, so a trajectory's gradient does not depend
// on whether it ran in a lane block or alone (its position in the batch).
template <Activation A, class S>
void mlp_vjp_lone(const MLP<S>& f, const S* t, const S* y, const S* p, const S* a, S* gy, S* gp,
                  S* gt, S* work) {
  const int nl = f.n_layers, D = f.dim();
  S* in[MLP<S>::kMaxLayers];
  S* pre[MLP<S>::kMaxLayers];
  S* cursor = work;
  for (int i = 0; i < nl; ++i) {
    in[i] = cursor;
    cursor += f.sizes[i];
    pre[i] = cursor;
    cursor += f.sizes[i + 1];
  }
  S* __restrict g = cursor;
  S* __restrict gx = cursor + f.max_width;
  for (int d = 0; d < D; ++d) in[0][d] = y[d];
  if (f.time_input) in[0][D] = t[0];
  const bool traced = grad_from_output<A> && f.trace != nullptr;  // eval at y left the activations
  if (traced) {
    S* tr = f.trace;
    for (int i = 0; i + 1 < nl; tr += f.sizes[i + 1], ++i) in[i + 1] = tr;
  }
  for (int i = 0; i < nl && !traced; ++i) {
    const int n_in = f.sizes[i], n_out = f.sizes[i + 1];
    S* __restrict z = pre[i];
    const S* __restrict x = in[i];
    if (f.packed) {
      const S* P = f.packed + f.packed_offset[i];
      const int po = f.padded_out[i];
      for (int j = 0; j < n_out; ++j) z[j] = P[j];
      for (int k = 0; k < n_in; ++k) {
        const S* __restrict row = P + (k + 1) * po;
        const S xk = x[k];
        ODEFAST_LANES
        for (int j = 0; j < n_out; ++j) z[j] = math::fma(row[j], xk, z[j]);
      }
    } else {
      const S* W = p + f.w_offset[i];
      for (int j = 0; j < n_out; ++j) {
        S acc = p[f.b_offset[i] + j];
        for (int k = 0; k < n_in; ++k) acc = math::fma(W[j * n_in + k], x[k], acc);
        z[j] = acc;
      }
    }
    if (i + 1 < nl) activate_array<A>(z, in[i + 1], n_out);
  }
  for (int d = 0; d < D; ++d) g[d] = a[d];
  for (int i = nl - 1; i >= 0; --i) {
    const int n_in = f.sizes[i], n_out = f.sizes[i + 1];
    const S* __restrict W = p + f.w_offset[i];
    const S* __restrict x = in[i];
    S* __restrict gW = gp + f.w_offset[i];
    S* __restrict gb = gp + f.b_offset[i];
    for (int k = 0; k < n_in; ++k) gx[k] = S(0);
    for (int j = 0; j < n_out; ++j) {  // gW += g x^T, gb += g, gx += W^T g, row by row
      const S gj = g[j];
      gb[j] += gj;
      ODEFAST_LANES
      for (int k = 0; k < n_in; ++k) {
        gW[j * n_in + k] = math::fma(gj, x[k], gW[j * n_in + k]);
        gx[k] = math::fma(W[j * n_in + k], gj, gx[k]);
      }
    }
    if (i > 0) {
      const S* __restrict zp = pre[i - 1];
      ODEFAST_LANES
      for (int k = 0; k < n_in; ++k) g[k] = gx[k] * activate_grad<A>(zp[k], x[k]);
    }
  }
  for (int d = 0; d < D; ++d) gy[d] = gx[d];
  gt[0] = f.time_input ? gx[D] : S(0);
}

template <int L, bool PerLane, class S>
ODEFAST_HD void vjp(const MLP<S>& f, const S* t, const S* y, const S* p, const S* a, S* gy, S* gp,
                    S* gt, S* work) {
#if !defined(__CUDA_ARCH__)
  if constexpr (L == 1) {
    switch (f.act) {
      case Activation::Tanh: return mlp_vjp_lone<Activation::Tanh>(f, t, y, p, a, gy, gp, gt, work);
      case Activation::Relu: return mlp_vjp_lone<Activation::Relu>(f, t, y, p, a, gy, gp, gt, work);
      case Activation::Softplus: return mlp_vjp_lone<Activation::Softplus>(f, t, y, p, a, gy, gp, gt, work);
      case Activation::Sigmoid: return mlp_vjp_lone<Activation::Sigmoid>(f, t, y, p, a, gy, gp, gt, work);
      default: return mlp_vjp_lone<Activation::Identity>(f, t, y, p, a, gy, gp, gt, work);
    }
  }
#endif
  switch (f.act) {
    case Activation::Tanh: return mlp_vjp<Activation::Tanh, L, PerLane>(f, t, y, p, a, gy, gp, gt, work);
    case Activation::Relu: return mlp_vjp<Activation::Relu, L, PerLane>(f, t, y, p, a, gy, gp, gt, work);
    case Activation::Softplus: return mlp_vjp<Activation::Softplus, L, PerLane>(f, t, y, p, a, gy, gp, gt, work);
    case Activation::Sigmoid: return mlp_vjp<Activation::Sigmoid, L, PerLane>(f, t, y, p, a, gy, gp, gt, work);
    default: return mlp_vjp<Activation::Identity, L, PerLane>(f, t, y, p, a, gy, gp, gt, work);
  }
}

}  // namespace odefast
