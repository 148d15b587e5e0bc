// Forward ensemble kernels for float64 (every method x dynamics; see solve.cuh).
#include "solve.cuh"

namespace odefast::gpu {
template void solve_typed<double>(const DynamicsSpec&, const Call&);
}
