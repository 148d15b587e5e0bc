"""First derivatives of solves: odefast.vjp / odefast.value_and_grad.

What is checked, and against what:

* finite differences: central differences of the solve itself (float64) w.r.t. y0, params and
  every t_i, for every dynamics type (Lorenz, Linear, NBody with softening, MLP with each
  activation, time-dependent MLP, PythonDynamics with a user vjp), both adjoints, fixed-step
  (rk4 on a grid that does not divide the output intervals) and adaptive (bosh3, dopri5,
  tsit5, dopri8 at rtol = atol = 1e-10);
* the NumPy reference (odefast.reference.vjp): same method, same steps -> same gradient to
  rounding, shared and per-trajectory params, B = 1 and B = 37; float32 vs float64;
* a hand-written reverse-mode differentiation of the discrete RK4 map (checkpoint is exact
  for fixed steps);
* checkpoint vs backsolve as the tolerances tighten; a dissipative system where backsolve is
  wrong and checkpoint is right (documentation of the product's behaviour);
* per-trajectory params <-> solo solves, shared params <-> sums;
* bad input, failed solves, thread-count determinism, and examples/fit_neural_ode.py.

Tolerances, and why they differ:

* y0 and params by checkpoint are exact derivatives of the computed solution, so for fixed
  steps they match finite differences to FD accuracy (~1e-9). For adaptive steps the step
  sizes themselves move with the inputs; the adjoints treat them as constants, so FD of an
  adaptive solve carries a noise of order tol / eps: ~1e-5 relative is the honest bound
  (observed <= 5e-7 with eps = 1e-5 at rtol = atol = 1e-10; ReLU networks see more, see
  fd_tolerances).
* time gradients use the continuous identities dL/dt_i = cot_i . f(t_i, y_i) (i >= 1) and
  dL/dt_0 = -a(t_0) . f(t_0, y0). With fixed steps the grid moves with t (n equal substeps
  per output interval), so FD sees the derivative of the *discrete* map, which differs from
  the continuous identity by the truncation error: compared at 1e-3, and to the reference to
  rounding.
* backsolve is the continuous adjoint: with fixed steps it is a discretisation of the exact
  gradient (O(dt^4) for rk4), not the derivative of the computed solution.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import odefast as of
import pytest
from odefast import SolveError, SolveWarning
from odefast.reference._vector_fields import vector_field
from problems import ADAPTIVE_METHODS, assert_close, random_linear, scaled_error, spiral_3x3

ADJOINTS = ("checkpoint", "backsolve")
ROOT = Path(__file__).resolve().parent.parent

# Output times that are not multiples of the fixed step DT (so a perturbation of t_i moves
# the substep size h = span / n continuously and never changes n).
T_OBS = np.array([0.0, 0.373, 0.817, 1.231])
DT = 0.01


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------

def forced_vdp():
    """A forced van der Pol oscillator as PythonDynamics with a hand-written vjp:
        x' = v,   v' = mu (1 - x^2) v - k x + 0.3 cos(t);   params (mu, k), shared or (B, 2).
    """

    def cols(p):
        return (p[:, 0], p[:, 1]) if p.ndim == 2 else (p[0], p[1])

    def fn(t, y, p):
        mu, k = cols(p)
        x, v = y[:, 0], y[:, 1]
        return np.stack([v, mu * (1.0 - x * x) * v - k * x + 0.3 * np.cos(t)], axis=1)

    def vjp(t, y, p, a):
        mu, k = cols(p)
        x, v = y[:, 0], y[:, 1]
        a0, a1 = a[:, 0], a[:, 1]
        gy = np.stack([a1 * (-2.0 * mu * x * v - k), a0 + a1 * mu * (1.0 - x * x)], axis=1)
        gp = np.stack([a1 * (1.0 - x * x) * v, -a1 * x], axis=1)          # (B, P), per row
        gt = -0.3 * a1 * np.sin(t)
        return gy, gp, gt

    return of.PythonDynamics(fn, vjp=vjp, params=[0.8, 1.3])


ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid", "identity")
DYNAMICS = ("lorenz", "linear", "nbody") + tuple(f"mlp-{a}" for a in ACTIVATIONS) + \
    ("mlp-time", "python")


def make(name, B=2, seed=0):
    """(f, y0 (B, D), t) for a named dynamics type; t never a multiple of DT apart."""
    rng = np.random.default_rng(seed)
    t = T_OBS
    if name == "lorenz":
        f = of.Lorenz()
        y0 = rng.standard_normal((B, 3)) * 2.0 + np.array([1.0, 1.0, 20.0])
        t = T_OBS * 0.4                         # a short horizon: Lorenz is chaotic
    elif name == "linear":
        A, b = random_linear(3, seed=1)
        f = of.Linear(A, b)
        y0 = rng.standard_normal((B, 3))
    elif name == "nbody":
        f = of.NBody([1.0, 0.8, 1.2], dim=2, softening=0.3)
        pos = np.array([1.0, 0.0, -0.5, 0.8, -0.5, -0.8])
        vel = np.array([0.0, 0.5, -0.4, -0.3, 0.4, -0.2])
        y0 = np.concatenate([pos, vel])[None] + 0.05 * rng.standard_normal((B, 12))
    elif name.startswith("mlp-"):
        act = "tanh" if name == "mlp-time" else name[4:]
        f = of.MLP([3, 8, 3], activation=act, seed=1, time_dependent=name == "mlp-time")
        y0 = rng.standard_normal((B, 3))
    elif name == "python":
        f = forced_vdp()
        y0 = rng.standard_normal((B, 2))
    else:
        raise ValueError(name)
    return f, y0, t


def solve_kwargs(method, name=""):
    if method == "rk4":
        return {"method": "rk4", "dt": DT}
    if name == "python" and method == "bosh3":      # the NumPy path: 3rd order at 1e-10 is slow
        return {"method": method, "rtol": 1e-8, "atol": 1e-8}
    if name == "mlp-relu":                          # see fd_tolerances
        return {"method": method, "rtol": 1e-12, "atol": 1e-12}
    return {"method": method, "rtol": 1e-10, "atol": 1e-10}


def fd_gradients(f, y0, t, cot, kw, eps=1e-6, params=None):
    """Central differences of L = sum(cot * solve(...).ys) w.r.t. y0, params, t."""
    p0 = np.array(f.params if params is None else params, dtype=np.float64)

    def L(y=y0, p=p0, tt=t):
        return float(np.sum(cot * of.solve(f, y, tt, params=p, **kw).ys))

    def central(x, fun):
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            h = eps * max(1.0, abs(x[idx]))
            e = np.zeros_like(x)
            e[idx] = h
            g[idx] = (fun(x + e) - fun(x - e)) / (2 * h)
        return g

    return (central(y0, lambda y: L(y=y)), central(p0, lambda p: L(p=p)),
            central(t, lambda tt: L(tt=tt)))


# ---------------------------------------------------------------------------------------------
# Finite differences, every dynamics type, both adjoints, fixed and adaptive steps
# ---------------------------------------------------------------------------------------------

def fd_tolerances(name, method, adjoint):
    """(y0 and params, t) relative tolerances vs central differences (see the module doc)."""
    if method == "rk4":
        if adjoint == "checkpoint":
            return 1e-7, 1e-3      # exact discrete derivative; t: continuous identity
        # the continuous adjoint of an O(dt^4) discretisation (Lorenz: large Lipschitz constant)
        return (1e-3 if name == "lorenz" else 1e-4), 1e-3
    if name == "mlp-relu":
        # A ReLU field has kinks: the error estimate (so the step sizes, which FD sees and the
        # adjoints do not) is not smooth in the inputs. Even at rtol = 1e-12 the FD noise
        # reaches ~5e-5 (4e-4 at rtol 1e-10, eps 1e-6); the adjoints agree with each other and
        # with the reference to rounding, and with FD to 1e-9 for fixed steps.
        return 5e-4, 5e-4
    return 1e-5, 1e-5


@pytest.mark.parametrize("method", ("rk4",) + ADAPTIVE_METHODS)
@pytest.mark.parametrize("name", DYNAMICS)
def test_gradients_match_finite_differences(name, method):
    f, y0, t = make(name)
    cot = np.random.default_rng(5).standard_normal((t.shape[0],) + y0.shape)
    kw = solve_kwargs(method, name)
    # FD step: 1e-6 for fixed steps; 1e-5 for adaptive ones, where the noise of the step-size
    # sequence (~ solve error / eps) dominates the O(eps^2) truncation error.
    fd_y0, fd_p, fd_t = fd_gradients(f, y0, t, cot, kw, eps=1e-6 if method == "rk4" else 1e-5)
    for adjoint in ADJOINTS:
        g = of.vjp(f, y0, t, cot, adjoint=adjoint, **kw)
        assert g.adjoint == adjoint and np.all(g.status == 0)
        assert g.y0.shape == y0.shape and g.params.shape == f.params.shape
        assert g.t.shape == t.shape
        tol, tol_t = fd_tolerances(name, method, adjoint)
        what = f"{name} {method} {adjoint}"
        assert_close(g.y0, fd_y0, tol, what + " dL/dy0")
        assert_close(g.params, fd_p, tol, what + " dL/dparams")
        assert_close(g.t, fd_t, tol_t, what + " dL/dt")


@pytest.mark.parametrize("name", ("lorenz", "nbody", "mlp-time", "python"))
def test_fixed_step_time_gradients_equal_reference(name):
    """For fixed steps the time gradients are the continuous identities (not the derivative of
    the step grid): the core and the reference compute the same numbers to rounding."""
    f, y0, t = make(name)
    cot = np.random.default_rng(6).standard_normal((t.shape[0],) + y0.shape)
    for adjoint in ADJOINTS:
        g = of.vjp(f, y0, t, cot, adjoint=adjoint, method="rk4", dt=DT)
        r = of.reference.vjp(f, y0, t, cot, adjoint=adjoint, method="rk4", dt=DT)
        assert_close(g.t, r.t, 1e-12, f"{name} {adjoint} dL/dt")
        # the identities themselves: dL/dt_i = cot_i . f(t_i, y_i) for i >= 1
        ys = g.solution.ys
        field = vector_field(f)
        for i in range(1, t.shape[0]):
            expect = np.sum(cot[i] * field(np.full(y0.shape[0], t[i]), ys[i], f.params))
            assert abs(g.t[i] - expect) <= 1e-12 * max(1.0, abs(expect))


def test_decreasing_times():
    """Integrating backwards in time (t decreasing): both adjoints vs FD and the reference."""
    f = of.MLP([3, 8, 3], activation="softplus", seed=3, time_dependent=True)
    rng = np.random.default_rng(7)
    y0 = rng.standard_normal((3, 3))
    t = np.array([1.1, 0.7, 0.2, -0.313])
    cot = rng.standard_normal((4, 3, 3))
    for kw, tol in (({"method": "rk4", "dt": 0.03}, 1e-7), (solve_kwargs("dopri5"), 1e-5)):
        fd_y0, fd_p, fd_t = fd_gradients(f, y0, t, cot, kw)
        for adjoint in ADJOINTS:
            g = of.vjp(f, y0, t, cot, adjoint=adjoint, **kw)
            r = of.reference.vjp(f, y0, t, cot, adjoint=adjoint, **kw)
            what = f"{kw['method']} {adjoint}"
            for a, b, n in ((g.y0, r.y0, "y0"), (g.params, r.params, "params"), (g.t, r.t, "t")):
                assert_close(a, b, 1e-9, f"{what} core vs reference d/d{n}")
            t_tol = 1e-3 if kw["method"] == "rk4" else tol
            p_tol = tol if adjoint == "checkpoint" or kw["method"] != "rk4" else 1e-4
            assert_close(g.y0, fd_y0, p_tol, what + " dL/dy0")
            assert_close(g.params, fd_p, p_tol, what + " dL/dparams")
            assert_close(g.t, fd_t, t_tol, what + " dL/dt")


# ---------------------------------------------------------------------------------------------
# Core vs the NumPy reference
# ---------------------------------------------------------------------------------------------

def same_steps(a, b):
    eq = np.ones(a.status.shape, bool)
    for k in ("nfev", "steps", "rejected"):
        eq &= a.stats[k] == b.stats[k]
    return eq


REF_CASES = [(n, m) for n in ("lorenz", "linear", "nbody", "mlp-tanh", "mlp-time")
             for m in ("rk4", "dopri5", "tsit5", "dopri8")] + [("mlp-softplus", "bosh3"),
                                                              ("linear", "bosh3")]


def ref_problem(name, B, per_trajectory, seed):
    rng = np.random.default_rng(seed)
    if name == "nbody":                                   # 2 bodies: D = 8, cheap reference
        f = of.NBody([1.0, 0.7], dim=2, softening=0.2)
        y0 = np.array([1.0, 0.0, -1.0, 0.1, 0.0, 0.4, 0.1, -0.5]) + \
            0.05 * rng.standard_normal((B, 8))
        t = np.array([0.0, 0.4, 0.9, 1.4])
    else:
        f, y0, t = make(name, B=B, seed=seed)
    params = None
    if per_trajectory:
        params = f.params * (1.0 + 0.05 * rng.standard_normal((B, f.n_params)))
    cot = rng.standard_normal((t.shape[0],) + y0.shape)
    return f, y0, t, params, cot


@pytest.mark.parametrize("per_trajectory", (False, True), ids=["shared", "per-trajectory"])
@pytest.mark.parametrize("B", (1, 37))
@pytest.mark.parametrize("name,method", REF_CASES)
def test_core_vs_reference(name, method, B, per_trajectory):
    """Same method, same steps -> the compiled adjoints equal the NumPy ones to ~rounding:
    1e-11 relative for rk4 (observed <= 2e-12: Lorenz backsolve, whose backwards integration
    amplifies rounding), 1e-9 for adaptive methods (observed <= 2e-10: MLP checkpoint with
    tsit5/dopri5, where the dense outputs inside steps already differ by ~1e-13 in the forward
    solve). A trajectory whose adaptive step sequence differs (a controller decision flipped by
    rounding, see test_core_vs_reference.py) is compared at 1e-5."""
    f, y0, t, params, cot = ref_problem(name, B, per_trajectory, seed=11 + B)
    kw = {"method": "rk4", "dt": 0.02} if method == "rk4" else \
        {"method": method, "rtol": 1e-7, "atol": 1e-9}
    for adjoint in ADJOINTS:
        g = of.vjp(f, y0, t, cot, adjoint=adjoint, params=params, **kw)
        r = of.reference.vjp(f, y0, t, cot, adjoint=adjoint, params=params, **kw)
        eq = same_steps(g.solution, r.solution)
        what = f"{name} {method} B={B} {adjoint}"
        assert np.count_nonzero(~eq) <= max(1, B // 20), what + ": step sequences differ"
        tol = (1e-11 if method == "rk4" else 1e-9) if eq.all() else 1e-5
        assert_close(g.y0, r.y0, tol, what + " y0")
        assert_close(g.params, r.params, tol, what + " params")
        assert_close(g.t, r.t, tol, what + " t")
        assert g.params.shape == ((B, f.n_params) if per_trajectory else (f.n_params,))
        assert g.y0.dtype == g.params.dtype == g.t.dtype == np.float64


@pytest.mark.parametrize("method", ("rk4", "dopri5", "tsit5"))
@pytest.mark.parametrize("name", ("lorenz", "linear", "mlp-tanh"))
def test_float32_close_to_float64(name, method):
    """float32 gradients agree with float64 to 1e-3 relative (typically 1e-6). Exception:
    backsolve on Lorenz with adaptive steps, whose own error at rtol 1e-5 is ~1e-2 (see
    test_checkpoint_and_backsolve_agree_as_tolerances_tighten); float32 and float64 take
    different steps and so differ by that much."""
    f, y0, t = make(name, B=5, seed=3)
    cot = np.random.default_rng(2).standard_normal((t.shape[0],) + y0.shape)
    kw = {"method": "rk4", "dt": 0.02} if method == "rk4" else \
        {"method": method, "rtol": 1e-5, "atol": 1e-7}
    for adjoint in ADJOINTS:
        g64 = of.vjp(f, y0, t, cot, adjoint=adjoint, **kw)
        g32 = of.vjp(f, y0.astype(np.float32), t, cot.astype(np.float32), adjoint=adjoint, **kw)
        assert g32.y0.dtype == g32.params.dtype == g32.t.dtype == np.float32
        for a, b, n in ((g32.y0, g64.y0, "y0"), (g32.params, g64.params, "params"),
                        (g32.t, g64.t, "t")):
            tol = 2e-2 if (name, adjoint) == ("lorenz", "backsolve") and method != "rk4" else 1e-3
            assert_close(a, b, tol, f"{name} {method} {adjoint} float32 d/d{n}")


# ---------------------------------------------------------------------------------------------
# checkpoint is exact for fixed-step RK4: a hand-written reverse pass of the discrete map
# ---------------------------------------------------------------------------------------------

def lorenz_f(y, p):
    s, r, b = p
    x, yy, z = y[:, 0], y[:, 1], y[:, 2]
    return np.stack([s * (yy - x), x * (r - z) - yy, x * yy - b * z], axis=1)


def lorenz_vjp(y, p, a):
    """(a . df/dy, a . df/dp) for Lorenz, per row."""
    s, r, b = p
    x, yy, z = y[:, 0], y[:, 1], y[:, 2]
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    gy = np.stack([-s * a0 + (r - z) * a1 + yy * a2, s * a0 - a1 + x * a2, -x * a1 - b * a2], 1)
    gp = np.stack([(yy - x) * a0, x * a1, -z * a2], axis=1)
    return gy, gp


def linear_f(D):
    def f(y, p):
        return y @ p[:D * D].reshape(D, D).T + p[D * D:]
    return f


def linear_vjp(D):
    def vjp(y, p, a):
        A = p[:D * D].reshape(D, D)
        gA = a[:, :, None] * y[:, None, :]                      # a_i y_j per row
        return a @ A, np.concatenate([gA.reshape(y.shape[0], -1), a], axis=1)
    return vjp


def rk4_by_hand(f, vjp, y0, p, t, dt, cot):
    """Classic RK4 on n_i = ceil(span_i / dt) equal substeps per output interval (the core's
    rule), and its reverse-mode derivative written out stage by stage:
        k1 = f(y), k2 = f(y + h/2 k1), k3 = f(y + h/2 k2), k4 = f(y + h k3),
        y' = y + h/6 (k1 + 2 k2 + 2 k3 + k4).
    Returns (ys (N, B, D), dL/dy0 (B, D) including cot[0], dL/dp (P,) summed over B)."""
    tape, ys = [], [y0]
    y = y0
    for i in range(1, t.shape[0]):
        span = t[i] - t[i - 1]
        n = max(1, int(np.ceil(abs(span) / dt * (1.0 - 1e-12))))
        h = span / n
        for _ in range(n):
            Y1 = y
            k1 = f(Y1, p)
            Y2 = y + 0.5 * h * k1
            k2 = f(Y2, p)
            Y3 = y + 0.5 * h * k2
            k3 = f(Y3, p)
            Y4 = y + h * k3
            k4 = f(Y4, p)
            tape.append((h, (Y1, Y2, Y3, Y4)))
            y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        tape.append(("out", i))
        ys.append(y)
    ybar = np.zeros_like(y0)
    pbar = np.zeros_like(p)
    for entry in reversed(tape):
        if entry[0] == "out":
            ybar = ybar + cot[entry[1]]
            continue
        h, (Y1, Y2, Y3, Y4) = entry
        k4bar = h / 6.0 * ybar
        k3bar = h / 3.0 * ybar
        k2bar = h / 3.0 * ybar
        k1bar = h / 6.0 * ybar
        ynew = ybar.copy()
        g4, gp4 = vjp(Y4, p, k4bar)                   # Y4 = y + h k3
        ynew += g4
        k3bar = k3bar + h * g4
        g3, gp3 = vjp(Y3, p, k3bar)                   # Y3 = y + h/2 k2
        ynew += g3
        k2bar = k2bar + 0.5 * h * g3
        g2, gp2 = vjp(Y2, p, k2bar)                   # Y2 = y + h/2 k1
        ynew += g2
        k1bar = k1bar + 0.5 * h * g2
        g1, gp1 = vjp(Y1, p, k1bar)
        ynew += g1
        pbar = pbar + (gp1 + gp2 + gp3 + gp4).sum(axis=0)
        ybar = ynew
    return np.stack(ys), ybar + cot[0], pbar


@pytest.mark.parametrize("name", ("linear", "lorenz"))
def test_checkpoint_is_exact_reverse_mode_of_rk4(name):
    rng = np.random.default_rng(4)
    if name == "linear":
        D = 3
        f = of.Linear(spiral_3x3(), b=[0.3, -0.2, 0.1])
        fun, vjp = linear_f(D), linear_vjp(D)
        y0 = rng.standard_normal((2, D))
        t = np.array([0.0, 0.37, 1.0, 1.83])
        dt = 0.07
    else:
        f = of.Lorenz(sigma=10.0, rho=28.0, beta=8.0 / 3.0)
        fun, vjp = lorenz_f, lorenz_vjp
        y0 = rng.standard_normal((2, 3)) + np.array([1.0, 1.0, 20.0])
        t = np.array([0.0, 0.123, 0.3, 0.461])
        dt = 0.011
    cot = rng.standard_normal((t.shape[0],) + y0.shape)
    ys, dy0, dp = rk4_by_hand(fun, vjp, y0, f.params, t, dt, cot)
    sol = of.solve(f, y0, t, method="rk4", dt=dt)
    assert_close(sol.ys, ys, 1e-13, "forward RK4 by hand")
    for g in (of.vjp(f, y0, t, cot, adjoint="checkpoint", method="rk4", dt=dt),
              of.reference.vjp(f, y0, t, cot, adjoint="checkpoint", method="rk4", dt=dt)):
        assert_close(g.y0, dy0, 1e-13, f"{name}: checkpoint dL/dy0 vs reverse mode by hand")
        assert_close(g.params, dp, 1e-13, f"{name}: checkpoint dL/dparams vs reverse mode by hand")
    # backsolve, a continuous adjoint, is close but not equal to the discrete derivative
    gb = of.vjp(f, y0, t, cot, adjoint="backsolve", method="rk4", dt=dt)
    assert 1e-13 < scaled_error(gb.params, dp) < 1e-2


# ---------------------------------------------------------------------------------------------
# checkpoint vs backsolve as the tolerances tighten
# ---------------------------------------------------------------------------------------------

CONVERGENCE_CASES = [("lorenz", m) for m in ADAPTIVE_METHODS] + \
    [("mlp-tanh", m) for m in ("bosh3", "dopri5", "tsit5")]


@pytest.mark.parametrize("name,method", CONVERGENCE_CASES)
def test_checkpoint_and_backsolve_agree_as_tolerances_tighten(name, method):
    """Both adjoints converge to the exact gradient, so their difference shrinks with the
    tolerance: strictly decreasing over rtol = 1e-4, 1e-6, 1e-8, 1e-10."""
    f, y0, t = make(name, B=5, seed=8)
    if name == "lorenz":
        t = np.array([0.0, 0.2, 0.5, 0.8])
    else:
        t = np.array([0.0, 0.5, 1.3, 2.0])
    cot = np.random.default_rng(9).standard_normal((t.shape[0],) + y0.shape)
    diffs = []
    for rtol in (1e-4, 1e-6, 1e-8, 1e-10):
        kw = {"method": method, "rtol": rtol, "atol": rtol * 1e-2}
        gc = of.vjp(f, y0, t, cot, adjoint="checkpoint", **kw)
        gb = of.vjp(f, y0, t, cot, adjoint="backsolve", **kw)
        diffs.append(max(scaled_error(gb.y0, gc.y0), scaled_error(gb.params, gc.params),
                         scaled_error(gb.t, gc.t)))
    assert all(b < a for a, b in zip(diffs, diffs[1:])), f"not decreasing: {diffs}"
    assert diffs[-1] < 1e-5, diffs


# ---------------------------------------------------------------------------------------------
# Per-trajectory and shared parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", ({"method": "rk4", "dt": 0.02},
                                {"method": "dopri5", "rtol": 1e-7, "atol": 1e-9},
                                {"method": "dopri8", "rtol": 1e-7, "atol": 1e-9}),
                         ids=["rk4", "dopri5", "dopri8"])
@pytest.mark.parametrize("name", ("lorenz", "mlp-tanh", "nbody"))
def test_per_trajectory_params_give_per_trajectory_gradients(name, kw):
    """Row b of g.params (and of g.y0) is the gradient of trajectory b solved alone with its
    params; with shared params g.params is the sum over trajectories of those gradients."""
    B = 5
    f, y0, t = make(name, B=B, seed=12)
    rng = np.random.default_rng(13)
    P = f.params * (1.0 + 0.05 * rng.standard_normal((B, f.n_params)))
    cot = rng.standard_normal((t.shape[0],) + y0.shape)
    for adjoint in ADJOINTS:
        g = of.vjp(f, y0, t, cot, adjoint=adjoint, params=P, **kw)
        assert g.params.shape == (B, f.n_params)
        for b in range(B):
            solo = of.vjp(f, y0[b], t, cot[:, b], adjoint=adjoint, params=P[b], **kw)
            assert solo.y0.shape == (y0.shape[1],) and solo.params.shape == (f.n_params,)
            assert_close(g.y0[b], solo.y0, 1e-12, f"{adjoint} row {b} y0")
            assert_close(g.params[b], solo.params, 1e-12, f"{adjoint} row {b} params")
        # shared: the sum over trajectories of the per-trajectory gradients
        shared = of.vjp(f, y0, t, cot, adjoint=adjoint, **kw)
        tiled = of.vjp(f, y0, t, cot, adjoint=adjoint, params=np.tile(f.params, (B, 1)), **kw)
        assert shared.params.shape == (f.n_params,)
        assert_close(shared.params, tiled.params.sum(axis=0), 1e-12, f"{adjoint} shared = sum")
        assert_close(shared.y0, tiled.y0, 1e-12, f"{adjoint} shared y0")
        assert_close(shared.t, tiled.t, 1e-12, f"{adjoint} shared t")
        solo_sum = sum(of.vjp(f, y0[b], t, cot[:, b], adjoint=adjoint, **kw).params
                       for b in range(B))
        assert_close(shared.params, solo_sum, 1e-12, f"{adjoint} shared = sum of solo")


# ---------------------------------------------------------------------------------------------
# Where backsolve fails and checkpoint does not (documentation)
# ---------------------------------------------------------------------------------------------

def dissipative_linear():
    """y' = A y + b with eigenvalues -50, -120, -200 (a rotated diagonal), b != 0."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    A = Q @ np.diag([-50.0, -120.0, -200.0]) @ Q.T
    return of.Linear(A, b=[1.0, -2.0, 0.5])


