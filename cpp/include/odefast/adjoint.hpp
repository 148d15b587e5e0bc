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
// gradient of the computed solution w.r.t. y0 and params. The sweep runs on lane blocks of
// trajectories with similar step counts, lanes in lockstep from their last steps.
//
// Second order, discrete (forward-over-reverse): jvp replays the recorded steps on dual numbers
// (dual.hpp) for the output tangents; hvp runs the same reverse sweep on dual numbers, seeded
// with the loss's Hessian applied to those tangents: Hessian-vector products, exact for the
// computed solution. The continuous second-order adjoint is in second_order.hpp.
//
// Continuous adjoint ("backsolve", Chen et al. 2018): the augmented system
//     dz/dt = f(t, z),   da/dt = -a^T df/dz,   dpbar/dt = -a^T df/dp
// is itself a dynamics type (Augmented), integrated backwards over each output interval by
// the same integrator, with the jump a += dL/dy(t_i) between intervals.
#pragma once
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <memory>
#include <mutex>
#include <type_traits>
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
  template <class T> void push(std::int64_t, T t0, T h0, const T* y0, int stride) {
    t.push_back(t0);
    h.push_back(h0);
    for (int d = 0; d < D; ++d) y.push_back(y0[d * stride]);
  }
  std::size_t size() const { return t.size(); }
};

// Routes accepted steps to their trajectories' tapes (a trajectory's steps come from one thread).
template <class S> struct TapeLog {
  StepTape<S>* tapes;  // one per trajectory of the batch
  template <class T> void push(std::int64_t b, T t, T h, const T* y, int stride) { tapes[b].push(b, t, h, y, stride); }
};

// Dynamics that can leave eval's intermediates for the vjp at the same point (MLP::trace).
template <class Dyn, class = void> struct has_trace : std::false_type {};
template <class Dyn> struct has_trace<Dyn, std::void_t<decltype(std::declval<Dyn&>().trace)>> : std::true_type {};

// Trajectories per second-order task: a fixed partition, so sums over trajectories of the
// parameter cotangent are made in the same order whatever the thread count.
constexpr std::int64_t kAdjointChunk = 16;

