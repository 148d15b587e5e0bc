// Continuous adjoint and row-wise evaluation of f and its vjp for double.
#include "dispatch.hpp"

namespace odefast {
template void backsolve_typed<double>(const DynamicsSpec&, const SolveRequest&, const void*, void*, void*);
template void field_typed<double>(const DynamicsSpec&, std::int64_t, const double*, const double*, const double*, bool,
                              const double*, double*, double*, double*, double*);
}
