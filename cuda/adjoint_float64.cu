// Checkpoint-adjoint kernels for float64 (every method x dynamics; see adjoint.cuh).
#include "adjoint.cuh"

namespace odefast::gpu {
template std::int64_t adjoint_typed<double>(const DynamicsSpec&, const Call&);
}
