"""Explicit Runge–Kutta integration in plain NumPy — the oracle for the C++ core.

Same algorithm, step for step, as cpp/include/odefast/integrator.hpp (read that file's header
for the formulas). Every trajectory (row) has its own time, step size and accept/reject
decisions; rows are advanced together with masks, and a row that is done or failed takes
steps of size 0 that are discarded.
"""
from __future__ import annotations

import numpy as np

from .._tableaus import Tableau

SAFETY, FAC_MIN, FAC_MAX = 0.9, 0.2, 10.0


def fixed_substeps(span: float, dt: float) -> int:
    """Equal steps covering one output interval, none longer than dt (as the C++ core)."""
    n = np.ceil(abs(span) / dt * (1.0 - 1e-12))
    return max(1, int(n))


class _Stepper:
    def __init__(self, tab: Tableau, fun, dtype):
        self.tab, self.fun, self.dtype = tab, fun, dtype
        cast = lambda x: None if x is None else np.asarray(x, dtype=dtype)  # noqa: E731
        self.a, self.b, self.c = cast(tab.a), cast(tab.b), cast(tab.c)
        self.b_err, self.b_err3, self.dense = cast(tab.b_err), cast(tab.b_err3), cast(tab.dense)

    def step(self, t, y, h, k0):
        """All stages from k0 = f(t, y); returns (y_new, k[s, B, D])."""
        s = self.tab.stages
        k = np.empty((s,) + y.shape, dtype=self.dtype)
        k[0] = k0
        for i in range(1, s):
            yi = y + h[:, None] * np.tensordot(self.a[i, :i], k[:i], axes=1)
            k[i] = self.fun(t + self.c[i] * h, yi)
            if self.tab.fsal and i == s - 1:
                y_new = yi
        if not self.tab.fsal:
            y_new = y + h[:, None] * np.tensordot(self.b, k, axes=1)
        return y_new, k

    def interpolate(self, y, h, k, theta):
        """Dense output y + h sum_i k_i B_i(theta) for rows with their own theta."""
        B = np.zeros((self.tab.stages, theta.shape[0]), dtype=self.dtype)
        for j in range(self.dense.shape[1] - 1, -1, -1):
            B = (B + self.dense[:, j:j + 1]) * theta[None, :]
        return y + h[:, None] * np.einsum("sb,sbd->bd", B, k)


def _rms(v, scale, dims=None):
    """RMS over the first ``dims`` components (all by default)."""
    if dims is not None:
        v, scale = v[:, :dims], scale[:, :dims]
    return np.sqrt(np.mean((v / scale) ** 2, axis=1))


class StepRecord:
    """Accepted steps, for the discrete adjoint: per step the rows that took it, their start
    times, step sizes and start states, and the outputs each row wrote inside it."""

    def __init__(self):
        self.steps = []       # (rows (bool B), t (B,), h (B,), y (B, D))
        self.outputs = []     # per step: list of (row, output index, theta or None for the step end)

    def push(self, rows, t, h, y):
        self.steps.append((rows.copy(), t.copy(), h.copy(), y.copy()))
        self.outputs.append([])

    def output(self, row, i, theta):
        self.outputs[-1].append((row, i, theta))


def integrate(tab: Tableau, fun, y0, t, rtol, atol, dt, max_steps, record=None, error_dims=None):
    """Returns ys (N, B, D), nfev, steps, rejected, status (B,). ``record`` (a StepRecord)
    receives every accepted step; ``error_dims`` limits error control to the first components
    (a seminorm, for adjoint systems)."""
    dtype = y0.dtype
    N, (B, D) = t.shape[0], y0.shape
    ys = np.full((N, B, D), np.nan, dtype=dtype)
    ys[0] = y0
    nfev = np.zeros(B, np.int64)
    steps = np.zeros(B, np.int64)
    rejected = np.zeros(B, np.int64)
    status = np.zeros(B, np.int32)
    if N == 1:
        return ys, nfev, steps, rejected, status
    st = _Stepper(tab, fun, dtype)
    with np.errstate(all="ignore"):  # non-finite states are detected and reported per row
        if tab.adaptive:
            st.error_dims = y0.shape[1] if error_dims is None else error_dims
            _adaptive(st, y0, t, rtol, atol, dt, max_steps, ys, nfev, steps, rejected, status, record)
        else:
            _fixed(st, y0, t, dt, max_steps, ys, nfev, steps, status, record)
    return ys, nfev, steps, rejected, status


