// Explicit Runge–Kutta integration of one lane block (L trajectories in lockstep, each with its
// own time, step size and accept/reject decisions).
//
// One step of an s-stage method (tableau M: a, b, b_err, c) from (t, y) with step h:
//     k_i   = f(t + c_i h, y + h sum_{j<i} a_ij k_j),          i = 0 .. s-1
//     y_new = y + h sum_i b_i k_i,      err = h sum_i b_err_i k_i   (b_err = b - b_hat)
// FSAL methods (last row of a equals b, c_{s-1} = 1) reuse k_{s-1} = f(t + h, y_new) as the
// next step's k_0.
//
// Fixed-step methods cover each output interval [t_{i-1}, t_i] with n_i = ceil(|dt_i| / dt)
// equal steps, so outputs are hit exactly and the step never exceeds dt.
//
// Adaptive methods (per lane):
//   err_norm = RMS_d( err_d / (atol + rtol max(|y_d|, |y_new_d|)) )
//     (dopri8: Hairer's combination of its 5th- and 3rd-order estimators, as DOP853 does)
//   accept iff err_norm <= 1; the PI controller with k = error_order + 1
//     factor = 0.9 err_norm^(-alpha) err_prev^(beta),  beta = 0.2/k, alpha = 1/k - 0.75 beta
//   (Hairer's DOPRI5 gains: alpha = 0.17, beta = 0.04 for k = 5), clamped to [0.2, 10]
//   (at most 1 right after a rejection; a rejection uses factor = max(0.2, 0.9 err_norm^(-alpha))).
//   A stronger integral gain (e.g. 0.7/k, 0.4/k) settles at a smaller error and takes about
//   30% more steps at the same tolerance; these gains keep the step count with the peers'.
//   The first step comes from Hairer's initial-step heuristic (two evaluations of f) unless
//   the caller gives dt. Outputs inside a step come from the method's dense output
//   (bosh3: cubic Hermite, dopri5: Shampine's quartic, tsit5: Tsitouras' quartic) so they
//   never shorten the steps; dopri8 has no interpolant here and steps exactly onto each output.
// Step-size control sees primal values only; derivatives treat the accepted steps as fixed.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "math.hpp"
#include "simd.hpp"
#include "tableaus.hpp"

namespace odefast {

template <class F, int... Is>
ODEFAST_HD ODEFAST_INLINE void static_for_impl(F&& f, std::integer_sequence<int, Is...>) {
  (f(std::integral_constant<int, Is>{}), ...);
}
// Calls f(integral_constant<int, i>) for i = 0 .. N-1: tableau coefficients become constants.
template <int N, class F> ODEFAST_HD ODEFAST_INLINE void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// The state dimension at compile time where the dynamics type fixes it (Dyn::kStaticDim), so
// that loops over components unroll and the block's state can stay in registers; 0: run time.
template <class Dyn, class = void> struct StaticDim : std::integral_constant<int, 0> {};
template <class Dyn>
struct StaticDim<Dyn, std::void_t<decltype(Dyn::kStaticDim)>> : std::integral_constant<int, Dyn::kStaticDim> {};

// f.eval<L, PerLane>(t, y, dy, p), as an outlined call in device code (config.hpp:
// ODEFAST_DEVICE_NOINLINE) unless the dimension is a compile-time constant.
template <int L, bool PerLane, class Dyn, class S>
ODEFAST_HD ODEFAST_DEVICE_NOINLINE void eval_outlined(const Dyn& f, const S* t, const S* y, S* dy, const S* p) {
  f.template eval<L, PerLane>(t, y, dy, p);
}
template <int L, bool PerLane, class Dyn, class S>
ODEFAST_HD ODEFAST_INLINE void eval_dynamics(const Dyn& f, const S* t, const S* y, S* dy, const S* p) {
  if constexpr (StaticDim<Dyn>::value > 0) f.template eval<L, PerLane>(t, y, dy, p);
  else eval_outlined<L, PerLane>(f, t, y, dy, p);
}

struct StepControl {
  double rtol = 1e-6, atol = 1e-8;
  double dt = 0;                  // fixed-step size; for adaptive methods the first step (0: auto)
  std::int64_t max_steps = 0;     // attempted steps per trajectory (accepted + rejected)
  int error_dims = 0;             // error control on the first error_dims components (0: all);
                                  // the seminorm of backsolve, the primal part of tangent solves
};

// Per-trajectory results; arrays are indexed by the trajectory's position in the batch.
template <class S> struct SolveOutput {
  S* ys = nullptr;                // (n_times, batch, D)
  std::int64_t batch = 0;
  std::int64_t* nfev = nullptr;
  std::int64_t* steps = nullptr;
  std::int64_t* rejected = nullptr;
  std::int32_t* status = nullptr;
};

// Receives every accepted step of every trajectory (its index in the batch, start time t,
// step h, start state y stored with a stride). The discrete adjoint replays these steps backwards.
struct NoStepLog {
  template <class S> ODEFAST_HD void push(std::int64_t, S, S, const S*, int) {}
};

// Supplies new trajectories to lanes whose trajectory ended (adaptive solves on the CPU,
// batch.hpp: LaneRefill). NoRefill: a block solves the trajectories it started with.
struct NoRefill {
  static constexpr bool enabled = false;
};

template <class S, class M, class Dyn, int L, bool PerLane, class StepLog = NoStepLog>
class BlockIntegrator {
  template <class, class, class, int, bool, class> friend class BlockIntegrator;  // refills read a lone start

