"""odefast: batched ODE solves in C++ with adjoint gradients, validated against NumPy."""
from importlib.metadata import PackageNotFoundError, version as _version

from . import _core, losses, reference
from ._dynamics import MLP, Dynamics, Linear, Lorenz, NBody, PythonDynamics
from ._problem import STATUS_MESSAGES, Solution, SolveError, SolveWarning
from ._grad import Gradient
from ._gradients import value_and_grad, vjp
from ._hessians import hessian, hvp
from ._second import HVP
from ._solve import cuda_available, solve
from ._tableaus import METHODS

try:
    __version__ = _version("odefast")
except PackageNotFoundError:  # running from a source tree
    __version__ = _core.build_info()["version"]

__all__ = [
    "__version__", "backends", "build_info", "set_num_threads", "get_num_threads",
    "Dynamics", "MLP", "Linear", "Lorenz", "NBody", "PythonDynamics",
    "solve", "Solution", "SolveWarning", "SolveError", "STATUS_MESSAGES", "METHODS", "reference",
    "vjp", "value_and_grad", "Gradient", "losses", "hvp", "hessian", "HVP",
]


def backends() -> dict:
    """Which backends can run here: {'cpu': True, 'cuda': compiled and a GPU present}."""
    return {"cpu": True, "cuda": cuda_available()}


def build_info() -> dict:
    """How the compiled core was built: version, compiler, flags, openmp, cuda_compiled, cuda_archs."""
    info = dict(_core.build_info())
    info["cuda_archs"] = [a for a in info["cuda_archs"].split(",") if a]
    info["num_threads"] = _core.get_num_threads()
    return info


def set_num_threads(n: int) -> None:
    """Threads for CPU solves (default: all cores, or env ODEFAST_NUM_THREADS). Results never
    depend on it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive integer number of threads, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads CPU solves started from this thread use now (see :func:`set_num_threads`; the
    tasks of :mod:`odefast.dask` set a count of their own for their thread)."""
    return _core.get_num_threads()
