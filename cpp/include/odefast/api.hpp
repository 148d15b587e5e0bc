// The untemplated C++ API the Python binding calls. Runtime choices (dtype, method, dynamics)
// become template arguments in exactly one place: src/dispatch.hpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "integrator.hpp"

namespace odefast {

struct DynamicsSpec {
  std::string kind;              // "mlp", "linear", "lorenz", "nbody"
  int dim = 0;                   // state dimension D
  std::vector<int> layers;       // mlp: all layer sizes, input (D or D + 1) to output (D)
  std::string activation = "tanh";
  bool time_input = false;       // mlp: t appended to the input
  int n_bodies = 0, space_dim = 2;
  double G = 1.0, softening = 0.0;
};

struct SolveRequest {
  std::string dtype;             // "float32" | "float64"
  std::string method;
  std::int64_t batch = 0, n_times = 0, n_params = 0;
  const void* y0 = nullptr;      // (batch, D)
  const void* t = nullptr;       // (n_times,)
  const void* params = nullptr;  // (n_params,) or (batch, n_params)
  bool per_trajectory_params = false;
  StepControl control;
  void* ys = nullptr;            // (n_times, batch, D)
  std::int64_t* nfev = nullptr;
  std::int64_t* steps = nullptr;
  std::int64_t* rejected = nullptr;
  std::int32_t* status = nullptr;
};

void solve(const DynamicsSpec& dynamics, const SolveRequest& request);

std::vector<std::string> method_names();
bool method_is_adaptive(const std::string& method);

struct TableauData {
  std::string name;
  int stages = 0, order = 0, error_order = 0, dense_degree = 0;
  bool fsal = false, has_err3 = false;
  std::vector<double> c, a, b, b_err, b_err3, dense;  // a: s*s row-major; dense: s*deg
};
TableauData tableau(const std::string& method);

}  // namespace odefast
