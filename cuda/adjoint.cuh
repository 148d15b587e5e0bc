// Reverse mode on the GPU: the discrete ("checkpoint") adjoint, one GPU thread per trajectory,
// forward and reverse in one kernel (odefast/trajectory_adjoint.hpp: trajectory_adjoint).
//
// Each thread solves its trajectory again, recording every accepted step (t, h, y) in its tape
// -- global memory, interleaved across the chunk's trajectories so that a warp's stores and
// loads are adjacent words -- then sweeps the steps backwards, recomputing the stages and
// applying the dynamics' vjp (dynamics_vjp.hpp), and finally forms its time gradients.
// The tape holds tape_steps steps per trajectory: the caller passes the maximum of a plain
// solve's accepted steps (the recording solve takes exactly the same steps), so memory is
// exactly what the longest trajectory needs; a trajectory that would overflow is counted and
// gets no gradient. The batch runs in chunks whose tapes, outputs and work fit memory_budget
// bytes (a partition fixed by the problem and the budget, so results never depend on the
// GPU's free memory).
//
// Shared parameters: each thread writes its own parameter cotangent row (chunk, P); the rows
// are summed by a fixed tree (segments of kSegment rows, in order) and added to the total in
// chunk order: deterministic, no atomics. Per-trajectory parameters: rows of the (B, P) output.
#pragma once
#include <algorithm>
#include <cstdint>

#include "dispatch.hpp"
#include "memory.cuh"
#include "odefast/trajectory_adjoint.hpp"

namespace odefast::gpu {

constexpr int kAdjointThreads = 128;
constexpr int kSegment = 256;

template <class S> struct AdjointArgs {
  TrajectoryAdjointArgs<S> tr;  // chunk-local outputs, tape
  std::int64_t first;           // the chunk's first trajectory
  const S* y0;
  const S* params;
  int P;
  bool per_traj;
  const S* cot;                 // (N, B, D)
  S* ybar0;                     // (B, D)
  S* pbar_rows;                 // per trajectory: (B, P) output rows; shared: (chunk, P) rows
  S* gt;                        // (B, N)
  S* work;                      // global scratch (dynamic-dimension dynamics)
  std::int64_t work_stride, n_main;
};

template <class S, class M, class Dyn>
__global__ void __launch_bounds__(kAdjointThreads) adjoint_kernel(Dyn f, AdjointArgs<S> a) {
  const std::int64_t r = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= a.tr.out.batch) return;
  const std::int64_t b = a.first + r;
  const int D = f.dim(), P = a.P;
  const S* p = a.per_traj ? a.params + b * P : a.params;
  S* pb = a.pbar_rows + (a.per_traj ? b : r) * P;
  constexpr int kD = StaticDim<Dyn>::value;
  if constexpr (kD > 0) {
    constexpr std::size_t n = trajectory_forward_work<M>(kD) > trajectory_reverse_work<M>(kD, 0)
                                  ? trajectory_forward_work<M>(kD)
                                  : trajectory_reverse_work<M>(kD, 0);
    S work[n];
    trajectory_adjoint<S, M>(f, a.tr, r, a.y0 + b * D, p, a.cot + b * D, a.ybar0 + b * D, pb, a.gt + b * a.tr.n_times,
                             work, static_cast<S*>(nullptr));
  } else {
    S* w = a.work + r * a.work_stride;
    trajectory_adjoint<S, M>(f, a.tr, r, a.y0 + b * D, p, a.cot + b * D, a.ybar0 + b * D, pb, a.gt + b * a.tr.n_times,
                             w, w + a.n_main);
  }
}

// out[g, j] = sum of rows [g kSegment, (g + 1) kSegment) of column j, in row order.
template <class S>
__global__ void sum_segments(const S* rows, std::int64_t n_rows, int P, S* out) {
  const std::int64_t q = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t n_seg = (n_rows + kSegment - 1) / kSegment;
  if (q >= n_seg * P) return;
  const std::int64_t g = q / P;
  const int j = int(q % P);
  const std::int64_t end = std::min(n_rows, (g + 1) * kSegment);
  S acc = S(0);
  for (std::int64_t i = g * kSegment; i < end; ++i) acc += rows[i * P + j];
  out[q] = acc;
}

template <class S> __global__ void add_row(const S* row, int P, S* total) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < P) total[j] += row[j];
}

// total (P) += the sum of rows (n, P), by a fixed tree; rows and tmp are overwritten.
template <class S> void sum_rows_into(S* rows, std::int64_t n, int P, S* tmp, S* total) {
  S* src = rows;
  S* dst = tmp;
  while (n > 1) {
    const std::int64_t n_seg = (n + kSegment - 1) / kSegment;
    sum_segments<S><<<blocks_for(n_seg * P, 256), 256>>>(src, n, P, dst);
    ODEFAST_CUDA_CHECK_LAUNCH();
    std::swap(src, dst);
    n = n_seg;
  }
  add_row<S><<<blocks_for(P, 256), 256>>>(src, P, total);
  ODEFAST_CUDA_CHECK_LAUNCH();
}

