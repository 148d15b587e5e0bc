"""odefast.hvp and odefast.hessian: second derivatives of solves in the compiled core.

Forward-over-reverse (see _second.py for the assembly): K directions v_k = (v_y0, v_params) are
pushed through the solve as tangents, the loss's Hessian turns the output tangents into
cotangent tangents, and the tangent of the adjoint gives H v_k. A full Hessian is K = D (or P)
such products in one batched call.

adjoint="checkpoint" (default): the recorded steps are replayed on dual numbers (value +
ε tangent) and the discrete adjoint's reverse sweep runs on them — the exact second derivative
of the computed solution (the step sizes are constants, as for the gradient).
adjoint="backsolve": the continuous second-order adjoint — the tangent ODE forward, then the
augmented adjoint system [z, a, dL/dparams] and its tangent backwards, all solved with the same
method and tolerances (cpp/include/odefast/second_order.hpp writes the equations).
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._problem import Problem, finish
from ._second import HVP, hessian_driver, hvp_driver, loss_terms
from ._solve import check_device


def _hvps(pb: Problem, loss, V_y0, V_p, adjoint, device="cpu"):
    """K Hessian-vector products at once: the backend of _second.hvp_driver / hessian_driver."""
    if check_device(device) == "cuda":
        raise ValueError("device: second derivatives (hvp, hessian) run on the CPU in this "
                         "release; use device='cpu'")
    spec, dtype = pb.f._spec(), pb.dtype_name
    controls = (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    V_y0 = np.ascontiguousarray(V_y0, dtype=pb.dtype)
    V_p = np.ascontiguousarray(V_p, dtype=pb.dtype)
    if adjoint == "checkpoint":
        *out, tape = _core.solve_recording(spec, dtype, pb.method, pb.y0, pb.t, pb.params, *controls)
        sol = finish(pb, *out, on_failure="ignore")
        dys = tape.jvp(V_y0, V_p)
        cot, d_cot, d_dL_dy0 = loss_terms(loss, pb, sol, dys)
        d_adj_y0, d_adj_p = tape.hvp(V_y0, V_p, cot, d_cot)
        status = sol.status
    else:
        out = _core.solve(spec, dtype, pb.method, pb.y0, pb.t, pb.params, *controls)
        sol = finish(pb, *out, on_failure="ignore")
        dys, tangent_status, _ = _core.solve_tangent(spec, dtype, pb.method, pb.y0, pb.t, pb.params,
                                                     V_y0, V_p, *controls)
        cot, d_cot, d_dL_dy0 = loss_terms(loss, pb, sol, dys)
        d_adj_y0, d_adj_p, back_status, _ = _core.backsolve_hvp(
            spec, dtype, pb.method, out[0], dys, pb.t, pb.params, V_y0, V_p, cot, d_cot, *controls)
        status = sol.status
        for other in (tangent_status, back_status):
            status = np.where(status != 0, status, other)
    return d_adj_y0 + d_cot[:, 0] + d_dL_dy0, d_adj_p, sol, status


def hvp(f, y0, t, loss, v_y0, v_params=None, adjoint="checkpoint", method="dopri5", rtol=1e-6,
        atol=1e-8, dt=None, max_steps=None, params=None, device="cpu", on_failure="warn") -> HVP:
    """Hessian-vector product of L = loss(sol.ys, y0) w.r.t. (y0, params) along (v_y0, v_params).

    f, y0, t and the solve options as for :func:`odefast.solve`; loss: an odefast.losses loss
    with an hvp (MSE, Closure, or Custom with hvp). v_y0: shaped like y0; v_params: shaped like
    the params in use ((P,) or (B, P)), None for zeros. adjoint: "checkpoint" (exact second
    derivative of the computed solution) or "backsolve" (continuous second-order adjoint).

    Returns an HVP with .y0 (shaped like y0) and .params ((P,) summed over trajectories for
    shared params, (B, P) per trajectory), .solution and .status (failed rows are NaN)."""
    return hvp_driver(_hvps, f, y0, t, loss, v_y0, v_params, adjoint=adjoint, method=method,
                      rtol=rtol, atol=atol, dt=dt, max_steps=max_steps, params=params,
                      on_failure=on_failure, device=device)


def hessian(f, y0, t, loss, wrt="y0", adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8,
            dt=None, max_steps=None, params=None, device="cpu", on_failure="warn") -> np.ndarray:
    """Hessian of L = loss(sol.ys, y0), one batched solve of Hessian-vector products.

    wrt="y0": (B, D, D), the block d²L/dy0[b]² of every trajectory ((D, D) for a 1-D y0).
    wrt="params": (P, P) for shared params, (B, P, P) for per-trajectory params. Arguments as
    for :func:`hvp`; the result is not symmetrised (it is symmetric to rounding)."""
    return hessian_driver(_hvps, f, y0, t, loss, wrt=wrt, adjoint=adjoint, method=method,
                          rtol=rtol, atol=atol, dt=dt, max_steps=max_steps, params=params,
                          on_failure=on_failure, device=device)