 public:
  static constexpr int s = M::stages;
  static constexpr bool fsal = tableaus::is_fsal<M>();
  static constexpr bool adaptive = M::error_order > 0;
  static constexpr bool dense = M::dense_degree > 0;
  // exponent order of the error estimate; DOP853's combined estimator behaves like order 7
  static constexpr double k_ctrl = M::has_err3 ? 8.0 : double(M::error_order + 1);

  // work: (s + 4) * D * L scalars. y0: the block's initial states, SoA [D][L].
  ODEFAST_HD BlockIntegrator(const Dyn& f, const S* p, S* work, StepLog* log = nullptr)
      : f_(f), p_(p), D_(f.dim()), log_(log) {
    const int DL = dim() * L;
    k_ = work;
    y_ = work + s * DL;
    ytmp_ = y_ + DL;
    ynew_ = ytmp_ + DL;
    yout_ = ynew_ + DL;
  }

  // Integrates lanes [0, n_valid) whose trajectory indices are first + l; writes their rows of
  // `out`. Lanes past n_valid duplicate lane 0 (any finite state) and are not written. With a
  // refill, a lane whose trajectory ended goes on with the next one the refill hands out.
  template <class Refill = NoRefill>
  ODEFAST_HD void run(const S* y0, const S* t_out, int n_times, const StepControl& ctl,
                      std::int64_t first, int n_valid, const SolveOutput<S>& out,
                      Refill* refill = nullptr) {
    static_assert(!Refill::enabled || adaptive, "lanes are refilled in adaptive solves only");
    for (int i = 0; i < dim() * L; ++i) y_[i] = y0[i];
    for (int l = 0; l < L; ++l) {
      traj_[l] = l < n_valid ? first + l : -1;
      nfev_[l] = steps_[l] = rejected_[l] = 0;
      status_[l] = kSuccess;
      write_row(out, 0, l, y_);
    }
    if (n_times > 1) {
      if constexpr (adaptive) run_adaptive(t_out, n_times, ctl, out, refill);
      else run_fixed(t_out, n_times, ctl, out);
    }
    for (int l = 0; l < L; ++l) write_counters(out, l);
  }

  // The start of one trajectory on its own (L = 1), for a lane refill: state y0, k_0 and the
  // first step, with the arithmetic of a block's start.
  ODEFAST_HD void start_alone(const S* y0, const S* t_out, int n_times, const StepControl& ctl) {
    static_assert(L == 1, "a lone start");
    for (int d = 0; d < dim(); ++d) y_[d] = y0[d];
    nfev_[0] = steps_[0] = rejected_[0] = 0;
    status_[0] = kSuccess;
    t_[0] = t_out[0];
    S active[1] = {S(1)};
    start_adaptive(t_out, n_times, ctl, active);
  }

 private:
  const Dyn& f_;
  const S* p_;
  int D_;
  static constexpr int kD = StaticDim<Dyn>::value;
  ODEFAST_HD ODEFAST_INLINE int dim() const { return kD > 0 ? kD : D_; }
  StepLog* log_;
  S *k_, *y_, *ytmp_, *ynew_, *yout_;
  S t_[L], h_[L], log_err_prev_[L], tstage_[L];
  static constexpr S kLogErrFloor = S(-9.2103403719761836);  // log(1e-4): err_prev >= 1e-4
  std::int64_t traj_[L];  // each lane's trajectory (its rows of the outputs), -1: none
  std::int64_t nfev_[L], steps_[L], rejected_[L];
  std::int32_t status_[L];

