// Discrete adjoint (recorded forward pass + reverse sweep) for double.
#include "dispatch.hpp"

namespace odefast {
template std::unique_ptr<Tape> solve_recording_typed<double>(const DynamicsSpec&, const SolveRequest&);
}
