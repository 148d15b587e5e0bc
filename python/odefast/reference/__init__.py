"""odefast.reference — the same mathematics as the compiled core, in plain NumPy.

Same signatures as the top-level functions; slow, short and written to be read. Every fast
path of odefast is tested against it.
"""
from __future__ import annotations

from .. import _tableaus
from .._problem import Solution, check_on_failure, finish, prepare
from ._rk import integrate
from ._vector_fields import vector_field

__all__ = ["solve"]


def solve(f, y0, t, method="dopri5", rtol=1e-6, atol=1e-8, dt=None, max_steps=None,
          params=None, on_failure="warn") -> Solution:
    """NumPy twin of :func:`odefast.solve` (same arguments, same results to rounding)."""
    on_failure = check_on_failure(on_failure)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    field = vector_field(pb.f)
    p = pb.params

    def fun(tt, y):
        return field(tt, y, p)

    out = integrate(_tableaus.TABLEAUS[pb.method], fun, pb.y0, pb.t, pb.rtol, pb.atol, pb.dt,
                    pb.max_steps)
    return finish(pb, *out, on_failure=on_failure)