  // Where a run keeps the state and the stages (k: s blocks of D * L). With a compile-time
  // dimension these are local arrays of the run, which the compiler keeps in registers (no
  // store/reload chain through memory from stage to stage); otherwise the work buffer.
  // Code that indexes lanes at run time (outputs, the step log) reads the work buffer, so
  // `sync` copies the locals there first.
  struct Buf {
    S *k, *y, *ytmp, *ynew, *yout;
  };
  ODEFAST_HD Buf members() { return Buf{k_, y_, ytmp_, ynew_, yout_}; }
  ODEFAST_HD ODEFAST_INLINE void sync(const Buf& b, bool stages_too) {
    if (b.y == y_) return;
    const int DL = dim() * L;
    for (int q = 0; q < DL; ++q) y_[q] = b.y[q];
    if (stages_too) {
      for (int q = 0; q < DL; ++q) ynew_[q] = b.ynew[q];
      for (int q = 0; q < s * DL; ++q) k_[q] = b.k[q];
    }
  }

  ODEFAST_HD S* k(int i) const { return k_ + i * dim() * L; }

  // Whether any lane's flag (a 0/1 value of S) is set.
  ODEFAST_HD ODEFAST_INLINE static bool any_set(const S* flag) {
#if ODEFAST_HAVE_AVX512
    if constexpr (L % simd::Pack<S>::width == 0) return simd::any_nonzero(flag, L);
#endif
    bool any = false;
    for (int l = 0; l < L; ++l) any |= flag[l] != S(0);
    return any;
  }

  ODEFAST_HD ODEFAST_INLINE void eval(const S* t, const S* y, S* dy) { eval_dynamics<L, PerLane>(f_, t, y, dy, p_); }

  // Compile-time weight vectors over the stages.
  template <int I> struct StageRow { static constexpr double w(int j) { return M::a[I][j]; } };
  struct SolutionWeights { static constexpr double w(int j) { return M::b[j]; } };
  struct ErrorWeights { static constexpr double w(int j) { return M::b_err[j]; } };
  struct Error3Weights { static constexpr double w(int j) { return M::b_err3[j]; } };

  // dst = y + h * sum_j W_j k_j  (or h * sum_j W_j k_j when WithY is false); zero weights cost
  // nothing.
  template <class W, bool WithY>
  ODEFAST_HD ODEFAST_INLINE void combine(const S* __restrict k, const S* __restrict y,
                                         const S* __restrict h, S* __restrict dst) const {
    const std::ptrdiff_t DL = std::ptrdiff_t(dim()) * L;
    for (int d = 0; d < dim(); ++d) {
      const S* __restrict kd = k + d * L;
      ODEFAST_LANES
      for (int l = 0; l < L; ++l) {
        S acc = S(0);
        static_for<s>([&](auto j) {
          constexpr double c = W::w(j);
          if constexpr (c != 0.0) acc = std::fma(S(c), kd[j * DL + l], acc);
        });
        if constexpr (WithY) dst[d * L + l] = std::fma(h[l], acc, y[d * L + l]);
        else dst[d * L + l] = h[l] * acc;
      }
    }
  }

  // Stages 1 .. s-1 from k_0 (already in b.k) at times t + c_i h; the last stage input of an
  // FSAL method is y_new.
  ODEFAST_HD ODEFAST_INLINE void stages(const S* t, const S* h, const Buf& b) {
    const int DL = dim() * L;
    static_for<s - 1>([&](auto im1) {
      constexpr int i = im1 + 1;
      S ts[L];
      combine<StageRow<i>, true>(b.k, b.y, h, b.ytmp);
      constexpr double ci = M::c[i];  // device code reads tableaus only in constant expressions
      ODEFAST_LANES
      for (int l = 0; l < L; ++l) ts[l] = t[l] + S(ci) * h[l];
      if (fsal && i == s - 1)
        for (int q = 0; q < DL; ++q) b.ynew[q] = b.ytmp[q];
      eval(ts, b.ytmp, b.k + i * DL);
    });
    if constexpr (!fsal) combine<SolutionWeights, true>(b.k, b.y, h, b.ynew);
  }

