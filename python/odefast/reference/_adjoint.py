"""First-order adjoints in plain NumPy — the oracle for the compiled ones.

Discrete adjoint ("checkpoint"): reverse mode through the Runge–Kutta steps actually taken.
For a step  Y_i = y + h sum_{j<i} a_ij k_j,  k_i = f(t + c_i h, Y_i),  y' = y + h sum_i b_i k_i
with cotangent ybar' of y':
    kbar_i  = h b_i ybar'                         (+ h B_i(theta) ybar_out for dense outputs)
    for i = s-1 .. 0:  (Ybar, pbar_i, .) = vjp_f(t + c_i h, Y_i)(kbar_i)
                       ybar += Ybar;  pbar += pbar_i;  kbar_j += h a_ij Ybar  (j < i)
    ybar = ybar' + sum_i Ybar_i                   (+ ybar_out for dense outputs)
The step sizes are treated as constants (they come from the controller, primal values only),
so this is the exact gradient of the computed solution with respect to y0 and params.

Continuous adjoint ("backsolve", Chen et al. 2018, Algorithm 1): integrate backwards, interval
by interval, the augmented system
    dz/dt = f(t, z),   da/dt = -a^T df/dz,   dpbar/dt = -a^T df/dp
from z(t_N) = y(t_N), a(t_N) = dL/dy(t_N), pbar = 0, with the jump a += dL/dy(t_i) at each
output time; pbar(t_0) = dL/dp and a(t_0) = dL/dy0.

Time gradients (both adjoints): dL/dt_i = cot_i . f(t_i, y(t_i)) for i >= 1 and
dL/dt_0 = -a(t_0) . f(t_0, y0), with a(t_0) the adjoint at t_0 excluding cot_0.
"""
from __future__ import annotations

import numpy as np

from .._tableaus import Tableau
from ._rk import _Stepper, integrate


def discrete_adjoint(tab: Tableau, fun, vjp, p, record, cot):
    """Returns (ybar at t0 without cot[0] (B, D), pbar per trajectory (B, P))."""
    B, D = cot.shape[1], cot.shape[2]
    dtype = cot.dtype
    st = _Stepper(tab, fun, dtype)
    s = tab.stages
    P = p.shape[-1]
    ybar = np.zeros((B, D), dtype)
    pbar = np.zeros((B, P), dtype)
    with np.errstate(all="ignore"):
        for n in range(len(record.steps) - 1, -1, -1):
            rows, tn, h, yn = record.steps[n]
            hh = np.where(rows, h, dtype.type(0))
            K = np.empty((s, B, D), dtype)
            Y = np.empty((s, B, D), dtype)
            K[0], Y[0] = fun(tn, yn), yn
            for i in range(1, s):
                Y[i] = yn + hh[:, None] * np.tensordot(st.a[i, :i], K[:i], axes=1)
                K[i] = fun(tn + st.c[i] * hh, Y[i])
            ybar_new = ybar.copy()
            direct = np.zeros((B, D), dtype)
            kbar = np.zeros((s, B, D), dtype)
            for b, i, theta in record.outputs[n]:
                if theta is None:
                    ybar_new[b] += cot[i, b]
                else:
                    Bth = np.zeros(s, dtype)
                    for j in range(st.dense.shape[1] - 1, -1, -1):
                        Bth = (Bth + st.dense[:, j]) * theta[0]
                    direct[b] += cot[i, b]
                    kbar[:, b] += hh[b] * Bth[:, None] * cot[i, b]
            kbar += hh[None, :, None] * st.b[:, None, None] * ybar_new[None]
            yb = ybar_new + direct
            pb = np.zeros((B, P), dtype)
            for i in range(s - 1, -1, -1):
                gy, gp, _ = vjp(tn + st.c[i] * hh, Y[i], p, kbar[i])
                yb += gy
                pb += gp
                for j in range(i):
                    kbar[j] += (hh * st.a[i, j])[:, None] * gy
            ybar = np.where(rows[:, None], yb, ybar)
            pbar += np.where(rows[:, None], pb, dtype.type(0))
    return ybar, pbar


def backsolve(tab: Tableau, fun, vjp, p, t, ys, cot, rtol, atol, dt, max_steps, seminorm=False):
    """Returns (ybar at t0 without cot[0], pbar (B, P), status (B,), nfev (B,))."""
    N, B, D = ys.shape
    dtype = ys.dtype
    P = p.shape[-1]

    def augmented(tt, Z):
        z, a = Z[:, :D], Z[:, D:2 * D]
        gy, gp, _ = vjp(tt, z, p, a)
        return np.concatenate([fun(tt, z), -gy, -gp], axis=1)

    # with a single output time, y(t[-1]) is y0 itself and cot[0] is added by the caller
    a_end = cot[-1] if N > 1 else np.zeros_like(cot[-1])
    Z = np.concatenate([ys[-1], a_end, np.zeros((B, P), dtype)], axis=1)
    status = np.zeros(B, np.int32)
    nfev = np.zeros(B, np.int64)
    for i in range(N - 1, 0, -1):
        seg = np.array([t[i], t[i - 1]], dtype=dtype)
        out, nf, _, _, st = integrate(tab, augmented, Z, seg, rtol, atol, dt, max_steps,
                                      error_dims=2 * D if seminorm else None)
        nfev += nf
        status = np.where(status == 0, st, status)
        Z = out[-1].copy()
        if i > 1:
            Z[:, D:2 * D] += cot[i - 1]
    return Z[:, D:2 * D], Z[:, 2 * D:], status, nfev