@pytest.mark.parametrize("method", ("dopri5", "tsit5"))
def test_backsolve_is_inaccurate_for_dissipative_systems(method):
    """Why "checkpoint" is the default.

    backsolve (Chen et al. 2018) recovers z(t) by integrating dz/dt = f(t, z) *backwards* from
    z(t_N), alongside the adjoint a(t). For a strongly dissipative system (here a linear
    system with eigenvalues -50, -120 and -200 over t in [0, 1]) backwards integration is
    violently unstable: every error the forward solve made (rounding, the local error allowed
    by rtol/atol) grows like exp(200 (t_N - t)). The reconstructed z(t) is garbage, and with
    it every term of dL/dparams = -int a^T df/dparams dt that involves z (here dL/dA = int a z^T
    dt): the computed gradient is off by ~70 orders of magnitude, and tightening rtol does not
    help. The solve still reports success (status 0) because the blow-up stays finite. (dL/dy0
    happens to survive here: for a linear system da/dt = -A^T a does not involve z, and a is
    stable backwards.)

    checkpoint differentiates the recorded forward steps instead, never integrates z
    backwards, and matches finite differences.

    Numbers (dopri5; relative error of dL/dparams in the max norm, vs central differences of
    the rtol = 1e-10 solve with step 1e-4; the true max |dL/dparams| is 3.4e-2):
        checkpoint  rtol 1e-6: 1.8e-7    rtol 1e-10: 1.5e-7
        backsolve   rtol 1e-6: 1.9e+71   rtol 1e-10: 1.3e+67   (status 0 both times)
    (tsit5: checkpoint 6e-7 / 2e-7, backsolve 5e71 / 2e67.)
    """
    f = dissipative_linear()
    y0 = np.array([1.0, 0.5, -1.0])
    t = np.linspace(0.0, 1.0, 5)
    cot = np.random.default_rng(0).standard_normal((5, 3))
    tight = {"method": method, "rtol": 1e-10, "atol": 1e-12}
    # FD step 1e-4: the solve is linear in y0 and b, nearly so in A; the step-size noise of an
    # adaptive solve (~tol / eps) is smaller with a larger step.
    fd_y0, fd_p, _ = fd_gradients(f, y0, t, cot, tight, eps=1e-4)
    gc = of.vjp(f, y0, t, cot, adjoint="checkpoint", **tight)
    assert_close(gc.y0, fd_y0, 1e-6, "checkpoint dL/dy0")
    assert_close(gc.params, fd_p, 1e-5, "checkpoint dL/dparams")
    for rtol, atol in ((1e-6, 1e-8), (1e-10, 1e-12)):
        gb = of.vjp(f, y0, t, cot, adjoint="backsolve", method=method, rtol=rtol, atol=atol)
        assert np.all(gb.status == 0)                       # it does not even notice
        err = scaled_error(gb.params, fd_p)
        assert err > 1e10, f"backsolve dL/dparams error only {err:.2e} at rtol {rtol}"
        assert_close(gb.y0, fd_y0, 1e-6, "backsolve dL/dy0 (does not involve z here)")
        # the default-tolerance checkpoint gradient is still accurate
        gc_default = of.vjp(f, y0, t, cot, adjoint="checkpoint", method=method, rtol=rtol,
                            atol=atol)
        assert_close(gc_default.params, fd_p, 1e-5, f"checkpoint dL/dparams at rtol {rtol}")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def small():
    f = of.Lorenz()
    y0 = np.array([[1.0, 1.0, 20.0], [0.0, 2.0, 25.0]])
    t = np.array([0.0, 0.1, 0.2])
    return f, y0, t, np.ones((3, 2, 3))