  // Output rows of lane l's trajectory (none for an empty lane).
  ODEFAST_HD S* output_row(const SolveOutput<S>& out, int i, int l) const {
    return traj_[l] < 0 ? nullptr : out.ys + (std::int64_t(i) * out.batch + traj_[l]) * dim();
  }
  ODEFAST_HD void write_row(const SolveOutput<S>& out, int i, int l, const S* y) {
    if (S* r = output_row(out, i, l))
      for (int d = 0; d < dim(); ++d) r[d] = y[d * L + l];
  }
  ODEFAST_HD void write_nan(const SolveOutput<S>& out, int i, int l) {
    if (S* r = output_row(out, i, l))
      for (int d = 0; d < dim(); ++d) r[d] = std::numeric_limits<S>::quiet_NaN();
  }
  ODEFAST_HD void write_counters(const SolveOutput<S>& out, int l) {
    const std::int64_t b = traj_[l];
    if (b < 0) return;
    out.nfev[b] = nfev_[l];
    out.steps[b] = steps_[l];
    out.rejected[b] = rejected_[l];
    out.status[b] = status_[l];
  }

  ODEFAST_HD bool lane_finite(const S* y, int l) const {
    for (int d = 0; d < dim(); ++d)
      if (!std::isfinite(y[d * L + l])) return false;
    return true;
  }

  // Fixed steps: all lanes share t and h, so a step is pure lane-parallel arithmetic; a
  // lane's state is checked for inf/NaN once per output interval (status kNonFinite, NaN
  // outputs from that output time on).
  ODEFAST_HD void run_fixed(const S* t_out, int n_times, const StepControl& ctl, const SolveOutput<S>& out) {
    bool active[L];
    for (int l = 0; l < L; ++l) active[l] = true;
    std::int64_t taken = 0;
    for (int i = 1; i < n_times; ++i) {
      const double t0 = double(t_out[i - 1]), span = double(t_out[i]) - t0;
      const std::int64_t n = fixed_substeps(span, ctl.dt);
      const double hd = span / double(n);
      const std::int64_t todo = n < ctl.max_steps - taken ? n : ctl.max_steps - taken;
      if constexpr (kD > 0) {
        constexpr int DL = kD * L;
        alignas(64) S y[DL], kk[s * DL], yt[DL], yn[DL];
        for (int q = 0; q < DL; ++q) y[q] = y_[q];
        fixed_steps(t0, hd, todo, active, Buf{kk, y, yt, yn, nullptr});
        for (int q = 0; q < DL; ++q) y_[q] = y[q];
      } else {
        fixed_steps(t0, hd, todo, active, members());
      }
      taken += todo;
      for (int l = 0; l < L; ++l) {
        if (!active[l]) continue;
        nfev_[l] += todo * s;
        steps_[l] += todo;
        if (!lane_finite(y_, l)) { active[l] = false; status_[l] = kNonFinite; }
        else if (todo < n) { active[l] = false; status_[l] = kMaxSteps; }
      }
      for (int l = 0; l < L; ++l) {
        if (active[l]) write_row(out, i, l, y_);
        else write_nan(out, i, l);
      }
      if (todo < n) {
        for (int r = i + 1; r < n_times; ++r)
          for (int l = 0; l < L; ++l) write_nan(out, r, l);
        return;
      }
    }
  }

  // `todo` steps of size hd from t0; leaves the state in b.y.
  ODEFAST_HD ODEFAST_INLINE void fixed_steps(double t0, double hd, std::int64_t todo, const bool* active, Buf b) {
    const int DL = dim() * L;
    S h[L], t[L];
    for (int l = 0; l < L; ++l) h[l] = S(hd);
    for (std::int64_t j = 0; j < todo; ++j) {
      const S tj = S(t0 + double(j) * hd);
      for (int l = 0; l < L; ++l) t[l] = tj;
      eval(t, b.y, b.k);
      stages(t, h, b);
      if (log_) {
        sync(b, false);
        for (int l = 0; l < L; ++l)
          if (active[l]) log_->push(traj_[l], t[l], h[l], y_ + l, L);
      }
      if (b.y == y_) {  // the work buffer: swap instead of copying
        S* const y = y_;
        y_ = b.y = ynew_;
        ynew_ = b.ynew = y;
      } else {
        for (int q = 0; q < DL; ++q) b.y[q] = b.ynew[q];
      }
    }
  }

 public:
  // Number of equal steps covering |span| with steps no longer than dt (shared with Python).
  ODEFAST_HD static std::int64_t fixed_substeps(double span, double dt) {
    const double n = std::ceil(std::fabs(span) / dt * (1.0 - 1e-12));
    return n < 1.0 ? 1 : (n > 4.0e18 ? std::int64_t(4.0e18) : std::int64_t(n));  // no int64 overflow
  }

 private:
  ODEFAST_HD int error_dims(const StepControl& ctl) const {
    return ctl.error_dims > 0 && ctl.error_dims < dim() ? ctl.error_dims : dim();
  }

