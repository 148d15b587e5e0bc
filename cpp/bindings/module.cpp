// pybind11 module odefast._core: checks arrays, allocates outputs, releases the GIL and calls
// the untemplated C++ API. Defaults, normalisation and user-facing messages live in Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/api.hpp"
#include "odefast/api.hpp"
#include "odefast/parallel.hpp"

namespace py = pybind11;

namespace {

#ifndef ODEFAST_COMPILER
#define ODEFAST_COMPILER "unknown"
#endif
#ifndef ODEFAST_CXX_FLAGS
#define ODEFAST_CXX_FLAGS ""
#endif
#ifndef ODEFAST_CUDA_ARCHS
#define ODEFAST_CUDA_ARCHS ""
#endif
#ifndef ODEFAST_VERSION
#define ODEFAST_VERSION "0.0.0"
#endif

const void* data_of(const py::array& a, const char* name, const std::string& dtype) {
  const bool ok = (dtype == "float32" && py::isinstance<py::array_t<float>>(a)) ||
                  (dtype == "float64" && py::isinstance<py::array_t<double>>(a));
  if (!ok) throw py::type_error(std::string(name) + ": expected a " + dtype + " array");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  return a.data();
}

odefast::DynamicsSpec parse_spec(const py::dict& dynamics) {
  odefast::DynamicsSpec spec;
  spec.kind = dynamics["kind"].cast<std::string>();
  spec.dim = dynamics["dim"].cast<int>();
  if (dynamics.contains("layers")) spec.layers = dynamics["layers"].cast<std::vector<int>>();
  if (dynamics.contains("activation")) spec.activation = dynamics["activation"].cast<std::string>();
  if (dynamics.contains("time_input")) spec.time_input = dynamics["time_input"].cast<bool>();
  if (dynamics.contains("n_bodies")) spec.n_bodies = dynamics["n_bodies"].cast<int>();
  if (dynamics.contains("space_dim")) spec.space_dim = dynamics["space_dim"].cast<int>();
  if (dynamics.contains("G")) spec.G = dynamics["G"].cast<double>();
  if (dynamics.contains("softening")) spec.softening = dynamics["softening"].cast<double>();
  return spec;
}

py::array new_array(const std::string& dtype, std::vector<py::ssize_t> shape) {
  return dtype == "float32" ? py::array(py::array_t<float>(shape)) : py::array(py::array_t<double>(shape));
}

// Checks the arrays of a solve and fills the request (outputs are allocated by the caller).
odefast::SolveRequest make_request(const odefast::DynamicsSpec& spec, const std::string& dtype,
                                   const std::string& method, const py::array& y0, const py::array& t,
                                   const py::array& params, double rtol, double atol, double dt,
                                   std::int64_t max_steps) {
  if (y0.ndim() != 2 || y0.shape(1) != spec.dim) throw py::value_error("y0: expected shape (B, D)");
  if (t.ndim() != 1) throw py::value_error("t: expected a 1-D array");
  if (params.ndim() != 1 && params.ndim() != 2) throw py::value_error("params: expected 1-D or 2-D");
  odefast::SolveRequest r;
  r.dtype = dtype;
  r.method = method;
  r.batch = y0.shape(0);
  r.n_times = t.shape(0);
  r.per_trajectory_params = params.ndim() == 2;
  r.n_params = params.shape(params.ndim() - 1);
  if (r.per_trajectory_params && params.shape(0) != r.batch)
    throw py::value_error("params: expected (P,) or (B, P)");
  r.y0 = data_of(y0, "y0", dtype);
  r.t = data_of(t, "t", dtype);
  r.params = data_of(params, "params", dtype);
  r.control.rtol = rtol;
  r.control.atol = atol;
  r.control.dt = dt;
  r.control.max_steps = max_steps;
  return r;
}

struct Outputs {
  py::array ys;
  py::array_t<std::int64_t> nfev, steps, rejected;
  py::array_t<std::int32_t> status;
  Outputs(odefast::SolveRequest& r, const std::string& dtype, py::ssize_t D)
      : ys(new_array(dtype, {py::ssize_t(r.n_times), py::ssize_t(r.batch), D})),
        nfev(r.batch), steps(r.batch), rejected(r.batch), status(r.batch) {
    r.ys = ys.mutable_data();
    r.nfev = nfev.mutable_data();
    r.steps = steps.mutable_data();
    r.rejected = rejected.mutable_data();
    r.status = status.mutable_data();
  }
  py::tuple tuple() const { return py::make_tuple(ys, nfev, steps, rejected, status); }
};

py::tuple solve(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                const py::array& y0, const py::array& t, const py::array& params,
                double rtol, double atol, double dt, std::int64_t max_steps) {
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  odefast::SolveRequest r = make_request(spec, dtype, method, y0, t, params, rtol, atol, dt, max_steps);
  Outputs out(r, dtype, spec.dim);
  {
    py::gil_scoped_release release;
    odefast::solve(spec, r);
  }
  return out.tuple();
}

// Directions (K, B, D) and (K, P) / (K, B, P) of a second-order call; returns K.
py::ssize_t direction_count(py::ssize_t B, py::ssize_t D, py::ssize_t P, bool per_traj,
                            const py::array& v_y0, const py::array& v_p) {
  if (v_y0.ndim() != 3 || v_y0.shape(1) != B || v_y0.shape(2) != D)
    throw py::value_error("v_y0: expected shape (K, B, D)");
  const py::ssize_t K = v_y0.shape(0);
  const bool ok = per_traj ? (v_p.ndim() == 3 && v_p.shape(0) == K && v_p.shape(1) == B && v_p.shape(2) == P)
                           : (v_p.ndim() == 2 && v_p.shape(0) == K && v_p.shape(1) == P);
  if (!ok) throw py::value_error("v_params: expected shape (K, P) or (K, B, P)");
  return K;
}

// The discrete adjoint's record, kept alive between the forward and backward calls.
class PyTape {
 public:
  PyTape(std::unique_ptr<odefast::Tape> tape, std::string dtype, py::ssize_t B, py::ssize_t N,
         py::ssize_t D, py::ssize_t P, bool per_traj)
      : tape_(std::move(tape)), dtype_(std::move(dtype)), B_(B), N_(N), D_(D), P_(P), per_traj_(per_traj) {}

