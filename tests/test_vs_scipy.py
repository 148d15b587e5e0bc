"""Adaptive odefast solves against independent answers: SciPy's solve_ivp (DOP853 at
rtol = atol = 1e-12), closed-form Kepler orbits and matrix exponentials, and conservation of
energy and angular momentum. Errors must be within a small multiple of the requested tolerance
(larger multiples over whole orbits, where the global error accumulates)."""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from problems import (
    ADAPTIVE_METHODS,
    FIGURE_EIGHT_PERIOD,
    Kepler,
    figure_eight,
    linear_exact,
    lorenz_rhs,
    nbody_rhs,
    random_linear,
    spiral_3x3,
    van_der_pol,
)
from scipy.integrate import solve_ivp

# a sensible tolerance for each method (rtol = atol = TOL)
TOL = {"bosh3": 1e-6, "dopri5": 1e-8, "tsit5": 1e-8, "dopri8": 1e-10}


def scipy_solve(rhs, y0, t):
    """DOP853 at rtol = atol = 1e-12 for each row of y0: (len(t), B, D)."""
    out = []
    for y in np.atleast_2d(y0):
        r = ivp(rhs, (t[0], t[-1]), y, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=t)
        assert r.success
        out.append(r.y.T)
    return np.stack(out, axis=1)


def ivp(*args, **kwargs):
    """solve_ivp; SciPy computes np.nextafter(t0, ...) - t0, which underflows at t0 = 0 (a
    benign subnormal) and would trip the suite-wide np.seterr(all='raise')."""
    with np.errstate(under="ignore"):
        return solve_ivp(*args, **kwargs)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_lorenz(method):
    tol = TOL[method]
    y0 = np.array([1.0, 1.0, 1.0]) + np.random.default_rng(0).standard_normal((5, 3))
    t = np.linspace(0.0, 2.0, 21)
    sol = of.solve(of.Lorenz(), y0, t, method=method, rtol=tol, atol=tol)
    assert np.all(sol.status == 0)
    ref = scipy_solve(lorenz_rhs(), y0, t)
    # chaotic: errors made early grow by ~e^(0.9 t); 30 x tol leaves room for that
    assert rel_err(sol.ys, ref) < 30 * tol


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_lorenz_per_trajectory_parameters(method):
    tol = TOL[method]
    params = np.array([[10.0, 28.0, 8 / 3], [10.0, 15.0, 8 / 3], [16.0, 45.92, 4.0]])
    y0 = np.array([[1.0, 1.0, 1.0]] * 3)
    t = np.linspace(0.0, 1.0, 6)
    sol = of.solve(of.Lorenz(), y0, t, method=method, rtol=tol, atol=tol, params=params)
    for b, (s, r, be) in enumerate(params):
        ref = scipy_solve(lorenz_rhs(s, r, be), y0[b], t)[:, 0]
        assert rel_err(sol.ys[:, b], ref) < 30 * tol, b


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_van_der_pol_python_dynamics(method):
    tol = TOL[method]
    f, rhs = van_der_pol(1.0)
    y0 = np.array([[2.0, 0.0], [0.5, -1.0]])
    t = np.linspace(0.0, 10.0, 21)
    sol = of.solve(f, y0, t, method=method, rtol=tol, atol=tol)
    assert np.all(sol.status == 0)
    assert rel_err(sol.ys, scipy_solve(rhs, y0, t)) < 20 * tol


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_van_der_pol_per_trajectory_mu(method):
    """PythonDynamics with (B, P) params: each row gets its own mu."""
    tol = TOL[method]
    f, _ = van_der_pol(1.0)
    mus = np.array([[0.5], [1.0], [2.0]])
    y0 = np.array([[2.0, 0.0]] * 3)
    t = np.linspace(0.0, 5.0, 6)
    sol = of.solve(f, y0, t, method=method, rtol=tol, atol=tol, params=mus)
    for b, mu in enumerate(mus[:, 0]):
        _, rhs = van_der_pol(mu)
        assert rel_err(sol.ys[:, b], scipy_solve(rhs, y0[b], t)[:, 0]) < 20 * tol


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_kepler_orbit(method):
    """One full period of an e = 0.5 Kepler ellipse against the closed-form solution (Kepler's
    equation) and SciPy; energy and angular momentum are conserved."""
    tol = TOL[method]
    k = Kepler(m1=1.0, m2=0.5, a=1.0, e=0.5)
    t = np.linspace(0.0, k.period, 11)
    sol = of.solve(k.f, k.y0, t, method=method, rtol=tol, atol=tol)
    assert sol.status[0] == 0
    exact = k.exact(t)
    assert rel_err(sol.ys, exact) < 200 * tol          # phase error accumulates over the orbit
    assert rel_err(scipy_solve(nbody_rhs([1.0, 0.5]), k.y0, t)[:, 0], exact) < 1e-9
    E = k.f.energy(sol.ys)
    L = k.angular_momentum(sol.ys)
    assert np.max(np.abs(E - E[0])) < 50 * tol * abs(E[0])
    assert np.max(np.abs(L - L[0])) < 50 * tol * abs(L[0])
    # the centre of mass stays at rest at the origin
    com = sol.ys[:, :2] * 1.0 + sol.ys[:, 2:4] * 0.5
    assert np.max(np.abs(com)) < 1e-12 + 10 * tol


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_figure_eight(method):
    tol = TOL[method]
    f, y0 = figure_eight()
    t = np.linspace(0.0, FIGURE_EIGHT_PERIOD, 11)
    sol = of.solve(f, y0, t, method=method, rtol=tol, atol=tol)
    assert sol.status[0] == 0
    ref = scipy_solve(nbody_rhs([1.0, 1.0, 1.0]), y0, t)[:, 0]
    assert rel_err(sol.ys, ref) < 200 * tol
    E = f.energy(sol.ys)
    assert np.max(np.abs(E - E[0])) < 50 * tol * abs(E[0])
    # total momentum stays zero
    p = sol.ys[:, 6:8] + sol.ys[:, 8:10] + sol.ys[:, 10:12]
    assert np.max(np.abs(p)) < 1e-7


