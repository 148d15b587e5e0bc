// The CUDA kernels' per-trajectory bodies run on the CPU (private: odefast._core.trajectory_
// solve_host / trajectory_adjoint_host), so that the tests check everything but the launch on
// machines without a GPU: the same functions (odefast/trajectory_adjoint.hpp), the same dispatch
// (cuda/dispatch.hpp: no packed MLP weights), the same tape layout (interleaved with stride B,
// as one chunk of the device's), the same parameter-cotangent sum (per-trajectory rows, then
// summed in trajectory order). Sequential: it is a test oracle, not a fast path.
#include <cstring>
#include <vector>

#include "cuda/api.hpp"
#include "cuda/dispatch.hpp"
#include "odefast/trajectory_adjoint.hpp"

namespace odefast::gpu {
namespace {

template <class S> const S* in(const Buffer& b) { return static_cast<const S*>(b.ptr); }
template <class T> T* out(const Buffer& b) { return static_cast<T*>(b.ptr); }

template <class S> SolveOutput<S> solve_output(const Call& c) {
  return SolveOutput<S>{out<S>(c.ys), c.batch, out<std::int64_t>(c.nfev), out<std::int64_t>(c.steps),
                        out<std::int64_t>(c.rejected), out<std::int32_t>(c.status)};
}

template <class S> void solve_typed(const DynamicsSpec& spec, const Call& c) {
  with_dynamics<S>(spec, [&](const auto& f) {
    with_method(c.method, [&](auto method) {
      using M = decltype(method);
      const int D = f.dim(), P = f.n_params();
      const std::size_t n_fwd = trajectory_forward_work<M>(D);
      std::vector<S> work(n_fwd + f.scratch_size(1));
      const SolveOutput<S> o = solve_output<S>(c);
      for (std::int64_t b = 0; b < c.batch; ++b) {
        const S* p = in<S>(c.params) + (c.per_trajectory_params ? b * P : 0);
        trajectory_solve<S, M>(f, in<S>(c.y0) + b * D, in<S>(c.t), c.n_times, p, c.control, b, o,
                               work.data(), work.data() + n_fwd);
      }
    });
  });
}

template <class S> std::int64_t adjoint_typed(const DynamicsSpec& spec, const Call& c) {
  std::int64_t n_overflow = 0;
  with_dynamics<S>(spec, [&](const auto& f) {
    with_method(c.method, [&](auto method) {
      using M = decltype(method);
      const int D = f.dim(), P = f.n_params(), N = c.n_times;
      const std::int64_t B = c.batch;
      const std::size_t n_vjp = vjp_work_size(f, 1);
      const std::size_t n_main = std::max(trajectory_forward_work<M>(D), trajectory_reverse_work<M>(D, n_vjp));
      std::vector<S> work(n_main + f.scratch_size(1));
      std::vector<S> tape(std::size_t(B) * c.tape_steps * (D + 2));
      std::vector<std::int32_t> overflow(B);
      std::vector<S> rows(c.per_trajectory_params ? 0 : std::size_t(B) * P, S(0));
      S* pbar = out<S>(c.pbar);
      if (c.per_trajectory_params)
        for (std::int64_t q = 0; q < B * P; ++q) pbar[q] = S(0);
      TrajectoryAdjointArgs<S> a{in<S>(c.t), N, c.control, solve_output<S>(c), tape.data(), c.tape_steps,
                                 B * D, n_vjp, overflow.data()};
      for (std::int64_t b = 0; b < B; ++b) {
        const S* p = in<S>(c.params) + (c.per_trajectory_params ? b * P : 0);
        S* pb = c.per_trajectory_params ? pbar + b * P : rows.data() + b * P;
        trajectory_adjoint<S, M>(f, a, b, in<S>(c.y0) + b * D, p, in<S>(c.cot) + b * D, out<S>(c.ybar0) + b * D,
                                 pb, out<S>(c.gt) + b * N, work.data(), work.data() + n_main);
        n_overflow += overflow[b];
      }
      if (!c.per_trajectory_params) {
        for (int j = 0; j < P; ++j) pbar[j] = S(0);
        for (std::int64_t b = 0; b < B; ++b)
          for (int j = 0; j < P; ++j) pbar[j] += rows[b * P + j];
      }
    });
  });
  return n_overflow;
}

}  // namespace

void host_solve(const DynamicsSpec& spec, const Call& c) {
  if (c.dtype == "float32") return solve_typed<float>(spec, c);
  if (c.dtype == "float64") return solve_typed<double>(spec, c);
  throw std::invalid_argument("unsupported dtype '" + c.dtype + "'; supported: float32, float64");
}

std::int64_t host_adjoint(const DynamicsSpec& spec, const Call& c) {
  if (c.dtype == "float32") return adjoint_typed<float>(spec, c);
  if (c.dtype == "float64") return adjoint_typed<double>(spec, c);
  throw std::invalid_argument("unsupported dtype '" + c.dtype + "'; supported: float32, float64");
}

}  // namespace odefast::gpu