  py::tuple backward(const py::array& cot) const {
    if (cot.ndim() != 3 || cot.shape(0) != N_ || cot.shape(1) != B_ || cot.shape(2) != D_)
      throw py::value_error("cotangent: expected shape (N, B, D)");
    const void* c = data_of(cot, "cotangent", dtype_);
    py::array ybar0 = new_array(dtype_, {B_, D_});
    py::array pbar = per_traj_ ? new_array(dtype_, {B_, P_}) : new_array(dtype_, {P_});
    void* yb = ybar0.mutable_data();
    void* pb = pbar.mutable_data();
    {
      py::gil_scoped_release release;
      tape_->backward(c, yb, pb);
    }
    return py::make_tuple(ybar0, pbar);
  }

  // Output tangents (K, N, B, D) along K directions v_y0 (K, B, D), v_p (K, P) or (K, B, P).
  py::array jvp(const py::array& v_y0, const py::array& v_p) const {
    const py::ssize_t K = direction_count(B_, D_, P_, per_traj_, v_y0, v_p);
    py::array dys = new_array(dtype_, {K, N_, B_, D_});
    const void* vy = data_of(v_y0, "v_y0", dtype_);
    const void* vp = data_of(v_p, "v_params", dtype_);
    void* out = dys.mutable_data();
    {
      py::gil_scoped_release release;
      tape_->jvp(int(K), vy, vp, out);
    }
    return dys;
  }

