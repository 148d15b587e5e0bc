// First-order adjoints of a batched solve (host code).
//
// Discrete adjoint ("checkpoint"): the forward pass records every accepted step (t_n, h_n, y_n)
// of every trajectory; the backward pass replays them in reverse. For one step
//     Y_i = y + h sum_{j<i} a_ij k_j,   k_i = f(t + c_i h, Y_i),   y' = y + h sum_i b_i k_i
// and the cotangent ybar' of y' (plus cotangents of outputs in the step, which are y' itself or
// the dense output y + h sum_i B_i(theta) k_i):
//     kbar_i = h b_i ybar' + h B_i(theta) ybar_out
//     for i = s-1 .. 0:  (Ybar_i, pbar_i) = vjp_f(t + c_i h, Y_i)(kbar_i);  kbar_j += h a_ij Ybar_i
//     ybar = ybar' + ybar_out + sum_i Ybar_i,   pbar += sum_i pbar_i.
// Step sizes are constants (the controller sees primal values only), so this is the exact
// gradient of the computed solution w.r.t. y0 and params.
//
// Continuous adjoint ("backsolve", Chen et al. 2018): the augmented system
//     dz/dt = f(t, z),   da/dt = -a^T df/dz,   dpbar/dt = -a^T df/dp
// is itself a dynamics type (Augmented), integrated backwards over each output interval by
// the same integrator, with the jump a += dL/dy(t_i) between intervals.
#pragma once
#include <cstdint>
#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "batch.hpp"
#include "dual.hpp"
#include "dynamics_vjp.hpp"
#include "integrator.hpp"
#include "parallel.hpp"

