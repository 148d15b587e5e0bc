"""Second derivatives in the NumPy reference: odefast.reference.hvp / odefast.reference.hessian.

What is checked, and against what:

* finite differences: central differences of the reference gradient
  (odefast.reference.value_and_grad, float64) along a direction mixing y0 and params, for every
  dynamics type (Lorenz, Linear, NBody with softening, MLP with each activation, time-dependent
  MLP), both adjoints; fixed-step rk4 (the checkpoint HVP is the exact derivative of the exact
  discrete gradient: ~1e-7, the accuracy of the differences) and dopri5 at rtol = atol = 1e-10
  (the step sizes move with the inputs, which the adjoints treat as constants: ~1e-5);
* full Hessians column by column against differences, w.r.t. y0 and params, decreasing times;
* the harmonic oscillator z' = A z, A = [[0, I], [-Omega^2, 0]]: the Hessian of the orbit
  non-closure ||z(T) - z0||^2 is 2 (M - I)^T (M - I), M = expm(A T);
* symmetry of the Hessians; checkpoint and backsolve converging together as rtol tightens;
* per-trajectory params (blocks = solo Hessians); a Custom loss coupling the trajectories (the
  blocks stay exact, and differ from what one shared direction per component would give);
* float32, 1-D y0, failed trajectories (NaN rows, SolveWarning / SolveError), bad input.
"""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from odefast import SolveError, SolveWarning
from odefast.losses import MSE, Closure, Custom
from problems import assert_close, random_linear, scaled_error
from scipy.linalg import expm

ref = of.reference
ADJOINTS = ("checkpoint", "backsolve")
ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid", "identity")
DYNAMICS = ("lorenz", "linear", "nbody") + tuple(f"mlp-{a}" for a in ACTIVATIONS) + ("mlp-time",)
T_OBS = np.array([0.0, 0.13, 0.31])       # not multiples of DT
DT = 0.02
RK4 = {"method": "rk4", "dt": DT}
TIGHT = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-10}   # dense output: interpolated ys
TIGHT8 = {"method": "dopri8", "rtol": 1e-10, "atol": 1e-10}  # far fewer steps


def make(name, B=2, seed=0):
    """(f, y0 (B, D), t, MSE loss with random targets) for a named dynamics type."""
    rng = np.random.default_rng(seed)
    t = T_OBS
    if name == "lorenz":
        f = of.Lorenz()
        y0 = rng.standard_normal((B, 3)) + np.array([1.0, 1.0, 20.0])
    elif name == "linear":
        A, b = random_linear(3, seed=1)
        f = of.Linear(A, b)
        y0 = rng.standard_normal((B, 3))
    elif name == "nbody":
        f = of.NBody([1.0, 0.8, 1.2], dim=2, softening=0.3)
        pos = np.array([1.0, 0.0, -0.5, 0.8, -0.5, -0.8])
        vel = np.array([0.0, 0.5, -0.4, -0.3, 0.4, -0.2])
        y0 = np.concatenate([pos, vel])[None] + 0.05 * rng.standard_normal((B, 12))
    else:
        act = "tanh" if name == "mlp-time" else name[4:]
        f = of.MLP([3, 5, 3], activation=act, seed=1, time_dependent=name == "mlp-time")
        y0 = rng.standard_normal((B, 3))
    targets = rng.standard_normal((t.shape[0],) + y0.shape)
    return f, y0, t, MSE(targets)


def directions(f, y0, params=None, seed=1):
    rng = np.random.default_rng(seed)
    p = f.params if params is None else params
    return rng.standard_normal(y0.shape), rng.standard_normal(p.shape)


def fd_hvp(f, y0, t, loss, v_y0, v_p, kw, params=None, eps=1e-4):
    """Central differences of the reference gradient along (v_y0, v_p). (A ReLU network's
    gradient jumps where a pre-activation of some stage changes sign: small eps, see below.)"""
    p = np.array(f.params if params is None else params, dtype=np.float64)

    def grad(s):
        _, g = ref.value_and_grad(f, y0 + s * v_y0, t, loss, params=p + s * v_p, **kw)
        return g.y0, g.params

    (yp, pp), (ym, pm) = grad(eps), grad(-eps)
    return (yp - ym) / (2 * eps), (pp - pm) / (2 * eps)