def _fixed(st, y0, t, dt, max_steps, ys, nfev, steps, status, record=None):
    """All rows share t and h; each row's state is checked once per output interval."""
    dtype, s = y0.dtype, st.tab.stages
    B = y0.shape[0]
    y = y0.copy()
    active = np.ones(B, bool)
    taken = 0
    for i in range(1, t.shape[0]):
        t0, span = float(t[i - 1]), float(t[i]) - float(t[i - 1])
        n = fixed_substeps(span, dt)
        hd = span / n
        todo = min(n, max_steps - taken)
        h = np.full(B, hd, dtype=dtype)
        for j in range(todo):
            tj = np.full(B, t0 + j * hd, dtype=dtype)
            if record is not None:
                record.push(active, tj, h, y)
            y, _ = st.step(tj, y, h, st.fun(tj, y))
        taken += todo
        nfev[active] += todo * s
        steps[active] += todo
        bad = active & ~np.all(np.isfinite(y), axis=1)
        status[bad] = 3
        active &= ~bad
        if todo < n:
            status[active] = 1
            active[:] = False
        ys[i][active] = y[active]
        if record is not None and todo > 0:
            for b in np.flatnonzero(active):
                record.output(b, i, None)
        if todo < n:
            return


def _initial_step(st, y, k0, t0, t_end, rtol, atol, dt, nfev):
    dtype = y.dtype
    span = t_end - t0
    direction = dtype.type(1 if span > 0 else -1)
    max_h = abs(span)
    B = y.shape[0]
    if dt > 0:
        return np.full(B, direction * min(dtype.type(dt), max_h), dtype=dtype)
    scale = dtype.type(atol) + dtype.type(rtol) * np.abs(y)
    dims = st.error_dims
    d0, d1 = _rms(y, scale, dims), _rms(k0, scale, dims)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), dtype.type(1e-6), dtype.type(0.01) * d0 / d1).astype(dtype)
    h0 = np.minimum(h0, max_h)
    h = direction * h0
    f1 = st.fun(t0 + h, y + h[:, None] * k0)
    nfev += 1
    d2 = _rms((f1 - k0) / h0[:, None], scale, dims)
    m = np.maximum(d1, d2)
    k = control_order(st.tab)
    h1 = np.where(m <= 1e-15, np.maximum(dtype.type(1e-6), h0 * dtype.type(1e-3)),
                  (dtype.type(0.01) / m) ** dtype.type(1.0 / k))
    hn = np.minimum(np.minimum(dtype.type(100) * h0, h1), max_h)
    return np.where(np.isfinite(hn), direction * hn, direction * h0).astype(dtype)


def control_order(tab: Tableau) -> float:
    """k in the controller exponents; DOP853's combined estimator behaves like order 7."""
    return 8.0 if tab.b_err3 is not None else float(tab.error_order + 1)


def _error_norm(st, y, y_new, k, h, rtol, atol):
    dtype = y.dtype
    scale = dtype.type(atol) + dtype.type(rtol) * np.maximum(np.abs(y), np.abs(y_new))
    dims = st.error_dims
    err = (h[:, None] * np.tensordot(st.b_err, k, axes=1))[:, :dims]
    scale = scale[:, :dims]
    if st.b_err3 is None:
        return _rms(err, scale)
    err3 = (h[:, None] * np.tensordot(st.b_err3, k, axes=1))[:, :dims]
    e5 = np.sum((err / scale) ** 2, axis=1)
    e3 = np.sum((err3 / scale) ** 2, axis=1)
    out = e5 / np.sqrt(dims * (e5 + dtype.type(0.01) * e3))
    return np.where((e5 == 0) & (e3 == 0), dtype.type(0), out)