namespace odefast {

// Accepted steps of one trajectory.
template <class S> struct StepTape {
  int D = 0;
  std::vector<S> t, h, y;  // y: D values per step
  template <class T> void push(int, T t0, T h0, const T* y0, int stride) {
    t.push_back(t0);
    h.push_back(h0);
    for (int d = 0; d < D; ++d) y.push_back(y0[d * stride]);
  }
  std::size_t size() const { return t.size(); }
};

// Trajectories per backward task: a fixed partition, so sums over trajectories of the
// parameter cotangent are made in the same order whatever the thread count.
constexpr std::int64_t kAdjointChunk = 16;

template <class S, class M, class Dyn> class CheckpointAdjoint {
 public:
  static constexpr int s = M::stages;
  using Tan = Dual<S>;  // value and tangent along one direction (v_y0, v_params)
  using DynTan = decltype(with_scalar<Tan>(std::declval<const Dyn&>()));

  // Runs the forward solve with recording; `f` must outlive this object (with its storage).
  CheckpointAdjoint(const Dyn& f, const S* y0, std::int64_t batch, const S* t, int n_times,
                    const S* params, bool per_trajectory, const StepControl& ctl,
                    const SolveOutput<S>& out)
      : f_(f), batch_(batch), n_times_(n_times), per_traj_(per_trajectory), D_(f.dim()),
        P_(f.n_params()), t_(t, t + n_times), params_(params, params + (per_trajectory ? batch * f.n_params() : f.n_params())),
        tapes_(batch) {
    for (auto& tp : tapes_) tp.D = D_;
    const std::int64_t n_chunks = (batch + kAdjointChunk - 1) / kAdjointChunk;
    parallel_for(n_chunks, [&](std::int64_t c) {
      std::vector<S> work(std::size_t(s + 4) * D_ + f.scratch_size(1));
      for (std::int64_t b = c * kAdjointChunk; b < std::min(batch, (c + 1) * kAdjointChunk); ++b) {
        Dyn g = f_;
        g.scratch = work.data() + std::size_t(s + 4) * D_;
        const S* p = params_row(b);
        if (per_traj_) {
          BlockIntegrator<S, M, Dyn, 1, true, StepTape<S>> integ(g, p, work.data(), &tapes_[b]);
          integ.run(y0 + b * D_, t_.data(), n_times_, ctl, b, 1, out);
        } else {
          BlockIntegrator<S, M, Dyn, 1, false, StepTape<S>> integ(g, p, work.data(), &tapes_[b]);
          integ.run(y0 + b * D_, t_.data(), n_times_, ctl, b, 1, out);
        }
      }
    });
    status_.assign(out.status, out.status + batch);
  }

  // cot: (n_times, batch, D). Writes ybar0 (batch, D) — excluding cot[0] — and pbar: (P,)
  // summed over trajectories, or (batch, P) for per-trajectory parameters.
  void backward(const S* cot, S* ybar0, S* pbar) const {
    const std::int64_t n_chunks = (batch_ + kAdjointChunk - 1) / kAdjointChunk;
    std::vector<S> chunk_pbar(per_traj_ ? 0 : std::size_t(n_chunks) * P_, S(0));
    parallel_for(n_chunks, [&](std::int64_t c) {
      Sweep<S, Dyn> w(f_, D_);
      for (std::int64_t b = c * kAdjointChunk; b < std::min(batch_, (c + 1) * kAdjointChunk); ++b) {
        S* pb = per_traj_ ? pbar + b * P_ : chunk_pbar.data() + c * P_;
        if (per_traj_)
          for (int j = 0; j < P_; ++j) pb[j] = S(0);
        reverse_trajectory(b, tapes_[b].y.data(), params_row(b), cot + b * D_, batch_ * D_, ybar0 + b * D_, pb, w);
      }
    });
    if (!per_traj_) sum_chunks(chunk_pbar.data(), n_chunks, pbar);
  }

  // Tangents of the outputs along K directions: the derivative of the computed solution (the
  // recorded steps replayed on dual numbers). v_y0: (K, batch, D); v_p: (K, P) or
  // (K, batch, P); dys: (K, n_times, batch, D).
  void jvp(int K, const S* v_y0, const S* v_p, S* dys) const {
    parallel_for(std::int64_t(K) * batch_, [&](std::int64_t task) {
      const std::int64_t k = task / batch_, b = task % batch_;
      Sweep<Tan, DynTan> w(with_scalar<Tan>(f_), D_);
      const Tan* p = tangent_params(w, b, v_p + k * (per_traj_ ? batch_ : 1) * P_);
      replay(b, p, v_y0 + (k * batch_ + b) * D_, w, dys + k * n_times_ * batch_ * D_ + b * D_);
    });
  }

  // Forward-over-reverse: tangents of (ybar0, pbar) of backward(cot) along K directions, i.e.
  // K Hessian-vector products. dcot: (K, n_times, batch, D), the tangent of the cotangent (the
  // loss's Hessian applied to the output tangents of jvp). Writes dybar0 (K, batch, D) and
  // dpbar (K, P) summed over trajectories, or (K, batch, P).
  void hvp(int K, const S* v_y0, const S* v_p, const S* cot, const S* dcot, S* dybar0, S* dpbar) const {
    const std::int64_t n_chunks = (batch_ + kAdjointChunk - 1) / kAdjointChunk;
    std::vector<S> chunk_dp(per_traj_ ? 0 : std::size_t(K) * n_chunks * P_, S(0));
    parallel_for(K * n_chunks, [&](std::int64_t task) {
      const std::int64_t k = task / n_chunks, c = task % n_chunks;
      Sweep<Tan, DynTan> w(with_scalar<Tan>(f_), D_);
      std::vector<Tan> dual_cot(std::size_t(n_times_) * D_), ybar(D_), pbar(P_, Tan(0));
      for (std::int64_t b = c * kAdjointChunk; b < std::min(batch_, (c + 1) * kAdjointChunk); ++b) {
        const Tan* p = tangent_params(w, b, v_p + k * (per_traj_ ? batch_ : 1) * P_);
        replay(b, p, v_y0 + (k * batch_ + b) * D_, w, nullptr);
        for (int i = 0; i < n_times_; ++i)
          for (int d = 0; d < D_; ++d) {
            const std::int64_t q = (std::int64_t(i) * batch_ + b) * D_ + d;
            dual_cot[i * D_ + d] = Tan(cot[q], dcot[k * n_times_ * batch_ * D_ + q]);
          }
        if (per_traj_) std::fill(pbar.begin(), pbar.end(), Tan(0));
        reverse_trajectory(b, w.states.data(), p, dual_cot.data(), D_, ybar.data(), pbar.data(), w);
        for (int d = 0; d < D_; ++d) dybar0[(k * batch_ + b) * D_ + d] = ybar[d].d;
        if (per_traj_)
          for (int j = 0; j < P_; ++j) dpbar[(k * batch_ + b) * P_ + j] = pbar[j].d;
      }
      if (!per_traj_)
        for (int j = 0; j < P_; ++j) chunk_dp[(k * n_chunks + c) * P_ + j] = pbar[j].d;
    });
    if (!per_traj_)
      for (int k = 0; k < K; ++k) sum_chunks(chunk_dp.data() + std::size_t(k) * n_chunks * P_, n_chunks, dpbar + std::size_t(k) * P_);
  }

 private:
  // Buffers of one reverse sweep on scalar T (real, or dual for second order).
  template <class T, class DynT> struct Sweep {
    std::vector<T> buf, states, params;  // states: replayed y_n (tangent paths only)
    T *K, *Y, *kbar, *ybar_new, *yb, *gy, *vjp_work, *dyn_scratch, gt[1];
    DynT g;
    Sweep(const DynT& f, int D) : g(f) {
      const std::size_t sd = std::size_t(s) * D;
      buf.assign(3 * sd + 3 * std::size_t(D) + vjp_work_size(f, 1) + f.scratch_size(1), T(0));
      K = buf.data();
      Y = K + sd;
      kbar = Y + sd;
      ybar_new = kbar + sd;
      yb = ybar_new + D;
      gy = yb + D;
      vjp_work = gy + D;
      dyn_scratch = vjp_work + vjp_work_size(f, 1);
      g.scratch = dyn_scratch;
    }
  };

  const S* params_row(std::int64_t b) const { return per_traj_ ? params_.data() + b * P_ : params_.data(); }

  // Dual parameters (value, tangent) of trajectory b; vp: the direction's (P,) or (batch, P).
  template <class W> const Tan* tangent_params(W& w, std::int64_t b, const S* vp) const {
    const S* p = params_row(b);
    const S* dp = per_traj_ ? vp + b * P_ : vp;
    w.params.resize(P_);
    for (int j = 0; j < P_; ++j) w.params[j] = Tan(p[j], dp[j]);
    return w.params.data();
  }

  // Sums per-chunk parameter cotangents in chunk order (independent of the thread count).
  void sum_chunks(const S* chunks, std::int64_t n_chunks, S* out) const {
    for (int j = 0; j < P_; ++j) out[j] = S(0);
    for (std::int64_t c = 0; c < n_chunks; ++c)
      for (int j = 0; j < P_; ++j) out[j] += chunks[c * P_ + j];
  }

  // Which step wrote each output (outputs 1..N-1), exactly at its end or by dense output.
  std::vector<std::int64_t> output_steps(std::int64_t b) const {
    const StepTape<S>& tp = tapes_[b];
    const int N = n_times_;
    const std::int64_t n_steps = std::int64_t(tp.size());
    const S dir = t_[N - 1] > t_[0] ? S(1) : S(-1);
    std::vector<std::int64_t> out_step(N, -1);
    int nxt = 1;
    for (std::int64_t n = 0; n < n_steps && nxt < N; ++n) {
      const S t_new = n + 1 < n_steps ? tp.t[n + 1] : t_[N - 1];
      while (nxt < N && dir * (t_[nxt] - t_new) <= S(0)) out_step[nxt++] = n;
    }
    return out_step;
  }

  // Replays trajectory b's recorded steps on dual numbers from y0 + ε dy0: w.states gets
  // (y_n, its tangent) for every step; dys (if given; rows of stride batch * D) the output
  // tangents. Values are the tape's, so the sweep differentiates the recorded computation.
  template <class W> void replay(std::int64_t b, const Tan* p, const S* dy0, W& w, S* dys) const {
    const StepTape<S>& tp = tapes_[b];
    const int D = D_, N = n_times_;
    const std::int64_t n_steps = std::int64_t(tp.size()), stride = batch_ * D;
    w.states.resize(std::size_t(n_steps) * D);
    if (dys)
      for (int i = 0; i < N; ++i)
        for (int d = 0; d < D; ++d) dys[i * stride + d] = status_[b] == kSuccess ? (i == 0 ? dy0[d] : S(0)) : S(0);
    if (status_[b] != kSuccess || n_steps == 0) return;
    const std::vector<std::int64_t> out_step = output_steps(b);
    for (int d = 0; d < D; ++d) w.states[d] = Tan(tp.y[d], dy0[d]);
    int next_out = 1;
    for (std::int64_t n = 0; n < n_steps; ++n) {
      const S tn = tp.t[n], h = tp.h[n];
      const Tan* yn = &w.states[n * D];
      const S t_new = n + 1 < n_steps ? tp.t[n + 1] : t_[N - 1];
      recompute_stages(w, p, tn, h, yn);
      for (; dys && next_out < N && out_step[next_out] == n; ++next_out) {
        const S theta = t_[next_out] == t_new ? S(1) : (t_[next_out] - tn) / h;
        for (int d = 0; d < D; ++d) dys[next_out * stride + d] = step_combination(w, h, yn, d, theta).d;
      }
      if (n + 1 < n_steps)
        for (int d = 0; d < D; ++d) w.states[(n + 1) * D + d] = Tan(tp.y[(n + 1) * D + d], step_combination(w, h, yn, d, S(1)).d);
    }
  }

  // y_n + h sum_i w_i k_i for component d: the step's end (theta = 1, weights b) or its dense
  // output at theta (weights B_i(theta)).
  template <class W> Tan step_combination(const W& w, S h, const Tan* yn, int d, S theta) const {
    Tan acc(0);
    static_for<s>([&](auto i) {
      S wi;
      if (theta == S(1) || M::dense_degree == 0) {
        wi = S(M::b[i]);
      } else {
        wi = S(0);
        for (int j = M::dense_degree - 1; j >= 0; --j) wi = (wi + S(M::dense[i][j])) * theta;
      }
      acc += Tan(wi) * w.K[i * D_ + d];
    });
    return yn[d] + Tan(h) * acc;
  }

  // The reverse sweep of trajectory b over its recorded steps, on scalar T (S: the gradient;
  // Dual<S>: its tangent, i.e. Hessian-vector products). states: y_n of every step; cot:
  // output i's cotangent at cot + i * cot_stride. Writes ybar (D) and adds to pbar (P).
  template <class T, class DynT>
  void reverse_trajectory(std::int64_t b, const T* states, const T* p, const T* cot, std::int64_t cot_stride,
                          T* ybar, T* pbar, Sweep<T, DynT>& w) const {
    const StepTape<S>& tp = tapes_[b];
    const int D = D_, N = n_times_;
    for (int d = 0; d < D; ++d) ybar[d] = T(0);
    if (status_[b] != kSuccess) return;
    const std::int64_t n_steps = std::int64_t(tp.size());
    const std::vector<std::int64_t> out_step = output_steps(b);
    int next_out = N - 1;  // outputs are visited from the last one backwards
    for (std::int64_t n = n_steps - 1; n >= 0; --n) {
      const S tn = tp.t[n], h = tp.h[n];
      const T* yn = states + n * D;
      const S t_new = n + 1 < n_steps ? tp.t[n + 1] : t_[N - 1];
      recompute_stages(w, p, tn, h, yn);
      for (int q = 0; q < s * D; ++q) w.kbar[q] = T(0);
      for (int d = 0; d < D; ++d) w.ybar_new[d] = ybar[d];
      for (int d = 0; d < D; ++d) w.yb[d] = T(0);  // direct cotangent of y_n from dense outputs
      for (; next_out >= 1 && out_step[next_out] == n; --next_out) {
        const T* c = cot + next_out * cot_stride;
        if (t_[next_out] == t_new) {
          for (int d = 0; d < D; ++d) w.ybar_new[d] += c[d];
        } else if constexpr (M::dense_degree > 0) {
          const S theta = (t_[next_out] - tn) / h;
          static_for<s>([&](auto i) {
            S Bi = S(0);
            for (int j = M::dense_degree - 1; j >= 0; --j) Bi = (Bi + S(M::dense[i][j])) * theta;
            const S hB = h * Bi;
            for (int d = 0; d < D; ++d) w.kbar[i * D + d] += hB * c[d];
          });
          for (int d = 0; d < D; ++d) w.yb[d] += c[d];
        }
      }
      static_for<s>([&](auto i) {
        constexpr double bi = M::b[i];
        const S hb = h * S(bi);
        if constexpr (bi != 0.0)
          for (int d = 0; d < D; ++d) w.kbar[i * D + d] += hb * w.ybar_new[d];
      });
      for (int d = 0; d < D; ++d) w.yb[d] += w.ybar_new[d];
      static_for<s>([&](auto ri) {
        constexpr int i = s - 1 - int(ri);
        const T ti = T(tn + S(M::c[i]) * h);
        vjp<1, false>(w.g, &ti, w.Y + i * D, p, w.kbar + i * D, w.gy, pbar, w.gt, w.vjp_work);
        for (int d = 0; d < D; ++d) w.yb[d] += w.gy[d];
        static_for<i>([&](auto j) {
          constexpr double a = M::a[i][j];
          const S ha = h * S(a);
          if constexpr (a != 0.0)
            for (int d = 0; d < D; ++d) w.kbar[j * D + d] += ha * w.gy[d];
        });
      });
      for (int d = 0; d < D; ++d) ybar[d] = w.yb[d];
    }
  }

  // Stage states and slopes of one step, with the forward pass's arithmetic.
  template <class T, class DynT>
  void recompute_stages(Sweep<T, DynT>& w, const T* p, S tn, S h, const T* yn) const {
    const int D = D_;
    for (int d = 0; d < D; ++d) w.Y[d] = yn[d];
    const T t0 = T(tn);
    w.g.template eval<1, false>(&t0, w.Y, w.K, p);
    static_for<s - 1>([&](auto im1) {
      constexpr int i = im1 + 1;
      for (int d = 0; d < D; ++d) {
        T acc = T(0);
        static_for<i>([&](auto j) {
          constexpr double a = M::a[i][j];
          if constexpr (a != 0.0) acc = math::fma(T(S(a)), w.K[j * D + d], acc);
        });
        w.Y[i * D + d] = math::fma(T(h), acc, yn[d]);
      }
      const T ti = T(tn + S(M::c[i]) * h);
      w.g.template eval<1, false>(&ti, w.Y + i * D, w.K + i * D, p);
    });
  }

  Dyn f_;
  std::int64_t batch_;
  int n_times_;
  bool per_traj_;
  int D_, P_;
  std::vector<S> t_, params_;
  std::vector<StepTape<S>> tapes_;
  std::vector<std::int32_t> status_;
};

// The continuous adjoint's augmented vector field on [z (D), a (D), pbar (P)].
template <class Dyn> struct Augmented {
  using S = typename Dyn::scalar;
  using scalar = S;
  Dyn f;
  S* scratch = nullptr;
  int D = 0, P = 0;
  explicit Augmented(const Dyn& inner) : f(inner), D(inner.dim()), P(inner.n_params()) {}
  int dim() const { return 2 * D + P; }
  int n_params() const { return P; }
  std::size_t scratch_size(int L) const {
    return f.scratch_size(L) + vjp_work_size(f, L) + std::size_t(P + 1) * L;
  }
  template <int L, bool PerLane>
  void eval(const S* t, const S* Z, S* dZ, const S* p) const {
    Dyn g = f;
    g.scratch = scratch;
    S* gp = scratch + f.scratch_size(L);
    S* gt = gp + std::size_t(P) * L;
    S* work = gt + L;
    g.template eval<L, PerLane>(t, Z, dZ, p);
    for (int q = 0; q < P * L; ++q) gp[q] = S(0);
    vjp<L, PerLane>(g, t, Z, p, Z + D * L, dZ + D * L, gp, gt, work);
    for (int q = D * L; q < 2 * D * L; ++q) dZ[q] = -dZ[q];
    for (int q = 0; q < P * L; ++q) dZ[2 * D * L + q] = -gp[q];
  }
};

// Backsolve: y_end (batch, D) = y(t[-1]); cot (n_times, batch, D). Writes ybar0 (batch, D)
// excluding cot[0], pbar ((P,) summed or (batch, P)), per-trajectory status and nfev.
template <class S, class M, class Dyn>
void backsolve(const Dyn& f, const S* y_end, std::int64_t batch, const S* t, int n_times,
               const S* params, bool per_trajectory, const S* cot, const StepControl& ctl,
               S* ybar0, S* pbar, std::int32_t* status, std::int64_t* nfev) {
  const int D = f.dim(), P = f.n_params(), DA = 2 * D + P;
  Augmented<Dyn> aug(f);
  std::vector<S> Z(std::size_t(batch) * DA, S(0)), out_ys(std::size_t(2) * batch * DA);
  std::vector<std::int64_t> nf(batch), st(batch), rj(batch);
  std::vector<std::int32_t> stat(batch);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (int d = 0; d < D; ++d) {
      Z[b * DA + d] = y_end[b * D + d];
      // with a single output time y(t[-1]) is y0 itself: cot[0] is the caller's to add
      Z[b * DA + D + d] = n_times > 1 ? cot[(std::int64_t(n_times - 1) * batch + b) * D + d] : S(0);
    }
    status[b] = kSuccess;
    nfev[b] = 0;
  }
  SolveOutput<S> out{out_ys.data(), batch, nf.data(), st.data(), rj.data(), stat.data()};
  for (int i = n_times - 1; i >= 1; --i) {
    const S seg[2] = {t[i], t[i - 1]};
    // one trajectory per block: the augmented state is wide (2D + P) and one instantiation
    // per (method, dynamics) keeps build times in check
    parallel_for(batch, [&](std::int64_t b) {
      if (per_trajectory)
        run_block<S, M, 1, true>(aug, Z.data(), seg, 2, params, P, ctl, b, 1, out);
      else
        run_block<S, M, 1, false>(aug, Z.data(), seg, 2, params, P, ctl, b, 1, out);
    });
    for (std::int64_t b = 0; b < batch; ++b) {
      nfev[b] += nf[b];
      if (status[b] == kSuccess) status[b] = stat[b];
      for (int q = 0; q < DA; ++q) Z[b * DA + q] = out_ys[(std::size_t(batch) + b) * DA + q];
      if (i > 1)
        for (int d = 0; d < D; ++d) Z[b * DA + D + d] += cot[(std::int64_t(i - 1) * batch + b) * D + d];
    }
  }
  for (std::int64_t b = 0; b < batch; ++b)
    for (int d = 0; d < D; ++d) ybar0[b * D + d] = Z[b * DA + D + d];
  if (per_trajectory) {
    for (std::int64_t b = 0; b < batch; ++b)
      for (int j = 0; j < P; ++j) pbar[b * P + j] = Z[b * DA + 2 * D + j];
  } else {
    for (int j = 0; j < P; ++j) pbar[j] = S(0);
    for (std::int64_t b = 0; b < batch; ++b)
      for (int j = 0; j < P; ++j) pbar[j] += Z[b * DA + 2 * D + j];
  }
}

}  // namespace odefast
