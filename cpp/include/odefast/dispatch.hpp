// Runtime names -> template arguments, for both backends: the method's tableau type and the
// configured dynamics object. The CPU's dispatch (cpp/src/dispatch.hpp) adds its packed MLP
// weights; the CUDA backend's (cuda/dispatch.hpp) uses these as they are. Plain C++ (compiled
// by nvcc for the kernels' launch code too). Each error lists what is supported.
#pragma once
#include <stdexcept>
#include <string>

#include "api.hpp"
#include "dynamics.hpp"
#include "tableaus.hpp"

namespace odefast {

// Calls fn(M{}) for the method named `name`.
template <class Fn> void with_method(const std::string& name, Fn&& fn) {
  using namespace tableaus;
  if (name == "euler") return fn(Euler{});
  if (name == "midpoint") return fn(Midpoint{});
  if (name == "heun") return fn(Heun{});
  if (name == "rk4") return fn(RK4{});
  if (name == "bosh3") return fn(Bosh3{});
  if (name == "dopri5") return fn(Dopri5{});
  if (name == "tsit5") return fn(Tsit5{});
  if (name == "dopri8") return fn(Dopri8{});
  throw std::invalid_argument("unknown method '" + name +
                              "'; supported: euler, midpoint, heun, rk4, bosh3, dopri5, tsit5, dopri8");
}

inline Activation parse_activation(const std::string& a) {
  if (a == "tanh") return Activation::Tanh;
  if (a == "relu") return Activation::Relu;
  if (a == "softplus") return Activation::Softplus;
  if (a == "sigmoid") return Activation::Sigmoid;
  if (a == "identity") return Activation::Identity;
  throw std::invalid_argument("unknown activation '" + a +
                              "'; supported: tanh, relu, softplus, sigmoid, identity");
}

// Calls fn(f) with the dynamics object of `spec` for scalar S (f is a local the callee may
// adjust, e.g. give the MLP packed weights). Nothing in it points to memory yet.
template <class S, class Fn> void with_plain_dynamics(const DynamicsSpec& spec, Fn&& fn) {
  if (spec.kind == "lorenz") {
    Lorenz<S> f;
    return fn(f);
  }
  if (spec.kind == "linear") {
    Linear<S> f;
    f.D = spec.dim;
    return fn(f);
  }
  if (spec.kind == "nbody") {
    NBody<S> f;
    f.n = spec.n_bodies;
    f.dim_space = spec.space_dim;
    f.G = S(spec.G);
    f.softening = S(spec.softening);
    return fn(f);
  }
  if (spec.kind == "mlp") {
    if (spec.layers.size() < 2 || int(spec.layers.size()) > MLP<S>::kMaxLayers + 1)
      throw std::invalid_argument("mlp: between 1 and 16 affine layers are supported");
    MLP<S> f;
    f.configure(spec.layers, parse_activation(spec.activation), spec.time_input);
    return fn(f);
  }
  throw std::invalid_argument("unknown dynamics kind '" + spec.kind + "'; supported: lorenz, linear, nbody, mlp");
}

}  // namespace odefast
