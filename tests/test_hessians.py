"""Second derivatives in the compiled core: odefast.hvp / odefast.hessian.

Checked against:
* central differences of the compiled *gradients* (float64): exact for fixed-step rk4 with the
  checkpoint adjoint (both are derivatives of the same discrete map), for every dynamics type
  (Lorenz, Linear, NBody with softening, MLP with each activation, time-dependent MLP), w.r.t.
  y0, params and mixed directions;
* the NumPy reference (odefast.reference.hvp / hessian): same method, same steps;
* the harmonic oscillator's closed form 2 (M - I)^T (M - I) for the Hessian of non-closure;
* checkpoint vs backsolve converging together as the tolerances tighten; Hessian symmetry;
* per-trajectory params, batch independence, float32 vs float64, thread-count determinism,
  bad input and failed solves.
"""
from __future__ import annotations

import warnings

import numpy as np
import odefast as of
import pytest
from odefast import SolveWarning
from problems import assert_close, scaled_error
from scipy.linalg import expm
from test_gradients import ACTIVATIONS, make

DYNAMICS = ("lorenz", "linear", "nbody") + tuple(f"mlp-{a}" for a in ACTIVATIONS) + ("mlp-time",)
RK4 = {"method": "rk4", "dt": 0.01}


def mse_loss(f, y0, t, kw, seed=3):
    """An MSE loss against random targets, so every output time contributes."""
    ys = of.solve(f, y0, t, **kw).ys
    return of.losses.MSE(ys + np.random.default_rng(seed).standard_normal(ys.shape))