def assert_hvp_close(hv, fd, rel, what):
    assert_close(np.concatenate([hv.y0.ravel(), hv.params.ravel()]),
                 np.concatenate([fd[0].ravel(), fd[1].ravel()]), rel, what)


# ---------------------------------------------------------------------------------------------
# Hessian-vector products vs finite differences of gradients
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DYNAMICS)
def test_checkpoint_rk4_is_exact_derivative_of_discrete_gradient(name):
    f, y0, t, loss = make(name)
    v_y0, v_p = directions(f, y0)
    hv = ref.hvp(f, y0, t, loss, v_y0, v_p, **RK4)
    assert hv.y0.shape == y0.shape and hv.params.shape == f.params.shape
    assert hv.adjoint == "checkpoint" and np.all(hv.status == 0)
    eps = 1e-6 if name == "mlp-relu" else 1e-4    # eps = 1e-4 steps over a ReLU kink
    assert_hvp_close(hv, fd_hvp(f, y0, t, loss, v_y0, v_p, RK4, eps=eps), 1e-7, name)


# ReLU is left out with adaptive steps: there the accepted step sizes move with the inputs
# (steps that straddle a kink are rejected and resized), which makes the gradient of the
# solve itself non-smooth at the scale of differences. Its checkpoint HVP is exact for fixed
# steps (above), the a.e. derivative of the piecewise-smooth computed map (relu'' = 0).
@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("name", [d for d in DYNAMICS if d != "mlp-relu"])
def test_hvp_adaptive_vs_finite_differences(name, adjoint):
    f, y0, t, loss = make(name)
    v_y0, v_p = directions(f, y0)
    hv = ref.hvp(f, y0, t, loss, v_y0, v_p, adjoint=adjoint, **TIGHT)
    assert_hvp_close(hv, fd_hvp(f, y0, t, loss, v_y0, v_p, TIGHT), 2e-5, f"{name} {adjoint}")


@pytest.mark.parametrize("wrt", ["y0", "params"])
def test_full_hessian_vs_finite_differences(wrt):
    """Every column of the Hessian (shared params) against differences, decreasing times too."""
    f, y0, t, loss = make("lorenz", B=2)
    for times in (t, t[::-1] + 1.0):
        H = ref.hessian(f, y0, times, loss, wrt=wrt, **RK4)
        n = y0.shape[1] if wrt == "y0" else f.n_params
        assert H.shape == ((2, n, n) if wrt == "y0" else (n, n))
        for j in range(n):
            v_y0, v_p = np.zeros(y0.shape), np.zeros(f.n_params)
            if wrt == "y0":
                v_y0[:, j] = 1.0
                fd = fd_hvp(f, y0, times, loss, v_y0, v_p, RK4)[0]
                assert_close(H[:, :, j], fd, 1e-7, f"column {j}")
            else:
                v_p[j] = 1.0
                assert_close(H[:, j], fd_hvp(f, y0, times, loss, v_y0, v_p, RK4)[1], 1e-7,
                             f"column {j}")


def test_y0_only_and_params_only_directions():
    f, y0, t, loss = make("nbody")
    v_y0, v_p = directions(f, y0)
    for vy, vp in ((v_y0, None), (None, v_p), (v_y0, v_p)):
        hv = ref.hvp(f, y0, t, loss, vy, vp, **RK4)
        fd = fd_hvp(f, y0, t, loss, 0 * v_y0 if vy is None else vy, 0 * v_p if vp is None else vp,
                    RK4)
        assert_hvp_close(hv, fd, 1e-7, f"v_y0 {vy is not None}, v_params {vp is not None}")