  // RMS norm of v / (atol + rtol * max(|a|, |b|)) for lane l (b may be null).
  ODEFAST_HD S scaled_rms(const S* v, const S* a, const S* b, int l, const StepControl& ctl) const {
    S sum = S(0);
    const int n = error_dims(ctl);
    for (int d = 0; d < n; ++d) {
      S m = std::fabs(a[d * L + l]);
      if (b) m = std::fmax(m, std::fabs(b[d * L + l]));
      const S r = v[d * L + l] / (S(ctl.atol) + S(ctl.rtol) * m);
      sum = std::fma(r, r, sum);
    }
    return std::sqrt(sum / S(n));
  }

  // Error norms of all lanes (vectorised over lanes). b.ytmp holds err = h sum b_err_i k_i;
  // for dopri8 also b.yout = h sum b_err3_i k_i, combined as DOP853 does:
  //   |h| e5^2 / sqrt(D (e5^2 + 0.01 e3^2)) on h-free estimators == e5' / sqrt(D (e5' + 0.01 e3')).
  // A lane whose new state is not finite gets err = inf.
  ODEFAST_HD ODEFAST_INLINE void error_norms(const StepControl& ctl, const Buf& b, S* err) const {
    S e5[L], e3[L], poison[L];
    for (int l = 0; l < L; ++l) e5[l] = e3[l] = poison[l] = S(0);
    const S atol = S(ctl.atol), rtol = S(ctl.rtol);
    const int n = error_dims(ctl);
    for (int d = 0; d < dim(); ++d) {
      if (d < n) {
        ODEFAST_LANES
        for (int l = 0; l < L; ++l) {
          const int q = d * L + l;
          const S sc = atol + rtol * math::max(math::abs(b.y[q]), math::abs(b.ynew[q]));
          const S a = b.ytmp[q] / sc;
          e5[l] = std::fma(a, a, e5[l]);
          if constexpr (M::has_err3) {
            const S c = b.yout[q] / sc;
            e3[l] = std::fma(c, c, e3[l]);
          }
        }
      }
      ODEFAST_LANES
      for (int l = 0; l < L; ++l) poison[l] += b.ynew[d * L + l] * S(0);  // NaN iff some component is inf or NaN
    }
    ODEFAST_LANES
    for (int l = 0; l < L; ++l) {
      S e;
      if constexpr (M::has_err3) {
        e = (e5[l] == S(0) && e3[l] == S(0)) ? S(0) : e5[l] / std::sqrt(S(n) * (e5[l] + S(0.01) * e3[l]));
      } else {
        e = std::sqrt(e5[l] / S(n));
      }
      const bool finite = (e - e) == S(0) && poison[l] == S(0);
      err[l] = finite ? e : std::numeric_limits<S>::infinity();
    }
  }

  ODEFAST_HD void initial_step(const S* t_out, int n_times, const StepControl& ctl) {
    const S span = t_out[n_times - 1] - t_out[0];
    const S dir = span > S(0) ? S(1) : S(-1);
    const S max_h = std::fabs(span);
    if (ctl.dt > 0) {
      for (int l = 0; l < L; ++l) h_[l] = dir * std::fmin(S(ctl.dt), max_h);
      return;
    }
    // Hairer, Nørsett & Wanner (1993), II.4: h0 from |y0| / |f0|, refined by one Euler step.
    S h0[L];
    for (int l = 0; l < L; ++l) {
      const S d0 = scaled_rms(y_, y_, nullptr, l, ctl), d1 = scaled_rms(k(0), y_, nullptr, l, ctl);
      h0[l] = (d0 < S(1e-5) || d1 < S(1e-5)) ? S(1e-6) : S(0.01) * d0 / d1;
      h0[l] = std::fmin(h0[l], max_h);
      h_[l] = dir * h0[l];
      tstage_[l] = t_[l] + h_[l];
    }
    S* f1 = k(1);
    for (int i = 0; i < dim() * L; ++i) ytmp_[i] = std::fma(h_[i % L], k_[i], y_[i]);
    eval(tstage_, ytmp_, f1);
    for (int i = 0; i < dim() * L; ++i) yout_[i] = (f1[i] - k_[i]) / h0[i % L];
    for (int l = 0; l < L; ++l) {
      ++nfev_[l];
      const S d1 = scaled_rms(k(0), y_, nullptr, l, ctl);
      const S d2 = scaled_rms(yout_, y_, nullptr, l, ctl);
      const S m = std::fmax(d1, d2);
      const S h1 = m <= S(1e-15) ? std::fmax(S(1e-6), h0[l] * S(1e-3))
                                 : std::pow(S(0.01) / m, S(1.0 / k_ctrl));
      S hn = std::fmin(S(100) * h0[l], h1);
      hn = std::fmin(hn, max_h);
      h_[l] = std::isfinite(hn) ? dir * hn : dir * h0[l];
    }
  }

