#include "dispatch.hpp"

namespace odefast {
template void solve_typed<float>(const DynamicsSpec&, const SolveRequest&);
}
