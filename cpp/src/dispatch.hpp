// The one place where runtime choices become template arguments. Each dtype's instantiations
// live in their own translation unit (solve_float32.cpp, solve_float64.cpp) to keep builds fast.
#pragma once
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

#include "odefast/adjoint.hpp"
#include "odefast/second_order.hpp"
#include "odefast/api.hpp"
#include "odefast/dynamics_vjp.hpp"
#include "odefast/batch.hpp"
#include "odefast/dispatch.hpp"
#include "odefast/dynamics.hpp"
#include "odefast/tableaus.hpp"

namespace odefast {

// The packed copy of an MLP's shared weights (see MLP::pack). Each thread keeps its last one
// and reuses it while the layer sizes and the parameters stay bitwise the same (repeated
// solves, a training step's forward and backward): packing a 2-64-64-2 network costs about
// 2 us, 3% of a lone 100-step solve, the comparison a fifth of that. A packed buffer is never
// written after packing, so a tape can share it. Large networks (P > kMaxCachedParams) are
// not cached, to hold no copy of their weights between calls.
template <class S> class PackedWeights {
 public:
  using Buffer = std::shared_ptr<const AlignedVector<S>>;
  static Buffer of(const MLP<S>& f, const S* params) {
    thread_local PackedWeights last;
    const std::size_t P = std::size_t(f.n_params());
    if (last.matches(f, params)) return last.packed_;
    auto packed = std::make_shared<AlignedVector<S>>(f.packed_size());
    f.pack(params, packed->data());
    if (P <= kMaxCachedParams) {
      last.n_layers_ = f.n_layers;
      std::copy(f.sizes, f.sizes + f.n_layers + 1, last.sizes_);
      last.params_.assign(params, params + P);
      last.packed_ = packed;
    }
    return packed;
  }

 private:
  static constexpr std::size_t kMaxCachedParams = std::size_t(1) << 20;
  int n_layers_ = 0;
  int sizes_[MLP<S>::kMaxLayers + 1] = {};
  std::vector<S> params_;
  Buffer packed_;
  bool matches(const MLP<S>& f, const S* params) const {
    return packed_ && n_layers_ == f.n_layers && std::equal(f.sizes, f.sizes + f.n_layers + 1, sizes_) &&
           params_.size() == std::size_t(f.n_params()) &&
           std::memcmp(params_.data(), params, params_.size() * sizeof(S)) == 0;
  }
};

// Calls fn(dynamics) with the configured dynamics object for scalar S. `storage` keeps any
// derived data (packed MLP weights) alive for as long as the caller needs the dynamics.
template <class S, class Fn>
void with_dynamics(const DynamicsSpec& spec, const S* shared_params,
                   std::shared_ptr<const AlignedVector<S>>& storage, Fn&& fn) {
  with_plain_dynamics<S>(spec, [&](auto& f) {
    if constexpr (std::is_same_v<std::decay_t<decltype(f)>, MLP<S>>) {
      if (shared_params) {  // lone trajectories and lane blocks read the transposed, padded copy
        storage = PackedWeights<S>::of(f, shared_params);
        f.packed = storage->data();
      }
    }
    fn(f);
  });
}

template <class S> void solve_typed(const DynamicsSpec& spec, const SolveRequest& r) {
  const S* params = static_cast<const S*>(r.params);
  std::shared_ptr<const AlignedVector<S>> storage;
  SolveOutput<S> out{static_cast<S*>(r.ys), r.batch, r.nfev, r.steps, r.rejected, r.status};
  with_dynamics<S>(spec, r.per_trajectory_params ? nullptr : params, storage, [&](const auto& f) {
    if (f.dim() != spec.dim || f.n_params() != r.n_params)
      throw std::invalid_argument("dynamics dimension or parameter count does not match the request");
    with_method(r.method, [&](auto method) {
      using M = decltype(method);
      solve_batch<S, M>(f, static_cast<const S*>(r.y0), r.batch, static_cast<const S*>(r.t),
                        int(r.n_times), params, r.per_trajectory_params, r.control, out);
    });
  });
}

template <class S, class M, class Dyn> class TapeImpl final : public Tape {
 public:
  TapeImpl(std::shared_ptr<const AlignedVector<S>> storage, const Dyn& f, const SolveRequest& r)
      : storage_(std::move(storage)),  // f's packed weights point into this buffer
        adjoint_(f, static_cast<const S*>(r.y0), r.batch, static_cast<const S*>(r.t), int(r.n_times),
                 static_cast<const S*>(r.params), r.per_trajectory_params, r.control,
                 SolveOutput<S>{static_cast<S*>(r.ys), r.batch, r.nfev, r.steps, r.rejected, r.status}) {}
  void backward(const void* cot, void* ybar0, void* pbar) const override {
    adjoint_.backward(static_cast<const S*>(cot), static_cast<S*>(ybar0), static_cast<S*>(pbar));
  }
  void jvp(int K, const void* v_y0, const void* v_p, void* dys) const override {
    adjoint_.jvp(K, static_cast<const S*>(v_y0), static_cast<const S*>(v_p), static_cast<S*>(dys));
  }
  void hvp(int K, const void* v_y0, const void* v_p, const void* cot, const void* dcot, void* dybar0,
           void* dpbar) const override {
    adjoint_.hvp(K, static_cast<const S*>(v_y0), static_cast<const S*>(v_p), static_cast<const S*>(cot),
                 static_cast<const S*>(dcot), static_cast<S*>(dybar0), static_cast<S*>(dpbar));
  }

 private:
  std::shared_ptr<const AlignedVector<S>> storage_;
  CheckpointAdjoint<S, M, Dyn> adjoint_;
};

template <class S>
std::unique_ptr<Tape> solve_recording_typed(const DynamicsSpec& spec, const SolveRequest& r) {
  const S* params = static_cast<const S*>(r.params);
  std::shared_ptr<const AlignedVector<S>> storage;
  std::unique_ptr<Tape> tape;
  with_dynamics<S>(spec, r.per_trajectory_params ? nullptr : params, storage, [&](const auto& f) {
    using Dyn = std::decay_t<decltype(f)>;
    with_method(r.method, [&](auto method) {
      using M = decltype(method);
      tape = std::make_unique<TapeImpl<S, M, Dyn>>(std::move(storage), f, r);
    });
  });
  return tape;
}

template <class S>
void backsolve_typed(const DynamicsSpec& spec, const SolveRequest& r, const void* cot, void* ybar0,
                     void* pbar) {
  const S* params = static_cast<const S*>(r.params);
  std::shared_ptr<const AlignedVector<S>> storage;
  with_dynamics<S>(spec, r.per_trajectory_params ? nullptr : params, storage, [&](const auto& f) {
    with_method(r.method, [&](auto method) {
      using M = decltype(method);
      backsolve<S, M>(f, static_cast<const S*>(r.y0), r.batch, static_cast<const S*>(r.t),
                      int(r.n_times), params, r.per_trajectory_params, static_cast<const S*>(cot),
                      r.control, static_cast<S*>(ybar0), static_cast<S*>(pbar), r.status, r.nfev);
    });
  });
}

template <class S>
void solve_tangent_typed(const DynamicsSpec& spec, const SolveRequest& r, int K, const void* v_y0,
                         const void* v_p, void* dys) {
  const S* params = static_cast<const S*>(r.params);
  std::shared_ptr<const AlignedVector<S>> storage;
  with_dynamics<S>(spec, nullptr, storage, [&](const auto& f) {
    with_method(r.method, [&](auto method) {
      solve_tangent<S, decltype(method)>(f, static_cast<const S*>(r.y0), r.batch, static_cast<const S*>(r.t),
                                         int(r.n_times), params, r.per_trajectory_params, K,
                                         static_cast<const S*>(v_y0), static_cast<const S*>(v_p), r.control,
                                         static_cast<S*>(dys), r.status, r.nfev);
    });
  });
}

template <class S>
void backsolve_hvp_typed(const DynamicsSpec& spec, const SolveRequest& r, int K, const void* ys,
                         const void* dys, const void* v_p, const void* cot, const void* dcot,
                         void* dybar0, void* dpbar) {
  const S* params = static_cast<const S*>(r.params);
  std::shared_ptr<const AlignedVector<S>> storage;
  with_dynamics<S>(spec, nullptr, storage, [&](const auto& f) {
    with_method(r.method, [&](auto method) {
      backsolve_hvp<S, decltype(method)>(f, static_cast<const S*>(ys), static_cast<const S*>(dys), r.batch,
                                         static_cast<const S*>(r.t), int(r.n_times), params,
                                         r.per_trajectory_params, K, static_cast<const S*>(v_p),
                                         static_cast<const S*>(cot), static_cast<const S*>(dcot), r.control,
                                         static_cast<S*>(dybar0), static_cast<S*>(dpbar), r.status, r.nfev);
    });
  });
}

// Row-by-row evaluation of f or its vjp (lone-trajectory kernels; for time gradients and tests).
template <class S>
void field_typed(const DynamicsSpec& spec, std::int64_t batch, const S* t, const S* y, const S* params,
                 bool per_trajectory, const S* a, S* dy, S* gy, S* gp, S* gt) {
  std::shared_ptr<const AlignedVector<S>> storage;
  with_dynamics<S>(spec, per_trajectory ? nullptr : params, storage, [&](const auto& f) {
    using Dyn = std::decay_t<decltype(f)>;
    const int D = f.dim(), P = f.n_params();
    parallel_for((batch + 63) / 64, [&](std::int64_t c) {
      Dyn g = f;
      std::vector<S> scratch(f.scratch_size(1) + vjp_work_size(f, 1));
      g.scratch = scratch.data();
      for (std::int64_t b = c * 64; b < std::min<std::int64_t>(batch, (c + 1) * 64); ++b) {
        const S* p = per_trajectory ? params + b * P : params;
        if (a == nullptr) {
          g.template eval<1, false>(t + b, y + b * D, dy + b * D, p);
        } else {
          for (int j = 0; j < P; ++j) gp[b * P + j] = S(0);
          vjp<1, false>(g, t + b, y + b * D, p, a + b * D, gy + b * D, gp + b * P, gt + b,
                        scratch.data() + f.scratch_size(1));
        }
      }
    });
  });
}

}  // namespace odefast
