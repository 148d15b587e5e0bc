"""Shared argument handling and result assembly for gradients (compiled core and reference)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._problem import Problem, SolveError, SolveWarning, Solution, failure_message
from ._validate import as_float_array
from .losses import Loss

ADJOINTS = ("checkpoint", "backsolve")


@dataclass
class Gradient:
    """Gradients of a scalar L(sol.ys) (given by its cotangent dL/dys).

    y0: dL/dy0, shaped like y0. params: dL/dparams, (P,) — summed over trajectories — for
    shared parameters, (B, P) for per-trajectory parameters. t: dL/dt, shaped like t.
    solution: the forward Solution. status: (B,) status of the forward and backward solves
    (0 = success). adjoint: which adjoint computed it."""

    y0: np.ndarray
    params: np.ndarray
    t: np.ndarray
    solution: Solution
    status: np.ndarray
    adjoint: str

    def __repr__(self) -> str:
        return (f"Gradient(adjoint={self.adjoint!r}, y0.shape={self.y0.shape}, "
                f"params.shape={self.params.shape}, t.shape={self.t.shape})")


def check_adjoint(adjoint) -> str:
    if not isinstance(adjoint, str) or adjoint not in ADJOINTS:
        raise ValueError(f"adjoint: expected 'checkpoint' or 'backsolve', got {adjoint!r}")
    return adjoint


def check_cotangent(cotangent, pb: Problem) -> np.ndarray:
    """The cotangent as (N, B, D) in the solve dtype."""
    N, (B, D) = pb.t.shape[0], pb.y0.shape
    want = (N, D) if pb.squeeze else (N, B, D)
    cot = as_float_array(cotangent, "cotangent")
    if cot.shape != want:
        raise ValueError(f"cotangent: expected the shape of sol.ys {want}, got {cot.shape}")
    if not np.all(np.isfinite(cot)):
        raise ValueError("cotangent: contains non-finite values (inf or NaN)")
    cot = cot.astype(pb.dtype, copy=False)
    return np.ascontiguousarray(cot.reshape(N, 1, D) if pb.squeeze else cot)


def check_loss(loss) -> Loss:
    if not isinstance(loss, Loss):
        raise TypeError(f"loss: expected an odefast.losses loss (MSE, Closure, Custom), "
                        f"got {type(loss).__name__}")
    return loss


def time_gradients(pb: Problem, fun, ys, cot, ybar0) -> np.ndarray:
    """dL/dt_i = cot_i . f(t_i, y_i) (i >= 1); dL/dt_0 = -ybar0 . f(t_0, y0), summed over B."""
    N, B = ys.shape[0], ys.shape[1]
    g = np.zeros(N, dtype=pb.dtype)
    with np.errstate(all="ignore"):
        for i in range(1, N):
            fi = fun(np.full(B, pb.t[i], dtype=pb.dtype), ys[i])
            g[i] = np.sum(cot[i] * fi)
        f0 = fun(np.full(B, pb.t[0], dtype=pb.dtype), pb.y0)
        g[0] = -np.sum(ybar0 * f0)
    return g


def assemble(pb: Problem, sol: Solution, cot, ybar0, pbar, g_t, status, adjoint, on_failure) -> Gradient:
    g_y0 = (ybar0 + cot[0]).astype(pb.dtype)
    g_p = (pbar.sum(axis=0) if pb.params.ndim == 1 else pbar).astype(pb.dtype)
    if pb.squeeze:
        g_y0 = g_y0[0]
    bad = status != 0
    if bad.any():
        msg = ("gradient: " + failure_message(status) + " in the forward or adjoint solve (their "
               "gradients are NaN; see g.status and g.solution.status)")
        g_y0 = g_y0.copy()
        if pb.squeeze:
            g_y0[:] = np.nan
        else:
            g_y0[bad] = np.nan
        if pb.params.ndim == 2:
            g_p[bad] = np.nan
        else:
            g_p[:] = np.nan
        g_t = np.full_like(g_t, np.nan)
        if on_failure == "raise":
            raise SolveError(msg)
        if on_failure == "warn":
            warnings.warn(msg, SolveWarning, stacklevel=3)
    return Gradient(y0=g_y0, params=g_p, t=g_t.astype(pb.dtype), solution=sol, status=status,
                    adjoint=adjoint)


def loss_cotangent(loss: Loss, sol: Solution, y0_user: np.ndarray, pb: Problem):
    """(value, cotangent (N, B, D), d_y0) of the loss at the solution. Failed trajectories
    have NaN outputs; their cotangent is zeroed here (their gradients are reported as NaN)."""
    value = loss.value(sol.ys, y0_user)
    d_ys, d_y0 = loss.grad(sol.ys, y0_user)
    bad = sol.status != 0
    if bad.any():
        d_ys = np.array(d_ys, dtype=pb.dtype, copy=True)
        if pb.squeeze:
            d_ys[...] = 0
        else:
            d_ys[:, bad] = 0
    return value, check_cotangent(d_ys, pb), d_y0
