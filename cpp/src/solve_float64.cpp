// Forward solves for double (explicit instantiations: one translation unit per dtype and task).
#include "dispatch.hpp"

namespace odefast {
template void solve_typed<double>(const DynamicsSpec&, const SolveRequest&);
}
