// The continuous second-order adjoint ("backsolve" Hessian-vector products; host code).
//
// Along a direction (dy0, dp), the tangent dz of the solution obeys
//     d dz/dt = df/dz dz + df/dp dp,                                  dz(t0) = dy0,
// and the tangent of the first-order adjoint system [z, a, pbar] of adjoint.hpp obeys
//     d da/dt    = -(df/dz)^T da - (d2f/dz2 [dz] + d2f/dzdp [dp])^T a,
//     d dpbar/dt = -(df/dp)^T da - (d2f/dpdz [dz] + d2f/dp2 [dp])^T a,
// backwards from da(t_N) = (Hess L dz)_N with the jumps da += (Hess L dz)_i at the outputs;
// da(t_0) and dpbar(t_0) are the Hessian-vector products. Both systems are derivatives of
// vector fields we already have along a direction, so they are not written out: Tangent<F> runs
// F on dual numbers -- F = f for the forward tangent, F = Augmented<f> for the backward one --
// and the same integrator solves the result (the backward system with error control on values
// and tangents alike; the forward one on the solution only, so it takes the forward solve's
// steps).
//
// The discrete ("checkpoint") Hessian-vector products are CheckpointAdjoint::jvp / hvp.
#pragma once
#include <cstdint>
#include <vector>

#include "adjoint.hpp"
#include "dual.hpp"

