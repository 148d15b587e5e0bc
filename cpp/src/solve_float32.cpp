// Forward solves for float (explicit instantiations: one translation unit per dtype and task).
#include "dispatch.hpp"

namespace odefast {
template void solve_typed<float>(const DynamicsSpec&, const SolveRequest&);
}