  // Adaptive integration. Lane state lives in arrays of S (flags are 0/1 values of S) so
  // that every per-step decision is a flat, vectorisable loop over lanes; only output
  // writes and failures drop to per-lane code.
  template <class Refill>
  ODEFAST_HD void run_adaptive(const S* t_out, int n_times, const StepControl& ctl,
                               const SolveOutput<S>& out, Refill* refill) {
    // per lane: active, growth cap (1 right after a rejection), last error non-finite,
    // index and time of the next output (or the next stop without dense output)
    S active[L], grow_cap[L], nonfinite[L], t_next[L];
    int next[L];
    for (int l = 0; l < L; ++l) {
      reset_control(l, t_out, grow_cap, nonfinite, t_next, next);
      active[l] = traj_[l] >= 0 ? S(1) : S(0);
    }
    start_adaptive(t_out, n_times, ctl, active);
    if constexpr (kD > 0) {
      constexpr int DL = kD * L;
      alignas(64) S y[DL], kk[s * DL], yt[DL], yn[DL], yo[M::has_err3 || !fsal ? DL : 1];
      for (int q = 0; q < DL; ++q) y[q] = y_[q];
      for (int q = 0; q < DL; ++q) kk[q] = k_[q];
      adaptive_steps(t_out, n_times, ctl, out, Buf{kk, y, yt, yn, yo}, active, grow_cap, nonfinite,
                     t_next, next, refill);
    } else {
      adaptive_steps(t_out, n_times, ctl, out, members(), active, grow_cap, nonfinite, t_next,
                     next, refill);
    }
    for (int l = 0; l < L; ++l)
      for (int i = next[l]; i < n_times; ++i) write_nan(out, i, l);
  }

  // Lane l's controller at the start of a trajectory.
  ODEFAST_HD void reset_control(int l, const S* t_out, S* grow_cap, S* nonfinite, S* t_next, int* next) {
    t_[l] = t_out[0];
    log_err_prev_[l] = kLogErrFloor;
    next[l] = 1;
    t_next[l] = t_out[1];
    grow_cap[l] = kFacMax;
    nonfinite[l] = S(0);
  }

  // k_0 = f(t0, y) and the first step of every lane (states in y_, times in t_); an active lane
  // whose derivative is not finite stops there.
  ODEFAST_HD void start_adaptive(const S* t_out, int n_times, const StepControl& ctl, S* active) {
    eval(t_, y_, k(0));
    for (int l = 0; l < L; ++l) {
      ++nfev_[l];
      if (active[l] != S(0) && !lane_finite(k(0), l)) { active[l] = S(0); status_[l] = kNonFinite; }
    }
    initial_step(t_out, n_times, ctl);
  }

  // Lanes that stopped give up their trajectory (NaN outputs from where it failed, counters)
  // and take the next one the refill hands out, started on its own and copied into the lane.
  // False once the refill has no trajectory left. (The block's state is in the work buffer:
  // refills are for dynamics of a run-time dimension.)
  template <class Refill>
  ODEFAST_HD bool refill_lanes(const S* t_out, int n_times, const StepControl& ctl,
                               const SolveOutput<S>& out, S* active, S* grow_cap, S* nonfinite,
                               S* t_next, int* next, Refill& refill) {
    static_assert(kD == 0, "refilled lanes are written to the work buffer");
    S idle[L];
    ODEFAST_LANES
    for (int l = 0; l < L; ++l) idle[l] = active[l] == S(0) ? S(1) : S(0);
    if (!any_set(idle)) return true;
    bool more = true;
    for (int l = 0; l < L; ++l) {
      if (idle[l] == S(0)) continue;
      for (int i = next[l]; i < n_times; ++i) write_nan(out, i, l);
      write_counters(out, l);
      traj_[l] = -1;
      std::int64_t tb;
      if (!(more = refill.claim(tb))) break;
      const auto lone = refill.start(tb, l, t_out, n_times, ctl);
      traj_[l] = tb;
      for (int d = 0; d < dim(); ++d) {
        y_[d * L + l] = lone.y_[d];
        k_[d * L + l] = lone.k_[d];
      }
      h_[l] = lone.h_[0];
      nfev_[l] = lone.nfev_[0];
      steps_[l] = rejected_[l] = 0;
      status_[l] = lone.status_[0];
      reset_control(l, t_out, grow_cap, nonfinite, t_next, next);
      active[l] = status_[l] == kSuccess ? S(1) : S(0);
      write_row(out, 0, l, y_);
    }
    return more;
  }

