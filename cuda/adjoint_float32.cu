// Checkpoint-adjoint kernels for float32 (every method x dynamics; see adjoint.cuh).
#include "adjoint.cuh"

namespace odefast::gpu {
template std::int64_t adjoint_typed<float>(const DynamicsSpec&, const Call&);
}