def _adaptive(st, y0, t, rtol, atol, dt, max_steps, ys, nfev, steps, rejected, status, record=None):
    tab, dtype = st.tab, y0.dtype
    s, N, B = tab.stages, t.shape[0], y0.shape[0]
    dense = tab.dense is not None
    t_end = t[-1]
    direction = dtype.type(1 if t_end > t[0] else -1)
    k_ctrl = control_order(tab)
    # Hairer's DOPRI5 PI gains generalised to order k: beta = 0.2/k, alpha = 1/k - 0.75 beta
    beta, alpha = dtype.type(0.2 / k_ctrl), dtype.type(1.0 / k_ctrl - 0.75 * (0.2 / k_ctrl))
    eps = np.finfo(dtype).eps

    y = y0.copy()
    tc = np.full(B, t[0], dtype=dtype)
    k0 = st.fun(tc, y)
    nfev += 1
    active = np.all(np.isfinite(k0), axis=1)
    status[~active] = 3
    h = _initial_step(st, y, k0, t[0], t_end, rtol, atol, dt, nfev)
    err_prev = np.full(B, 1e-4, dtype=dtype)
    just_rejected = np.zeros(B, bool)
    last_nonfinite = np.zeros(B, bool)
    nxt = np.ones(B, np.int64)

    while True:
        over = active & (steps + rejected >= max_steps)
        status[over] = 1
        active &= ~over
        target = np.full(B, t_end, dtype=dtype) if dense else t[np.minimum(nxt, N - 1)]
        h_try = h.copy()
        clip = direction * (tc + dtype.type(1.01) * h - target) > 0
        h_try[clip] = (target - tc)[clip]
        ulp_t = np.maximum(np.abs(tc), np.abs(target)) * eps
        under = active & (np.abs(h_try) < 10 * ulp_t)
        status[under & last_nonfinite] = 3
        status[under & ~last_nonfinite] = 2
        active &= ~under
        if not active.any():
            break
        h_try[~active] = 0

        y_new, k = st.step(tc, y, h_try, k0)
        nfev[active] += s - 1
        err = _error_norm(st, y, y_new, k, h_try, rtol, atol)
        finite = np.isfinite(err) & np.all(np.isfinite(y_new), axis=1)  # all components
        err = np.where(finite, err, dtype.type(np.inf))
        last_nonfinite = np.where(active, ~finite, last_nonfinite)
        accept = active & (err <= 1)
        reject = active & ~accept

        # accepted rows: controller, outputs, advance
        log_err = np.log(np.where(np.isfinite(err) & (err > 0), err, dtype.type(1)))
        factor = np.where(err == 0, dtype.type(FAC_MAX),
                          dtype.type(SAFETY) * np.exp(beta * np.log(err_prev) - alpha * log_err))
        fmax = np.where(just_rejected, dtype.type(1), dtype.type(FAC_MAX))
        factor = np.minimum(fmax, np.maximum(dtype.type(FAC_MIN), factor)).astype(dtype)
        t_new = tc + h_try
        tgt = np.full(B, t_end, dtype=dtype) if dense else t[np.minimum(nxt, N - 1)]
        land = clip | (direction * (t_new - tgt) >= 0)
        t_new = np.where(land, tgt, t_new)
        if record is not None and accept.any():
            record.push(accept, tc, h_try, y)
        for b in np.flatnonzero(accept):
            while nxt[b] < N and direction * (t[nxt[b]] - t_new[b]) <= 0:
                if t[nxt[b]] == t_new[b]:
                    ys[nxt[b], b] = y_new[b]
                    theta = None
                else:
                    theta = np.array([(t[nxt[b]] - tc[b]) / h_try[b]], dtype=dtype)
                    ys[nxt[b], b] = st.interpolate(y[b:b + 1], h_try[b:b + 1], k[:, b:b + 1], theta)[0]
                if record is not None:
                    record.output(b, nxt[b], theta)
                nxt[b] += 1
        y[accept] = y_new[accept]
        tc[accept] = t_new[accept]
        steps[accept] += 1
        err_prev[accept] = np.maximum(err[accept], dtype.type(1e-4))
        just_rejected[accept] = False
        h[accept] = (h_try * factor)[accept]
        done = accept & (nxt >= N)
        active &= ~done

        # rejected rows: shrink
        rfactor = np.where(finite, np.maximum(dtype.type(FAC_MIN), dtype.type(SAFETY) * np.exp(-alpha * log_err)),
                           dtype.type(FAC_MIN)).astype(dtype)
        rejected[reject] += 1
        h[reject] = (h_try * rfactor)[reject]
        just_rejected[reject] = True

        # first stage of the next step
        if tab.fsal:
            k0 = np.where(accept[:, None], k[-1], k0)
        elif accept.any():
            f0 = st.fun(tc, y)
            k0 = np.where(accept[:, None], f0, k0)
            nfev[accept & active] += 1