def directions(f, y0, seed=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(y0.shape), rng.standard_normal(np.asarray(f.params).shape)


def fd_hvp(f, y0, t, loss, v_y0, v_p, kw, eps=1e-6, adjoint="checkpoint"):
    """Central differences of the compiled gradient along (v_y0, v_p)."""
    p0 = np.asarray(f.params, dtype=np.float64)

    def grad(s):
        _, g = of.value_and_grad(f, y0 + s * v_y0, t, loss, params=p0 + s * v_p, adjoint=adjoint, **kw)
        return g.y0, g.params

    (gy_p, gp_p), (gy_m, gp_m) = grad(eps), grad(-eps)
    return (gy_p - gy_m) / (2 * eps), (gp_p - gp_m) / (2 * eps)


@pytest.mark.parametrize("name", DYNAMICS)
def test_checkpoint_hvp_matches_fd_of_gradients_rk4(name):
    f, y0, t = make(name, B=2)
    loss = mse_loss(f, y0, t, RK4)
    v_y0, v_p = directions(f, y0)
    hv = of.hvp(f, y0, t, loss, v_y0, v_p, **RK4)
    fy, fp = fd_hvp(f, y0, t, loss, v_y0, v_p, RK4)
    tol = 1e-4 if name == "mlp-relu" else 1e-6      # relu: kinks make FD of gradients rough
    assert_close(hv.y0, fy, tol, f"{name} y0")
    assert_close(hv.params, fp, tol, f"{name} params")


@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve"])
def test_hvp_matches_reference(name, adjoint):
    f, y0, t = make(name, B=2)
    kw = {"method": "dopri5", "rtol": 1e-8, "atol": 1e-8}
    loss = mse_loss(f, y0, t, kw)
    v_y0, v_p = directions(f, y0)
    hv = of.hvp(f, y0, t, loss, v_y0, v_p, adjoint=adjoint, **kw)
    ref = of.reference.hvp(f, y0, t, loss, v_y0, v_p, adjoint=adjoint, **kw)
    tol = 1e-9 if adjoint == "checkpoint" else 1e-6  # backsolve: steps may differ by rounding
    assert_close(hv.y0, ref.y0, tol, f"{name} y0")
    assert_close(hv.params, ref.params, tol, f"{name} params")


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5", "dopri8", "euler", "midpoint", "heun"])
def test_every_method_matches_reference(method):
    f, y0, t = make("mlp-tanh", B=3)
    kw = {"method": method, "rtol": 1e-7, "atol": 1e-7} if method in ("bosh3", "dopri5", "tsit5", "dopri8") \
        else {"method": method, "dt": 0.02}
    loss = mse_loss(f, y0, t, kw)
    H = of.hessian(f, y0, t, loss, **kw)
    ref = of.reference.hessian(f, y0, t, loss, **kw)
    assert_close(H, ref, 1e-10, method)


def harmonic(T=2.7):
    omega = np.array([1.0, 1.7, 0.6])
    A = np.zeros((6, 6))
    A[:3, 3:] = np.eye(3)
    A[3:, :3] = -np.diag(omega ** 2)
    M = expm(A * T)
    return of.Linear(A), np.array([0.0, T]), 2.0 * (M - np.eye(6)).T @ (M - np.eye(6))


@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve"])
def test_harmonic_oscillator_closed_form(adjoint):
    f, t, exact = harmonic()
    z0 = np.array([0.3, -0.2, 0.5, 0.1, 0.4, -0.3])
    H = of.hessian(f, z0, t, of.losses.Closure(), adjoint=adjoint, method="dopri8", rtol=1e-12, atol=1e-12)
    assert H.shape == (6, 6)
    assert_close(H, exact, 1e-9, adjoint)
    assert scaled_error(H, H.T) < 1e-11


def test_hessian_symmetric_and_adjoints_converge():
    f, y0, t = make("nbody", B=1)
    y0 = y0[0]
    loss = of.losses.Closure()
    errs = []
    for tol in (1e-6, 1e-8, 1e-10):
        kw = {"method": "dopri5", "rtol": tol, "atol": tol}
        Hc = of.hessian(f, y0, t, loss, adjoint="checkpoint", **kw)
        Hb = of.hessian(f, y0, t, loss, adjoint="backsolve", **kw)
        assert scaled_error(Hc, Hc.T) < 1e-9
        errs.append(scaled_error(Hb, Hc))
    assert errs[-1] < 1e-6 and errs[-1] < errs[0] / 10, errs


def test_params_hessian_shared_and_per_trajectory():
    f, y0, t = make("mlp-tanh", B=3)
    loss = mse_loss(f, y0, t, RK4)
    P = f.params.size
    H = of.hessian(f, y0, t, loss, wrt="params", **RK4)
    assert H.shape == (P, P)
    assert scaled_error(H, H.T) < 1e-10
    assert_close(H, of.reference.hessian(f, y0, t, loss, wrt="params", **RK4), 1e-10, "shared")
    # per-trajectory params: one (P, P) block per trajectory; MSE is separable, so block b is
    # trajectory b's own Hessian of its share of the loss
    rows = np.tile(f.params, (3, 1)) * (1.0 + 0.1 * np.arange(3))[:, None]
    Hb = of.hessian(f, y0, t, loss, wrt="params", params=rows, **RK4)
    assert Hb.shape == (3, P, P)
    for b in range(3):
        hv = of.hvp(f, y0, t, loss, np.zeros_like(y0), np.eye(3)[b][:, None] * np.eye(P)[7], params=rows, **RK4)
        assert_close(Hb[b][:, 7], hv.params[b], 1e-12, f"column of block {b}")


def test_batch_independence_bitwise():
    f, y0, t = make("lorenz", B=5)
    kw = {"method": "dopri5", "rtol": 1e-8, "atol": 1e-8}
    H = of.hessian(f, y0, t, of.losses.Closure(), **kw)
    for b in (0, 3):
        Hs = of.hessian(f, y0[b], t, of.losses.Closure(), **kw)
        assert np.array_equal(H[b], Hs)


def test_thread_count_does_not_change_bits():
    f, y0, t = make("mlp-tanh", B=40)
    loss = mse_loss(f, y0, t, RK4)
    v_y0, v_p = directions(f, y0)
    results = []
    for n in (1, 2, 3):
        of.set_num_threads(n)
        hv = of.hvp(f, y0, t, loss, v_y0, v_p, **RK4)
        results.append((hv.y0, hv.params))
    for y, p in results[1:]:
        assert np.array_equal(y, results[0][0]) and np.array_equal(p, results[0][1])


def test_float32_close_to_float64():
    f, y0, t = make("linear", B=2)
    loss = of.losses.Closure()
    H64 = of.hessian(f, y0, t, loss, **RK4)
    f32 = of.Linear(np.asarray(f.params[:9]).reshape(3, 3).astype(np.float32), np.asarray(f.params[9:], np.float32))
    H32 = of.hessian(f32, y0.astype(np.float32), t.astype(np.float32), loss, **RK4)
    assert H32.dtype == np.float32
    assert_close(H32, H64, 1e-5, "float32")


def test_custom_loss_coupling_trajectories():
    """A loss coupling trajectories: the blocks must still be the exact diagonal blocks."""
    f, y0, t = make("linear", B=3)

    def value(ys, y0):
        return float(np.sum(ys[-1], axis=0) @ np.sum(ys[-1], axis=0))

    def grad(ys, y0):
        g = np.zeros_like(ys)
        g[-1] = 2 * np.sum(ys[-1], axis=0)
        return g, np.zeros_like(y0)

    def hvp(ys, y0, v_ys, v_y0):
        h = np.zeros_like(ys)
        h[-1] = 2 * np.sum(v_ys[-1], axis=0)
        return h, np.zeros_like(y0)

    loss = of.losses.Custom(value, grad, hvp)
    H = of.hessian(f, y0, t, loss, **RK4)
    ref = of.reference.hessian(f, y0, t, loss, **RK4)
    assert_close(H, ref, 1e-12, "custom")
    # block b: d²/dy0_b² ||sum_b' y_b'(T)||² = 2 M^T M with M the flow map
    M = np.stack([of.vjp(f, y0, t, np.eye(3)[d] * (np.arange(len(t)) == len(t) - 1)[:, None, None]
                         * np.ones((1, 3, 1)), **RK4).y0[0] for d in range(3)])
    assert_close(H[1], 2 * M.T @ M, 1e-10, "closed form")


def test_bad_input():
    f, y0, t = make("linear", B=2)
    loss = of.losses.Closure()
    with pytest.raises(ValueError, match="v_y0"):
        of.hvp(f, y0, t, loss, np.ones(3), **RK4)
    with pytest.raises(ValueError, match="v_params"):
        of.hvp(f, y0, t, loss, np.ones_like(y0), np.full(f.params.shape, np.nan), **RK4)
    with pytest.raises(ValueError, match="v_params"):
        of.hvp(f, y0, t, loss, np.ones_like(y0), np.ones(3), **RK4)
    with pytest.raises(ValueError, match="wrt"):
        of.hessian(f, y0, t, loss, wrt="t", **RK4)
    with pytest.raises(ValueError, match="adjoint"):
        of.hessian(f, y0, t, loss, adjoint="magic", **RK4)
    with pytest.raises(TypeError, match="loss"):
        of.hessian(f, y0, t, "mse", **RK4)
    with pytest.raises(ValueError, match="hvp"):
        of.hessian(f, y0, t, of.losses.Custom(lambda ys, y0: 0.0, lambda ys, y0: (ys * 0, y0 * 0)), **RK4)
    py = of.PythonDynamics(lambda tt, y, p: -y, params=np.zeros(1))
    with pytest.raises(TypeError, match="f"):
        of.hessian(py, y0, t, loss, **RK4)
    with pytest.raises(ValueError, match="device"):
        of.hessian(f, y0, t, loss, device="tpu", **RK4)


def test_failed_trajectory_is_nan_and_reported():
    f = of.Linear(np.array([[3.0]]))
    y0 = np.array([[1.0], [1.0]])
    t = np.array([0.0, 1.0])
    with pytest.warns(SolveWarning, match="max_steps"):
        hv = of.hvp(f, y0, t, of.losses.Closure(), np.ones_like(y0), method="dopri5", max_steps=3,
                    params=np.array([[3.0, 0.0], [0.1, 0.0]]))
    assert np.all(np.isnan(hv.y0[0])) and np.all(np.isfinite(hv.y0[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        of.hvp(f, y0, t, of.losses.Closure(), np.ones_like(y0), method="dopri5", max_steps=3,
               params=np.array([[3.0, 0.0], [0.1, 0.0]]), on_failure="ignore")
