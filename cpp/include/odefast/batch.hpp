// CPU batch driver: splits a batch into lane blocks, runs them on the thread pool.
//
// Blocks hold kBlockLanes<S, Dyn> trajectories: by default two AVX-512 registers (two
// independent dependency chains through every lane-parallel step of a small vector field, and
// half the per-step bookkeeping per trajectory); a dynamics type may ask for another count
// (Dyn::kBlockRegisters). A remainder of at least kLanes<S> runs as one-register blocks, the
// rest one trajectory at a time. All paths perform identical arithmetic per trajectory (see
// dynamics.hpp), so every result is independent of batch size, position and thread count.
#pragma once
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

// Integrates trajectories first .. first + n_valid - 1 as one block of L lanes; `log` (if any)
// receives the accepted steps of every lane.
template <class S, class M, int L, bool PerLane, class Dyn, class StepLog = NoStepLog>
void run_block(const Dyn& proto, const S* y0, const S* t, int n_times, const S* params, int P,
               const StepControl& ctl, std::int64_t first, int n_valid, const SolveOutput<S>& out,
               StepLog* log = nullptr) {
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
  integ_block.run(y_block, t, n_times, ctl, first, n_valid, out);
}

// No step logs: a plain solve.
struct NoLogs {};

// params: (P,) shared or (batch, P) per trajectory. logs(first): the StepLog of the block that
// starts at trajectory `first` (for the discrete adjoint's record), or NoLogs.
template <class S, class M, class Dyn, class Logs = NoLogs>
void solve_batch(const Dyn& f, const S* y0, std::int64_t batch, const S* t, int n_times,
                 const S* params, bool per_trajectory, const StepControl& ctl,
                 const SolveOutput<S>& out, const Logs& logs = {}) {
  constexpr int L2 = kBlockLanes<S, Dyn>, L1 = kLanes<S>;
  const int P = f.n_params();
  // a lone trajectory (batch 1) takes the L = 1 path
  const std::int64_t n_big = batch >= 2 ? batch / L2 : 0;
  const std::int64_t n_small = batch >= 2 ? (batch - n_big * L2) / L1 : 0;
  const std::int64_t first_lone = n_big * L2 + n_small * L1;
  const std::int64_t n_tasks = n_big + n_small + (batch - first_lone);
  auto block = [&](auto lanes, std::int64_t first) {
    constexpr int L = decltype(lanes)::value;
    auto run = [&](auto* log) {
      if (per_trajectory)
        run_block<S, M, L, true>(f, y0, t, n_times, params, P, ctl, first, L, out, log);
      else
        run_block<S, M, L, false>(f, y0, t, n_times, params, P, ctl, first, L, out, log);
    };
    if constexpr (std::is_same_v<Logs, NoLogs>) {
      run(static_cast<NoStepLog*>(nullptr));
    } else {
      auto log = logs(first);
      run(&log);
    }
  };
  parallel_for(n_tasks, [&](std::int64_t task) {
    if (task < n_big) block(std::integral_constant<int, L2>{}, task * L2);
    else if (task < n_big + n_small) block(std::integral_constant<int, L1>{}, n_big * L2 + (task - n_big) * L1);
    else block(std::integral_constant<int, 1>{}, first_lone + (task - n_big - n_small));
  });
}

}  // namespace odefast
