"""Type stub of odefast._core, the compiled pybind11 module (cpp/bindings/module.cpp).

Private: the documented API is odefast.solve / vjp / value_and_grad / hvp / hessian, which
validate and normalise the arguments before calling these. Conventions of every function:

* ``dynamics``: the dict of ``Dynamics._spec()`` (kind, dim, and per kind: layers, activation,
  time_input / n_bodies, space_dim, G, softening).
* ``dtype``: "float32" or "float64"; every array argument must be C-contiguous in that dtype.
* ``method``: a name from ``methods()``. B trajectories, N output times, D state components,
  P parameters, K tangent directions.
* ``y0`` (B, D); ``t`` (N,); ``params`` (P,) shared or (B, P) per trajectory.
* ``rtol``, ``atol`` > 0; ``dt``: the fixed step, or the initial step of an adaptive method
  (0: automatic); ``max_steps``: attempted steps per trajectory before status 1.
* status arrays are (B,) int32 (0 success, 1 max_steps, 2 step size underflow, 3 non-finite),
  counters (B,) int64. The GIL is released while C++ runs. Bad shapes raise ValueError.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from numpy.typing import NDArray

_F = NDArray[Any]          # float32 or float64, as ``dtype`` says
_I32 = NDArray[np.int32]
_I64 = NDArray[np.int64]

class Tape:
    """Record of a forward solve (``solve_recording``) for the discrete adjoint."""

    def backward(self, cotangent: _F) -> Tuple[_F, _F]:
        """cotangent (N, B, D) -> (ybar0 (B, D) without cotangent[0], pbar (P,) or (B, P))."""
    def jvp(self, v_y0: _F, v_params: _F) -> _F:
        """Output tangents (K, N, B, D) along v_y0 (K, B, D), v_params (K, P) or (K, B, P)."""
    def hvp(self, v_y0: _F, v_params: _F, cotangent: _F, dcot: _F) -> Tuple[_F, _F]:
        """Tangents of backward(cotangent) along the directions, with dcot (K, N, B, D) the
        cotangent's tangent: (dybar0 (K, B, D), dpbar (K, P) or (K, B, P))."""

def solve(dynamics: Dict[str, Any], dtype: str, method: str, y0: _F, t: _F, params: _F,
          rtol: float, atol: float, dt: float, max_steps: int) -> Tuple[_F, _I64, _I64, _I64, _I32]:
    """(ys (N, B, D), nfev, steps, rejected, status)."""

def solve_recording(dynamics: Dict[str, Any], dtype: str, method: str, y0: _F, t: _F,
                    params: _F, rtol: float, atol: float, dt: float,
                    max_steps: int) -> Tuple[_F, _I64, _I64, _I64, _I32, Tape]:
    """As solve, plus the Tape of the accepted steps."""

def backsolve(dynamics: Dict[str, Any], dtype: str, method: str, y_end: _F, t: _F, params: _F,
              cotangent: _F, rtol: float, atol: float, dt: float, max_steps: int,
              error_dims: int = 0) -> Tuple[_F, _F, _I32, _I64]:
    """Continuous adjoint from y_end (B, D) = y(t[-1]) with cotangent (N, B, D):
    (ybar0 (B, D) without cotangent[0], pbar (P,) or (B, P), status, nfev). error_dims > 0:
    error control on the first error_dims components of [z, a, dL/dparams] only (2 D: the
    seminorm)."""

def solve_tangent(dynamics: Dict[str, Any], dtype: str, method: str, y0: _F, t: _F, params: _F,
                  v_y0: _F, v_params: _F, rtol: float, atol: float, dt: float,
                  max_steps: int) -> Tuple[_F, _I32, _I64]:
    """Continuous second order, forward: (output tangents (K, N, B, D), status, nfev) along
    v_y0 (K, B, D), v_params (K, P) or (K, B, P)."""

def backsolve_hvp(dynamics: Dict[str, Any], dtype: str, method: str, ys: _F, dys: _F, t: _F,
                  params: _F, v_y0: _F, v_params: _F, cotangent: _F, dcot: _F, rtol: float,
                  atol: float, dt: float, max_steps: int) -> Tuple[_F, _F, _I32, _I64]:
    """Continuous second-order adjoint: ys (N, B, D), dys and dcot (K, N, B, D), cotangent
    (N, B, D) -> (dybar0 (K, B, D), dpbar (K, P) or (K, B, P), status, nfev)."""

def field(dynamics: Dict[str, Any], dtype: str, t: _F, y: _F, params: _F,
          a: Optional[_F] = None) -> Union[_F, Tuple[_F, _F, _F]]:
    """f(t_b, y_b) per row: t (B,), y (B, D) -> (B, D); with a (B, D) its vector-Jacobian
    product (a·∂f/∂y (B, D), a·∂f/∂params (B, P), a·∂f/∂t (B,))."""

def first_non_finite(a: Any) -> int:
    """Index (C order) of the first inf or NaN of a C-contiguous float32/float64 array; -1 if
    all are finite, -2 for any other array."""

def set_num_threads(n: int) -> None:
    """CPU threads (n <= 0: all cores, or env ODEFAST_NUM_THREADS)."""
def set_thread_num_threads(n: int) -> int:
    """The calling thread's own count, used by its solves instead of the process's (n <= 0:
    follow the process's); returns the previous one (0: none was set)."""
def get_num_threads() -> int:
    """The calling thread's count if set, else the process's."""
def methods() -> List[str]:
    """Names of the Runge-Kutta methods the core knows."""
def method_is_adaptive(method: str) -> bool: ...
def tableau(method: str) -> Dict[str, Any]:
    """The C++ coefficients: name, stages, order, error_order, dense_degree, fsal, has_err3,
    c, a, b, b_err, b_err3, dense."""
def build_info() -> Dict[str, Any]:
    """version, compiler, flags, openmp, threads, cuda_compiled, cuda_archs (comma-separated)."""
def cuda_device_count() -> int: ...
def gpu_solve(dynamics: Dict[str, Any], dtype: str, method: str, y0: _F, t: _F, params: _F,
              rtol: float, atol: float, dt: float, max_steps: int, host: bool = False,
              device_index: int = 0) -> Tuple[_F, _I64, _I64, _I64, _I32]:
    """As solve, with the CUDA kernels (host=True: their per-trajectory code on the CPU)."""
def gpu_solve_buffers(dynamics: Dict[str, Any], dtype: str, method: str, batch: int, n_times: int,
                      n_params: int, per_trajectory: bool, y0: Tuple[int, bool], t: Tuple[int, bool],
                      params: Tuple[int, bool], ys: Tuple[int, bool], rtol: float, atol: float,
                      dt: float, max_steps: int, device_index: int = 0, host: bool = False
                      ) -> Tuple[_I64, _I64, _I64, _I32]:
    """Zero-copy solve: arrays as (address, on_device); ys (N, B, D) is written in place."""
def gpu_adjoint(dynamics: Dict[str, Any], dtype: str, method: str, y0: _F, t: _F, params: _F,
                cotangent: _F, rtol: float, atol: float, dt: float, max_steps: int,
                tape_steps: int, memory_budget: int = ..., host: bool = False,
                device_index: int = 0) -> Tuple[_F, _F, _F, int, Optional[Tuple[_F, _I64, _I64, _I64, _I32]]]:
    """Discrete adjoint per trajectory on the GPU (host=True: on the CPU): ybar0 (B, D) without
    cotangent[0], pbar (P,) or (B, P), gt (B, N), n_overflow, recording solve's outputs (host)."""
