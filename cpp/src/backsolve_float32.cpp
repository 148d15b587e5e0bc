// Continuous adjoint and row-wise evaluation of f and its vjp for float.
#include "dispatch.hpp"

namespace odefast {
template void backsolve_typed<float>(const DynamicsSpec&, const SolveRequest&, const void*, void*, void*);
template void field_typed<float>(const DynamicsSpec&, std::int64_t, const float*, const float*, const float*, bool,
                              const float*, float*, float*, float*, float*);
}