template <class S, class M, class Dyn> class CheckpointAdjoint {
 public:
  static constexpr int s = M::stages;
  // Second order: dual numbers with W tangents, W = 1 for a few directions, else kWide (one
  // register of S; the primal work is shared by the W directions, the tangents vectorise).
  static constexpr int kWide = 64 / int(sizeof(S)), kWideFrom = 4;
  template <int W> using Tan = Dual<S, W>;
  template <int W> using DynTan = decltype(with_scalar<Tan<W>>(std::declval<const Dyn&>()));

  // Runs the forward solve with recording; `f` must outlive this object (with its storage).
  CheckpointAdjoint(const Dyn& f, const S* y0, std::int64_t batch, const S* t, int n_times,
                    const S* params, bool per_trajectory, const StepControl& ctl,
                    const SolveOutput<S>& out)
      : f_(f), batch_(batch), n_times_(n_times), per_traj_(per_trajectory), D_(f.dim()),
        P_(f.n_params()), t_(t, t + n_times), params_(params, params + (per_trajectory ? batch * f.n_params() : f.n_params())),
        y0_(y0, y0 + batch * f.dim()), tapes_(batch) {
    for (auto& tp : tapes_) tp.D = D_;
    // the plain solve's lane blocks: every trajectory's steps are the same whatever its block
    TapeLog<S> log{tapes_.data()};
    solve_batch<S, M>(f_, y0, batch, t_.data(), n_times_, params_.data(), per_traj_, ctl, out, &log);
    status_.assign(out.status, out.status + batch);
  }

  // cot: (n_times, batch, D). Writes ybar0 (batch, D) — excluding cot[0] — and pbar: (P,)
  // summed over trajectories, or (batch, P) for per-trajectory parameters. The sweep runs
  // on lane blocks of kLanes trajectories (a fixed partition: the sums over blocks of the
  // parameter cotangent are made in block order whatever the thread count).
  void backward(const S* cot, S* ybar0, S* pbar) const {
    // Lanes of a block sweep in lockstep for as many rounds as the block's longest trajectory
    // has steps, so the blocks group trajectories by step count: the order of the sweep is
    // by decreasing count (then index), a fixed function of the recorded steps. Full blocks
    // of L lanes, then the rest one trajectory at a time (no idle lanes).
    constexpr int L = kLanes<S>;
    const std::vector<std::int64_t> order = by_decreasing_steps();
    const std::int64_t n_full = batch_ / L, n_tasks = n_full + (batch_ - n_full * L);
    std::vector<S> task_pbar(per_traj_ ? 0 : std::size_t(n_tasks) * P_, S(0));
    parallel_for(n_tasks, [&](std::int64_t task) {
      S* pb = per_traj_ ? pbar : task_pbar.data() + task * P_;
      auto run = [&](auto lanes, std::int64_t at) {
        constexpr int NL = decltype(lanes)::value;
        if (per_traj_) reverse_lanes<NL, true>(order.data() + at, cot, ybar0, pb);
        else reverse_lanes<NL, false>(order.data() + at, cot, ybar0, pb);
      };
      if (task < n_full) run(std::integral_constant<int, L>{}, task * L);
      else run(std::integral_constant<int, 1>{}, n_full * L + (task - n_full));
    });
    if (!per_traj_) sum_chunks(task_pbar.data(), n_tasks, pbar);
  }

  // Tangents of the outputs along K directions: the derivative of the computed solution (the
  // recorded steps replayed on dual numbers). v_y0: (K, batch, D); v_p: (K, P) or
  // (K, batch, P); dys: (K, n_times, batch, D).
  void jvp(int K, const S* v_y0, const S* v_p, S* dys) const {
    with_width(K, [&](auto width) {
      constexpr int W = decltype(width)::value;
      const std::int64_t n_groups = (K + W - 1) / W;
      std::vector<std::vector<Tan<W>>> replays(replay_bytes<W>(n_groups) <= kKeptReplayBytes ? n_groups * batch_ : 0);
      parallel_for(n_groups * batch_, [&](std::int64_t task) {
        const Group<W> g(*this, int(task / batch_), K);
        const std::int64_t b = task % batch_;
        Sweep<Tan<W>, DynTan<W>, 1> w(with_scalar<Tan<W>>(f_), D_);
        const Tan<W>* p = tangent_params(w, b, g, v_p);
        replay(b, p, g, v_y0, w, dys);
        if (!replays.empty()) replays[task] = std::move(w.states);
      });
      if (!replays.empty()) keep_replays<W>(K, v_y0, v_p, std::move(replays));
    });
  }

  // Forward-over-reverse: tangents of (ybar0, pbar) of backward(cot) along K directions, i.e.
  // K Hessian-vector products. dcot: (K, n_times, batch, D), the tangent of the cotangent (the
  // loss's Hessian applied to the output tangents of jvp). Writes dybar0 (K, batch, D) and
  // dpbar (K, P) summed over trajectories, or (K, batch, P).
  void hvp(int K, const S* v_y0, const S* v_p, const S* cot, const S* dcot, S* dybar0, S* dpbar) const {
    const std::int64_t n_chunks = (batch_ + kAdjointChunk - 1) / kAdjointChunk;
    std::vector<S> chunk_dp(per_traj_ ? 0 : std::size_t(K) * n_chunks * P_, S(0));  // [k][chunk][P]
    with_width(K, [&](auto width) {
      constexpr int W = decltype(width)::value;
      using T = Tan<W>;
      const std::int64_t n_groups = (K + W - 1) / W;
      const std::vector<std::vector<T>> kept = take_replays<W>(K, v_y0, v_p);  // empty: replay
      parallel_for(n_groups * n_chunks, [&](std::int64_t task) {
        const int group = int(task / n_chunks);
        const Group<W> g(*this, group, K);
        const std::int64_t c = task % n_chunks;
        Sweep<T, DynTan<W>, 1> w(with_scalar<T>(f_), D_);
        std::vector<T> dual_cot(std::size_t(n_times_) * D_), pbar(P_, T(0));
        for (std::int64_t b = c * kAdjointChunk; b < std::min(batch_, (c + 1) * kAdjointChunk); ++b) {
          const T* p = tangent_params(w, b, g, v_p);
          if (kept.empty()) replay(b, p, g, v_y0, w, nullptr);
          for (int i = 0; i < n_times_; ++i)
            for (int d = 0; d < D_; ++d) {
              const std::int64_t q = (std::int64_t(i) * batch_ + b) * D_ + d;
              dual_cot[i * D_ + d] = g.seed(cot[q], dcot + q, g.stride_outputs);
            }
          if (per_traj_) std::fill(pbar.begin(), pbar.end(), T(0));
          const T* states = kept.empty() ? w.states.data() : kept[group * batch_ + b].data();
          const T* cot_b = dual_cot.data();
          reverse_block<T, DynTan<W>, 1, false>(&b, &states, p, &cot_b, D_, pbar.data(), w);
          for (int d = 0; d < D_; ++d) g.scatter(w.ybar[d], dybar0 + b * D_ + d, g.stride_states);
          if (per_traj_)
            for (int j = 0; j < P_; ++j) g.scatter(pbar[j], dpbar + b * P_ + j, g.stride_params);
        }
        if (!per_traj_)
          for (int j = 0; j < P_; ++j) g.scatter(pbar[j], chunk_dp.data() + c * P_ + j, n_chunks * P_);
      });
    });
    if (!per_traj_)
      for (int k = 0; k < K; ++k) sum_chunks(chunk_dp.data() + std::size_t(k) * n_chunks * P_, n_chunks, dpbar + std::size_t(k) * P_);
  }

 private:
  // jvp's dual replays, kept for the hvp that follows along the same directions (hvp comes
  // after jvp: the loss's Hessian needs jvp's output tangents), which then skips its own
  // replay. One hvp takes them; kept only while they fit in kKeptReplayBytes.
  static constexpr std::size_t kKeptReplayBytes = std::size_t(256) << 20;
  template <int W> struct KeptReplays {
    int K = -1;
    std::vector<S> v_y0, v_p;                  // the directions of the replays
    std::vector<std::vector<Tan<W>>> states;   // [group * batch + b]
  };
  mutable std::mutex kept_mutex_;
  mutable KeptReplays<1> kept_one_;
  mutable KeptReplays<kWide> kept_wide_;
  template <int W> KeptReplays<W>& kept_replays() const {
    if constexpr (W == 1) return kept_one_;
    else return kept_wide_;
  }
  std::size_t direction_sizes(int K, std::size_t& n_p) const {
    n_p = std::size_t(K) * (per_traj_ ? batch_ * P_ : P_);
    return std::size_t(K) * batch_ * D_;
  }
  template <int W> std::size_t replay_bytes(std::int64_t n_groups) const {
    std::size_t steps = 0;
    for (const auto& tp : tapes_) steps += tp.size();
    return steps * D_ * sizeof(Tan<W>) * std::size_t(n_groups);
  }
  template <int W>
  void keep_replays(int K, const S* v_y0, const S* v_p, std::vector<std::vector<Tan<W>>>&& states) const {
    std::size_t n_p;
    const std::size_t n_y = direction_sizes(K, n_p);
    std::lock_guard<std::mutex> lock(kept_mutex_);
    KeptReplays<W>& k = kept_replays<W>();
    k.K = K;
    k.v_y0.assign(v_y0, v_y0 + n_y);
    k.v_p.assign(v_p, v_p + n_p);
    k.states = std::move(states);
  }
  template <int W> std::vector<std::vector<Tan<W>>> take_replays(int K, const S* v_y0, const S* v_p) const {
    std::size_t n_p;
    const std::size_t n_y = direction_sizes(K, n_p);
    std::lock_guard<std::mutex> lock(kept_mutex_);
    KeptReplays<W>& k = kept_replays<W>();
    const bool same = k.K == K && std::memcmp(k.v_y0.data(), v_y0, n_y * sizeof(S)) == 0 &&
                      (n_p == 0 || std::memcmp(k.v_p.data(), v_p, n_p * sizeof(S)) == 0);
    k.K = -1;
    return same ? std::move(k.states) : std::vector<std::vector<Tan<W>>>{};
  }

  // Buffers of one reverse sweep of L lanes on scalar T (real, or dual for second order),
  // lane-interleaved: [stage][component][lane].
  template <class T, class DynT, int L> struct Sweep {
    AlignedVector<T> buf;
    std::vector<T> states, params;  // the dual replay's (L = 1)
    T *K, *Y, *kbar, *yn, *ybar, *ybar_new, *yb, *gy, *vjp_work, gt[L];
    T* traces = nullptr;    // per stage, where dynamics with a trace (MLP) leave the
    std::size_t trace = 0;  // intermediates of eval at Y_i for the vjp at Y_i
    DynT g;
    Sweep(const DynT& f, int D) : g(f) {  // every section starts on a cache line
      const std::size_t sd = lines_for<T>(std::size_t(s) * D * L), dl = lines_for<T>(std::size_t(D) * L),
                        nv = lines_for<T>(vjp_work_size(f, L));
      if constexpr (has_trace<DynT>::value) trace = lines_for<T>(f.trace_size(L));
      buf.assign(3 * sd + 5 * dl + nv + lines_for<T>(f.scratch_size(L)) + s * trace, T(0));
      K = buf.data();
      Y = K + sd;
      kbar = Y + sd;
      yn = kbar + sd;
      ybar = yn + dl;
      ybar_new = ybar + dl;
      yb = ybar_new + dl;
      gy = yb + dl;
      vjp_work = gy + dl;
      g.scratch = vjp_work + nv;
      traces = g.scratch + lines_for<T>(f.scratch_size(L));
    }
    // eval and vjp of stage i use stage i's trace
    void at_stage(int i) {
      if constexpr (has_trace<DynT>::value) g.trace = traces + i * trace;
    }
  };

  const S* params_row(std::int64_t b) const { return per_traj_ ? params_.data() + b * P_ : params_.data(); }

  template <class Fn> static void with_width(int K, Fn&& fn) {
    if (K < kWideFrom) fn(std::integral_constant<int, 1>{});
    else fn(std::integral_constant<int, kWide>{});
  }

  // A group of up to W directions k0 .. k0 + n - 1 (of K), carried by the tangents of one
  // dual number; arrays of directions are (K, ...) with the given stride between k.
  template <int W> struct Group {
    std::int64_t k0;
    int n;
    std::int64_t stride_states, stride_params, stride_outputs;  // (K, B, D), v_p / dpbar, (K, N, B, D)
    Group(const CheckpointAdjoint& a, int group, int K)
        : k0(std::int64_t(group) * W), n(std::min<int>(W, K - group * W)), stride_states(a.batch_ * a.D_),
          stride_params(a.per_traj_ ? a.batch_ * a.P_ : a.P_),
          stride_outputs(std::int64_t(a.n_times_) * a.batch_ * a.D_) {}
    // value with tangent i = dir[(k0 + i) * stride] (0 past the group's directions)
    Tan<W> seed(S value, const S* dir, std::int64_t stride) const {
      Tan<W> x(value);
      for (int i = 0; i < n; ++i) x.d[i] = dir[(k0 + i) * stride];
      return x;
    }
    void scatter(const Tan<W>& x, S* dir, std::int64_t stride) const {
      for (int i = 0; i < n; ++i) dir[(k0 + i) * stride] = x.d[i];
    }
  };

  // Dual parameters of trajectory b: values, and the group's directions of v_p.
  template <class Sw, int W>
  const Tan<W>* tangent_params(Sw& w, std::int64_t b, const Group<W>& g, const S* v_p) const {
    const S* p = params_row(b);
    const S* dp = per_traj_ ? v_p + b * P_ : v_p;
    w.params.resize(P_);
    for (int j = 0; j < P_; ++j) w.params[j] = g.seed(p[j], dp + j, g.stride_params);
    return w.params.data();
  }

  // Sums per-chunk parameter cotangents in chunk order (independent of the thread count).
  void sum_chunks(const S* chunks, std::int64_t n_chunks, S* out) const {
    for (int j = 0; j < P_; ++j) out[j] = S(0);
    for (std::int64_t c = 0; c < n_chunks; ++c)
      for (int j = 0; j < P_; ++j) out[j] += chunks[c * P_ + j];
  }

  // Trajectory indices by decreasing number of steps to sweep (0 for a failed one), equal
  // counts in index order (a stable counting sort).
  std::vector<std::int64_t> by_decreasing_steps() const {
    std::vector<std::size_t> steps(batch_);
    std::size_t most = 0;
    for (std::int64_t b = 0; b < batch_; ++b) {
      steps[b] = status_[b] == kSuccess ? tapes_[b].size() : 0;
      most = std::max(most, steps[b]);
    }
    std::vector<std::int64_t> start(most + 2, 0), order(batch_);  // start[most - n]: first slot of count n
    for (std::int64_t b = 0; b < batch_; ++b) ++start[most - steps[b] + 1];
    for (std::size_t i = 1; i < start.size(); ++i) start[i] += start[i - 1];
    for (std::int64_t b = 0; b < batch_; ++b) order[start[most - steps[b]]++] = b;
    return order;
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

  // Replays trajectory b's recorded steps on dual numbers from y0 + ε v_y0 (the group's
  // directions): w.states gets (y_n, tangents) for every step; dys (if given, (K, n_times,
  // batch, D)) the output tangents. Values are the tape's, so the sweep differentiates the
  // recorded computation.
  template <class Sw, int W>
  void replay(std::int64_t b, const Tan<W>* p, const Group<W>& g, const S* v_y0, Sw& w, S* dys) const {
    using T = Tan<W>;
    const StepTape<S>& tp = tapes_[b];
    const int D = D_, N = n_times_;
    const std::int64_t n_steps = std::int64_t(tp.size());
    const bool ok = status_[b] == kSuccess;
    S* out_b = dys ? dys + b * D : nullptr;  // output i of direction k at out_b + k * stride_outputs + i * batch * D
    const std::int64_t out_stride = batch_ * D;
    if (out_b)
      for (int i = 0; i < N; ++i)
        for (int d = 0; d < D; ++d)
          g.scatter(T(S(0)), out_b + i * out_stride + d, g.stride_outputs);
    w.states.resize(std::size_t(n_steps) * D);
    for (int d = 0; d < D; ++d) {
      const T y0 = g.seed(n_steps ? tp.y[d] : S(0), v_y0 + b * D + d, g.stride_states);
      if (n_steps) w.states[d] = y0;
      if (out_b && ok) g.scatter(y0, out_b + d, g.stride_outputs);
    }
    if (!ok || n_steps == 0) return;
    const std::vector<std::int64_t> out_step = output_steps(b);
    int next_out = 1;
    for (std::int64_t n = 0; n < n_steps; ++n) {
      const S tn = tp.t[n], h = tp.h[n];
      const T* yn = &w.states[n * D];
      const S t_new = n + 1 < n_steps ? tp.t[n + 1] : t_[N - 1];
      for (int d = 0; d < D; ++d) w.yn[d] = yn[d];
      recompute_stages<T, DynTan<W>, 1, false>(w, p, &tn, &h);
      for (; out_b && next_out < N && out_step[next_out] == n; ++next_out) {
        const S theta = t_[next_out] == t_new ? S(1) : (t_[next_out] - tn) / h;
        for (int d = 0; d < D; ++d)
          g.scatter(step_combination(w, h, yn, d, theta), out_b + next_out * out_stride + d, g.stride_outputs);
      }
      if (n + 1 < n_steps)
        for (int d = 0; d < D; ++d) {
          T y_next = step_combination(w, h, yn, d, S(1));
          y_next.v = tp.y[(n + 1) * D + d];
          w.states[(n + 1) * D + d] = y_next;
        }
    }
  }

  // y_n + h sum_i w_i k_i for component d: the step's end (theta = 1, weights b) or its dense
  // output at theta (weights B_i(theta)).
  template <class Sw, class T> T step_combination(const Sw& w, S h, const T* yn, int d, S theta) const {
    T acc(0);
    static_for<s>([&](auto i) {
      S wi;
      if (theta == S(1) || M::dense_degree == 0) {
        wi = S(M::b[i]);
      } else {
        wi = S(0);
        for (int j = M::dense_degree - 1; j >= 0; --j) wi = (wi + S(M::dense[i][j])) * theta;
      }
      acc += T(wi) * w.K[i * D_ + d];
    });
    return yn[d] + T(h) * acc;
  }

  // The real sweep of the block of trajectories idx[0 .. L): ybar0 rows, and the parameter
  // cotangent per trajectory (pbar rows) or summed over the block ([P]).
  template <int L, bool PerLane> void reverse_lanes(const std::int64_t* idx, const S* cot, S* ybar0, S* pbar) const {
    Sweep<S, Dyn, L> w(f_, D_);
    const S* states[L];
    const S* cots[L];
    for (int l = 0; l < L; ++l) {
      const std::int64_t b = idx[l];
      states[l] = tapes_[b].y.data();
      cots[l] = cot + b * D_;
    }
    std::vector<S> lane_params, lane_pbar;
    const S* p = params_.data();
    S* pb = pbar;
    if constexpr (PerLane) {
      lane_params.resize(std::size_t(P_) * L);
      lane_pbar.assign(std::size_t(P_) * L, S(0));
      for (int l = 0; l < L; ++l)
        for (int j = 0; j < P_; ++j) lane_params[j * L + l] = params_row(idx[l])[j];
      p = lane_params.data();
      pb = lane_pbar.data();
    } else {
      for (int j = 0; j < P_; ++j) pb[j] = S(0);
    }
    reverse_block<S, Dyn, L, PerLane>(idx, states, p, cots, batch_ * D_, pb, w);
    for (int l = 0; l < L; ++l) {
      for (int d = 0; d < D_; ++d) ybar0[idx[l] * D_ + d] = w.ybar[d * L + l];
      if constexpr (PerLane)
        for (int j = 0; j < P_; ++j) pbar[idx[l] * P_ + j] = lane_pbar[j * L + l];
    }
  }

  // The reverse sweep of L lanes over their recorded steps, on scalar T (S: gradients; dual
  // numbers: their tangents, i.e. Hessian-vector products). Lane l is trajectory idx[l];
  // the lanes run in lockstep from their last steps, and a lane without a step to take (past
  // the batch, failed, or done) idles with h = 0, which changes nothing. states[l]: the lane's
  // y_n; cot[l] + i * cot_stride: its output i's cotangent. Leaves ybar(t0) — without
  // cot[0] — in w.ybar and adds the parameter cotangent to pbar ([P][L], or [P] summed).
  template <class T, class DynT, int L, bool PerLane>
  void reverse_block(const std::int64_t* idx, const T* const* states, const T* p, const T* const* cot,
                     std::int64_t cot_stride, T* pbar, Sweep<T, DynT, L>& w) const {
    const int D = D_, N = n_times_;
    const std::ptrdiff_t DL = std::ptrdiff_t(D) * L;
    std::int64_t n_steps[L], rounds = 0;
    int next_out[L];  // outputs are visited from the last one backwards
    std::vector<std::int64_t> out_step[L];
    for (int l = 0; l < L; ++l) {
      const std::int64_t b = idx[l];
      const bool live = status_[b] == kSuccess;
      n_steps[l] = live ? std::int64_t(tapes_[b].size()) : 0;
      if (live) out_step[l] = output_steps(b);
      next_out[l] = N - 1;
      rounds = std::max(rounds, n_steps[l]);
    }
    for (int q = 0; q < DL; ++q) w.ybar[q] = T(0);
    for (std::int64_t r = 0; r < rounds; ++r) {
      S tn[L], h[L];
      std::int64_t n[L];
      for (int l = 0; l < L; ++l) {
        n[l] = n_steps[l] - 1 - r;
        const std::int64_t b = idx[l];
        const StepTape<S>& tp = tapes_[b];
        tn[l] = n[l] >= 0 ? tp.t[n[l]] : t_[0];
        h[l] = n[l] >= 0 ? tp.h[n[l]] : S(0);
        for (int d = 0; d < D; ++d) w.yn[d * L + l] = n[l] >= 0 ? states[l][n[l] * D + d] : T(y0_[b * D + d]);
      }
      // FSAL methods give the last stage the weight b = 0: it only feeds dense outputs, so in a
      // step without one its cotangent is zero and neither it nor its vjp is computed.
      int stages = s;
      if constexpr (M::b[s - 1] == 0.0) {
        bool dense = false;
        for (int l = 0; l < L; ++l) {
          if (n[l] < 0) continue;
          const StepTape<S>& tp = tapes_[idx[l]];
          const S t_new = n[l] + 1 < n_steps[l] ? tp.t[n[l] + 1] : t_[N - 1];
          for (int o = next_out[l]; o >= 1 && out_step[l][o] == n[l]; --o) dense = dense || t_[o] != t_new;
        }
        if (!dense) stages = s - 1;
      }
      recompute_stages<T, DynT, L, PerLane>(w, p, tn, h, stages);
      for (int q = 0; q < s * DL; ++q) w.kbar[q] = T(0);
      for (int q = 0; q < DL; ++q) {
        w.ybar_new[q] = w.ybar[q];
        w.yb[q] = T(0);  // direct cotangent of y_n from dense outputs
      }
      for (int l = 0; l < L; ++l) {
        if (n[l] < 0) continue;
        const StepTape<S>& tp = tapes_[idx[l]];
        const S t_new = n[l] + 1 < n_steps[l] ? tp.t[n[l] + 1] : t_[N - 1];
        for (; next_out[l] >= 1 && out_step[l][next_out[l]] == n[l]; --next_out[l]) {
          const T* c = cot[l] + next_out[l] * cot_stride;
          if (t_[next_out[l]] == t_new) {
            for (int d = 0; d < D; ++d) w.ybar_new[d * L + l] += c[d];
          } else if constexpr (M::dense_degree > 0) {
            const S theta = (t_[next_out[l]] - tn[l]) / h[l];
            static_for<s>([&](auto i) {
              S Bi = S(0);
              for (int j = M::dense_degree - 1; j >= 0; --j) Bi = (Bi + S(M::dense[i][j])) * theta;
              const S hB = h[l] * Bi;
              for (int d = 0; d < D; ++d) w.kbar[i * DL + d * L + l] += hB * c[d];
            });
            for (int d = 0; d < D; ++d) w.yb[d * L + l] += c[d];
          }
        }
      }
      static_for<s>([&](auto i) {
        constexpr double bi = M::b[i];
        if constexpr (bi != 0.0)
          for (int d = 0; d < D; ++d)
            for (int l = 0; l < L; ++l) w.kbar[i * DL + d * L + l] += (h[l] * S(bi)) * w.ybar_new[d * L + l];
      });
      for (int q = 0; q < DL; ++q) w.yb[q] += w.ybar_new[q];
      static_for<s>([&](auto ri) {
        constexpr int i = s - 1 - int(ri);
        if (i >= stages) return;
        T ti[L];
        for (int l = 0; l < L; ++l) ti[l] = T(tn[l] + S(M::c[i]) * h[l]);
        w.at_stage(i);
        vjp<L, PerLane>(w.g, ti, w.Y + i * DL, p, w.kbar + i * DL, w.gy, pbar, w.gt, w.vjp_work);
        for (int q = 0; q < DL; ++q) w.yb[q] += w.gy[q];
        static_for<i>([&](auto j) {
          constexpr double a = M::a[i][j];
          if constexpr (a != 0.0)
            for (int d = 0; d < D; ++d)
              for (int l = 0; l < L; ++l) w.kbar[j * DL + d * L + l] += (h[l] * S(a)) * w.gy[d * L + l];
        });
      });
      for (int q = 0; q < DL; ++q) w.ybar[q] = w.yb[q];
    }
  }

  // Stage states and slopes of one step of every lane from w.yn, with the forward pass's
  // arithmetic.
  template <class T, class DynT, int L, bool PerLane>
  void recompute_stages(Sweep<T, DynT, L>& w, const T* p, const S* tn, const S* h, int stages = s) const {
    const int D = D_;
    const std::ptrdiff_t DL = std::ptrdiff_t(D) * L;
    for (int q = 0; q < DL; ++q) w.Y[q] = w.yn[q];
    T ts[L];
    for (int l = 0; l < L; ++l) ts[l] = T(tn[l]);
    w.at_stage(0);
    w.g.template eval<L, PerLane>(ts, w.Y, w.K, p);
    static_for<s - 1>([&](auto im1) {
      constexpr int i = im1 + 1;
      if (i >= stages) return;
      for (int d = 0; d < D; ++d)
        for (int l = 0; l < L; ++l) {
          T acc = T(0);
          static_for<i>([&](auto j) {
            constexpr double a = M::a[i][j];
            if constexpr (a != 0.0) acc = math::fma(T(S(a)), w.K[j * DL + d * L + l], acc);
          });
          w.Y[i * DL + d * L + l] = math::fma(T(h[l]), acc, w.yn[d * L + l]);
        }
      for (int l = 0; l < L; ++l) ts[l] = T(tn[l] + S(M::c[i]) * h[l]);
      w.at_stage(i);
      w.g.template eval<L, PerLane>(ts, w.Y + i * DL, w.K + i * DL, p);
    });
  }

  Dyn f_;
  std::int64_t batch_;
  int n_times_;
  bool per_traj_;
  int D_, P_;
  std::vector<S> t_, params_, y0_;
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
