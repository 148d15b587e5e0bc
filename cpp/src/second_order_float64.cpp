// Continuous second-order adjoint (tangent solves, backward second-order adjoint) for double.
#include "dispatch.hpp"

namespace odefast {
template void solve_tangent_typed<double>(const DynamicsSpec&, const SolveRequest&, int, const void*, const void*, void*);
template void backsolve_hvp_typed<double>(const DynamicsSpec&, const SolveRequest&, int, const void*, const void*,
                                      const void*, const void*, const void*, void*, void*);
}
