// Discrete adjoint (recorded forward pass + reverse sweep) for float.
#include "dispatch.hpp"

namespace odefast {
template std::unique_ptr<Tape> solve_recording_typed<float>(const DynamicsSpec&, const SolveRequest&);
}