@pytest.mark.parametrize("bad,exc", [
    (np.ones((3, 3)), ValueError),                  # missing the batch axis
    (np.ones((2, 2, 3)), ValueError),               # wrong number of times
    (np.ones((3, 2, 4)), ValueError),               # wrong state dimension
    (np.ones((3, 2, 3)) + 0j, TypeError),           # complex
    ("not an array", TypeError),                    # string
    (np.full((3, 2, 3), "x"), TypeError),           # array of strings
    (np.ones((3, 2, 3), bool), TypeError),          # booleans
    (None, TypeError),
], ids=["no-batch", "times", "dim", "complex", "str", "str-array", "bool", "none"])
@pytest.mark.parametrize("vjp", (of.vjp, of.reference.vjp), ids=["core", "reference"])
def test_bad_cotangent(small, vjp, bad, exc):
    f, y0, t, _ = small
    with pytest.raises(exc, match="cotangent"):
        vjp(f, y0, t, bad)


@pytest.mark.parametrize("value", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("vjp", (of.vjp, of.reference.vjp), ids=["core", "reference"])
def test_non_finite_cotangent(small, vjp, value):
    f, y0, t, cot = small
    cot = cot.copy()
    cot[1, 0, 2] = value
    with pytest.raises(ValueError, match="cotangent.*non-finite"):
        vjp(f, y0, t, cot)


def test_cotangent_shape_for_1d_y0(small):
    f, y0, t, _ = small
    g = of.vjp(f, y0[0], t, np.ones((3, 3)))
    assert g.y0.shape == (3,)
    with pytest.raises(ValueError, match=r"cotangent.*\(3, 3\)"):
        of.vjp(f, y0[0], t, np.ones((3, 1, 3)))


@pytest.mark.parametrize("adjoint", ("foo", "Checkpoint", "", None, 1))
@pytest.mark.parametrize("fn", ("vjp", "value_and_grad"))
@pytest.mark.parametrize("mod", (of, of.reference), ids=["core", "reference"])
def test_unknown_adjoint(small, mod, fn, adjoint):
    f, y0, t, cot = small
    arg = cot if fn == "vjp" else of.losses.Closure()
    with pytest.raises(ValueError, match="adjoint.*checkpoint.*backsolve"):
        getattr(mod, fn)(f, y0, t, arg, adjoint=adjoint)


@pytest.mark.parametrize("loss", (lambda ys, y0: 0.0, "mse", None, np.ones(3), of.losses.MSE),
                         ids=["function", "str", "none", "array", "class-not-instance"])
@pytest.mark.parametrize("mod", (of, of.reference), ids=["core", "reference"])
def test_loss_must_be_an_odefast_loss(small, mod, loss):
    f, y0, t, _ = small
    with pytest.raises(TypeError, match="loss"):
        mod.value_and_grad(f, y0, t, loss)


def test_python_dynamics_without_vjp_cannot_be_differentiated():
    f = of.PythonDynamics(lambda t, y, p: -y)
    y0, t = np.ones((2, 2)), np.array([0.0, 1.0])
    with pytest.raises(ValueError, match="vjp"):
        of.vjp(f, y0, t, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="vjp"):
        of.value_and_grad(f, y0, t, of.losses.Closure())


def test_seminorm_only_with_backsolve(small):
    f, y0, t, cot = small
    with pytest.raises(ValueError, match="seminorm"):
        of.vjp(f, y0, t, cot, adjoint="checkpoint", seminorm=True)


def test_seminorm_backsolve_matches_reference():
    """Seminorm (error control on [z, a] only, not on the parameter-gradient channels): the
    same gradient as the reference's seminorm run, and close to the full-norm one. (Whether it
    saves evaluations depends on the problem: the full RMS norm averages over the P parameter
    channels too, which can make it *looser* on z and a; benchmarks/ W3 measures it.)"""
    f, y0, t = make("mlp-tanh", B=3)
    cot = np.random.default_rng(4).standard_normal((len(t),) + y0.shape)
    kw = {"method": "dopri5", "rtol": 1e-7, "atol": 1e-7}
    g_semi = of.vjp(f, y0, t, cot, adjoint="backsolve", seminorm=True, **kw)
    g_full = of.vjp(f, y0, t, cot, adjoint="backsolve", **kw)
    ref = of.reference.vjp(f, y0, t, cot, adjoint="backsolve", seminorm=True, **kw)
    assert_close(g_semi.y0, ref.y0, 1e-10, "y0")
    assert_close(g_semi.params, ref.params, 1e-10, "params")
    assert_close(g_semi.params, g_full.params, 1e-5, "seminorm vs full norm")


# ---------------------------------------------------------------------------------------------
# Failed forward solves
# ---------------------------------------------------------------------------------------------

def decays(rates):
    """y' = -k y with per-trajectory k (Linear with (B, 2) params); a huge k is stiff, and an
    explicit method needs ~3 k / (t_end) steps: it alone runs out of max_steps."""
    f = of.Linear([[-1.0]])
    params = np.array([[-k, 0.0] for k in rates])
    return f, params


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("mod", (of, of.reference), ids=["core", "reference"])
def test_failed_solve_gives_nan_gradients_and_a_warning(mod, adjoint):
    f, params = decays([1.0, 2.0, 1e4, 0.5])
    y0 = np.ones((4, 1))
    t = np.array([0.0, 0.5, 1.0])
    cot = np.ones((3, 4, 1))
    with pytest.warns(SolveWarning, match=r"1 of 4 trajectories failed.*\[2\].*max_steps.*NaN"):
        g = mod.vjp(f, y0, t, cot, adjoint=adjoint, params=params, max_steps=50)
    assert list(g.status) == [0, 0, 1, 0]
    assert list(g.solution.status) == [0, 0, 1, 0]
    assert np.all(np.isnan(g.y0[2])) and np.all(np.isnan(g.params[2]))
    assert np.all(np.isfinite(g.y0[[0, 1, 3]])) and np.all(np.isfinite(g.params[[0, 1, 3]]))
    assert np.all(np.isnan(g.t))                    # a sum over trajectories, incl. the failed
    with pytest.raises(SolveError, match=r"\[2\]"):
        mod.vjp(f, y0, t, cot, adjoint=adjoint, params=params, max_steps=50, on_failure="raise")
    # shared params: the sum includes the failed trajectory, so all of g.params is NaN
    with pytest.warns(SolveWarning, match="trajectories failed"):
        g = mod.vjp(of.Linear([[-1e4]]), y0, t, cot, adjoint=adjoint, max_steps=50)
    assert np.all(np.isnan(g.params)) and np.all(g.status == 1)
    # on_failure="ignore": no warning, same NaNs
    g = mod.vjp(f, y0, t, cot, adjoint=adjoint, params=params, max_steps=50, on_failure="ignore")
    assert np.all(np.isnan(g.params[2]))


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("mod", (of, of.reference), ids=["core", "reference"])
def test_failed_trajectory_does_not_spoil_the_others(mod, adjoint):
    f, params = decays([1.0, 2.0, 1e4, 0.5])
    y0 = np.ones((4, 1))
    t = np.array([0.0, 0.5, 1.0])
    cot = np.ones((3, 4, 1))
    with pytest.warns(SolveWarning):
        g = mod.vjp(f, y0, t, cot, adjoint=adjoint, params=params, max_steps=50)
    for b in (0, 1, 3):
        solo = mod.vjp(f, y0[b], t, cot[:, b], adjoint=adjoint, params=params[b], max_steps=50)
        # exact: dL/dy0 = 1 + exp(-k/2) + exp(-k) for y' = -k y
        k = -params[b, 0]
        assert abs(solo.y0[0] - (1 + np.exp(-k / 2) + np.exp(-k))) < 1e-6
        assert_close(g.y0[b], solo.y0, 1e-12, f"trajectory {b} y0")
        assert_close(g.params[b], solo.params, 1e-12, f"trajectory {b} params")


@pytest.mark.parametrize("on_failure", ("warn", "raise"))
@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("mod", (of, of.reference), ids=["core", "reference"])
def test_value_and_grad_of_a_failed_solve(mod, adjoint, on_failure):
    """A failed trajectory in value_and_grad: a SolveWarning naming it (SolveError with
    on_failure='raise') and NaN gradients for it -- not a complaint about a non-finite
    "cotangent" (the loss gradient at its NaN outputs), which the user never passed."""
    f, params = decays([1.0, 2.0, 1e4, 0.5])
    y0 = np.ones((4, 1))
    t = np.array([0.0, 0.5, 1.0])
    loss = of.losses.MSE(np.zeros((3, 4, 1)))
    if on_failure == "raise":
        with pytest.raises(SolveError, match=r"\[2\]"):
            mod.value_and_grad(f, y0, t, loss, adjoint=adjoint, params=params, max_steps=50,
                               on_failure="raise")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, g = mod.value_and_grad(f, y0, t, loss, adjoint=adjoint, params=params,
                                      max_steps=50)
    assert [w.category for w in caught] == [SolveWarning]
    assert re.search(r"1 of 4 trajectories failed.*\[2\]", str(caught[0].message))
    assert np.isnan(value)                          # the mean includes the failed trajectory
    assert list(g.status) == [0, 0, 1, 0]
    assert np.all(np.isnan(g.y0[2])) and np.all(np.isnan(g.params[2]))


def test_backsolve_failure_on_the_backward_pass_is_reported():
    """The forward solve succeeds but backsolve's backwards integration of z (unstable for
    y' = -1000 y) does not: g.status reports it, the gradient is NaN, with a SolveWarning."""
    f = of.Linear([[-1e3]])
    t = np.array([0.0, 0.5, 1.0])
    sol = of.solve(f, np.ones(1), t, max_steps=1000)
    assert sol.success
    with pytest.warns(SolveWarning, match="1 of 1 trajectories failed"):
        g = of.vjp(f, np.ones(1), t, np.ones((3, 1)), adjoint="backsolve", max_steps=1000)
    assert g.status[0] != 0 and g.solution.status[0] == 0
    assert np.all(np.isnan(g.y0)) and np.all(np.isnan(g.params))
    # checkpoint has no backwards integration and is fine
    g = of.vjp(f, np.ones(1), t, np.ones((3, 1)), adjoint="checkpoint", max_steps=1000)
    assert g.status[0] == 0 and np.isfinite(g.y0[0])


# ---------------------------------------------------------------------------------------------
# Thread-count determinism
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("per_trajectory", (False, True), ids=["shared", "per-trajectory"])
@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("name,method", (("mlp-tanh", "dopri5"), ("lorenz", "tsit5"),
                                         ("nbody", "rk4")))
def test_gradients_do_not_depend_on_thread_count(name, method, adjoint, per_trajectory):
    """100 trajectories (several chunks of the backward pass): set_num_threads(1) and (2)
    give bitwise identical g.y0, g.params, g.t (shared params are summed in a fixed order)."""
    B = 100
    f, y0, t = make(name, B=B, seed=21)
    rng = np.random.default_rng(22)
    params = f.params * (1 + 0.02 * rng.standard_normal((B, f.n_params))) \
        if per_trajectory else None
    cot = rng.standard_normal((t.shape[0],) + y0.shape)
    kw = {"method": "rk4", "dt": 0.02} if method == "rk4" else {"method": method}
    before = of.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            of.set_num_threads(n)
            out[n] = of.vjp(f, y0, t, cot, adjoint=adjoint, params=params, **kw)
    finally:
        of.set_num_threads(before)
    for attr in ("y0", "params", "t"):
        a, b = getattr(out[1], attr), getattr(out[2], attr)
        assert np.array_equal(a, b), f"g.{attr} differs between 1 and 2 threads " \
            f"(max diff {np.max(np.abs(a - b)):.3e})"


# ---------------------------------------------------------------------------------------------
# The example: fitting a neural ODE
# ---------------------------------------------------------------------------------------------

def _load_example():
    path = ROOT / "examples" / "fit_neural_ode.py"
    spec = importlib.util.spec_from_file_location("fit_neural_ode", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fit_neural_ode", module)
    spec.loader.exec_module(module)
    return module


def test_fit_neural_ode_example_loss_falls(capsys):
    example = _load_example()
    history = example.main(iterations=30, seed=0, print_every=10)
    assert len(history) == 30 and all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0], history
    out = capsys.readouterr().out
    assert "iter    0" in out and "loss" in out
