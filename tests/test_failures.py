"""Failing trajectories: sol.status says which and why (1 max_steps, 2 step size underflow,
3 non-finite), a SolveWarning (or, with on_failure='raise', a SolveError) names them, their
outputs after the failure are NaN, the other trajectories of the batch are unaffected (bitwise
the same as solved alone), and a failing solve never hangs."""
from __future__ import annotations

import time

import numpy as np
import odefast as of
import pytest
from odefast import SolveError, SolveWarning
from problems import assert_same_solution, riccati_blowup

BOTH = [pytest.param(of.solve, id="core"), pytest.param(of.reference.solve, id="reference")]


def row(sol, b):
    return of.Solution(ys=sol.ys[:, b:b + 1], t=sol.t, status=sol.status[b:b + 1],
                       stats={k: v[b:b + 1] for k, v in sol.stats.items()}, method=sol.method)


def oscillators(omegas):
    """A batch of harmonic oscillators x'' = -w^2 x with per-trajectory w (Linear, (B, P))."""
    f = of.Linear(np.array([[0.0, 1.0], [-1.0, 0.0]]))
    params = np.array([[0.0, 1.0, -w * w, 0.0, 0.0, 0.0] for w in omegas])
    return f, params


# ---------------------------------------------------------------------------------------------
# max_steps
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solve", BOTH)
@pytest.mark.parametrize("method", ("bosh3", "dopri5", "tsit5", "dopri8"))
def test_max_steps_adaptive(solve, method):
    """Only the fast oscillator (trajectory 2) needs more than max_steps; it alone fails, with
    status 1, a warning naming it, NaN outputs after its last reached output time, and the
    others bitwise as if solved alone."""
    f, params = oscillators([1.0, 2.0, 300.0, 0.5])
    y0 = np.tile([1.0, 0.0], (4, 1))
    t = np.linspace(0.0, 3.0, 7)
    max_steps = 1000 if method == "bosh3" else 200       # the slow ones need <= 325 / 44
    kw = {"method": method, "rtol": 1e-6, "atol": 1e-8, "max_steps": max_steps}
    with pytest.warns(SolveWarning, match=r"1 of 4 trajectories failed.*\[2\].*max_steps"):
        sol = solve(f, y0, t, params=params, **kw)
    assert sol.status.dtype.kind == "i" and sol.status.shape == (4,)
    assert list(sol.status) == [0, 0, 1, 0]
    assert not sol.success
    assert sol.stats["steps"][2] + sol.stats["rejected"][2] == max_steps
    assert np.all(np.isnan(sol.ys[-1, 2]))
    reached = ~np.isnan(sol.ys[:, 2, 0])
    assert reached[0] and not reached[-1]
    assert np.all(np.isnan(sol.ys[~reached, 2]))          # NaN from the failure onwards
    assert np.all(np.diff(reached.astype(int)) <= 0)
    for b in (0, 1, 3):
        alone = solve(f, y0[b:b + 1], t, params=params[b:b + 1], **kw)
        same_as_alone(solve, row(sol, b), alone, f"trajectory {b}")


def same_as_alone(solve, in_batch, alone, what):
    """The compiled core promises bitwise batch independence; the NumPy reference evaluates
    a batch with vectorised NumPy/BLAS calls whose rounding may depend on the batch, so there
    the same step counts and agreement to 1e-9 are required (adaptive step sizes amplify
    rounding differences to ~1e-11, see test_core_vs_reference)."""
    if solve is of.solve:
        assert_same_solution(in_batch, alone, what)
        return
    assert np.array_equal(in_batch.status, alone.status), what
    for k in ("nfev", "steps", "rejected"):
        assert np.array_equal(in_batch.stats[k], alone.stats[k]), (what, k)
    np.testing.assert_allclose(in_batch.ys, alone.ys, rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.mark.parametrize("solve", BOTH)
@pytest.mark.parametrize("method", ("euler", "rk4"))
def test_max_steps_fixed(solve, method):
    """Fixed steps are shared by the batch: all trajectories stop at max_steps; outputs reached
    before are exact (bitwise those of an unlimited solve), later ones NaN."""
    f = of.Lorenz()
    y0 = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 0.5], [0.0, 1.0, 5.0]])
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    with pytest.warns(SolveWarning, match=r"3 of 3 trajectories failed.*\[0, 1, 2\].*max_steps"):
        sol = solve(f, y0, t, method=method, dt=0.01, max_steps=60)
    assert list(sol.status) == [1, 1, 1]
    full = solve(f, y0, t, method=method, dt=0.01)
    assert full.success
    assert np.array_equal(sol.ys[:3], full.ys[:3])        # 25 + 25 steps reached t = 0.5
    assert np.all(np.isnan(sol.ys[3:]))
    assert np.all(sol.stats["steps"] <= 60)


