"""Argument normalisation shared by ``odefast.solve`` and ``odefast.reference.solve``."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import _tableaus
from ._dynamics import Dynamics, PythonDynamics
from ._validate import (as_float_array, cast_checked, check_finite, check_max_steps,
                        check_positive, check_times)

STATUS_MESSAGES = {
    0: "success",
    1: "max_steps reached before t[-1] (raise max_steps or loosen rtol/atol)",
    2: "step size underflow (the problem may be stiff or singular near this time; check the "
       "dynamics and parameters there, or end t before it)",
    3: "non-finite state or derivative (inf/NaN; the solution may blow up: check the dynamics "
       "and parameters, or shorten t)",
}
DEFAULT_MAX_STEPS = 100_000
INT64_MAX = int(np.iinfo(np.int64).max)


class SolveWarning(RuntimeWarning):
    """Some trajectories of a solve failed; ``sol.status`` says which and why."""


class SolveError(RuntimeError):
    """Raised instead of SolveWarning when ``on_failure="raise"``."""


@dataclass
class Problem:
    f: Dynamics
    y0: np.ndarray            # (B, D), solve dtype
    t: np.ndarray             # (N,), solve dtype
    params: np.ndarray        # (P,) or (B, P), solve dtype
    method: str
    rtol: float
    atol: float
    dt: float                 # 0: automatic initial step (adaptive methods)
    max_steps: int
    squeeze: bool             # y0 was 1-D
    dtype: np.dtype = field(default=np.dtype(np.float64))

    @property
    def dtype_name(self) -> str:
        """'float32' or 'float64' (np.dtype.name is slow enough to show in a small solve)."""
        return "float32" if self.dtype == np.float32 else "float64"

    @property
    def adaptive(self) -> bool:
        return _tableaus.TABLEAUS[self.method].adaptive


def prepare(f, y0, t, method="dopri5", rtol=1e-6, atol=1e-8, dt=None, max_steps=None,
            params=None) -> Problem:
    if not isinstance(f, Dynamics):
        raise TypeError(f"f: expected an odefast dynamics object (MLP, Linear, Lorenz, NBody, "
                        f"PythonDynamics), got {type(f).__name__}; wrap a NumPy function "
                        "fn(t, y, params) as odefast.PythonDynamics(fn)")
    if not isinstance(method, str):
        raise TypeError(f"method: expected a string, got {type(method).__name__}")
    if method not in _tableaus.TABLEAUS:
        raise ValueError(f"method: unknown {method!r}; supported: {', '.join(_tableaus.METHODS)}")
    tab = _tableaus.TABLEAUS[method]
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol")
    if dt is None:
        if not tab.adaptive:
            raise ValueError(f"dt: the fixed-step method {method!r} needs a step size dt > 0 "
                             "(e.g. dt=0.01), or use an adaptive method such as 'dopri5'")
        dt_value = 0.0
    else:
        dt_value = check_positive(dt, "dt")
    max_steps = check_max_steps(max_steps)
    if max_steps is None:
        max_steps = DEFAULT_MAX_STEPS if tab.adaptive else INT64_MAX

    y0 = as_float_array(y0, "y0")
    dtype = y0.dtype
    squeeze = y0.ndim == 1
    if y0.ndim not in (1, 2):
        raise ValueError(f"y0: expected shape (B, D) or (D,), got {y0.shape}")
    y0 = np.ascontiguousarray(y0.reshape(1, -1) if squeeze else y0)
    B, D = y0.shape
    if B == 0 or D == 0:
        raise ValueError(f"y0: expected at least one trajectory and one state component, got shape {y0.shape}")
    want_D = f.state_dim()
    if want_D is not None and D != want_D:
        raise ValueError(f"y0: {type(f).__name__} has state dimension {want_D}, got y0 with D = {D}; "
                         f"pass y0 of shape (B, {want_D}) or ({want_D},)")
    check_finite(y0, "y0")
    t = np.ascontiguousarray(check_times(t, dtype))

    if params is None:
        p = f.params
    else:
        p = as_float_array(params, "params")
    P = f.n_params
    if p.ndim == 1:
        if p.shape != (P,):
            raise ValueError(f"params: expected shape ({P},) or ({B}, {P}), got {p.shape}")
    elif p.ndim == 2:
        if p.shape != (B, P):
            raise ValueError(f"params: expected shape ({P},) or ({B}, {P}), got {p.shape}")
    else:
        raise ValueError(f"params: expected shape ({P},) or ({B}, {P}), got {p.shape}")
    check_finite(p, "params")
    p = np.ascontiguousarray(cast_checked(p, dtype, "params"))
    return Problem(f, y0, t, p, method, rtol, atol, dt_value, int(max_steps), squeeze, dtype)


@dataclass
class Solution:
    """Result of a solve.

    ys: (len(t), B, D) — or (len(t), D) for a 1-D y0 — the state at every output time, in
        y0's dtype (float32 or float64); NaN after a trajectory failed.
    t: (len(t),) the output times, same dtype.
    status: (B,) int32, 0 = success, 1 = max_steps, 2 = step size underflow, 3 = non-finite
        state (STATUS_MESSAGES says what to do).
    stats: dict of (B,) int64 arrays: 'nfev' (function evaluations), 'steps' (accepted),
        'rejected'.
    method: the Runge-Kutta method used.
    """

    ys: np.ndarray
    t: np.ndarray
    status: np.ndarray
    stats: dict
    method: str

    @property
    def success(self) -> bool:
        """True when every trajectory reached t[-1] (all status == 0)."""
        return not np.count_nonzero(self.status)  # (a third of status.any()'s cost)

    @property
    def message(self) -> str:
        """Which trajectories failed and why, in words ("all trajectories succeeded" if none)."""
        return failure_message(self.status)

    def __repr__(self) -> str:
        n_fail = int(np.count_nonzero(self.status))
        return (f"Solution(method={self.method!r}, ys.shape={self.ys.shape}, dtype={self.ys.dtype}, "
                f"failed={n_fail}/{self.status.shape[0]}, mean nfev={self.stats['nfev'].mean():.1f})")


def failure_message(status: np.ndarray) -> str:
    bad = np.flatnonzero(status)
    if bad.size == 0:
        return "all trajectories succeeded"
    parts = []
    for code in np.unique(status[bad]):
        idx = np.flatnonzero(status == code)
        shown = ", ".join(map(str, idx[:10])) + (", ..." if idx.size > 10 else "")
        parts.append(f"{idx.size} trajector{'y' if idx.size == 1 else 'ies'} [{shown}]: "
                     f"{STATUS_MESSAGES.get(int(code), f'status {code}')}")
    return f"{bad.size} of {status.shape[0]} trajectories failed: " + "; ".join(parts)


def finish(problem: Problem, ys, nfev, steps, rejected, status, *, on_failure: str) -> Solution:
    if problem.squeeze:
        ys = ys[:, 0, :]
    sol = Solution(ys=ys, t=problem.t, status=status,
                   stats={"nfev": nfev, "steps": steps, "rejected": rejected}, method=problem.method)
    if not sol.success:
        if on_failure == "raise":
            raise SolveError(sol.message)
        if on_failure == "warn":
            warnings.warn(sol.message + " (see sol.status)", SolveWarning, stacklevel=3)
    return sol


def check_on_failure(on_failure) -> str:
    if on_failure not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_failure: expected 'warn', 'raise' or 'ignore', got {on_failure!r}")
    return on_failure
