// The untemplated C++ API the Python binding calls. Runtime choices (dtype, method, dynamics)
// become template arguments in exactly one place: src/dispatch.hpp.
#pragma once
#include <cstdint>
#include <memory>
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

// The discrete adjoint's forward pass (fills the request's outputs like solve) and its record.
class Tape {
 public:
  virtual ~Tape() = default;
  // cot: (n_times, batch, D); ybar0: (batch, D), dL/dy0 without cot[0];
  // pbar: (P,) summed over trajectories, or (batch, P) for per-trajectory parameters.
  virtual void backward(const void* cot, void* ybar0, void* pbar) const = 0;
  // Second order, discrete (forward-over-reverse through the recorded steps), K directions:
  // v_y0 (K, batch, D); v_p (K, P) or (K, batch, P). jvp: output tangents dys
  // (K, n_times, batch, D). hvp: tangents of backward(cot) given the cotangent's tangents dcot
  // (K, n_times, batch, D): dybar0 (K, batch, D), dpbar (K, P) summed or (K, batch, P).
  virtual void jvp(int K, const void* v_y0, const void* v_p, void* dys) const = 0;
  virtual void hvp(int K, const void* v_y0, const void* v_p, const void* cot, const void* dcot,
                   void* dybar0, void* dpbar) const = 0;
};
std::unique_ptr<Tape> solve_recording(const DynamicsSpec& dynamics, const SolveRequest& request);

// The continuous adjoint: request.y0 holds y(t[-1]) (batch, D); request.status / nfev get the
// backward solve's per-trajectory results.
void backsolve(const DynamicsSpec& dynamics, const SolveRequest& request, const void* cot,
               void* ybar0, void* pbar);

// Second order, continuous (second_order.hpp), K directions shaped as for Tape::jvp / hvp.
// solve_tangent: output tangents dys; request.status / nfev get the tangent solves' results.
void solve_tangent(const DynamicsSpec& dynamics, const SolveRequest& request, int K,
                   const void* v_y0, const void* v_p, void* dys);
// backsolve_hvp: ys (n_times, batch, D) the forward outputs and dys their tangents; cot and
// dcot as for Tape::hvp; request.status / nfev get the backward solves' results.
void backsolve_hvp(const DynamicsSpec& dynamics, const SolveRequest& request, int K, const void* ys,
                   const void* dys, const void* v_p, const void* cot, const void* dcot,
                   void* dybar0, void* dpbar);

// dy = f(t_b, y_b; params) for every row b (t: (batch,)).
void eval_field(const DynamicsSpec& dynamics, const std::string& dtype, std::int64_t batch,
                const void* t, const void* y, const void* params, bool per_trajectory, void* dy);

// vjp of f at every row: gy (batch, D), gp (batch, P) per row, gt (batch,).
void vjp_field(const DynamicsSpec& dynamics, const std::string& dtype, std::int64_t batch,
               const void* t, const void* y, const void* params, bool per_trajectory,
               const void* a, void* gy, void* gp, void* gt);

// Index (C order) of the first inf or NaN among n values of dtype, or -1 when all are finite.
std::int64_t first_non_finite(const std::string& dtype, const void* values, std::int64_t n);

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