# ---------------------------------------------------------------------------------------------
# An exact answer: orbit non-closure of harmonic oscillators
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_harmonic_oscillator_closure_hessian(adjoint):
    """z' = A z, A = [[0, I], [-Omega^2, 0]]: L = ||z(T) - z0||^2 = ||(M - I) z0||^2, so
    d^2L/dz0^2 = 2 (M - I)^T (M - I) with M = expm(A T), whatever z0."""
    omega = np.array([1.0, 2.3])
    n = omega.size
    A = np.block([[np.zeros((n, n)), np.eye(n)], [-np.diag(omega ** 2), np.zeros((n, n))]])
    T = 1.7
    M = expm(A * T)
    exact = 2 * (M - np.eye(2 * n)).T @ (M - np.eye(2 * n))
    z0 = np.random.default_rng(3).standard_normal((3, 2 * n))
    kw = {"method": "dopri8", "rtol": 1e-12, "atol": 1e-12}
    H = ref.hessian(of.Linear(A), z0, [0.0, T], Closure(), adjoint=adjoint, **kw)
    assert H.shape == (3, 2 * n, 2 * n)
    for b in range(3):
        assert_close(H[b], exact, 1e-9, f"trajectory {b}")
    H1 = ref.hessian(of.Linear(A), z0[0], [0.0, 0.5 * T, T], Closure(), adjoint=adjoint, **kw)
    assert H1.shape == (2 * n, 2 * n)
    assert_close(H1, exact, 1e-9, "1-D y0")


# ---------------------------------------------------------------------------------------------
# Symmetry, and the two adjoints together
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,wrt", [("lorenz", "y0"), ("lorenz", "params"),
                                      ("mlp-softplus", "params"), ("nbody", "y0")])
def test_hessian_symmetry(name, wrt):
    f, y0, t, loss = make(name)
    H = ref.hessian(f, y0, t, loss, wrt=wrt, **TIGHT8)    # checkpoint: an exact Hessian
    assert scaled_error(np.swapaxes(H, -1, -2), H) < 1e-10
    Hb = ref.hessian(f, y0, t, loss, wrt=wrt, adjoint="backsolve", **TIGHT8)
    assert scaled_error(np.swapaxes(Hb, -1, -2), Hb) < 1e-6
    assert scaled_error(Hb, H) < 1e-6


def test_checkpoint_and_backsolve_converge_together():
    f, y0, t, loss = make("lorenz")
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        kw = {"method": "dopri5", "rtol": tol, "atol": tol}
        Hc = ref.hessian(f, y0, t, loss, **kw)
        Hb = ref.hessian(f, y0, t, loss, adjoint="backsolve", **kw)
        errors.append(scaled_error(Hb, Hc))
    assert errors[-1] < 1e-6, errors
    assert all(b < a for a, b in zip(errors, errors[1:])), errors


# ---------------------------------------------------------------------------------------------
# Batches: per-trajectory params, losses coupling trajectories, 1-D y0
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_per_trajectory_params(adjoint):
    f, y0, t, _ = make("lorenz", B=2)
    params = f.params * (1 + 0.1 * np.random.default_rng(2).standard_normal((2, 3)))
    H = ref.hessian(f, y0, t, Closure(), wrt="params", adjoint=adjoint, params=params, **TIGHT8)
    Hy = ref.hessian(f, y0, t, Closure(), adjoint=adjoint, params=params, **TIGHT8)
    assert H.shape == (2, 3, 3) and Hy.shape == (2, 3, 3)
    for b in range(2):   # Closure sums over trajectories: each block is that trajectory's own
        solo = dict(adjoint=adjoint, params=params[b], **TIGHT8)
        assert_close(H[b], ref.hessian(f, y0[b], t, Closure(), wrt="params", **solo), 1e-9)
        assert_close(Hy[b], ref.hessian(f, y0[b], t, Closure(), **solo), 1e-9)
    v_y0, v_p = directions(f, y0, params)
    hv = ref.hvp(f, y0, t, Closure(), v_y0, v_p, adjoint=adjoint, params=params, **TIGHT8)
    assert hv.params.shape == (2, 3)
    fd = fd_hvp(f, y0, t, Closure(), v_y0, v_p, TIGHT8, params=params)
    assert_hvp_close(hv, fd, 2e-5, "per-trajectory params")