@pytest.mark.parametrize("solve", BOTH)
def test_on_failure_raise(solve):
    f, params = oscillators([1.0, 300.0])
    y0 = np.tile([1.0, 0.0], (2, 1))
    with pytest.raises(SolveError, match=r"\[1\].*max_steps"):
        solve(f, y0, [0.0, 3.0], params=params, max_steps=50, on_failure="raise")
    assert issubclass(SolveError, RuntimeError) and issubclass(SolveWarning, RuntimeWarning)


@pytest.mark.parametrize("solve", BOTH)
def test_on_failure_ignore(solve):
    """No warning at all (the suite turns warnings into errors), but the status is still set."""
    f, params = oscillators([1.0, 300.0])
    y0 = np.tile([1.0, 0.0], (2, 1))
    sol = solve(f, y0, [0.0, 3.0], params=params, max_steps=50, on_failure="ignore")
    assert list(sol.status) == [0, 1]
    assert "1 of 2 trajectories failed" in sol.message
    assert "failed=1/2" in repr(sol)


def test_warning_message_lists_many_failures_compactly():
    f, params = oscillators([300.0] * 15)
    y0 = np.tile([1.0, 0.0], (15, 1))
    sol = of.solve(f, y0, [0.0, 3.0], params=params, max_steps=20, on_failure="ignore")
    assert np.all(sol.status == 1)
    assert "15 of 15" in sol.message and "..." in sol.message
    assert of.STATUS_MESSAGES[1] in sol.message


@pytest.mark.parametrize("solve", BOTH)
def test_core_and_reference_agree_on_failures(solve):
    f, params = oscillators([1.0, 300.0, 2.0])
    y0 = np.tile([1.0, 0.0], (3, 1))
    kw = {"method": "dopri5", "max_steps": 80, "on_failure": "ignore", "params": params}
    a = of.solve(f, y0, [0.0, 1.0, 2.0], **kw)
    b = of.reference.solve(f, y0, [0.0, 1.0, 2.0], **kw)
    assert np.array_equal(a.status, b.status)
    for k in ("nfev", "steps", "rejected"):
        assert np.array_equal(a.stats[k], b.stats[k])
    assert np.array_equal(np.isnan(a.ys), np.isnan(b.ys))


def test_solve_warning_points_at_the_caller():
    f, params = oscillators([300.0])
    with pytest.warns(SolveWarning) as rec:
        of.solve(f, [1.0, 0.0], [0.0, 3.0], params=params, max_steps=10)
    assert rec[0].filename == __file__


def test_solve_warning_points_at_the_caller_python_dynamics():
    with pytest.warns(SolveWarning) as rec:
        of.solve(riccati_blowup(), [1.0], [0.0, 2.0])
    assert rec[0].filename == __file__


# ---------------------------------------------------------------------------------------------
# non-finite states and step size underflow
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ("bosh3", "dopri5", "tsit5", "dopri8", "rk4", "euler"))
def test_riccati_blowup_python_dynamics(method):
    """y' = y^2, y(0) = 1 blows up at t = 1: status 2 or 3, NaN after t = 1; y(0) = -1 and 0.1
    in the same batch follow 1 / (1/y0 - t) unaffected."""
    f = riccati_blowup()
    y0 = np.array([[1.0], [-1.0], [0.1]])
    t = np.array([0.0, 0.5, 2.0])
    kw = {"method": method, "dt": 1e-3} if method in ("rk4", "euler") else {"method": method}
    with pytest.warns(SolveWarning, match=r"1 of 3 trajectories failed.*\[0\]"):
        sol = of.solve(f, y0, t, max_steps=5000, **kw)
    assert sol.status[0] in (2, 3) and np.all(sol.status[1:] == 0)
    assert np.all(np.isnan(sol.ys[2, 0]))
    exact = 1.0 / (1.0 / y0[1:, 0][None] - t[:, None])
    tol = 1e-2 if method == "euler" else 1e-5
    np.testing.assert_allclose(sol.ys[:, 1:, 0], exact, rtol=tol)
    np.testing.assert_allclose(sol.ys[1, 0, 0], 2.0, rtol=tol)   # fine before the blow-up
    for b in (1, 2):
        alone = of.solve(f, y0[b:b + 1], t, max_steps=5000, **kw)
        same_as_alone(of.reference.solve, row(sol, b), alone, f"trajectory {b}")


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=["f32", "f64"])
@pytest.mark.parametrize("method", ("euler", "rk4", "bosh3", "dopri5", "dopri8"))
def test_exponential_overflow_in_core(method, dtype):
    """y' = lambda y with lambda = 1000 for three trajectories of a batch overflows (status 3,
    or 2 if the step size collapses first; NaN after the failure); the others are bitwise as if
    solved alone. Both lane blocks and lone trajectories are exercised (B = 37)."""
    f = of.Linear([[1.0]])
    lam = np.full(37, -0.5)
    bad = [3, 20, 36]
    lam[bad] = 1000.0
    params = np.stack([lam, np.zeros(37)], axis=1).astype(dtype)
    y0 = np.ones((37, 1), dtype)
    t = np.array([0.0, 0.1, 5.0], dtype)
    kw = {"method": method, "dt": 0.01} if method in ("euler", "rk4") else {"method": method}
    with pytest.warns(SolveWarning, match=r"3 of 37 trajectories failed.*\[3, 20, 36\]"):
        sol = of.solve(f, y0, t, params=params, **kw)
    assert list(np.flatnonzero(sol.status)) == bad
    assert np.all(np.isin(sol.status[bad], (2, 3)))
    assert np.all(np.isnan(sol.ys[-1, bad]))
    good = sol.status == 0
    assert np.all(np.isfinite(sol.ys[:, good]))
    np.testing.assert_allclose(sol.ys[-1, good, 0], np.exp(-2.5), rtol=1e-2 if method == "euler" else 1e-4)
    for b in (0, 3, 19, 20, 35, 36):
        alone = of.solve(f, y0[b:b + 1], t, params=params[b:b + 1], on_failure="ignore", **kw)
        assert_same_solution(row(sol, b), alone, f"trajectory {b}")
    if method in ("euler", "rk4", "dopri8"):     # (the NumPy reference is slow on the others)
        ref = of.reference.solve(f, y0, t, params=params, on_failure="ignore", **kw)
        assert np.array_equal(ref.status, sol.status)