namespace odefast {

// Real-valued dynamics with state [x (n), dx (n)] for a dynamics `Inner` on dual numbers:
// d/dt [x, dx] = [F(x), F'(x) dx + dF/dp dp]. Params: F's (real) parameters; dp: their tangent.
template <class Inner> struct Tangent {
  using T = typename Inner::scalar;  // Dual<S> (one direction)
  using S = real_t<T>;
  using scalar = S;
  Inner inner;
  const S* dp = nullptr;  // the direction's parameter tangent (P values) for this trajectory
  S* scratch = nullptr;
  int n = 0, P = 0;
  explicit Tangent(const Inner& f) : inner(f), n(f.dim()), P(f.n_params()) {}
  int dim() const { return 2 * n; }
  int n_params() const { return P; }
  // dual numbers stored as pairs of reals: inputs, outputs, parameters, F's own scratch
  std::size_t scratch_size(int) const { return 2 * (2 * std::size_t(n) + P + inner.scratch_size(1)); }
  template <int L, bool PerLane> void eval(const S* t, const S* y, S* dy, const S* p) const {
    static_assert(L == 1, "tangent systems run one trajectory at a time");
    T* x = reinterpret_cast<T*>(scratch);
    T* dx = x + n;
    T* pd = dx + n;
    Inner g = inner;
    g.scratch = pd + P;
    for (int i = 0; i < n; ++i) x[i] = T(y[i], y + n + i);
    for (int j = 0; j < P; ++j) pd[j] = T(p[j], dp + j);
    const T tt = T(t[0]);
    g.template eval<1, false>(&tt, x, dx, pd);
    for (int i = 0; i < n; ++i) {
      dy[i] = dx[i].v;
      dy[n + i] = dx[i].d[0];
    }
  }
};

namespace detail {
// Runs the tangent system `F` for every (direction k, trajectory b) pair, one task each, over
// t[0..n_times): Z (K * batch, 2n) initial states, replica k * batch + b. vp(k, b): the
// direction's parameter tangent for b. Writes out (n_times, K * batch, 2n), stats per replica.
template <class S, class M, class F, class VP>
void run_replicas(const F& field, const S* Z, std::int64_t replicas, std::int64_t batch, const S* t,
                  int n_times, const S* params, bool per_trajectory, const StepControl& ctl, VP&& vp,
                  const SolveOutput<S>& out) {
  const int P = field.n_params();
  // per-trajectory parameters are indexed by replica in run_block: repeat them per direction
  std::vector<S> rep_params;
  if (per_trajectory) {
    rep_params.resize(std::size_t(replicas) * P);
    for (std::int64_t r = 0; r < replicas; ++r)
      for (int j = 0; j < P; ++j) rep_params[r * P + j] = params[(r % batch) * P + j];
  }
  parallel_for(replicas, [&](std::int64_t r) {
    F g = field;
    g.dp = vp(r / batch, r % batch);
    if (per_trajectory)
      run_block<S, M, 1, true>(g, Z, t, n_times, rep_params.data(), P, ctl, r, 1, out);
    else
      run_block<S, M, 1, false>(g, Z, t, n_times, params, P, ctl, r, 1, out);
  });
}

// The first failure of any direction of each trajectory; nfev summed over directions.
inline void reduce_replicas(std::int64_t K, std::int64_t batch, const std::int32_t* rep_status,
                            const std::int64_t* rep_nfev, std::int32_t* status, std::int64_t* nfev) {
  for (std::int64_t r = 0; r < K * batch; ++r) {
    const std::int64_t b = r % batch;
    if (status[b] == kSuccess) status[b] = rep_status[r];
    nfev[b] += rep_nfev[r];
  }
}
}  // namespace detail

// Output tangents of the solution along K directions: the tangent ODE solved alongside the
// solution with the solution's steps (error control on the primal part). v_y0 (K, batch, D); v_p (K, P) or (K, batch, P); dys (K, n_times, batch, D).
// status / nfev (batch): the tangent solves' results (summed over directions for nfev).
template <class S, class M, class Dyn>
void solve_tangent(const Dyn& f, const S* y0, std::int64_t batch, const S* t, int n_times,
                   const S* params, bool per_trajectory, int K, const S* v_y0, const S* v_p,
                   const StepControl& ctl, S* dys, std::int32_t* status, std::int64_t* nfev) {
  const int D = f.dim(), P = f.n_params();
  const std::int64_t R = std::int64_t(K) * batch;
  Tangent<decltype(with_scalar<Dual<S>>(f))> field(with_scalar<Dual<S>>(f));
  std::vector<S> Z(std::size_t(R) * 2 * D), out_ys(std::size_t(n_times) * R * 2 * D);
  for (std::int64_t r = 0; r < R; ++r)
    for (int d = 0; d < D; ++d) {
      Z[r * 2 * D + d] = y0[(r % batch) * D + d];
      Z[r * 2 * D + D + d] = v_y0[r * D + d];
    }
  std::vector<std::int64_t> nf(R), st(R), rj(R);
  std::vector<std::int32_t> stat(R);
  SolveOutput<S> out{out_ys.data(), R, nf.data(), st.data(), rj.data(), stat.data()};
  // error control on the primal part: the steps are the forward solve's, as in the reference
  StepControl primal_ctl = ctl;
  primal_ctl.error_dims = D;
  detail::run_replicas<S, M>(field, Z.data(), R, batch, t, n_times, params, per_trajectory, primal_ctl,
                             [&](std::int64_t k, std::int64_t b) {
                               return v_p + (per_trajectory ? (k * batch + b) * P : k * P);
                             }, out);
  for (std::int64_t b = 0; b < batch; ++b) {
    status[b] = kSuccess;
    nfev[b] = 0;
  }
  detail::reduce_replicas(K, batch, stat.data(), nf.data(), status, nfev);
  for (std::int64_t k = 0; k < K; ++k)
    for (int i = 0; i < n_times; ++i)
      for (std::int64_t b = 0; b < batch; ++b)
        for (int d = 0; d < D; ++d)
          dys[((k * n_times + i) * batch + b) * D + d] = out_ys[((std::int64_t(i) * R) + k * batch + b) * 2 * D + D + d];
}

// Backward second-order adjoint along K directions. ys (n_times, batch, D): the forward
// outputs; dys (K, n_times, batch, D): their tangents (solve_tangent); cot (n_times, batch, D):
// dL/dys; dcot (K, n_times, batch, D): the loss's Hessian applied to (dys, dy0). Writes dybar0
// (K, batch, D), the y0 part without dcot[0]; dpbar (K, P) summed over trajectories or
// (K, batch, P); status / nfev (batch) of the backward solves.
template <class S, class M, class Dyn>
void backsolve_hvp(const Dyn& f, const S* ys, const S* dys, std::int64_t batch, const S* t, int n_times,
                   const S* params, bool per_trajectory, int K, const S* v_p, const S* cot, const S* dcot,
                   const StepControl& ctl, S* dybar0, S* dpbar, std::int32_t* status, std::int64_t* nfev) {
  const int D = f.dim(), P = f.n_params(), n = 2 * D + P;  // [z, a, pbar], then its tangent
  const std::int64_t R = std::int64_t(K) * batch;
  using Aug = Augmented<decltype(with_scalar<Dual<S>>(f))>;
  Tangent<Aug> field{Aug(with_scalar<Dual<S>>(f))};
  auto at = [&](const S* a, std::int64_t k, int i, std::int64_t b) {  // a (K?, n_times, batch, D)
    return a + ((k * n_times + i) * batch + b) * D;
  };
  std::vector<S> Z(std::size_t(R) * 2 * n, S(0)), out_ys(std::size_t(2) * R * 2 * n);
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t k = r / batch, b = r % batch;
    S* z = Z.data() + r * 2 * n;
    for (int d = 0; d < D; ++d) {
      z[d] = at(ys, 0, n_times - 1, b)[d];
      z[n + d] = at(dys, k, n_times - 1, b)[d];
      if (n_times > 1) {  // else y(t[-1]) is y0 itself: cot[0] and dcot[0] are the caller's to add
        z[D + d] = at(cot, 0, n_times - 1, b)[d];
        z[n + D + d] = at(dcot, k, n_times - 1, b)[d];
      }
    }
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    status[b] = kSuccess;
    nfev[b] = 0;
  }
  std::vector<std::int64_t> nf(R), st(R), rj(R);
  std::vector<std::int32_t> stat(R);
  SolveOutput<S> out{out_ys.data(), R, nf.data(), st.data(), rj.data(), stat.data()};
  for (int i = n_times - 1; i >= 1; --i) {
    const S seg[2] = {t[i], t[i - 1]};
    detail::run_replicas<S, M>(field, Z.data(), R, batch, seg, 2, params, per_trajectory, ctl,
                               [&](std::int64_t k, std::int64_t b) {
                                 return v_p + (per_trajectory ? (k * batch + b) * P : k * P);
                               }, out);
    detail::reduce_replicas(K, batch, stat.data(), nf.data(), status, nfev);
    for (std::int64_t r = 0; r < R; ++r) {
      const std::int64_t k = r / batch, b = r % batch;
      S* z = Z.data() + r * 2 * n;
      for (int q = 0; q < 2 * n; ++q) z[q] = out_ys[(std::size_t(R) + r) * 2 * n + q];
      if (i > 1)
        for (int d = 0; d < D; ++d) {
          z[D + d] += at(cot, 0, i - 1, b)[d];
          z[n + D + d] += at(dcot, k, i - 1, b)[d];
        }
    }
  }
  for (std::int64_t r = 0; r < R; ++r)
    for (int d = 0; d < D; ++d) dybar0[r * D + d] = Z[r * 2 * n + n + D + d];
  if (per_trajectory) {
    for (std::int64_t r = 0; r < R; ++r)
      for (int j = 0; j < P; ++j) dpbar[r * P + j] = Z[r * 2 * n + n + 2 * D + j];
  } else {
    for (std::int64_t k = 0; k < K; ++k)
      for (int j = 0; j < P; ++j) {
        S sum = S(0);
        for (std::int64_t b = 0; b < batch; ++b) sum += Z[(k * batch + b) * 2 * n + n + 2 * D + j];
        dpbar[k * P + j] = sum;
      }
  }
}

}  // namespace odefast