def coupled_loss():
    """L = s^2 / 2 with s = sum over trajectories of ||y_b(t_N)||^2, plus 0.1 ||y0||^2: every
    trajectory's Hessian block has a cross-trajectory part through s."""

    def value(ys, y0):
        s = np.sum(ys[-1] ** 2)
        return 0.5 * s * s + 0.1 * np.sum(y0 ** 2)

    def grad(ys, y0):
        g = np.zeros_like(ys)
        g[-1] = 2 * np.sum(ys[-1] ** 2) * ys[-1]
        return g, 0.2 * y0

    def hvp(ys, y0, v_ys, v_y0):
        h = np.zeros_like(ys)
        h[-1] = 4 * np.sum(ys[-1] * v_ys[-1]) * ys[-1] + 2 * np.sum(ys[-1] ** 2) * v_ys[-1]
        return h, 0.2 * v_y0

    return Custom(value, grad, hvp)


@pytest.mark.parametrize("wrt", ["y0", "params"])
def test_custom_loss_coupling_trajectories_gives_exact_blocks(wrt, monkeypatch):
    f, y0, t, _ = make("linear", B=3)
    loss = coupled_loss()
    params = f.params * (1 + 0.1 * np.random.default_rng(2).standard_normal((3, f.n_params)))
    H = ref.hessian(f, y0, t, loss, wrt=wrt, params=params, **RK4)
    n = y0.shape[1] if wrt == "y0" else f.n_params
    assert H.shape == (3, n, n)
    # the blocks by differences, one trajectory perturbed at a time
    for b in range(3):
        for j in range(n):
            v_y0, v_p = np.zeros(y0.shape), np.zeros(params.shape)
            (v_y0 if wrt == "y0" else v_p)[b, j] = 1.0
            fd = fd_hvp(f, y0, t, loss, v_y0, v_p, RK4, params=params)[0 if wrt == "y0" else 1]
            assert_close(H[b, :, j], fd[b], 1e-7, f"block {b}, column {j}")
    assert scaled_error(np.swapaxes(H, 1, 2), H) < 1e-12
    # e_j on every trajectory at once would mix in the coupling: the blocks are not that
    v_y0, v_p = np.zeros(y0.shape), np.zeros(params.shape)
    (v_y0 if wrt == "y0" else v_p)[:, 0] = 1.0
    hv = ref.hvp(f, y0, t, loss, v_y0, v_p, params=params, **RK4)
    shared = hv.y0 if wrt == "y0" else hv.params
    assert scaled_error(shared, H[:, :, 0]) > 1e-2
    # the one-trajectory-at-a-time directions handed to the backend in several calls
    monkeypatch.setattr(of._second, "MAX_DIRECTION_ENTRIES", 1)
    np.testing.assert_allclose(ref.hessian(f, y0, t, loss, wrt=wrt, params=params, **RK4), H,
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_single_output_time(adjoint):
    """t = [t0]: ys = y0, so the Hessian is the loss's own: 2/size I for MSE."""
    f, y0, _, _ = make("lorenz")
    loss = MSE(np.zeros((1,) + y0.shape))
    H = ref.hessian(f, y0, [0.0], loss, adjoint=adjoint)
    np.testing.assert_allclose(H, np.broadcast_to(2 / y0.size * np.eye(3), H.shape), atol=1e-15)
    assert np.all(ref.hessian(f, y0, [0.0], loss, wrt="params", adjoint=adjoint) == 0)


def test_one_dimensional_y0():
    f, y0, t, loss = make("mlp-tanh", B=1)
    v_y0, v_p = directions(f, y0)
    loss1 = MSE(loss.targets[:, 0])
    hv1 = ref.hvp(f, y0[0], t, loss1, v_y0[0], v_p, **RK4)
    hv2 = ref.hvp(f, y0, t, loss, v_y0, v_p, **RK4)
    assert hv1.y0.shape == (3,) and hv1.solution.ys.shape == (3, 3)
    np.testing.assert_allclose(hv1.y0, hv2.y0[0], rtol=1e-12)
    np.testing.assert_allclose(hv1.params, hv2.params, rtol=1e-12)
    H1 = ref.hessian(f, y0[0], t, loss1, **RK4)
    assert H1.shape == (3, 3)
    np.testing.assert_allclose(H1, ref.hessian(f, y0, t, loss, **RK4)[0], rtol=1e-12)
    np.testing.assert_allclose(H1 @ v_y0[0], ref.hvp(f, y0[0], t, loss1, v_y0[0], **RK4).y0,
                               rtol=1e-10)


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_float32(adjoint):
    f64, y0, t, loss = make("mlp-tanh")
    f32 = of.MLP([3, 5, 3], activation="tanh", seed=1, dtype="float32")
    v_y0, v_p = directions(f64, y0)
    kw = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5}
    hv32 = ref.hvp(f32, y0.astype(np.float32), t, loss, v_y0.astype(np.float32), v_p,
                   adjoint=adjoint, **kw)
    hv64 = ref.hvp(f64, y0, t, loss, v_y0, v_p, adjoint=adjoint, **kw)
    assert hv32.y0.dtype == np.float32 and hv32.params.dtype == np.float32
    assert hv32.solution.ys.dtype == np.float32
    assert_hvp_close(hv32, (hv64.y0, hv64.params), 1e-4, "float32 vs float64")
    H = ref.hessian(f32, y0.astype(np.float32), t, loss, wrt="params", adjoint=adjoint, **kw)
    assert H.dtype == np.float32 and H.shape == (f32.n_params,) * 2