@pytest.mark.parametrize("method", ("bosh3", "dopri5", "dopri8"))
def test_collision_step_size_underflow(method):
    """Two bodies released from rest collide head-on (no softening): the adaptive step size
    collapses at the singularity -> status 2; a grazing pair in the same batch is fine."""
    f = of.NBody([1.0, 1.0], dim=2)
    y0 = np.array([[-1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                   [-1.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.0, -0.5]])
    t = np.array([0.0, 1.0, 3.0])
    with pytest.warns(SolveWarning, match=r"\[0\].*step size underflow"):
        sol = of.solve(f, y0, t, method=method)
    assert list(sol.status) == [2, 0]
    assert np.all(np.isfinite(sol.ys[1, 0])) and np.all(np.isnan(sol.ys[2, 0]))
    alone = of.solve(f, y0[1:], t, method=method)
    assert_same_solution(row(sol, 1), alone)
    ref = of.reference.solve(f, y0, t, method=method, on_failure="ignore")
    assert np.array_equal(ref.status, sol.status)


@pytest.mark.parametrize("solve", BOTH)
def test_non_finite_derivative_at_start(solve):
    """f returns NaN for one row at t0: that row fails at once (status 3)."""
    def fn(t, y, p):
        out = -y.copy()
        out[y[:, 0] > 5] = np.nan
        return out
    f = of.PythonDynamics(fn)
    with pytest.warns(SolveWarning, match=r"\[1\].*non-finite"):
        sol = solve(f, np.array([[1.0], [10.0]]), [0.0, 1.0])
    assert list(sol.status) == [0, 3]
    np.testing.assert_allclose(sol.ys[-1, 0, 0], np.exp(-1.0), rtol=1e-6)


@pytest.mark.parametrize("method", ("dopri5", "dopri8", "bosh3"))
def test_failing_solve_never_hangs(method):
    """A very stiff system with a small max_steps returns quickly with status 1."""
    f = of.Linear(np.array([[-1e7, 0.0], [0.0, -1.0]]))
    y0 = np.ones((40, 2))
    start = time.perf_counter()
    sol = of.solve(f, y0, [0.0, 100.0], method=method, max_steps=500, on_failure="ignore")
    assert time.perf_counter() - start < 10.0
    assert np.all(sol.status == 1)
    assert np.all(sol.stats["steps"] + sol.stats["rejected"] == 500)


def test_step_landing_on_output_time_regression():
    """A step clipped to land on an output time lands on it even when t + (target - t) rounds
    below target (here 0.0416 + (1/3 - 0.0416) < 1/3 in float64); an earlier version then
    took a sub-ulp step and reported a spurious step size underflow."""
    T = 1.0 / 3.0
    d = 0.0416
    assert d + (T - d) < T
    f = of.Linear([[0.0]])
    for method in ("bosh3", "dopri5", "tsit5", "dopri8"):
        for solve in (of.solve, of.reference.solve):
            sol = solve(f, [1.0], [0.0, T], method=method, dt=d)
            assert sol.status[0] == 0 and sol.ys[-1, 0] == 1.0


def test_tiny_fixed_step_is_not_silently_ignored():
    f = of.Lorenz()
    y0 = np.array([1.0, 1.0, 1.0])
    ref = of.reference.solve(f, y0, [0.0, 1.0], method="euler", dt=1e-20, max_steps=10,
                             on_failure="ignore")
    assert ref.status[0] == 1 and ref.stats["steps"][0] == 10
    try:
        with pytest.warns(SolveWarning):
            sol = of.solve(f, y0, [0.0, 1.0], method="euler", dt=1e-20, max_steps=10)
    except ValueError as e:
        assert "dt" in str(e)
        return
    assert sol.status[0] == 1
    assert sol.stats["steps"][0] == 10 and sol.stats["nfev"][0] == 10
    assert np.all(np.isnan(sol.ys[-1]))
