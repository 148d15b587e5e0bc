"""odefast.reference — the same mathematics as the compiled core, in plain NumPy.

Same signatures as the top-level functions; slow, short and written to be read. Every fast
path of odefast is tested against it.
"""
from __future__ import annotations

import numpy as np

from .. import _tableaus
from .._grad import (Gradient, assemble, check_adjoint, check_cotangent, check_loss,
                     loss_cotangent, time_gradients)
from .._problem import Solution, check_on_failure, finish, prepare
from ._adjoint import backsolve, discrete_adjoint
from ._rk import StepRecord, integrate
from ._second_order import hessian, hvp
from ._vector_fields import vector_field, vector_field_vjp

__all__ = ["solve", "vjp", "value_and_grad", "hvp", "hessian"]


def solve(f, y0, t, method="dopri5", rtol=1e-6, atol=1e-8, dt=None, max_steps=None,
          params=None, on_failure="warn") -> Solution:
    """NumPy twin of :func:`odefast.solve` (same arguments, same results to rounding)."""
    on_failure = check_on_failure(on_failure)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    return finish(pb, *_integrate(pb), on_failure=on_failure)


def _integrate(pb):
    """(ys, nfev, steps, rejected, status) of a prepared problem."""
    fun = _bind(vector_field(pb.f), pb.params)
    return integrate(_tableaus.TABLEAUS[pb.method], fun, pb.y0, pb.t, pb.rtol, pb.atol, pb.dt,
                     pb.max_steps)


def _bind(field, p):
    return lambda tt, y: field(tt, y, p)


def _vjp(pb, cot, adjoint, seminorm, on_failure) -> Gradient:
    tab = _tableaus.TABLEAUS[pb.method]
    field, field_vjp = vector_field(pb.f), vector_field_vjp(pb.f)
    fun, p = _bind(field, pb.params), pb.params
    record = StepRecord() if adjoint == "checkpoint" else None
    ys, nfev, steps, rejected, status = integrate(tab, fun, pb.y0, pb.t, pb.rtol, pb.atol, pb.dt,
                                                  pb.max_steps, record=record)
    sol = finish(pb, ys, nfev, steps, rejected, status, on_failure="ignore")
    # failed trajectories go through the adjoint too; assemble() reports them as NaN
    if adjoint == "checkpoint":
        ybar0, pbar = discrete_adjoint(tab, fun, field_vjp, p, record, cot)
    else:
        ybar0, pbar, back_status, _ = backsolve(tab, fun, field_vjp, p, pb.t, ys, cot, pb.rtol,
                                                pb.atol, pb.dt, pb.max_steps, seminorm=seminorm)
        status = np.where(status != 0, status, back_status)
    g_t = time_gradients(pb, fun, ys, cot, ybar0)
    return assemble(pb, sol, cot, ybar0, pbar, g_t, status, adjoint, on_failure)


def vjp(f, y0, t, cotangent, adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8,
        dt=None, max_steps=None, params=None, seminorm=False, on_failure="warn") -> Gradient:
    """NumPy twin of :func:`odefast.vjp`."""
    on_failure = check_on_failure(on_failure)
    adjoint = check_adjoint(adjoint)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    cot = check_cotangent(cotangent, pb)
    return _vjp(pb, cot, adjoint, seminorm, on_failure)


def value_and_grad(f, y0, t, loss, adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8,
                   dt=None, max_steps=None, params=None, seminorm=False, on_failure="warn"):
    """NumPy twin of :func:`odefast.value_and_grad`."""
    on_failure = check_on_failure(on_failure)
    adjoint = check_adjoint(adjoint)
    loss = check_loss(loss)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    sol = solve(f, y0, t, method=method, rtol=rtol, atol=atol, dt=dt, max_steps=max_steps,
                params=params, on_failure="ignore")
    y0_user = pb.y0[0] if pb.squeeze else pb.y0
    value, cot, d_y0 = loss_cotangent(loss, sol, y0_user, pb)
    g = _vjp(pb, cot, adjoint, seminorm, on_failure)
    g.y0 = g.y0 + d_y0
    return value, g
