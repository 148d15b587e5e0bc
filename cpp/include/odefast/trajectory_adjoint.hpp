// One trajectory's solve and discrete adjoint, host/device: the body of the CUDA kernels
// (cuda/solve.cuh, cuda/adjoint.cuh: one GPU thread per trajectory), and the same code run on
// the host (cuda/host_mirror.cpp) so that the tests check the kernels' logic without a GPU.
//
// Forward: BlockIntegrator with L = 1 (one lane: its own adaptive steps, statuses, dense output).
// A TrajectoryTape records every accepted step (t_n, h_n, y_n) in caller-owned memory; step n's
// value c (0: t, 1: h, 2 + d: y_d) is at base[(n (D + 2) + c) stride], so with stride = the
// number of trajectories and trajectory b's base at b, the threads of a warp touch adjacent
// words (coalesced). The tape holds `capacity` steps; a trajectory that takes more sets
// `overflow` (the caller sizes the tape from a plain solve's accepted-step counts of the
// successful trajectories, so for them this only flags a bug; the gradient is not computed).
//
// Reverse (the discrete adjoint of adjoint.hpp, for one trajectory): for one step
//     Y_i = y + h sum_{j<i} a_ij k_j,   k_i = f(t + c_i h, Y_i),   y' = y + h sum_i b_i k_i
// and the cotangent ybar' of y' (plus cotangents of outputs in the step: y' itself, or the
// dense output y + h sum_i B_i(theta) k_i):
//     kbar_i = h b_i ybar' + h B_i(theta) ybar_out
//     for i = s-1 .. 0:  (Ybar_i, pbar_i) = vjp_f(t + c_i h, Y_i)(kbar_i);  kbar_j += h a_ij Ybar_i
//     ybar = ybar' + ybar_out + sum_i Ybar_i,   pbar += sum_i pbar_i.
// Time gradients as the CPU path computes them (python/odefast/_gradients.py):
//     dL/dt_i = cot_i . f(t_i, y_i) (i >= 1),   dL/dt_0 = -ybar0 . f(t_0, y0),
// here per trajectory (the caller sums over trajectories).
//
// Tableau coefficients are read only in constant expressions (static_for), as device code must.
#pragma once
#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "dynamics.hpp"
#include "dynamics_vjp.hpp"
#include "integrator.hpp"
#include "math.hpp"

