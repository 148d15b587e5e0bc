#include "odefast/api.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dispatch.hpp"

namespace odefast {

#define ODEFAST_EXTERN(S)                                                                        \
  extern template void solve_typed<S>(const DynamicsSpec&, const SolveRequest&);                  \
  extern template std::unique_ptr<Tape> solve_recording_typed<S>(const DynamicsSpec&,             \
                                                                 const SolveRequest&);            \
  extern template void backsolve_typed<S>(const DynamicsSpec&, const SolveRequest&, const void*,  \
                                          void*, void*);                                          \
  extern template void solve_tangent_typed<S>(const DynamicsSpec&, const SolveRequest&, int,       \
                                              const void*, const void*, void*);                   \
  extern template void backsolve_hvp_typed<S>(const DynamicsSpec&, const SolveRequest&, int,       \
                                              const void*, const void*, const void*, const void*, \
                                              const void*, void*, void*);                         \
  extern template void field_typed<S>(const DynamicsSpec&, std::int64_t, const S*, const S*,      \
                                      const S*, bool, const S*, S*, S*, S*, S*);
ODEFAST_EXTERN(float)
ODEFAST_EXTERN(double)
#undef ODEFAST_EXTERN

namespace {
[[noreturn]] void bad_dtype(const std::string& dtype) {
  throw std::invalid_argument("unsupported dtype '" + dtype + "'; supported: float32, float64");
}
}  // namespace

void solve(const DynamicsSpec& dynamics, const SolveRequest& request) {
  if (request.dtype == "float32") return solve_typed<float>(dynamics, request);
  if (request.dtype == "float64") return solve_typed<double>(dynamics, request);
  bad_dtype(request.dtype);
}

std::unique_ptr<Tape> solve_recording(const DynamicsSpec& dynamics, const SolveRequest& request) {
  if (request.dtype == "float32") return solve_recording_typed<float>(dynamics, request);
  if (request.dtype == "float64") return solve_recording_typed<double>(dynamics, request);
  bad_dtype(request.dtype);
}

void backsolve(const DynamicsSpec& dynamics, const SolveRequest& request, const void* cot,
               void* ybar0, void* pbar) {
  if (request.dtype == "float32") return backsolve_typed<float>(dynamics, request, cot, ybar0, pbar);
  if (request.dtype == "float64") return backsolve_typed<double>(dynamics, request, cot, ybar0, pbar);
  bad_dtype(request.dtype);
}

void solve_tangent(const DynamicsSpec& dynamics, const SolveRequest& r, int K, const void* v_y0,
                   const void* v_p, void* dys) {
  if (r.dtype == "float32") return solve_tangent_typed<float>(dynamics, r, K, v_y0, v_p, dys);
  if (r.dtype == "float64") return solve_tangent_typed<double>(dynamics, r, K, v_y0, v_p, dys);
  bad_dtype(r.dtype);
}

void backsolve_hvp(const DynamicsSpec& dynamics, const SolveRequest& r, int K, const void* ys,
                   const void* dys, const void* v_p, const void* cot, const void* dcot, void* dybar0,
                   void* dpbar) {
  if (r.dtype == "float32")
    return backsolve_hvp_typed<float>(dynamics, r, K, ys, dys, v_p, cot, dcot, dybar0, dpbar);
  if (r.dtype == "float64")
    return backsolve_hvp_typed<double>(dynamics, r, K, ys, dys, v_p, cot, dcot, dybar0, dpbar);
  bad_dtype(r.dtype);
}

template <class S>
static void field(const DynamicsSpec& d, std::int64_t batch, const void* t, const void* y,
                  const void* params, bool per_traj, const void* a, void* dy, void* gy, void* gp,
                  void* gt) {
  field_typed<S>(d, batch, static_cast<const S*>(t), static_cast<const S*>(y),
                 static_cast<const S*>(params), per_traj, static_cast<const S*>(a),
                 static_cast<S*>(dy), static_cast<S*>(gy), static_cast<S*>(gp), static_cast<S*>(gt));
}

void eval_field(const DynamicsSpec& dynamics, const std::string& dtype, std::int64_t batch,
                const void* t, const void* y, const void* params, bool per_trajectory, void* dy) {
  if (dtype == "float32")
    return field<float>(dynamics, batch, t, y, params, per_trajectory, nullptr, dy, nullptr, nullptr, nullptr);
  if (dtype == "float64")
    return field<double>(dynamics, batch, t, y, params, per_trajectory, nullptr, dy, nullptr, nullptr, nullptr);
  bad_dtype(dtype);
}

void vjp_field(const DynamicsSpec& dynamics, const std::string& dtype, std::int64_t batch,
               const void* t, const void* y, const void* params, bool per_trajectory,
               const void* a, void* gy, void* gp, void* gt) {
  if (dtype == "float32")
    return field<float>(dynamics, batch, t, y, params, per_trajectory, a, nullptr, gy, gp, gt);
  if (dtype == "float64")
    return field<double>(dynamics, batch, t, y, params, per_trajectory, a, nullptr, gy, gp, gt);
  bad_dtype(dtype);
}

template <class S> static std::int64_t first_non_finite_typed(const S* x, std::int64_t n) {
  // x * 0 is NaN exactly when x is inf or NaN, and a NaN survives any order of summation, so
  // each block reduces in registers; only a block with a bad value is searched
  constexpr std::int64_t kBlock = 1024;
  for (std::int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const std::int64_t i1 = std::min(n, i0 + kBlock);
    S poison = S(0);
#pragma omp simd reduction(+ : poison)
    for (std::int64_t i = i0; i < i1; ++i) poison += x[i] * S(0);
    if (poison != poison)
      for (std::int64_t i = i0; i < i1; ++i)
        if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

std::int64_t first_non_finite(const std::string& dtype, const void* values, std::int64_t n) {
  if (dtype == "float32") return first_non_finite_typed(static_cast<const float*>(values), n);
  if (dtype == "float64") return first_non_finite_typed(static_cast<const double*>(values), n);
  bad_dtype(dtype);
}

std::vector<std::string> method_names() {
  return {"euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8"};
}

bool method_is_adaptive(const std::string& method) {
  bool adaptive = false;
  with_method(method, [&](auto m) { adaptive = decltype(m)::error_order > 0; });
  return adaptive;
}

TableauData tableau(const std::string& method) {
  TableauData t;
  with_method(method, [&](auto m) {
    using M = decltype(m);
    constexpr int s = M::stages;
    t.name = M::name;
    t.stages = s;
    t.order = M::order;
    t.error_order = M::error_order;
    t.dense_degree = M::dense_degree;
    t.fsal = tableaus::is_fsal<M>();
    t.has_err3 = M::has_err3;
    for (int i = 0; i < s; ++i) {
      t.c.push_back(M::c[i]);
      t.b.push_back(M::b[i]);
      t.b_err.push_back(M::b_err[i]);
      t.b_err3.push_back(M::b_err3[i]);
      for (int j = 0; j < s; ++j) t.a.push_back(M::a[i][j]);
      for (int j = 0; j < M::dense_degree; ++j) t.dense.push_back(M::dense[i][j]);
    }
  });
  return t;
}

}  // namespace odefast