template <class S> std::int64_t adjoint_typed(const DynamicsSpec& spec, const Call& c) {
  Staged y0 = Staged::input(c.y0), t = Staged::input(c.t), params = Staged::input(c.params),
         cot = Staged::input(c.cot);
  Staged ybar0 = Staged::output(c.ybar0), pbar = Staged::output(c.pbar), gt = Staged::output(c.gt);
  pbar.zero();
  std::int64_t n_overflow = 0;
  with_dynamics<S>(spec, [&](const auto& f) {
    using Dyn = std::decay_t<decltype(f)>;
    with_method(c.method, [&](auto method) {
      using M = decltype(method);
      const int D = f.dim(), P = c.n_params, N = c.n_times;
      const std::int64_t B = c.batch, cap = std::max<std::int64_t>(c.tape_steps, 0);
      const std::size_t n_vjp = vjp_work_size(f, 1);
      const std::int64_t n_main = std::int64_t(std::max(trajectory_forward_work<M>(D), trajectory_reverse_work<M>(D, n_vjp)));
      const std::int64_t work_stride = StaticDim<Dyn>::value > 0 ? 0 : n_main + std::int64_t(f.scratch_size(1));
      // bytes per trajectory of a chunk: tape, outputs, counters, pbar row, work
      const std::int64_t per_traj = std::int64_t(sizeof(S)) * (cap * (D + 2) + std::int64_t(N) * D +
                                                               (c.per_trajectory_params ? 0 : 2 * P) + work_stride) +
                                    3 * 8 + 2 * 4;
      const std::int64_t chunk = std::max<std::int64_t>(1, std::min<std::int64_t>(B, std::int64_t(c.memory_budget) / per_traj));
      DeviceMemory tape(std::size_t(chunk) * cap * (D + 2) * sizeof(S)), ys(std::size_t(chunk) * N * D * sizeof(S)),
          counters(std::size_t(chunk) * 3 * 8), status(std::size_t(chunk) * 4), overflow(std::size_t(chunk) * 4),
          rows(c.per_trajectory_params ? 0 : std::size_t(chunk) * P * sizeof(S)),
          tmp(c.per_trajectory_params ? 0 : std::size_t((chunk + kSegment - 1) / kSegment) * P * sizeof(S)),
          work(std::size_t(chunk) * work_stride * sizeof(S));
      std::vector<std::int32_t> host_overflow(chunk);
      for (std::int64_t first = 0; first < B; first += chunk) {
        const std::int64_t n = std::min(chunk, B - first);
        std::int64_t* cnt = counters.get<std::int64_t>();
        AdjointArgs<S> a{TrajectoryAdjointArgs<S>{t.get<const S>(), N, c.control,
                                                  SolveOutput<S>{ys.get<S>(), n, cnt, cnt + n, cnt + 2 * n,
                                                                 status.get<std::int32_t>()},
                                                  tape.get<S>(), cap, B * D, n_vjp, overflow.get<std::int32_t>()},
                         first, y0.get<const S>(), params.get<const S>(), P, c.per_trajectory_params,
                         cot.get<const S>(), ybar0.get<S>(), c.per_trajectory_params ? pbar.get<S>() : rows.get<S>(),
                         gt.get<S>(), work.get<S>(), work_stride, n_main};
        if (!c.per_trajectory_params) rows.zero();
        adjoint_kernel<S, M, Dyn><<<blocks_for(n, kAdjointThreads), kAdjointThreads>>>(f, a);
        ODEFAST_CUDA_CHECK_LAUNCH();
        if (!c.per_trajectory_params) sum_rows_into<S>(rows.get<S>(), n, P, tmp.get<S>(), pbar.get<S>());
        ODEFAST_CUDA_CHECK(cudaMemcpy(host_overflow.data(), overflow.get(), std::size_t(n) * 4, cudaMemcpyDeviceToHost));
        for (std::int64_t r = 0; r < n; ++r) n_overflow += host_overflow[r];
      }
      ODEFAST_CUDA_CHECK(cudaDeviceSynchronize());
      for (DeviceMemory* m : {&tape, &ys, &counters, &status, &overflow, &rows, &tmp, &work}) m->release();
    });
  });
  ODEFAST_CUDA_CHECK(cudaDeviceSynchronize());
  for (Staged* s : {&ybar0, &pbar, &gt}) s->finish();
  return n_overflow;
}

}  // namespace odefast::gpu
