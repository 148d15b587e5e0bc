// Forward ensemble kernels for float32 (every method x dynamics; see solve.cuh).
#include "solve.cuh"

namespace odefast::gpu {
template void solve_typed<float>(const DynamicsSpec&, const Call&);
}
