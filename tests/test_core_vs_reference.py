"""The compiled core against the NumPy reference (the oracle): every method x dynamics x dtype x
batch layout (a lone trajectory; full SIMD blocks of 8 (float64) / 16 (float32) lanes plus a tail).

Same method and same steps give the same numbers up to rounding:
* fixed step, float64: <= 1e-12 relative;
* adaptive, float64: <= 1e-9 relative with identical per-trajectory step counts (nfev, steps,
  rejected), for all but at most 1 in 20 trajectories of a batch, and not for ReLU networks
  (why: ``check_against_reference``);
* float32: 1e-5 (fixed) / 2e-5 (adaptive, step sequences may differ).
"""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from problems import (
    DENSE_METHODS,
    FIXED_METHODS,
    assert_close,
    random_linear,
    scaled_error,
)

DTYPES = (np.float64, np.float32)
BATCHES = (1, 37)   # 37 = 4 full float64 blocks + 5 lone / 2 full float32 blocks + 5 lone
DYNAMICS = ("lorenz", "linear", "nbody", "mlp-tanh", "mlp-relu", "mlp-softplus",
            "mlp-sigmoid", "mlp-identity", "mlp-time")


def make_problem(name, dtype, B, seed=0):
    """(dynamics, y0 (B, D) of dtype, t_end)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if name == "lorenz":
        f = of.Lorenz()
        y0 = np.array([1.0, 2.0, 20.0]) + rng.standard_normal((B, 3))
        t_end = 0.5
    elif name == "linear":
        A, b = random_linear(4, seed=1)
        f = of.Linear(A, b)
        y0 = rng.standard_normal((B, 4))
        t_end = 2.0
    elif name == "nbody":
        f = of.NBody([1.0, 0.8, 1.2], dim=2, softening=0.1)
        pos = np.array([1.0, 0.0, -0.5, 0.8, -0.4, -0.9])
        vel = np.array([0.0, 0.5, -0.4, -0.2, 0.3, -0.3])
        y0 = np.concatenate([pos, vel]) + 0.05 * rng.standard_normal((B, 12))
        t_end = 1.0
    elif name.startswith("mlp-"):
        act = name[4:]
        if act == "time":
            f = of.MLP([3, 16, 3], activation="tanh", seed=4, dtype=dt, time_dependent=True)
        else:
            f = of.MLP([3, 16, 16, 3], activation=act, seed=3, dtype=dt)
        y0 = rng.standard_normal((B, 3))
        t_end = 1.0
    else:
        raise AssertionError(name)
    return f, y0.astype(dt), t_end


def solve_kwargs(method, dtype):
    if method in FIXED_METHODS:
        return {"method": method, "dt": 0.02}
    if np.dtype(dtype) == np.float64:
        return {"method": method, "rtol": 1e-6, "atol": 1e-8}
    return {"method": method, "rtol": 1e-5, "atol": 1e-7}


def tolerance(method, dtype, name):
    """Allowed max|core - ref| / max|ref| when both took the same steps."""
    if np.dtype(dtype) == np.float64:
        if method in FIXED_METHODS:
            return 1e-12
        return 1e-5 if name == "mlp-relu" else 1e-9
    if method in FIXED_METHODS:
        return 1e-5
    return 1e-4 if name == "mlp-relu" else 2e-5


def same_steps(a, b):
    """(B,) bool: trajectory took the same number of evaluations, steps and rejections."""
    eq = np.ones(a.status.shape, bool)
    for k in ("nfev", "steps", "rejected"):
        eq &= a.stats[k] == b.stats[k]
    return eq


def check_against_reference(core, ref, method, dtype, name, what):
    """Fixed step: identical step counts, agreement to rounding. Adaptive float64: identical
    step sequences for all but at most B // 20 trajectories, which agree to rounding (1e-9);
    the rest (if any) to 1e-5.

    Why not *every* trajectory: an adaptive step size h_new = h * 0.9 err^(-0.7/k) ...
    inherits the rounding noise of the error estimate, of relative size ~ eps / (rtol * err),
    which can be 1e-4 for a short step (err << 1). A decision near a threshold (err ~ 1, or
    the 1.01 h clip onto an output time) can then go either way: perturbing y0 by one ulp
    flips such decisions in the reference itself. The same holds, far more often, in float32
    (noise eps32 / rtol), where only agreement to a multiple of the tolerance is required,
    and for ReLU networks (piecewise linear: the reference's own solution moves by ~1e-10 under
    a one-ulp change of y0)."""
    B = core.status.shape[0]
    if method in FIXED_METHODS:
        assert np.all(same_steps(core, ref)), f"{what}: fixed-step counts differ"
        assert_close(core.ys, ref.ys, tolerance(method, dtype, name), what)
        return
    if np.dtype(dtype) == np.float32:
        assert_close(core.ys, ref.ys, tolerance(method, dtype, name), what)
        return
    eq = same_steps(core, ref)
    if name != "mlp-relu":
        assert np.count_nonzero(~eq) <= B // 20, \
            f"{what}: step counts differ for trajectories {np.flatnonzero(~eq)}"
    if eq.any():
        assert_close(core.ys[:, eq], ref.ys[:, eq], tolerance(method, dtype, name), what)
    if (~eq).any():
        assert_close(core.ys[:, ~eq], ref.ys[:, ~eq], 1e-5, what + " (other steps)")


def both(f, y0, t, **kw):
    return of.solve(f, y0, t, **kw), of.reference.solve(f, y0, t, **kw)


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", of.METHODS)
def test_core_vs_reference(method, name, dtype, B):
    f, y0, t_end = make_problem(name, dtype, B)
    t = np.linspace(0.0, t_end, 6)
    kw = solve_kwargs(method, dtype)
    core, ref = both(f, y0, t, **kw)
    assert core.ys.shape == ref.ys.shape == (6, B, y0.shape[1])
    assert core.ys.dtype == ref.ys.dtype == np.dtype(dtype)
    assert np.all(core.status == 0) and np.all(ref.status == 0)
    assert np.array_equal(core.ys[0], y0)
    check_against_reference(core, ref, method, dtype, name, f"{method}/{name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", ("linear", "nbody", "mlp-tanh", "mlp-time"))
@pytest.mark.parametrize("method", of.METHODS)
def test_decreasing_times(method, name, dtype):
    f, y0, t_end = make_problem(name, dtype, 11, seed=5)
    t = np.linspace(t_end, 0.0, 4)          # integrate backwards from t_end to 0
    kw = solve_kwargs(method, dtype)
    core, ref = both(f, y0, t, **kw)
    assert np.all(core.status == 0)
    check_against_reference(core, ref, method, dtype, name, f"{method}/{name} backwards")


@pytest.mark.parametrize("method", of.METHODS)
def test_backwards_inverts_forwards(method):
    """Solving forwards then backwards returns to y0 (to the accuracy of the method)."""
    A, b = random_linear(3, seed=2)
    f = of.Linear(A, b)
    y0 = np.random.default_rng(0).standard_normal((5, 3))
    kw = {"method": method, "dt": 1e-3} if method in FIXED_METHODS else \
        {"method": method, "rtol": 1e-10, "atol": 1e-12}
    fwd = of.solve(f, y0, [0.0, 1.0], **kw)
    bwd = of.solve(f, fwd.ys[-1], [1.0, 0.0], **kw)
    tol = {"euler": 1e-2, "midpoint": 1e-5, "heun": 1e-5}.get(method, 1e-8)
    assert_close(bwd.ys[-1], y0, tol, method)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("method", DENSE_METHODS)
def test_many_outputs_cost_nothing_with_dense_output(method, dtype):
    """With dense output, 101 output times take exactly the same steps as 2 (nfev, steps,
    rejected identical, and the final state bitwise identical), and the interpolated outputs
    agree with the reference."""
    f, y0, t_end = make_problem("nbody", dtype, 19, seed=3)
    kw = solve_kwargs(method, dtype)
    few = of.solve(f, y0, [0.0, t_end], **kw)
    t = np.linspace(0.0, t_end, 101)
    many = of.solve(f, y0, t, **kw)
    for k in ("nfev", "steps", "rejected"):
        assert np.array_equal(few.stats[k], many.stats[k]), k
    assert np.array_equal(few.ys[-1], many.ys[-1])
    ref = of.reference.solve(f, y0, t, **kw)
    check_against_reference(many, ref, method, dtype, "nbody", method)
    # and the dense outputs are accurate, not merely consistent: compare with a tight solve
    tight = of.solve(f, y0.astype(np.float64), t, method="dopri8", rtol=1e-12, atol=1e-12)
    tol = 1e-4 if np.dtype(dtype) == np.float64 else 1e-3
    assert scaled_error(many.ys, tight.ys) < tol


@pytest.mark.parametrize("method", ("dopri8",) + FIXED_METHODS)
def test_output_times_are_hit_exactly_without_dense_output(method):
    """dopri8 (no interpolant) and fixed-step methods step onto every output time: the state at
    an output time equals a solve that ends there, bitwise."""
    f, y0, _ = make_problem("linear", np.float64, 9)
    kw = solve_kwargs(method, np.float64)
    t = np.array([0.0, 0.3, 0.7, 1.0])
    full = of.solve(f, y0, t, **kw)
    part = of.solve(f, y0, t[:2], **kw)
    assert np.array_equal(full.ys[1], part.ys[1])
    # and a fixed-step solve never exceeds dt: ceil(|dt_i| / dt) equal steps per interval
    if method in FIXED_METHODS:
        n = sum(int(np.ceil(d / kw["dt"] - 1e-9)) for d in np.diff(t))
        assert np.all(full.stats["steps"] == n)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("method", ("rk4", "dopri5", "dopri8"))
def test_one_dimensional_y0(method, dtype):
    f, y0, t_end = make_problem("mlp-tanh", dtype, 1)
    t = np.linspace(0.0, t_end, 5)
    kw = solve_kwargs(method, dtype)
    sol1 = of.solve(f, y0[0], t, **kw)
    sol2 = of.solve(f, y0, t, **kw)
    ref1 = of.reference.solve(f, y0[0], t, **kw)
    assert sol1.ys.shape == ref1.ys.shape == (5, 3)
    assert sol1.status.shape == (1,)
    assert np.array_equal(sol1.ys, sol2.ys[:, 0, :])
    for k in ("nfev", "steps", "rejected"):
        assert sol1.stats[k].shape == (1,)


@pytest.mark.parametrize("method", of.METHODS)
def test_single_output_time_returns_y0(method):
    f, y0, _ = make_problem("lorenz", np.float64, 3)
    kw = solve_kwargs(method, np.float64)
    sol = of.solve(f, y0, [0.25], **kw)
    assert sol.ys.shape == (1, 3, 3)
    assert np.array_equal(sol.ys[0], y0)
    assert np.all(sol.stats["nfev"] == 0) and np.all(sol.status == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", ("lorenz", "linear", "nbody", "mlp-softplus", "mlp-time"))
@pytest.mark.parametrize("method", ("rk4", "dopri5", "dopri8"))
def test_per_trajectory_params_vs_reference(method, name, dtype):
    f, y0, t_end = make_problem(name, dtype, 21, seed=7)
    rng = np.random.default_rng(8)
    P = f.n_params
    params = (f.params.astype(np.float64) * (1 + 0.05 * rng.standard_normal((21, P))))
    params = params.astype(dtype)
    t = np.linspace(0.0, t_end, 3)
    kw = solve_kwargs(method, dtype)
    core, ref = both(f, y0, t, params=params, **kw)
    check_against_reference(core, ref, method, dtype, name, f"{method}/{name}")
    # different parameters really change the answer
    shared = of.solve(f, y0, t, **kw)
    assert not np.array_equal(shared.ys[-1], core.ys[-1])


def test_float32_and_float64_agree():
    """A float32 solve is a float32-accurate version of the float64 one."""
    f, y0, t_end = make_problem("nbody", np.float64, 17)
    t = np.linspace(0.0, t_end, 4)
    s64 = of.solve(f, y0, t, method="rk4", dt=0.01)
    s32 = of.solve(f, y0.astype(np.float32), t, method="rk4", dt=0.01)
    assert s32.ys.dtype == np.float32
    assert 0 < scaled_error(s32.ys, s64.ys) < 1e-5