namespace odefast {

template <class S> struct TrajectoryTape {
  S* base = nullptr;
  std::int64_t stride = 1, capacity = 0, n = 0;
  int D = 0;
  bool overflow = false;
  ODEFAST_HD S& at(std::int64_t step, int c) const { return base[(step * (D + 2) + c) * stride]; }
  template <class T> ODEFAST_HD void push(std::int64_t, T t0, T h0, const T* y0, int ystride) {
    if (n >= capacity) {
      overflow = true;
      return;
    }
    at(n, 0) = t0;
    at(n, 1) = h0;
    for (int d = 0; d < D; ++d) at(n, 2 + d) = y0[d * ystride];
    ++n;
  }
};

// vjp<1, false> of one trajectory, outlined in device code like eval_dynamics (integrator.hpp).
template <class Dyn, class S>
ODEFAST_HD ODEFAST_DEVICE_NOINLINE void vjp_outlined(const Dyn& f, const S* t, const S* y, const S* p, const S* a,
                                                     S* gy, S* gp, S* gt, S* work) {
  vjp<1, false>(f, t, y, p, a, gy, gp, gt, work);
}
template <class Dyn, class S>
ODEFAST_HD ODEFAST_INLINE void vjp_dynamics(const Dyn& f, const S* t, const S* y, const S* p, const S* a, S* gy,
                                            S* gp, S* gt, S* work) {
  if constexpr (StaticDim<Dyn>::value > 0) vjp<1, false>(f, t, y, p, a, gy, gp, gt, work);
  else vjp_outlined(f, t, y, p, a, gy, gp, gt, work);
}

// Scalars of work memory: the integrator's ((s + 4) D), the reverse sweep's (3 s D + 5 D plus
// the dynamics' vjp work); the dynamics' own scratch (f.scratch_size(1)) comes on top.
template <class M> constexpr std::size_t trajectory_forward_work(int D) {
  return std::size_t(M::stages + 4) * D;
}
template <class M> constexpr std::size_t trajectory_reverse_work(int D, std::size_t vjp_work) {
  return std::size_t(3 * M::stages + 5) * D + vjp_work;
}

// Solves trajectory b: y0 its initial state (D), p its parameters; writes its rows of `out`
// (out.batch rows per output time, this trajectory's at row `row`). work: the forward work,
// scratch: f.scratch_size(1) scalars (may be null where that is 0).
template <class S, class M, class Dyn, class Log = NoStepLog>
ODEFAST_HD void trajectory_solve(const Dyn& proto, const S* y0, const S* t, int n_times, const S* p,
                                 const StepControl& ctl, std::int64_t row, const SolveOutput<S>& out,
                                 S* work, S* scratch, Log* log = nullptr) {
  Dyn f = proto;
  f.scratch = scratch;
  BlockIntegrator<S, M, Dyn, 1, false, Log> integ(f, p, work, log);
  integ.run(y0, t, n_times, ctl, row, 1, out);
}

// Stage states Y (s D) and slopes K (s D) of the step (tn, h) from yn, with the forward
// pass's arithmetic (BlockIntegrator::combine / stages).
template <class S, class M, class Dyn>
ODEFAST_HD ODEFAST_INLINE void trajectory_stages(const Dyn& f, const S* p, S tn, S h, const S* yn, S* Y, S* K) {
  const int D = f.dim();
  for (int d = 0; d < D; ++d) Y[d] = yn[d];
  S ts = tn;
  eval_dynamics<1, false>(f, &ts, Y, K, p);
  static_for<M::stages - 1>([&](auto im1) {
    constexpr int i = im1 + 1;
    for (int d = 0; d < D; ++d) {
      S acc = S(0);
      static_for<i>([&](auto j) {
        constexpr double a = M::a[i][j];
        if constexpr (a != 0.0) acc = std::fma(S(a), K[j * D + d], acc);
      });
      Y[i * D + d] = std::fma(h, acc, yn[d]);
    }
    constexpr double ci = M::c[i];
    ts = tn + S(ci) * h;
    eval_dynamics<1, false>(f, &ts, Y + i * D, K + i * D, p);
  });
}

// B_i(theta) = sum_j dense_ij theta^(j+1) (Horner, as BlockIntegrator::interpolate).
template <class S, class M, int I> ODEFAST_HD ODEFAST_INLINE S dense_weight(S theta) {
  S acc = S(0);
  static_for<M::dense_degree>([&](auto jr) {
    constexpr double dij = M::dense[I][M::dense_degree - 1 - int(jr)];
    acc = (acc + S(dij)) * theta;
  });
  return acc;
}

// The reverse sweep of one successful trajectory over its tape. cot: its output 0's cotangent
// row, output i's at cot + i cot_stride. Writes ybar0 (D; without cot[0]); adds the parameter
// cotangent to pbar (P, zeroed by the caller). work: trajectory_reverse_work scalars.
template <class S, class M, class Dyn>
ODEFAST_HD void trajectory_reverse(const Dyn& proto, const TrajectoryTape<S>& tape, const S* t, int n_times,
                                   const S* p, const S* cot, std::int64_t cot_stride, S* ybar0, S* pbar,
                                   S* work, S* scratch, std::size_t vjp_work) {
  constexpr int s = M::stages;
  Dyn f = proto;
  f.scratch = scratch;
  const int D = f.dim(), N = n_times;
  S* K = work;
  S* Y = K + s * D;
  S* kbar = Y + s * D;
  S* yn = kbar + s * D;
  S* ybar = yn + D;
  S* ybar_new = ybar + D;
  S* yb = ybar_new + D;
  S* gy = yb + D;
  S* vw = gy + D;
  (void)vjp_work;
  for (int d = 0; d < D; ++d) ybar[d] = S(0);
  const S dir = t[N - 1] > t[0] ? S(1) : S(-1);
  const std::int64_t n_steps = tape.n;
  int next_out = N - 1;  // outputs from the last one backwards
  for (std::int64_t n = n_steps - 1; n >= 0; --n) {
    const S tn = tape.at(n, 0), h = tape.at(n, 1);
    for (int d = 0; d < D; ++d) yn[d] = tape.at(n, 2 + d);
    trajectory_stages<S, M>(f, p, tn, h, yn, Y, K);
    for (int q = 0; q < s * D; ++q) kbar[q] = S(0);
    for (int d = 0; d < D; ++d) {
      ybar_new[d] = ybar[d];
      yb[d] = S(0);  // direct cotangent of y_n from dense outputs
    }
    // outputs written by this step: those past its start (all that remain, for the first step)
    const S t_new = n + 1 < n_steps ? tape.at(n + 1, 0) : t[N - 1];
    for (; next_out >= 1 && (n == 0 || dir * (t[next_out] - tn) > S(0)); --next_out) {
      const S* c = cot + next_out * cot_stride;
      if (t[next_out] == t_new) {
        for (int d = 0; d < D; ++d) ybar_new[d] += c[d];
      } else if constexpr (M::dense_degree > 0) {
        const S theta = (t[next_out] - tn) / h;
        static_for<s>([&](auto i) {
          const S hB = h * dense_weight<S, M, int(i)>(theta);
          for (int d = 0; d < D; ++d) kbar[i * D + d] += hB * c[d];
        });
        for (int d = 0; d < D; ++d) yb[d] += c[d];
      }
    }
    static_for<s>([&](auto i) {
      constexpr double bi = M::b[i];
      if constexpr (bi != 0.0)
        for (int d = 0; d < D; ++d) kbar[i * D + d] += (h * S(bi)) * ybar_new[d];
    });
    for (int d = 0; d < D; ++d) yb[d] += ybar_new[d];
    static_for<s>([&](auto ri) {
      constexpr int i = s - 1 - int(ri);
      constexpr double ci = M::c[i];
      const S ti = tn + S(ci) * h;
      S gt;
      vjp_dynamics(f, &ti, Y + i * D, p, kbar + i * D, gy, pbar, &gt, vw);
      for (int d = 0; d < D; ++d) yb[d] += gy[d];
      static_for<i>([&](auto j) {
        constexpr double a = M::a[i][j];
        if constexpr (a != 0.0)
          for (int d = 0; d < D; ++d) kbar[j * D + d] += (h * S(a)) * gy[d];
      });
    });
    for (int d = 0; d < D; ++d) ybar[d] = yb[d];
  }
  for (int d = 0; d < D; ++d) ybar0[d] = ybar[d];
}

// Per-trajectory time gradients gt (n_times): gt[i] = cot_i . f(t_i, y_i) for i >= 1 (y_i the
// output rows, y_i at ys + i ys_stride), gt[0] = -ybar0 . f(t_0, y0). fy: D scalars of work.
template <class S, class Dyn>
ODEFAST_HD void trajectory_time_gradients(const Dyn& proto, const S* t, int n_times, const S* p, const S* y0,
                                          const S* ys, std::int64_t ys_stride, const S* cot,
                                          std::int64_t cot_stride, const S* ybar0, S* gt, S* fy, S* scratch) {
  Dyn f = proto;
  f.scratch = scratch;
  const int D = f.dim();
  for (int i = 1; i < n_times; ++i) {
    eval_dynamics<1, false>(f, t + i, ys + i * ys_stride, fy, p);
    S acc = S(0);
    for (int d = 0; d < D; ++d) acc += cot[i * cot_stride + d] * fy[d];
    gt[i] = acc;
  }
  eval_dynamics<1, false>(f, t, y0, fy, p);
  S acc = S(0);
  for (int d = 0; d < D; ++d) acc += ybar0[d] * fy[d];
  gt[0] = -acc;
}

// Everything one adjoint thread does for trajectory b (its index in the whole batch) whose
// chunk-local index is r: recorded forward solve (outputs into chunk-local rows of `out`),
// then, if it succeeded, the reverse sweep and the time gradients. Pointers to per-trajectory
// data are already offset to trajectory b (y0, p, cot: output 0's row; ybar0, pbar, gt rows).
template <class S> struct TrajectoryAdjointArgs {
  const S* t;
  int n_times;
  StepControl ctl;
  SolveOutput<S> out;       // chunk-local rows
  S* tape;                  // chunk's tape, interleaved with stride out.batch
  std::int64_t tape_capacity;
  std::int64_t cot_stride;  // batch * D
  std::size_t vjp_work;
  std::int32_t* overflow;   // per chunk-local trajectory: 1 if its tape was too short
};

template <class S, class M, class Dyn>
ODEFAST_HD void trajectory_adjoint(const Dyn& f, const TrajectoryAdjointArgs<S>& a, std::int64_t r,
                                   const S* y0, const S* p, const S* cot, S* ybar0, S* pbar, S* gt,
                                   S* work, S* scratch) {
  const int D = f.dim();
  TrajectoryTape<S> tape;
  tape.base = a.tape + r;
  tape.stride = a.out.batch;
  tape.capacity = a.tape_capacity;
  tape.D = D;
  trajectory_solve<S, M>(f, y0, a.t, a.n_times, p, a.ctl, r, a.out, work, scratch, &tape);
  // a failed trajectory may take more steps than the tape holds (the caller sizes it from the
  // successful ones): it gets no gradient either way, so only a successful one can overflow
  a.overflow[r] = tape.overflow && a.out.status[r] == kSuccess ? 1 : 0;
  if (tape.overflow || a.out.status[r] != kSuccess) {  // no gradient (reported as NaN upstream)
    for (int d = 0; d < D; ++d) ybar0[d] = S(0);
    for (int i = 0; i < a.n_times; ++i) gt[i] = S(0);
    return;
  }
  trajectory_reverse<S, M>(f, tape, a.t, a.n_times, p, cot, a.cot_stride, ybar0, pbar, work, scratch, a.vjp_work);
  trajectory_time_gradients<S>(f, a.t, a.n_times, p, y0, a.out.ys + r * D, a.out.batch * D, cot,
                               a.cot_stride, ybar0, gt, work, scratch);
}

}  // namespace odefast
