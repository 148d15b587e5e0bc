"""odefast.solve: batched explicit Runge–Kutta solves in the compiled core."""
from __future__ import annotations

from . import _core, _cuda
from ._dynamics import PythonDynamics
from ._problem import Solution, check_on_failure, finish, prepare


def cuda_available() -> bool:
    """True when device='cuda' can run: the CUDA kernels were compiled into this build and a
    GPU is visible."""
    return bool(_core.build_info()["cuda_compiled"]) and _core.cuda_device_count() > 0


def check_device(device) -> str:
    """'cpu' or 'cuda' (only where it can run)."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        if not _core.build_info()["cuda_compiled"]:
            raise ValueError("device: 'cuda' requested but this build of odefast has no CUDA "
                             "kernels (no CUDA compiler at build time, or ODEFAST_CUDA=OFF); "
                             "use device='cpu'")
        if _core.cuda_device_count() == 0:
            raise ValueError("device: 'cuda' requested but no CUDA GPU is visible; use device='cpu'")
    return device


def check_cuda_dynamics(f, device):
    if device == "cuda" and isinstance(f, PythonDynamics):
        raise ValueError("device: PythonDynamics is a NumPy vector field and runs on the CPU; "
                         "use device='cpu' (or a built-in dynamics on the GPU)")


def solve(f, y0, t, method="dopri5", rtol=1e-6, atol=1e-8, dt=None, max_steps=None,
          params=None, device="cpu", on_failure="warn") -> Solution:
    """Solve dy/dt = f(t, y) for a batch of initial states.

    Args:
        f: dynamics (MLP, Linear, Lorenz, NBody; PythonDynamics runs in NumPy).
        y0: (B, D) or (D,) initial states, float32 or float64 (the solve's dtype).
        t: 1-D output times, strictly increasing or strictly decreasing; t[0] is the initial time.
        method: 'euler', 'midpoint', 'heun', 'rk4' (fixed step, need dt) or
            'bosh3', 'dopri5', 'tsit5', 'dopri8' (adaptive, per-trajectory step sizes).
        rtol, atol: tolerances of adaptive methods (> 0).
        dt: step of fixed-step methods (each output interval gets ceil(|Δt|/dt) equal steps);
            for adaptive methods the initial step (default: automatic).
        max_steps: attempted steps per trajectory before status 1 (default 100000 adaptive).
        params: None (f.params), (P,) to replace them, or (B, P) per trajectory.
        device: 'cpu', or 'cuda' (where odefast.backends()['cuda']): one GPU thread per
            trajectory with the same steps, statuses and dense output as the CPU. NumPy arrays
            are copied to the GPU and back; a CuPy array or PyTorch CUDA tensor y0 (and params,
            t) is used in place and sol.ys is returned on the GPU as the same kind of array.
        on_failure: 'warn' (SolveWarning), 'raise' (SolveError) or 'ignore' when a trajectory fails.

    Returns:
        Solution with ys (len(t), B, D) (or (len(t), D) for 1-D y0), status (B,), stats.
    """
    on_failure = check_on_failure(on_failure)
    check_device(device)
    if _cuda.is_device_array(y0) or _cuda.is_device_array(params) or _cuda.is_device_array(t):
        if device != "cuda":
            raise ValueError("device: CUDA device arrays were given; pass device='cuda' (or NumPy "
                             "arrays for device='cpu')")
        if not _cuda.is_device_array(y0):
            raise TypeError("y0: params or t is a CUDA device array, so y0 must be one too "
                            "(device arrays in, sol.ys on the device out)")
        check_cuda_dynamics(f, device)
        return _cuda.solve_device_arrays(f, y0, t, method, rtol, atol, dt, max_steps, params,
                                         on_failure)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    check_cuda_dynamics(pb.f, device)
    if device == "cuda":
        out = _core.gpu_solve(pb.f._spec(), pb.dtype_name, pb.method, pb.y0, pb.t, pb.params,
                              pb.rtol, pb.atol, pb.dt, pb.max_steps)
    elif isinstance(pb.f, PythonDynamics):
        from .reference import _integrate  # the slow path: a NumPy vector field, in NumPy
        out = _integrate(pb)
    else:
        out = _core.solve(pb.f._spec(), pb.dtype_name, pb.method, pb.y0, pb.t, pb.params,
                          pb.rtol, pb.atol, pb.dt, pb.max_steps)
    return finish(pb, *out, on_failure=on_failure)
