"""Second derivatives of solves: argument handling and assembly shared by the compiled core and
the NumPy reference. No integration here; a backend supplies the Hessian-vector products.

The mathematics, once. With ys(y0, θ) the solution at the output times (ys[0] = y0) and the
objective L(y0, θ) = loss(ys(y0, θ), y0), the Hessian-vector product along a direction
v = (v_y0, v_θ) is the directional derivative of the gradient,

    H v = d/dε ∇L(y0 + ε v_y0, θ + ε v_θ) at ε = 0,

computed forward-over-reverse: the tangent δys = ∂ys/∂y0 v_y0 + ∂ys/∂θ v_θ of the forward solve
(δys[0] = v_y0), the loss's first and second derivatives at the outputs

    cot = ∂loss/∂ys,   dL_dy0 = ∂loss/∂y0            (loss.grad)
    δcot, δdL_dy0 = ∇²loss [δys, v_y0]               (loss.hvp)

and the tangent (δadj_y0, δadj_p) of the adjoint (adj_y0, adj_p) = vjp of the solve with cot:

    H v = ( δadj_y0 + δcot[0] + δdL_dy0 ,  δadj_p ).

A backend's ``hvps`` evaluates K such products at once (one forward solve, K tangents); this
module validates the arguments, chooses the directions and assembles the results:

    hvps(pb, loss, V_y0, V_p, adjoint, **opts) -> (HY0, HP, sol, status)
        pb: the prepared Problem (odefast._problem.prepare); loss: an odefast.losses.Loss;
        V_y0: (K, B, D) and V_p: (K, P) for shared params or (K, B, P) per trajectory, in
        pb.dtype; adjoint: "checkpoint" or "backsolve".
        HY0: (K, B, D), the y0 part of H v_k, including δcot[0] and δdL_dy0 (see loss_terms);
        HP: (K, P) summed over the trajectories for shared params, (K, B, P) per trajectory;
        sol: the forward Solution; status: (B,) int, 0 where the forward and adjoint solves
        of that trajectory succeeded (failed rows may hold anything; they are set to NaN here).

A Hessian is a batch of HVPs on unit directions: column k of H is H e_k.
* wrt="y0": one D x D block per trajectory, d²L/dy0[b]dy0[b]. The trajectories are independent
  ODEs, so the directions e_d placed on every trajectory at once give all B blocks in K = D
  products whenever the loss is separable over trajectories (MSE, Closure), whose Hessian has
  no cross-trajectory terms. Any other loss (Custom) may couple trajectories; then K = B·D
  directions, one trajectory perturbed at a time, so that every block is exact.
* wrt="params": (P, P) for shared params (K = P directions); one P x P block per trajectory
  for per-trajectory params, with the directions chosen as for y0.
The Hessian is returned as computed, not symmetrised (its symmetry is a test of the backend).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._dynamics import PythonDynamics
from ._grad import check_adjoint, check_loss, loss_cotangent
from ._problem import (Problem, Solution, SolveError, SolveWarning, check_on_failure,
                       failure_message, prepare)
from ._validate import as_float_array, check_finite
from .losses import MSE, Closure, Custom, Loss

WRT = ("y0", "params")
# Custom-loss Hessians perturb one trajectory at a time: at most this many direction entries
# (K * B * (D + P)) are handed to the backend in one call.
MAX_DIRECTION_ENTRIES = 1 << 24


@dataclass
class HVP:
    """A Hessian-vector product H v of L(y0, params) = loss(sol.ys, y0), v = (v_y0, v_params).

    y0: the y0 part of H v, shaped like y0 ((B, D), or (D,) for a 1-D y0).
    params: the params part: (P,), summed over trajectories, for shared params; (B, P) for
        per-trajectory params.
    solution: the forward Solution. status: (B,) status of the forward and adjoint solves
        (0 = success; failed trajectories have NaN rows). adjoint: which adjoint computed it
        ("checkpoint": exact for the computed solution; "backsolve": continuous)."""

    y0: np.ndarray
    params: np.ndarray
    solution: Solution
    status: np.ndarray
    adjoint: str

    def __repr__(self) -> str:
        n_fail = int(np.count_nonzero(self.status))
        return (f"HVP(adjoint={self.adjoint!r}, y0.shape={self.y0.shape}, "
                f"params.shape={self.params.shape}, dtype={self.y0.dtype}, "
                f"failed={n_fail}/{self.status.shape[0]})")


def check_wrt(wrt) -> str:
    if not isinstance(wrt, str) or wrt not in WRT:
        raise ValueError(f"wrt: expected 'y0' or 'params', got {wrt!r}")
    return wrt


def check_second_order(f, loss: Loss) -> None:
    """What second derivatives need beyond first ones: second derivatives of f and a loss.hvp."""
    if isinstance(f, PythonDynamics):
        raise TypeError("f: Hessians need second derivatives of the vector field, which "
                        "PythonDynamics does not provide; use a built-in dynamics (MLP, Linear, "
                        "Lorenz, NBody)")
    if isinstance(loss, Custom) and loss._hvp is None:
        raise ValueError("loss: this Custom loss has no hvp callable; second derivatives need "
                         "Custom(value, grad, hvp)")


def _direction(v, name: str, shape: tuple, what: str, pb: Problem) -> np.ndarray:
    if v is None:
        return np.zeros(shape, pb.dtype)
    v = as_float_array(v, name)
    if v.shape != shape:
        raise ValueError(f"{name}: expected the shape of {what} {shape}, got {v.shape}")
    check_finite(v, name)
    return np.ascontiguousarray(v.astype(pb.dtype, copy=False))


def check_directions(v_y0, v_params, pb: Problem):
    """(V_y0 (B, D), V_p shaped like pb.params) in pb.dtype. v_y0 is shaped like the user's y0,
    v_params like the params in use ((P,) or (B, P)); None means zeros."""
    B, D = pb.y0.shape
    V_y0 = _direction(v_y0, "v_y0", (D,) if pb.squeeze else (B, D), "y0", pb)
    V_p = _direction(v_params, "v_params", pb.params.shape, "params", pb)
    return V_y0.reshape(B, D), V_p


def loss_terms(loss: Loss, pb: Problem, sol: Solution, dys: np.ndarray):
    """The loss's derivatives at the solution, for a backend's hvps.

    dys: (K, N, B, D), the tangents δys of the outputs along the K directions (dys[:, 0] is
    V_y0). Returns cot = ∂loss/∂ys (N, B, D) and, per direction, δcot (K, N, B, D) and
    δdL_dy0 (K, B, D) from loss.hvp. Failed trajectories get zero cotangents and tangents (their
    results are reported as NaN)."""
    K, N, B, D = dys.shape
    y0_user = pb.y0[0] if pb.squeeze else pb.y0
    _, cot, _ = loss_cotangent(loss, sol, y0_user, pb)
    ok = (sol.status == 0)[None, :, None]
    V_ys = np.where(ok, dys, 0).astype(pb.dtype, copy=False)  # (K, N, B, D); V_ys[:, 0] = V_y0
    V_y0 = V_ys[:, 0]
    if pb.squeeze:
        V_ys, V_y0 = V_ys[:, :, 0], V_y0[:, 0]
    H_ys, H_y0 = loss.hvps(sol.ys, y0_user, V_ys, V_y0)
    d_cot = np.where(ok, np.reshape(H_ys, (K, N, B, D)), 0).astype(pb.dtype, copy=False)
    d_dL_dy0 = np.where(ok[0], np.reshape(H_y0, (K, B, D)), 0).astype(pb.dtype, copy=False)
    return cot, d_cot, d_dL_dy0


def _report(what: str, status: np.ndarray, on_failure: str) -> None:
    msg = (f"{what}: " + failure_message(status) + " in the forward or adjoint solve (their "
           "second derivatives are NaN; see .status)")
    if on_failure == "raise":
        raise SolveError(msg)
    if on_failure == "warn":
        warnings.warn(msg, SolveWarning, stacklevel=4)


def _prepare(f, y0, t, loss, adjoint, method, rtol, atol, dt, max_steps, params, on_failure):
    on_failure = check_on_failure(on_failure)
    adjoint = check_adjoint(adjoint)
    loss = check_loss(loss)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    check_second_order(pb.f, loss)
    return pb, loss, adjoint, on_failure


def hvp_driver(hvps, f, y0, t, loss, v_y0, v_params=None, adjoint="checkpoint", method="dopri5",
               rtol=1e-6, atol=1e-8, dt=None, max_steps=None, params=None, on_failure="warn",
               **opts) -> HVP:
    """odefast.hvp / odefast.reference.hvp on the backend ``hvps`` (K = 1 direction)."""
    pb, loss, adjoint, on_failure = _prepare(f, y0, t, loss, adjoint, method, rtol, atol, dt,
                                             max_steps, params, on_failure)
    V_y0, V_p = check_directions(v_y0, v_params, pb)
    HY0, HP, sol, status = hvps(pb, loss, V_y0[None], V_p[None], adjoint, **opts)
    h_y0, h_p = np.array(HY0[0], dtype=pb.dtype), np.array(HP[0], dtype=pb.dtype)
    bad = status != 0
    if bad.any():
        h_y0[bad] = np.nan
        if h_p.ndim == 2:
            h_p[bad] = np.nan
        else:
            h_p[:] = np.nan
        _report("hvp", status, on_failure)
    return HVP(y0=h_y0[0] if pb.squeeze else h_y0, params=h_p, solution=sol, status=status,
               adjoint=adjoint)


def separable(loss: Loss) -> bool:
    """Whether the loss is a sum of per-trajectory terms (no cross-trajectory Hessian blocks)."""
    return type(loss) in (MSE, Closure)


def hessian_driver(hvps, f, y0, t, loss, wrt="y0", adjoint="checkpoint", method="dopri5",
                   rtol=1e-6, atol=1e-8, dt=None, max_steps=None, params=None,
                   on_failure="warn", **opts) -> np.ndarray:
    """odefast.hessian / odefast.reference.hessian on the backend ``hvps``.

    wrt="y0": (B, D, D) blocks d²L/dy0[b]² ((D, D) for a 1-D y0); wrt="params": (P, P) for
    shared params, (B, P, P) blocks for per-trajectory params."""
    wrt = check_wrt(wrt)
    pb, loss, adjoint, on_failure = _prepare(f, y0, t, loss, adjoint, method, rtol, atol, dt,
                                             max_steps, params, on_failure)
    B, D = pb.y0.shape
    P = pb.params.shape[-1]
    status = np.zeros(B, np.int32)

    def products(E):
        """H e_k for the K directions E (K, B, n) (or (K, P) for shared params) in wrt."""
        K = E.shape[0]
        V_y0 = E if wrt == "y0" else np.zeros((K, B, D), pb.dtype)
        V_p = E if wrt == "params" else np.zeros((K,) + pb.params.shape, pb.dtype)
        HY0, HP, _, st = hvps(pb, loss, V_y0, V_p, adjoint, **opts)
        status[:] = np.where(status != 0, status, st)
        return np.asarray(HY0 if wrt == "y0" else HP, dtype=pb.dtype)

    if wrt == "params" and pb.params.ndim == 1:            # one (P, P) Hessian
        H = products(np.eye(P, dtype=pb.dtype)).T.copy()  # H[:, k] = H e_k
        if (status != 0).any():
            H[:] = np.nan
    else:                                                  # one (n, n) block per trajectory
        n = D if wrt == "y0" else P
        eye = np.eye(n, dtype=pb.dtype)
        if B == 1 or separable(loss):                      # e_j on every trajectory at once
            H = products(np.ascontiguousarray(np.broadcast_to(eye[:, None, :], (n, B, n))))
            H = H.transpose(1, 2, 0).copy()                # H[b][:, j] = (H e_j)[b]
        else:                                              # one trajectory at a time
            H = np.empty((B, n, n), pb.dtype)
            chunk = max(1, MAX_DIRECTION_ENTRIES // (n * B * (D + P)))
            for r0 in range(0, B, chunk):
                rows = np.arange(r0, min(B, r0 + chunk))
                E = np.zeros((rows.size, n, B, n), pb.dtype)
                E[np.arange(rows.size), :, rows, :] = eye
                HX = products(E.reshape(rows.size * n, B, n)).reshape(rows.size, n, B, n)
                H[rows] = HX[np.arange(rows.size), :, rows, :].transpose(0, 2, 1)
        H[status != 0] = np.nan
        if pb.squeeze:
            H = H[0]
    if (status != 0).any():
        _report("hessian", status, on_failure)
    return H
