// CPU batch driver: splits a batch into lane blocks, runs them on the thread pool.
//
// Blocks hold kBlockLanes<S, Dyn> trajectories: by default two AVX-512 registers (two
// independent dependency chains through every lane-parallel step of a small vector field, and
// half the per-step bookkeeping per trajectory); a dynamics type may ask for another count
// (Dyn::kBlockRegisters). A remainder of at least kLanes<S> runs as one-register blocks, the
// rest one trajectory at a time. Adaptive solves with a full block for every thread run one
// block per thread instead, whose lanes take the next trajectory from a shared queue as theirs
// ends (LaneRefill; dynamics of a run-time dimension). All paths perform identical arithmetic
// per trajectory (see dynamics.hpp), so every result is independent of batch size, position
// and thread count.
#pragma once
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "integrator.hpp"
#include "parallel.hpp"

namespace odefast {

template <class S> constexpr int kLanes = 64 / int(sizeof(S));
template <class Dyn, class = void> struct BlockRegisters : std::integral_constant<int, 2> {};
template <class Dyn>
struct BlockRegisters<Dyn, std::void_t<decltype(Dyn::kBlockRegisters)>>
    : std::integral_constant<int, Dyn::kBlockRegisters> {};
template <class S, class Dyn> constexpr int kBlockLanes = BlockRegisters<Dyn>::value * kLanes<S>;
// Which blocks refill their lanes: full-width blocks of adaptive solves, unless the dynamics
// has a compile-time dimension (Lorenz): its block state lives in registers and a trajectory
// costs about 2 us, too little for a lone start and the refill's bookkeeping to pay (W4 ran
// 13% slower with them).
template <class S, class M, class Dyn, int L>
constexpr bool refills_lanes = M::error_order > 0 && L == kBlockLanes<S, Dyn> && StaticDim<Dyn>::value == 0;

// Trajectories of an adaptive solve that no lane has started yet, handed out one at a time.
struct TrajectoryQueue {
  std::atomic<std::int64_t> next{0};
  std::int64_t end = 0;
  bool pop(std::int64_t& b) {
    b = next.fetch_add(1, std::memory_order_relaxed);
    return b < end;
  }
};

// Refills the lanes of an adaptive block from a queue, so that a block does not idle until its
// slowest lane is done (W2, B = 256: 11% of lane-steps were idle). A new trajectory starts on
// its own (k_0 and the first step on the L = 1 path, which computes the same bits as a lane)
// and joins the block in the freed lane.
template <class S, class M, class Dyn, int L, bool PerLane> class LaneRefill {
 public:
  static constexpr bool enabled = true;
  using Lone = BlockIntegrator<S, M, Dyn, 1, PerLane>;
  // lane_params: the block's per-lane parameters [P][L] (PerLane), rewritten for a new lane.
  LaneRefill(const Dyn& proto, const S* y0, const S* params, int P, S* lane_params, TrajectoryQueue& queue)
      : f_(proto), y0_(y0), params_(params), P_(P), lane_params_(lane_params), queue_(queue) {
    thread_local AlignedVector<S> work;  // one per thread, like the block's
    const std::size_t n_integ = lines_for<S>(std::size_t(M::stages + 4) * proto.dim());
    if (work.size() < n_integ + proto.scratch_size(1)) work.resize(n_integ + proto.scratch_size(1));
    work_ = work.data();
    f_.scratch = work_ + n_integ;
  }
  bool claim(std::int64_t& b) { return queue_.pop(b); }
  // Trajectory b's start, for lane l.
  Lone start(std::int64_t b, int l, const S* t, int n_times, const StepControl& ctl) {
    const S* p = PerLane ? params_ + b * P_ : params_;
    if constexpr (PerLane)
      for (int j = 0; j < P_; ++j) lane_params_[j * L + l] = p[j];
    Lone lone(f_, p, work_);
    lone.start_alone(y0_ + b * f_.dim(), t, n_times, ctl);
    return lone;
  }

 private:
  Dyn f_;
  const S* y0_;
  const S* params_;
  int P_;
  S* lane_params_;
  TrajectoryQueue& queue_;
  S* work_;
};

// Integrates trajectories first .. first + n_valid - 1 as one block of L lanes; `log` (if any)
// receives the accepted steps of every trajectory. Adaptive blocks of kBlockLanes lanes refill
// their lanes from `queue`.
template <class S, class M, int L, bool PerLane, class Dyn, class StepLog = NoStepLog>
void run_block(const Dyn& proto, const S* y0, const S* t, int n_times, const S* params, int P,
               const StepControl& ctl, std::int64_t first, int n_valid, const SolveOutput<S>& out,
               StepLog* log = nullptr, TrajectoryQueue* queue = nullptr) {
  const int D = proto.dim();
  const std::size_t n_integ = lines_for<S>(std::size_t(M::stages + 4) * D * L),
                    n_scratch = lines_for<S>(proto.scratch_size(L)),
                    n_lane_params = PerLane ? lines_for<S>(std::size_t(P) * L) : 0;
  // one buffer per thread, reused by all its blocks (no allocation per block)
  thread_local AlignedVector<S> work;
  const std::size_t need = n_integ + n_scratch + n_lane_params + std::size_t(D) * L;
  if (work.size() < need) work.resize(need);
  S* integ = work.data();
  S* scratch = integ + n_integ;
  S* lane_params = scratch + n_scratch;
  S* y_block = lane_params + n_lane_params;
  // SoA gather; padding lanes repeat the first trajectory so they stay finite
  for (int l = 0; l < L; ++l) {
    const std::int64_t b = first + (l < n_valid ? l : 0);
    for (int d = 0; d < D; ++d) y_block[d * L + l] = y0[b * D + d];
    if (PerLane)
      for (int j = 0; j < P; ++j) lane_params[j * L + l] = params[b * P + j];
  }
  Dyn f = proto;
  f.scratch = scratch;
  BlockIntegrator<S, M, Dyn, L, PerLane, StepLog> integ_block(f, PerLane ? lane_params : params, integ, log);
  if constexpr (refills_lanes<S, M, Dyn, L>) {
    LaneRefill<S, M, Dyn, L, PerLane> refill(proto, y0, params, P, lane_params, *queue);
    integ_block.run(y_block, t, n_times, ctl, first, n_valid, out, &refill);
  } else {
    integ_block.run(y_block, t, n_times, ctl, first, n_valid, out);
  }
}

// params: (P,) shared or (batch, P) per trajectory. log: receives every accepted step (the
// discrete adjoint's record), or none.
template <class S, class M, class Dyn, class StepLog = NoStepLog>
void solve_batch(const Dyn& f, const S* y0, std::int64_t batch, const S* t, int n_times,
                 const S* params, bool per_trajectory, const StepControl& ctl,
                 const SolveOutput<S>& out, StepLog* log = nullptr) {
  constexpr int L2 = kBlockLanes<S, Dyn>, L1 = kLanes<S>;
  const int P = f.n_params();
  // refilling solves with a full block for every thread: one block per thread
  std::int64_t n_streams = 0;
  if constexpr (refills_lanes<S, M, Dyn, L2>) {
    const std::int64_t threads = get_num_threads();
    if (n_times > 1 && batch >= threads * L2) n_streams = threads;
  }
  TrajectoryQueue queue;  // what the streams' first blocks leave (empty without streams)
  queue.next = n_streams * L2;
  queue.end = n_streams > 0 ? batch : 0;
  // a lone trajectory (batch 1) takes the L = 1 path
  const std::int64_t n_big = n_streams > 0 ? n_streams : (batch >= 2 ? batch / L2 : 0);
  const std::int64_t n_small = n_streams == 0 && batch >= 2 ? (batch - n_big * L2) / L1 : 0;
  const std::int64_t first_lone = n_streams > 0 ? batch : n_big * L2 + n_small * L1;
  const std::int64_t n_tasks = n_big + n_small + (batch - first_lone);
  auto block = [&](auto lanes, std::int64_t first) {
    constexpr int L = decltype(lanes)::value;
    if (per_trajectory)
      run_block<S, M, L, true>(f, y0, t, n_times, params, P, ctl, first, L, out, log, &queue);
    else
      run_block<S, M, L, false>(f, y0, t, n_times, params, P, ctl, first, L, out, log, &queue);
  };
  parallel_for(n_tasks, [&](std::int64_t task) {
    if (task < n_big) block(std::integral_constant<int, L2>{}, task * L2);
    else if (task < n_big + n_small) block(std::integral_constant<int, L1>{}, n_big * L2 + (task - n_big) * L1);
    else block(std::integral_constant<int, 1>{}, first_lone + (task - n_big - n_small));
  });
}

}  // namespace odefast