  // Tangents of backward(cot) along K directions: (dybar0 (K, B, D), dpbar (K, P) or (K, B, P)).
  py::tuple hvp(const py::array& v_y0, const py::array& v_p, const py::array& cot,
                const py::array& dcot) const {
    const py::ssize_t K = direction_count(B_, D_, P_, per_traj_, v_y0, v_p);
    if (cot.ndim() != 3 || cot.shape(0) != N_ || cot.shape(1) != B_ || cot.shape(2) != D_)
      throw py::value_error("cotangent: expected shape (N, B, D)");
    if (dcot.ndim() != 4 || dcot.shape(0) != K || dcot.shape(1) != N_ || dcot.shape(2) != B_ || dcot.shape(3) != D_)
      throw py::value_error("dcot: expected shape (K, N, B, D)");
    const void* vy = data_of(v_y0, "v_y0", dtype_);
    const void* vp = data_of(v_p, "v_params", dtype_);
    const void* c = data_of(cot, "cotangent", dtype_);
    const void* dc = data_of(dcot, "dcot", dtype_);
    py::array dybar0 = new_array(dtype_, {K, B_, D_});
    py::array dpbar = per_traj_ ? new_array(dtype_, {K, B_, P_}) : new_array(dtype_, {K, P_});
    void* yb = dybar0.mutable_data();
    void* pb = dpbar.mutable_data();
    {
      py::gil_scoped_release release;
      tape_->hvp(int(K), vy, vp, c, dc, yb, pb);
    }
    return py::make_tuple(dybar0, dpbar);
  }