def test_figure_eight_is_periodic():
    """After one period the three bodies are back where they started (to the 8 digits of the
    published initial data), and the energy is conserved to ~1e-12."""
    f, y0 = figure_eight()
    sol = of.solve(f, y0, [0.0, FIGURE_EIGHT_PERIOD], method="dopri8", rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(sol.ys[-1] - y0)) < 1e-6
    E = f.energy(sol.ys)
    assert abs(E[-1] - E[0]) < 1e-11 * abs(E[0])


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_nbody_softened_energy(method):
    """A softened, non-periodic 3-body encounter: SciPy agreement and energy conservation
    (NBody.energy includes the softening in the potential)."""
    tol = TOL[method]
    f = of.NBody([1.0, 0.8, 1.2], dim=2, softening=0.1)
    y0 = np.array([1.0, 0.0, -0.5, 0.8, -0.4, -0.9, 0.0, 0.5, -0.4, -0.2, 0.3, -0.3])
    t = np.linspace(0.0, 3.0, 7)
    sol = of.solve(f, y0, t, method=method, rtol=tol, atol=tol)
    ref = scipy_solve(nbody_rhs([1.0, 0.8, 1.2], softening=0.1), y0, t)[:, 0]
    assert rel_err(sol.ys, ref) < 200 * tol
    E = f.energy(sol.ys)
    assert np.max(np.abs(E - E[0])) < 50 * tol * abs(E[0])


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_nbody_3d(method):
    tol = TOL[method]
    m = [1.0, 0.3, 0.2, 0.1]
    f = of.NBody(m, dim=3, G=1.0, softening=0.05)
    rng = np.random.default_rng(4)
    y0 = np.concatenate([rng.standard_normal(12), 0.3 * rng.standard_normal(12)])
    t = np.linspace(0.0, 1.0, 5)
    sol = of.solve(f, y0, t, method=method, rtol=tol, atol=tol)
    ref = scipy_solve(nbody_rhs(m, dim=3, softening=0.05), y0, t)[:, 0]
    assert rel_err(sol.ys, ref) < 100 * tol


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_linear_systems(method):
    tol = TOL[method]
    for D, seed in ((2, 0), (5, 1), (8, 2)):
        A, b = random_linear(D, seed=seed)
        y0 = np.random.default_rng(seed).standard_normal((3, D))
        t = np.linspace(0.0, 3.0, 7)
        sol = of.solve(of.Linear(A, b), y0, t, method=method, rtol=tol, atol=tol)
        exact = linear_exact(A, b, y0, t)
        ref = scipy_solve(lambda tt, y, A=A, b=b: A @ y + b, y0, t)
        assert rel_err(ref, exact) < 1e-10
        assert rel_err(sol.ys, exact) < 20 * tol, D


@pytest.mark.parametrize("method,scipy_method", [("bosh3", "RK23"), ("dopri5", "RK45"),
                                                 ("dopri8", "DOP853")])
def test_work_comparable_to_scipy(method, scipy_method):
    """The same embedded pairs as SciPy's RK23 / RK45 / DOP853 need a comparable number of
    function evaluations at the same tolerances (a different controller, so within 2x)."""
    A = spiral_3x3()
    y0 = np.array([1.0, -0.5, 0.3])
    for rtol in (1e-4, 1e-6, 1e-8):
        ours = of.solve(of.Linear(A), y0, [0.0, 10.0], method=method, rtol=rtol, atol=rtol * 1e-2)
        theirs = ivp(lambda t, y: A @ y, (0.0, 10.0), y0, method=scipy_method, rtol=rtol,
                           atol=rtol * 1e-2)
        ratio = ours.stats["nfev"][0] / theirs.nfev
        assert 0.5 < ratio < 2.0, (rtol, ours.stats["nfev"][0], theirs.nfev)