  static constexpr S kSafety = S(0.9), kFacMin = S(0.2), kFacMax = S(10);

  template <class Refill>
  ODEFAST_HD ODEFAST_INLINE void adaptive_steps(const S* t_out, int n_times, const StepControl& ctl,
                                                const SolveOutput<S>& out, const Buf& b, S* active,
                                                S* grow_cap, S* nonfinite, S* t_next, int* next,
                                                Refill* refill) {
    const int DL = dim() * L;
    const S t_end = t_out[n_times - 1];
    const S dir = t_end > t_out[0] ? S(1) : S(-1);
    const S inf = std::numeric_limits<S>::infinity();
    const S beta = S(0.2 / k_ctrl), alpha = S(1.0 / k_ctrl - 0.75 * (0.2 / k_ctrl));
    const S eps = std::numeric_limits<S>::epsilon();
    const std::int64_t max_steps = ctl.max_steps;
    bool more = Refill::enabled && refill != nullptr;  // trajectories may be left for stopped lanes
    while (true) {
      if constexpr (Refill::enabled)
        if (more) more = refill_lanes(t_out, n_times, ctl, out, active, grow_cap, nonfinite, t_next, next, *refill);
      // propose: land exactly on the end (without dense output: on the next output time);
      // lanes out of attempts (max_steps) or step size (underflow) stop here
      S h_try[L], land[L], accepted[L];
      ODEFAST_LANES
      for (int l = 0; l < L; ++l) {
        const bool out_of_steps = (active[l] != S(0)) & (steps_[l] + rejected_[l] >= max_steps);
        const S target = dense ? t_end : t_next[l];
        const bool clip = dir * (t_[l] + S(1.01) * h_[l] - target) > S(0);
        const S h = clip ? target - t_[l] : h_[l];
        const S ulp_t = math::max(math::abs(t_[l]), math::abs(target)) * eps;
        const bool underflow = active[l] != S(0) && !out_of_steps && math::abs(h) < S(10) * ulp_t;
        land[l] = clip ? S(1) : S(0);
        // (accepted doubles as the stop reason here: 1 underflow, 2 max_steps)
        accepted[l] = underflow ? S(1) : (out_of_steps ? S(2) : S(0));
        active[l] = (underflow || out_of_steps) ? S(0) : active[l];
        h_try[l] = active[l] != S(0) ? h : S(0);
      }
      if (any_set(accepted))
        for (int l = 0; l < L; ++l) {
          if (accepted[l] == S(2)) status_[l] = kMaxSteps;
          else if (accepted[l] != S(0)) status_[l] = nonfinite[l] != S(0) ? kNonFinite : kStepUnderflow;
        }
      if (!any_set(active)) {
        if (more) continue;  // lanes stopped here: refill them
        break;
      }

      stages(t_, h_try, b);
      combine<ErrorWeights, false>(b.k, nullptr, h_try, b.ytmp);
      if constexpr (M::has_err3) combine<Error3Weights, false>(b.k, nullptr, h_try, b.yout);

      // PI controller for every lane at once: factor = 0.9 err^-alpha err_prev^beta, clamped
      // to [0.2, cap] (err = 0 falls into the clamp); a rejection shrinks by
      // max(0.2, 0.9 err^-alpha), or by 0.2 when the error is not finite.
      S err[L], t_new[L], passes[L];
      error_norms(ctl, b, err);
      ODEFAST_LANES
      for (int l = 0; l < L; ++l) {
        const bool finite = err[l] < inf;
        const S e = finite ? err[l] : S(1);
        const S log_err = math::log(math::max(e, std::numeric_limits<S>::min()));
        const S grow = math::min(grow_cap[l], math::max(kFacMin, kSafety * math::exp(beta * log_err_prev_[l] - alpha * log_err)));
        const S shrink = finite ? math::max(kFacMin, kSafety * math::exp(-alpha * log_err)) : kFacMin;
        const bool is_active = active[l] != S(0);
        const bool acc = is_active && err[l] <= S(1);
        const bool rej = is_active && !acc;
        const S target = dense ? t_end : t_next[l];
        S tn = t_[l] + h_try[l];
        tn = (land[l] != S(0) || dir * (tn - target) >= S(0)) ? target : tn;
        t_new[l] = tn;
        passes[l] = (acc && dir * (t_next[l] - tn) <= S(0)) ? S(1) : S(0);
        accepted[l] = acc ? S(1) : S(0);
        nonfinite[l] = is_active ? (finite ? S(0) : S(1)) : nonfinite[l];
        log_err_prev_[l] = acc ? (err[l] > S(1e-4) ? log_err : kLogErrFloor) : log_err_prev_[l];
        h_[l] = acc ? h_try[l] * grow : (rej ? h_try[l] * shrink : h_[l]);
        grow_cap[l] = acc ? kFacMax : (rej ? S(1) : grow_cap[l]);
        nfev_[l] += is_active ? s - 1 : 0;
        steps_[l] += acc ? 1 : 0;
        rejected_[l] += rej ? 1 : 0;
      }
      if (any_set(passes)) {  // outputs inside (or at the end of) this step
        sync(b, true);
        for (int l = 0; l < L; ++l) {
          if (passes[l] == S(0)) continue;
          write_passed_outputs(l, t_new[l], h_try[l], t_out, n_times, next[l], out);
          t_next[l] = next[l] < n_times ? t_out[next[l]] : t_end;
          if (next[l] >= n_times) active[l] = S(0);
        }
      }
      if (log_) {
        sync(b, false);
        for (int l = 0; l < L; ++l)
          if (accepted[l] != S(0)) log_->push(traj_[l], t_[l], h_try[l], y_ + l, L);
      }
      for (int d = 0; d < dim(); ++d) {
        ODEFAST_LANES
        for (int l = 0; l < L; ++l) {
          const int q = d * L + l;
          b.y[q] = accepted[l] != S(0) ? b.ynew[q] : b.y[q];
        }
      }
      ODEFAST_LANES
      for (int l = 0; l < L; ++l) t_[l] = accepted[l] != S(0) ? t_new[l] : t_[l];

      // k_0 of the next step: FSAL reuses the last stage; otherwise evaluate at accepted states
      if constexpr (fsal) {
        const S* last = b.k + (s - 1) * DL;
        for (int d = 0; d < dim(); ++d) {
          ODEFAST_LANES
          for (int l = 0; l < L; ++l) {
            const int q = d * L + l;
            b.k[q] = accepted[l] != S(0) ? last[q] : b.k[q];
          }
        }
      } else {
        if (any_set(accepted)) {
          S* f0 = b.yout;
          eval(t_, b.y, f0);
          for (int d = 0; d < dim(); ++d) {
            ODEFAST_LANES
            for (int l = 0; l < L; ++l) {
              const int q = d * L + l;
              b.k[q] = accepted[l] != S(0) ? f0[q] : b.k[q];
            }
          }
          for (int l = 0; l < L; ++l)
            if (accepted[l] != S(0) && active[l] != S(0)) ++nfev_[l];
        }
      }
    }
    sync(b, false);
  }

