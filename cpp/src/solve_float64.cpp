#include "dispatch.hpp"

namespace odefast {
template void solve_typed<double>(const DynamicsSpec&, const SolveRequest&);
}
