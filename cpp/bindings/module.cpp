// pybind11 module odefast._core: checks arrays, allocates outputs, releases the GIL and calls
// the untemplated C++ API. Defaults, normalisation and user-facing messages live in Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "odefast/api.hpp"
#include "odefast/parallel.hpp"

namespace py = pybind11;

#ifdef ODEFAST_WITH_CUDA
namespace odefast::cuda {
int device_count();  // cuda/device.cu
}
#endif

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

py::tuple solve(const py::dict& dynamics, const std::string& dtype, const std::string& method,
                const py::array& y0, const py::array& t, const py::array& params,
                double rtol, double atol, double dt, std::int64_t max_steps) {
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

  const py::ssize_t B = r.batch, N = r.n_times, D = spec.dim;
  py::array ys = dtype == "float32" ? py::array(py::array_t<float>({N, B, D}))
                                    : py::array(py::array_t<double>({N, B, D}));
  py::array_t<std::int64_t> nfev(B), steps(B), rejected(B);
  py::array_t<std::int32_t> status(B);
  r.ys = ys.mutable_data();
  r.nfev = nfev.mutable_data();
  r.steps = steps.mutable_data();
  r.rejected = rejected.mutable_data();
  r.status = status.mutable_data();
  {
    py::gil_scoped_release release;
    odefast::solve(spec, r);
  }
  return py::make_tuple(ys, nfev, steps, rejected, status);
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
  return odefast::cuda::device_count();
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
  m.def("set_num_threads", &odefast::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &odefast::get_num_threads);
  m.def("methods", &odefast::method_names);
  m.def("method_is_adaptive", &odefast::method_is_adaptive, py::arg("method"));
  m.def("tableau", &tableau, py::arg("method"));
  m.def("build_info", &build_info);
  m.def("cuda_device_count", &cuda_device_count);
}