  // Writes the outputs at t_out[next ...] that the accepted step (t_, h) -> t_new reached:
  // the new state where an output time is hit exactly, the dense output inside the step.
  // Reads the work buffer (y_, ynew_, k_).
  ODEFAST_HD void write_passed_outputs(int l, S t_new, S h, const S* t_out, int n_times, int& next,
                                       const SolveOutput<S>& out) {
    const S dir = t_out[n_times - 1] > t_out[0] ? S(1) : S(-1);
    while (next < n_times && dir * (t_out[next] - t_new) <= S(0)) {
      if (S* row = output_row(out, next, l)) {
        if (t_out[next] == t_new) {
          for (int d = 0; d < dim(); ++d) row[d] = ynew_[d * L + l];
        } else {
          if constexpr (dense) interpolate(l, (t_out[next] - t_[l]) / h, h, row);
        }
      }
      ++next;
    }
  }

  // y(t + theta h) = y + h sum_i k_i B_i(theta),  B_i(theta) = sum_j dense_ij theta^(j+1)
  ODEFAST_HD void interpolate(int l, S theta, S h, S* row) const {
    if constexpr (dense) {
      S B[s];
      static_for<s>([&](auto i) {
        S acc = S(0);
        static_for<M::dense_degree>([&](auto jr) {  // Horner, compile-time indices (see stages())
          constexpr double dij = M::dense[i][M::dense_degree - 1 - int(jr)];
          acc = (acc + S(dij)) * theta;
        });
        B[i] = acc;
      });
      for (int d = 0; d < dim(); ++d) {
        S acc = S(0);
        for (int i = 0; i < s; ++i) acc = std::fma(B[i], k_[(i * dim() + d) * L + l], acc);
        row[d] = std::fma(h, acc, y_[d * L + l]);
      }
    }
  }
};

}  // namespace odefast
