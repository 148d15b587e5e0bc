// The CUDA backend's one dispatch place (and its host mirror's): runtime method and dynamics
// names become template arguments. Plain C++ (compiled by nvcc for the kernels' launch code
// and by the host compiler for cuda/host_mirror.cpp); the CPU backend's is cpp/src/dispatch.hpp.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include "odefast/api.hpp"
#include "odefast/dynamics.hpp"
#include "odefast/tableaus.hpp"

namespace odefast::gpu {

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

inline Activation activation_of(const std::string& a) {
  if (a == "tanh") return Activation::Tanh;
  if (a == "relu") return Activation::Relu;
  if (a == "softplus") return Activation::Softplus;
  if (a == "sigmoid") return Activation::Sigmoid;
  if (a == "identity") return Activation::Identity;
  throw std::invalid_argument("unknown activation '" + a +
                              "'; supported: tanh, relu, softplus, sigmoid, identity");
}

// Calls fn(dynamics) with the configured dynamics object for scalar S. Nothing points to host
// memory (MLP::packed stays null: device threads read the weights from the parameters, with the
// plain loops that the AVX-512 kernels agree with bit for bit).
template <class S, class Fn> void with_dynamics(const DynamicsSpec& spec, Fn&& fn) {
  if (spec.kind == "lorenz") return fn(Lorenz<S>{});
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
    f.configure(spec.layers, activation_of(spec.activation), spec.time_input);
    return fn(f);
  }
  throw std::invalid_argument("unknown dynamics kind '" + spec.kind + "'; supported: lorenz, linear, nbody, mlp");
}

}  // namespace odefast::gpu
