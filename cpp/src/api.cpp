#include "odefast/api.hpp"

#include <stdexcept>

#include "dispatch.hpp"

namespace odefast {

extern template void solve_typed<float>(const DynamicsSpec&, const SolveRequest&);
extern template void solve_typed<double>(const DynamicsSpec&, const SolveRequest&);

void solve(const DynamicsSpec& dynamics, const SolveRequest& request) {
  if (request.dtype == "float32") return solve_typed<float>(dynamics, request);
  if (request.dtype == "float64") return solve_typed<double>(dynamics, request);
  throw std::invalid_argument("unsupported dtype '" + request.dtype + "'; supported: float32, float64");
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