 private:
  std::unique_ptr<odefast::Tape> tape_;
  std::string dtype_;
  py::ssize_t B_, N_, D_, P_;
  bool per_traj_;
};

py::tuple solve_recording(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                          const py::array& y0, const py::array& t, const py::array& params,
                          double rtol, double atol, double dt, std::int64_t max_steps) {
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  odefast::SolveRequest r = make_request(spec, dtype, method, y0, t, params, rtol, atol, dt, max_steps);
  Outputs out(r, dtype, spec.dim);
  std::unique_ptr<odefast::Tape> tape;
  {
    py::gil_scoped_release release;
    tape = odefast::solve_recording(spec, r);
  }
  auto py_tape = std::make_unique<PyTape>(std::move(tape), dtype, r.batch, r.n_times, spec.dim,
                                          r.n_params, r.per_trajectory_params);
  return py::make_tuple(out.ys, out.nfev, out.steps, out.rejected, out.status, std::move(py_tape));
}

py::tuple backsolve(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                    const py::array& y_end, const py::array& t, const py::array& params,
                    const py::array& cot, double rtol, double atol, double dt, std::int64_t max_steps,
                    int error_dims) {
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  odefast::SolveRequest r = make_request(spec, dtype, method, y_end, t, params, rtol, atol, dt, max_steps);
  r.control.error_dims = error_dims;
  if (cot.ndim() != 3 || cot.shape(0) != r.n_times || cot.shape(1) != r.batch || cot.shape(2) != spec.dim)
    throw py::value_error("cotangent: expected shape (N, B, D)");
  const void* c = data_of(cot, "cotangent", dtype);
  const py::ssize_t B = r.batch, D = spec.dim, P = r.n_params;
  py::array ybar0 = new_array(dtype, {B, D});
  py::array pbar = r.per_trajectory_params ? new_array(dtype, {B, P}) : new_array(dtype, {P});
  py::array_t<std::int64_t> nfev(B);
  py::array_t<std::int32_t> status(B);
  r.nfev = nfev.mutable_data();
  r.status = status.mutable_data();
  void* yb = ybar0.mutable_data();
  void* pb = pbar.mutable_data();
  {
    py::gil_scoped_release release;
    odefast::backsolve(spec, r, c, yb, pb);
  }
  return py::make_tuple(ybar0, pbar, status, nfev);
}

// Continuous second order, forward: output tangents (K, N, B, D), status, nfev of the tangent solves.
py::tuple solve_tangent(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                        const py::array& y0, const py::array& t, const py::array& params,
                        const py::array& v_y0, const py::array& v_p, double rtol, double atol, double dt,
                        std::int64_t max_steps) {
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  odefast::SolveRequest r = make_request(spec, dtype, method, y0, t, params, rtol, atol, dt, max_steps);
  const py::ssize_t K = direction_count(r.batch, spec.dim, r.n_params, r.per_trajectory_params, v_y0, v_p);
  const void* vy = data_of(v_y0, "v_y0", dtype);
  const void* vp = data_of(v_p, "v_params", dtype);
  py::array dys = new_array(dtype, {K, py::ssize_t(r.n_times), py::ssize_t(r.batch), py::ssize_t(spec.dim)});
  py::array_t<std::int64_t> nfev(r.batch);
  py::array_t<std::int32_t> status(r.batch);
  r.nfev = nfev.mutable_data();
  r.status = status.mutable_data();
  void* out = dys.mutable_data();
  {
    py::gil_scoped_release release;
    odefast::solve_tangent(spec, r, int(K), vy, vp, out);
  }
  return py::make_tuple(dys, status, nfev);
}

// Continuous second order, backward: (dybar0 (K, B, D), dpbar (K, P) or (K, B, P), status, nfev).
py::tuple backsolve_hvp(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                        const py::array& ys, const py::array& dys, const py::array& t,
                        const py::array& params, const py::array& v_y0, const py::array& v_p,
                        const py::array& cot, const py::array& dcot, double rtol, double atol, double dt,
                        std::int64_t max_steps) {
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  if (ys.ndim() != 3) throw py::value_error("ys: expected shape (N, B, D)");
  const py::array y_end = ys[py::int_(ys.shape(0) - 1)];
  odefast::SolveRequest r = make_request(spec, dtype, method, y_end, t, params, rtol, atol, dt, max_steps);
  const py::ssize_t K = direction_count(r.batch, spec.dim, r.n_params, r.per_trajectory_params, v_y0, v_p), N = r.n_times, B = r.batch, D = spec.dim;
  const auto shaped = [](const py::array& a, std::vector<py::ssize_t> shape) {
    if (a.ndim() != py::ssize_t(shape.size())) return false;
    for (std::size_t i = 0; i < shape.size(); ++i)
      if (a.shape(i) != shape[i]) return false;
    return true;
  };
  if (!shaped(ys, {N, B, D}) || !shaped(cot, {N, B, D})) throw py::value_error("ys, cotangent: expected shape (N, B, D)");
  if (!shaped(dys, {K, N, B, D}) || !shaped(dcot, {K, N, B, D})) throw py::value_error("dys, dcot: expected shape (K, N, B, D)");
  const void* pys = data_of(ys, "ys", dtype);
  const void* pdys = data_of(dys, "dys", dtype);
  const void* vp = data_of(v_p, "v_params", dtype);
  const void* c = data_of(cot, "cotangent", dtype);
  const void* dc = data_of(dcot, "dcot", dtype);
  py::array dybar0 = new_array(dtype, {K, B, D});
  py::array dpbar = r.per_trajectory_params ? new_array(dtype, {K, B, py::ssize_t(r.n_params)})
                                            : new_array(dtype, {K, py::ssize_t(r.n_params)});
  py::array_t<std::int64_t> nfev(B);
  py::array_t<std::int32_t> status(B);
  r.nfev = nfev.mutable_data();
  r.status = status.mutable_data();
  void* yb = dybar0.mutable_data();
  void* pb = dpbar.mutable_data();
  {
    py::gil_scoped_release release;
    odefast::backsolve_hvp(spec, r, int(K), pys, pdys, vp, c, dc, yb, pb);
  }
  return py::make_tuple(dybar0, dpbar, status, nfev);
}

// f(t_b, y_b) for every row, or (with `a`) its vjp (gy, gp per row, gt).
py::object field(const py::dict& dynamics, const std::string& dtype, const py::array& t,
                 const py::array& y, const py::array& params, const py::object& a) {
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  if (y.ndim() != 2 || y.shape(1) != spec.dim) throw py::value_error("y: expected shape (B, D)");
  const py::ssize_t B = y.shape(0), D = spec.dim;
  if (t.ndim() != 1 || t.shape(0) != B) throw py::value_error("t: expected shape (B,)");
  const bool per_traj = params.ndim() == 2;
  const py::ssize_t P = params.shape(params.ndim() - 1);
  if (per_traj && params.shape(0) != B) throw py::value_error("params: expected (P,) or (B, P)");
  const void* tp = data_of(t, "t", dtype);
  const void* yp = data_of(y, "y", dtype);
  const void* pp = data_of(params, "params", dtype);
  if (a.is_none()) {
    py::array dy = new_array(dtype, {B, D});
    void* d = dy.mutable_data();
    py::gil_scoped_release release;
    odefast::eval_field(spec, dtype, B, tp, yp, pp, per_traj, d);
    return std::move(dy);
  }
  const py::array aa = a.cast<py::array>();
  if (aa.ndim() != 2 || aa.shape(0) != B || aa.shape(1) != D) throw py::value_error("a: expected shape (B, D)");
  const void* ap = data_of(aa, "a", dtype);
  py::array gy = new_array(dtype, {B, D}), gp = new_array(dtype, {B, P}), gt = new_array(dtype, {B});
  void *g1 = gy.mutable_data(), *g2 = gp.mutable_data(), *g3 = gt.mutable_data();
  {
    py::gil_scoped_release release;
    odefast::vjp_field(spec, dtype, B, tp, yp, pp, per_traj, ap, g1, g2, g3);
  }
  return py::make_tuple(gy, gp, gt);
}

// ---- the CUDA backend: kernels on the GPU, or (host=True) their per-trajectory bodies run on
// the CPU (cuda/host_mirror.cpp), which the tests check without a GPU ----

odefast::gpu::Buffer host_buffer(const py::array& a) {
  return odefast::gpu::Buffer{const_cast<void*>(a.data()), std::size_t(a.nbytes()), false};
}

odefast::gpu::Call make_call(const odefast::DynamicsSpec& spec, const std::string& dtype, const std::string& method,
                             const py::array& y0, const py::array& t, const py::array& params, double rtol,
                             double atol, double dt, std::int64_t max_steps) {
  const odefast::SolveRequest r = make_request(spec, dtype, method, y0, t, params, rtol, atol, dt, max_steps);
  odefast::gpu::Call c;
  c.dtype = dtype;
  c.method = method;
  c.batch = r.batch;
  c.n_times = int(r.n_times);
  c.n_params = int(r.n_params);
  c.per_trajectory_params = r.per_trajectory_params;
  c.control = r.control;
  c.y0 = host_buffer(y0);
  c.t = host_buffer(t);
  c.params = host_buffer(params);
  return c;
}

// The solve outputs of a call (ys, counters, status) in NumPy arrays.
void attach_outputs(const Outputs& out, odefast::gpu::Call& c) {
  c.ys = host_buffer(out.ys);
  c.nfev = host_buffer(out.nfev);
  c.steps = host_buffer(out.steps);
  c.rejected = host_buffer(out.rejected);
  c.status = host_buffer(out.status);
}

void require_cuda() {
#ifndef ODEFAST_WITH_CUDA
  throw std::runtime_error("this build of odefast has no CUDA kernels");
#endif
}

py::tuple gpu_solve(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                    const py::array& y0, const py::array& t, const py::array& params, double rtol, double atol,
                    double dt, std::int64_t max_steps, bool host, int device_index) {
  if (!host) require_cuda();
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  odefast::gpu::Call c = make_call(spec, dtype, method, y0, t, params, rtol, atol, dt, max_steps);
  c.device_index = device_index;
  odefast::SolveRequest r;
  r.batch = c.batch;
  r.n_times = c.n_times;
  Outputs out(r, dtype, spec.dim);
  attach_outputs(out, c);
  {
    py::gil_scoped_release release;
    if (host) odefast::gpu::host_solve(spec, c);
#ifdef ODEFAST_WITH_CUDA
    else odefast::gpu::solve(spec, c);
#endif
  }
  return out.tuple();
}

// Zero-copy solve: every array is (address, on_device) -- device memory from CuPy / PyTorch
// (__cuda_array_interface__, checked in odefast/_cuda.py) is used in place, host memory is
// copied. Shapes: y0 (B, D), t (N,), params (P,) or (B, P), ys (N, B, D), all C-contiguous.
// Returns (nfev, steps, rejected, status) as NumPy arrays.
py::tuple gpu_solve_buffers(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                            std::int64_t batch, int n_times, int n_params, bool per_trajectory,
                            std::pair<std::uintptr_t, bool> y0, std::pair<std::uintptr_t, bool> t,
                            std::pair<std::uintptr_t, bool> params, std::pair<std::uintptr_t, bool> ys,
                            double rtol, double atol, double dt, std::int64_t max_steps, int device_index,
                            bool host) {
  if (!host) require_cuda();
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  if (dtype != "float32" && dtype != "float64") throw py::value_error("dtype: expected float32 or float64");
  if (batch < 0 || n_times < 1 || n_params < 0) throw py::value_error("batch, n_times, n_params: out of range");
  const std::size_t sz = dtype == "float32" ? 4 : 8, D = std::size_t(spec.dim);
  auto buffer = [&](const std::pair<std::uintptr_t, bool>& a, std::size_t n, const char* name) {
    if (a.first == 0 && n > 0) throw py::value_error(std::string(name) + ": null pointer");
    if (host && a.second) throw py::value_error(std::string(name) + ": device memory given to the host mirror");
    return odefast::gpu::Buffer{reinterpret_cast<void*>(a.first), n * sz, a.second};
  };
  odefast::gpu::Call c;
  c.dtype = dtype;
  c.method = method;
  c.batch = batch;
  c.n_times = n_times;
  c.n_params = n_params;
  c.per_trajectory_params = per_trajectory;
  c.control.rtol = rtol;
  c.control.atol = atol;
  c.control.dt = dt;
  c.control.max_steps = max_steps;
  c.device_index = device_index;
  c.y0 = buffer(y0, std::size_t(batch) * D, "y0");
  c.t = buffer(t, std::size_t(n_times), "t");
  c.params = buffer(params, std::size_t(n_params) * (per_trajectory ? std::size_t(batch) : 1), "params");
  c.ys = buffer(ys, std::size_t(n_times) * std::size_t(batch) * D, "ys");
  py::array_t<std::int64_t> nfev(batch), steps(batch), rejected(batch);
  py::array_t<std::int32_t> status(batch);
  c.nfev = host_buffer(nfev);
  c.steps = host_buffer(steps);
  c.rejected = host_buffer(rejected);
  c.status = host_buffer(status);
  {
    py::gil_scoped_release release;
    if (host) odefast::gpu::host_solve(spec, c);
#ifdef ODEFAST_WITH_CUDA
    else odefast::gpu::solve(spec, c);
#endif
  }
  return py::make_tuple(nfev, steps, rejected, status);
}

// The discrete adjoint per trajectory: (ybar0 (B, D) without cot[0], pbar (P,) or (B, P),
// gt (B, N) per-trajectory time gradients, n_overflow, and with host=True the recording
// solve's (ys, nfev, steps, rejected, status); None on the GPU, which keeps them on the device).
py::tuple gpu_adjoint(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                      const py::array& y0, const py::array& t, const py::array& params, const py::array& cot,
                      double rtol, double atol, double dt, std::int64_t max_steps, std::int64_t tape_steps,
                      std::int64_t memory_budget, bool host, int device_index) {
  if (!host) require_cuda();
  const odefast::DynamicsSpec spec = parse_spec(dynamics);
  odefast::gpu::Call c = make_call(spec, dtype, method, y0, t, params, rtol, atol, dt, max_steps);
  c.device_index = device_index;
  const py::ssize_t B = c.batch, N = c.n_times, D = spec.dim, P = c.n_params;
  if (cot.ndim() != 3 || cot.shape(0) != N || cot.shape(1) != B || cot.shape(2) != D)
    throw py::value_error("cotangent: expected shape (N, B, D)");
  data_of(cot, "cotangent", dtype);
  if (tape_steps < 1) throw py::value_error("tape_steps: expected a positive number of steps");
  if (memory_budget < 1) throw py::value_error("memory_budget: expected a positive number of bytes");
  c.cot = host_buffer(cot);
  c.tape_steps = tape_steps;
  c.memory_budget = std::size_t(memory_budget);
  py::array ybar0 = new_array(dtype, {B, D});
  py::array pbar = c.per_trajectory_params ? new_array(dtype, {B, P}) : new_array(dtype, {P});
  py::array gt = new_array(dtype, {B, N});
  c.ybar0 = host_buffer(ybar0);
  c.pbar = host_buffer(pbar);
  c.gt = host_buffer(gt);
  odefast::SolveRequest r;
  r.batch = B;
  r.n_times = N;
  Outputs out(r, dtype, D);
  if (host) attach_outputs(out, c);
  std::int64_t n_overflow = 0;
  {
    py::gil_scoped_release release;
    if (host) n_overflow = odefast::gpu::host_adjoint(spec, c);
#ifdef ODEFAST_WITH_CUDA
    else n_overflow = odefast::gpu::adjoint(spec, c);
#endif
  }
  return py::make_tuple(ybar0, pbar, gt, n_overflow, host ? py::object(out.tuple()) : py::object(py::none()));
}

// Index (C order) of the first inf or NaN of a C-contiguous float32/float64 array, -1 when all
// are finite, -2 for any other array (the caller checks it in NumPy).
py::ssize_t first_non_finite(const py::array& a) {
  const bool f32 = py::isinstance<py::array_t<float>>(a), f64 = py::isinstance<py::array_t<double>>(a);
  if (!(f32 || f64) || !(a.flags() & py::array::c_style)) return -2;
  const std::string dtype = f32 ? "float32" : "float64";
  if (a.size() < (py::ssize_t(1) << 16)) return odefast::first_non_finite(dtype, a.data(), a.size());
  py::gil_scoped_release release;
  return odefast::first_non_finite(dtype, a.data(), a.size());
}

py::dict tableau(const std::string& method) {
  const odefast::TableauData t = odefast::tableau(method);
  py::dict d;
  d["name"] = t.name;
  d["stages"] = t.stages;
  d["order"] = t.order;
  d["error_order"] = t.error_order;
  d["dense_degree"] = t.dense_degree;
  d["fsal"] = t.fsal;
  d["has_err3"] = t.has_err3;
  d["c"] = t.c;
  d["a"] = t.a;
  d["b"] = t.b;
  d["b_err"] = t.b_err;
  d["b_err3"] = t.b_err3;
  d["dense"] = t.dense;
  return d;
}

py::dict build_info() {
  py::dict d;
  d["version"] = ODEFAST_VERSION;
  d["compiler"] = ODEFAST_COMPILER;
  d["flags"] = ODEFAST_CXX_FLAGS;
  d["openmp"] = false;  // threads come from odefast's own pool
  d["threads"] = "std::thread pool";
#ifdef ODEFAST_WITH_CUDA
  d["cuda_compiled"] = true;
  d["cuda_archs"] = ODEFAST_CUDA_ARCHS;
#else
  d["cuda_compiled"] = false;
  d["cuda_archs"] = "";
#endif
  return d;
}

int cuda_device_count() {
#ifdef ODEFAST_WITH_CUDA
  return odefast::gpu::device_count();
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "odefast compiled core (see odefast.solve for the documented API)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def("solve", &solve, py::arg("dynamics"), py::arg("dtype"), py::arg("method"), py::arg("y0"),
        py::arg("t"), py::arg("params"), py::arg("rtol"), py::arg("atol"), py::arg("dt"),
        py::arg("max_steps"));
  py::class_<PyTape>(m, "Tape", "Record of a forward solve for the discrete adjoint")
      .def("backward", &PyTape::backward, py::arg("cotangent"),
           "(ybar0 (B, D) without cotangent[0], pbar (P,) or (B, P))")
      .def("jvp", &PyTape::jvp, py::arg("v_y0"), py::arg("v_params"),
           "output tangents (K, N, B, D) along directions v_y0 (K, B, D), v_params (K, P) or (K, B, P)")
      .def("hvp", &PyTape::hvp, py::arg("v_y0"), py::arg("v_params"), py::arg("cotangent"), py::arg("dcot"),
           "tangents of backward(cotangent) along the directions: (dybar0 (K, B, D), dpbar (K, P) or (K, B, P))");
  m.def("solve_recording", &solve_recording, py::arg("dynamics"), py::arg("dtype"), py::arg("method"),
        py::arg("y0"), py::arg("t"), py::arg("params"), py::arg("rtol"), py::arg("atol"), py::arg("dt"),
        py::arg("max_steps"));
  m.def("backsolve", &backsolve, py::arg("dynamics"), py::arg("dtype"), py::arg("method"),
        py::arg("y_end"), py::arg("t"), py::arg("params"), py::arg("cotangent"), py::arg("rtol"),
        py::arg("atol"), py::arg("dt"), py::arg("max_steps"), py::arg("error_dims") = 0,
        "continuous adjoint; error_dims > 0 controls the error of the first error_dims components "
        "of [z, a, dL/dparams] only (2 D: the seminorm)");
  m.def("solve_tangent", &solve_tangent, py::arg("dynamics"), py::arg("dtype"), py::arg("method"),
        py::arg("y0"), py::arg("t"), py::arg("params"), py::arg("v_y0"), py::arg("v_params"),
        py::arg("rtol"), py::arg("atol"), py::arg("dt"), py::arg("max_steps"));
  m.def("backsolve_hvp", &backsolve_hvp, py::arg("dynamics"), py::arg("dtype"), py::arg("method"),
        py::arg("ys"), py::arg("dys"), py::arg("t"), py::arg("params"), py::arg("v_y0"), py::arg("v_params"),
        py::arg("cotangent"), py::arg("dcot"), py::arg("rtol"), py::arg("atol"), py::arg("dt"),
        py::arg("max_steps"));
  m.def("field", &field, py::arg("dynamics"), py::arg("dtype"), py::arg("t"), py::arg("y"),
        py::arg("params"), py::arg("a") = py::none());
  m.def("first_non_finite", &first_non_finite, py::arg("a"),
        "index (C order) of the first inf or NaN of a C-contiguous float array, -1 if none, "
        "-2 for other arrays");
  m.def("set_num_threads", &odefast::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &odefast::get_num_threads);
  m.def("set_thread_num_threads", &odefast::set_thread_num_threads, py::arg("n"));
  m.def("methods", &odefast::method_names);
  m.def("method_is_adaptive", &odefast::method_is_adaptive, py::arg("method"));
  m.def("tableau", &tableau, py::arg("method"));
  m.def("build_info", &build_info);
  m.def("cuda_device_count", &cuda_device_count);
  m.def("gpu_solve", &gpu_solve, py::arg("dynamics"), py::arg("dtype"), py::arg("method"), py::arg("y0"),
        py::arg("t"), py::arg("params"), py::arg("rtol"), py::arg("atol"), py::arg("dt"), py::arg("max_steps"),
        py::arg("host") = false, py::arg("device_index") = 0,
        "solve with the CUDA kernels (host=True: their per-trajectory code on the CPU); as solve()");
  m.def("gpu_solve_buffers", &gpu_solve_buffers, py::arg("dynamics"), py::arg("dtype"), py::arg("method"),
        py::arg("batch"), py::arg("n_times"), py::arg("n_params"), py::arg("per_trajectory"), py::arg("y0"),
        py::arg("t"), py::arg("params"), py::arg("ys"), py::arg("rtol"), py::arg("atol"), py::arg("dt"),
        py::arg("max_steps"), py::arg("device_index") = 0, py::arg("host") = false,
        "zero-copy solve: arrays as (address, on_device); returns (nfev, steps, rejected, status)");
  m.def("gpu_adjoint", &gpu_adjoint, py::arg("dynamics"), py::arg("dtype"), py::arg("method"), py::arg("y0"),
        py::arg("t"), py::arg("params"), py::arg("cotangent"), py::arg("rtol"), py::arg("atol"), py::arg("dt"),
        py::arg("max_steps"), py::arg("tape_steps"), py::arg("memory_budget") = std::int64_t(1) << 30,
        py::arg("host") = false, py::arg("device_index") = 0,
        "discrete adjoint with the CUDA kernels (host=True: on the CPU): (ybar0, pbar, gt (B, N), "
        "n_overflow, recording solve's outputs or None)");
}