# ---------------------------------------------------------------------------------------------
# Failures and bad input
# ---------------------------------------------------------------------------------------------

def test_failed_trajectory_gives_nan_rows():
    """Row 1 decays 1000 times faster and runs out of max_steps; row 0 is unaffected."""
    f = of.Linear(-np.eye(2))
    params = np.stack([f.params, 1000 * f.params])
    y0 = np.ones((2, 2))
    t = [0.0, 1.0]
    kw = {"method": "dopri5", "max_steps": 60, "params": params}
    with pytest.warns(SolveWarning, match="hvp: 1 of 2 trajectories failed"):
        hv = ref.hvp(f, y0, t, Closure(), np.ones((2, 2)), np.ones(params.shape), **kw)
    assert list(hv.status) == [0, 1]
    assert np.all(np.isfinite(hv.y0[0])) and np.all(np.isnan(hv.y0[1]))
    assert np.all(np.isfinite(hv.params[0])) and np.all(np.isnan(hv.params[1]))
    with pytest.warns(SolveWarning, match="hessian"):
        H = ref.hessian(f, y0, t, Closure(), **kw)
    assert np.all(np.isfinite(H[0])) and np.all(np.isnan(H[1]))
    solo = ref.hessian(f, y0[0], t, Closure(), method="dopri5", params=params[0])
    np.testing.assert_allclose(H[0], solo, rtol=1e-12)
    with pytest.raises(SolveError, match="trajectories failed"):
        ref.hessian(f, y0, t, Closure(), wrt="params", on_failure="raise", **kw)


def test_bad_input():
    f, y0, t, loss = make("lorenz")
    with pytest.raises(ValueError, match="v_y0"):
        ref.hvp(f, y0, t, loss, np.ones(3))
    with pytest.raises(ValueError, match="v_y0"):
        ref.hvp(f, y0, t, loss, np.full(y0.shape, np.nan))
    with pytest.raises(TypeError, match="v_y0"):
        ref.hvp(f, y0, t, loss, np.ones(y0.shape, complex))
    with pytest.raises(ValueError, match="v_params"):
        ref.hvp(f, y0, t, loss, np.ones(y0.shape), [1.0, np.inf, 0.0])
    with pytest.raises(ValueError, match="v_params"):
        ref.hvp(f, y0, t, loss, np.ones(y0.shape), np.ones((2, 3)))     # params are shared
    with pytest.raises(ValueError, match="wrt"):
        ref.hessian(f, y0, t, loss, wrt="t")
    with pytest.raises(ValueError, match="adjoint"):
        ref.hessian(f, y0, t, loss, adjoint="forward")
    with pytest.raises(TypeError, match="loss"):
        ref.hvp(f, y0, t, lambda ys, y0: 0.0, np.ones(y0.shape))
    no_hvp = Custom(loss.value, loss.grad)
    with pytest.raises(ValueError, match="loss"):
        ref.hessian(f, y0, t, no_hvp)
    python = of.PythonDynamics(lambda tt, y, p: -y, vjp=lambda tt, y, p, a: (-a, 0 * p, 0 * tt))
    with pytest.raises(TypeError, match="f: .*PythonDynamics"):
        ref.hvp(python, y0, t, loss, np.ones(y0.shape))
