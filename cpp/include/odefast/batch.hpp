// CPU batch driver: splits a batch into lane blocks, runs them on the thread pool.
//
// Full blocks use kLanes<S> lanes (one AVX-512 register of trajectories); the remainder runs
// one trajectory at a time. Both paths perform identical arithmetic per trajectory (see
// dynamics.hpp), so every result is independent of batch size, position and thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "integrator.hpp"
#include "parallel.hpp"

namespace odefast {

template <class S> constexpr int kLanes = 64 / int(sizeof(S));

template <class S, class M, int L, bool PerLane, class Dyn>
void run_block(const Dyn& proto, const S* y0, const S* t, int n_times, const S* params, int P,
               const StepControl& ctl, std::int64_t first, int n_valid, const SolveOutput<S>& out) {
  const int D = proto.dim();
  std::vector<S> work(std::size_t(M::stages + 4) * D * L + proto.scratch_size(L) +
                      (PerLane ? std::size_t(P) * L : 0) + std::size_t(D) * L);
  S* integ = work.data();
  S* scratch = integ + std::size_t(M::stages + 4) * D * L;
  S* lane_params = scratch + proto.scratch_size(L);
  S* y_block = lane_params + (PerLane ? std::size_t(P) * L : 0);
  // SoA gather; padding lanes repeat the first trajectory so they stay finite
  for (int l = 0; l < L; ++l) {
    const std::int64_t b = first + (l < n_valid ? l : 0);
    for (int d = 0; d < D; ++d) y_block[d * L + l] = y0[b * D + d];
    if (PerLane)
      for (int j = 0; j < P; ++j) lane_params[j * L + l] = params[b * P + j];
  }
  Dyn f = proto;
  f.scratch = scratch;
  BlockIntegrator<S, M, Dyn, L, PerLane> integ_block(f, PerLane ? lane_params : params, integ);
  integ_block.run(y_block, t, n_times, ctl, first, n_valid, out);
}

// params: (P,) shared or (batch, P) per trajectory.
template <class S, class M, class Dyn>
void solve_batch(const Dyn& f, const S* y0, std::int64_t batch, const S* t, int n_times,
                 const S* params, bool per_trajectory, const StepControl& ctl,
                 const SolveOutput<S>& out) {
  constexpr int L = kLanes<S>;
  const int P = f.n_params();
  const std::int64_t n_blocks = batch >= 2 ? batch / L : 0;
  const std::int64_t n_tasks = n_blocks + (batch - n_blocks * L);
  parallel_for(n_tasks, [&](std::int64_t task) {
    if (task < n_blocks) {
      if (per_trajectory)
        run_block<S, M, L, true>(f, y0, t, n_times, params, P, ctl, task * L, L, out);
      else
        run_block<S, M, L, false>(f, y0, t, n_times, params, P, ctl, task * L, L, out);
    } else {
      const std::int64_t b = n_blocks * L + (task - n_blocks);
      if (per_trajectory)
        run_block<S, M, 1, true>(f, y0, t, n_times, params, P, ctl, b, 1, out);
      else
        run_block<S, M, 1, false>(f, y0, t, n_times, params, P, ctl, b, 1, out);
    }
  });
}

}  // namespace odefast
