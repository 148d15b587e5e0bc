"""odefast.losses (MSE, Closure, Custom) on their own and through odefast.value_and_grad.

* MSE is mean(weights * (ys - targets)**2) over all entries, like torch.nn.MSELoss (checked
  against torch when it is importable, otherwise computed directly);
* every grad is checked by central differences of value, every hvp by central differences of
  grad;
* value_and_grad returns the loss of the solution and the gradient of that loss: the vjp with
  the loss's cotangent, plus the loss's direct dependence on y0 (Closure), checked against
  finite differences of loss(solve(...)).
"""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from odefast.losses import MSE, Closure, Custom, Loss
from problems import assert_close, random_linear

RNG = np.random.default_rng(2024)


def central(fun, x, eps=1e-6):
    """Central differences of a scalar function of an array."""
    g = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x, dtype=np.float64)
        e[idx] = eps
        g[idx] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return g


def directional(fun, x, v, eps=1e-6):
    """(fun(x + eps v) - fun(x - eps v)) / (2 eps) for an array-valued (or tuple) fun."""
    plus, minus = fun(x + eps * v), fun(x - eps * v)
    if isinstance(plus, tuple):
        return tuple((p - m) / (2 * eps) for p, m in zip(plus, minus))
    return (plus - minus) / (2 * eps)


def arrays(shape=(4, 3, 2), dtype=np.float64):
    ys = RNG.standard_normal(shape).astype(dtype)
    targets = RNG.standard_normal(shape)
    y0 = RNG.standard_normal(shape[1:]).astype(dtype)
    return ys, targets, y0


# ---------------------------------------------------------------------------------------------
# MSE
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", (None, "full", "per-time", "per-component", "scalar"))
def test_mse_value_is_the_weighted_mean(weights):
    ys, targets, y0 = arrays()
    w = {None: None, "full": RNG.uniform(0.1, 2.0, ys.shape),
         "per-time": RNG.uniform(0.1, 2.0, (4, 1, 1)), "per-component": np.array([0.5, 2.0]),
         "scalar": 3.0}[weights]
    loss = MSE(targets, weights=w)
    ww = 1.0 if w is None else w
    expect = np.mean(ww * (ys - targets) ** 2)
    assert isinstance(loss, Loss)
    assert isinstance(loss.value(ys, y0), float)
    assert loss.value(ys, y0) == pytest.approx(expect, rel=1e-14)
    # the mean is over *all* entries (len(t) * B * D), not over trajectories
    assert loss.value(ys, y0) == pytest.approx(np.sum(ww * (ys - targets) ** 2) / ys.size, rel=1e-14)


def test_mse_matches_torch_if_available():
    torch = pytest.importorskip("torch")
    ys, targets, y0 = arrays()
    expect = torch.nn.MSELoss()(torch.from_numpy(ys), torch.from_numpy(targets)).item()
    assert MSE(targets).value(ys, y0) == pytest.approx(expect, rel=1e-14)


def test_mse_1d_y0_shapes():
    ys, targets, y0 = arrays((5, 3))                   # (len(t), D): a 1-D y0 solve
    loss = MSE(targets)
    assert loss.value(ys, y0) == pytest.approx(np.mean((ys - targets) ** 2), rel=1e-14)
    d_ys, d_y0 = loss.grad(ys, y0)
    assert d_ys.shape == ys.shape and d_y0.shape == y0.shape and not d_y0.any()


@pytest.mark.parametrize("weighted", (False, True))
def test_mse_grad_and_hvp_by_finite_differences(weighted):
    ys, targets, y0 = arrays()
    w = RNG.uniform(0.1, 2.0, (4, 1, 2)) if weighted else None
    loss = MSE(targets, weights=w)
    d_ys, d_y0 = loss.grad(ys, y0)
    assert_close(d_ys, central(lambda y: loss.value(y, y0), ys), 1e-8, "MSE grad")
    assert d_y0.shape == y0.shape and not d_y0.any()
    v_ys, v_y0 = RNG.standard_normal(ys.shape), RNG.standard_normal(y0.shape)
    h_ys, h_y0 = loss.hvp(ys, y0, v_ys, v_y0)
    fd = directional(lambda y: loss.grad(y, y0)[0], ys, v_ys)
    assert_close(h_ys, fd, 1e-8, "MSE hvp")
    assert h_y0.shape == y0.shape and not h_y0.any()


def test_mse_float32():
    ys, targets, y0 = arrays(dtype=np.float32)
    loss = MSE(targets)
    d_ys, _ = loss.grad(ys, y0)
    assert d_ys.dtype == np.float32
    assert loss.value(ys, y0) == pytest.approx(np.mean((ys.astype(np.float64) - targets) ** 2),
                                               rel=1e-6)


def test_mse_bad_input():
    ys, targets, y0 = arrays()
    with pytest.raises(TypeError, match="targets"):
        MSE(targets + 1j)
    with pytest.raises(TypeError, match="targets"):
        MSE(np.full(targets.shape, "a"))
    bad = targets.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="targets.*non-finite"):
        MSE(bad)
    with pytest.raises(ValueError, match="weights"):
        MSE(targets, weights=np.ones(5))
    loss = MSE(targets[:-1])                            # wrong length: caught when used
    with pytest.raises(ValueError, match="targets"):
        loss.value(ys, y0)
    with pytest.raises(ValueError, match="targets"):
        loss.grad(ys, y0)


# ---------------------------------------------------------------------------------------------
# Closure
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ((4, 3, 2), (4, 2)), ids=["batch", "1-D"])
def test_closure_value_grad_hvp(shape):
    ys, _, y0 = arrays(shape)
    loss = Closure()
    assert loss.value(ys, y0) == pytest.approx(np.sum((ys[-1] - y0) ** 2), rel=1e-14)
    d_ys, d_y0 = loss.grad(ys, y0)
    assert_close(d_ys, central(lambda y: loss.value(y, y0), ys), 1e-8, "Closure d/dys")
    assert_close(d_y0, central(lambda y: loss.value(ys, y), y0), 1e-8, "Closure d/dy0")
    assert not d_ys[:-1].any()                          # only the last output time matters
    v_ys, v_y0 = RNG.standard_normal(ys.shape), RNG.standard_normal(y0.shape)
    h_ys, h_y0 = loss.hvp(ys, y0, v_ys, v_y0)
    # the Hessian of ||y_N - y0||^2 in the joint direction (v_ys, v_y0)
    eps = 1e-6
    gp = loss.grad(ys + eps * v_ys, y0 + eps * v_y0)
    gm = loss.grad(ys - eps * v_ys, y0 - eps * v_y0)
    assert_close(h_ys, (gp[0] - gm[0]) / (2 * eps), 1e-8, "Closure hvp ys")
    assert_close(h_y0, (gp[1] - gm[1]) / (2 * eps), 1e-8, "Closure hvp y0")


@pytest.mark.parametrize("shape", ((4, 3, 2), (4, 2)), ids=["batch", "1-D"])
@pytest.mark.parametrize("kind", ["mse", "mse-weighted", "closure", "custom"])
def test_hvps_is_hvp_along_each_direction(shape, kind):
    """loss.hvps (K directions in one call, used by hvp/hessian) equals K calls of loss.hvp."""
    ys, targets, y0 = arrays(shape)
    loss = {"mse": lambda: MSE(targets),
            "mse-weighted": lambda: MSE(targets, weights=RNG.uniform(0, 2, shape[-1])),
            "closure": Closure, "custom": lambda: Custom(*quartic())}[kind]()
    K = 5
    V_ys, V_y0 = RNG.standard_normal((K,) + ys.shape), RNG.standard_normal((K,) + y0.shape)
    H_ys, H_y0 = loss.hvps(ys, y0, V_ys, V_y0)
    assert H_ys.shape == V_ys.shape and H_y0.shape == V_y0.shape
    for k in range(K):
        h_ys, h_y0 = loss.hvp(ys, y0, V_ys[k], V_y0[k])
        np.testing.assert_array_equal(H_ys[k], h_ys)
        np.testing.assert_array_equal(H_y0[k], h_y0)


# ---------------------------------------------------------------------------------------------
# Custom
# ---------------------------------------------------------------------------------------------

def quartic():
    """L = sum(ys**4) / 4 + sum(y0 * ys[-1]): a loss with a direct y0 dependence."""
    def value(ys, y0):
        return np.sum(ys ** 4) / 4 + np.sum(y0 * ys[-1])

    def grad(ys, y0):
        d = ys ** 3
        d[-1] += y0
        return d, ys[-1].copy()

    def hvp(ys, y0, v_ys, v_y0):
        h = 3 * ys ** 2 * v_ys
        h[-1] += v_y0
        return h, v_ys[-1].copy()

    return value, grad, hvp


def test_custom_passes_through_and_checks_shapes():
    ys, _, y0 = arrays()
    value, grad, hvp = quartic()
    loss = Custom(value, grad, hvp)
    assert loss.value(ys, y0) == pytest.approx(value(ys, y0), rel=1e-15)
    d_ys, d_y0 = loss.grad(ys, y0)
    assert_close(d_ys, central(lambda y: loss.value(y, y0), ys), 1e-8, "Custom d/dys")
    assert_close(d_y0, central(lambda y: loss.value(ys, y), y0), 1e-8, "Custom d/dy0")
    v_ys, v_y0 = RNG.standard_normal(ys.shape), RNG.standard_normal(y0.shape)
    h_ys, h_y0 = loss.hvp(ys, y0, v_ys, v_y0)
    eps = 1e-6
    gp = loss.grad(ys + eps * v_ys, y0 + eps * v_y0)
    gm = loss.grad(ys - eps * v_ys, y0 - eps * v_y0)
    assert_close(h_ys, (gp[0] - gm[0]) / (2 * eps), 1e-7, "Custom hvp ys")
    assert_close(h_y0, (gp[1] - gm[1]) / (2 * eps), 1e-7, "Custom hvp y0")


def test_custom_edge_cases():
    ys, _, y0 = arrays()
    # a grad may return None for d_y0 (no direct dependence): zeros
    loss = Custom(lambda ys, y0: float(np.sum(ys)), lambda ys, y0: (np.ones_like(ys), None))
    d_ys, d_y0 = loss.grad(ys, y0)
    assert d_y0.shape == y0.shape and not d_y0.any()
    # wrong shapes are named
    bad = Custom(lambda ys, y0: 0.0, lambda ys, y0: (np.ones(3), None))
    with pytest.raises(ValueError, match="grad: d_ys"):
        bad.grad(ys, y0)
    bad = Custom(lambda ys, y0: 0.0, lambda ys, y0: (np.ones_like(ys), np.ones(7)))
    with pytest.raises(ValueError, match="grad: d_y0"):
        bad.grad(ys, y0)
    # no hvp callable: second order is refused with a clear message
    with pytest.raises(ValueError, match="hvp"):
        loss.hvp(ys, y0, ys, y0)
    for args, name in (((1.0, lambda a, b: None), "value"), ((lambda a, b: 0.0, "x"), "grad")):
        with pytest.raises(TypeError, match=name):
            Custom(*args)
    with pytest.raises(TypeError, match="hvp"):
        Custom(lambda a, b: 0.0, lambda a, b: None, hvp=3)


# ---------------------------------------------------------------------------------------------
# Through odefast.value_and_grad
# ---------------------------------------------------------------------------------------------

def problem(B=3):
    A, b = random_linear(3, seed=4)
    f = of.MLP([3, 8, 3], activation="tanh", seed=5)
    y0 = RNG.standard_normal((B, 3))
    t = np.array([0.0, 0.31, 0.77, 1.19])
    return f, y0, t, A, b


ADJOINTS = ("checkpoint", "backsolve")
FIXED = {"method": "rk4", "dt": 0.02}


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("kw", (FIXED, {"method": "dopri5", "rtol": 1e-8, "atol": 1e-10}),
                         ids=["rk4", "dopri5"])
def test_value_and_grad_mse_equals_vjp_with_the_mse_cotangent(kw, adjoint):
    f, y0, t, _, _ = problem()
    targets = RNG.standard_normal((4,) + y0.shape)
    weights = RNG.uniform(0.5, 1.5, (4, 1, 3))
    loss = MSE(targets, weights=weights)
    value, g = of.value_and_grad(f, y0, t, loss, adjoint=adjoint, **kw)
    sol = of.solve(f, y0, t, **kw)
    assert isinstance(value, float)
    assert value == pytest.approx(np.mean(weights * (sol.ys - targets) ** 2), rel=1e-13)
    cot = 2.0 * weights * (sol.ys - targets) / sol.ys.size
    gv = of.vjp(f, y0, t, cot, adjoint=adjoint, **kw)
    for attr in ("y0", "params", "t"):
        assert_close(getattr(g, attr), getattr(gv, attr), 1e-13, f"value_and_grad vs vjp {attr}")
    assert np.array_equal(g.solution.ys, sol.ys)
    # and the reference agrees
    rv, rg = of.reference.value_and_grad(f, y0, t, loss, adjoint=adjoint, **kw)
    assert rv == pytest.approx(value, rel=1e-12)
    for attr in ("y0", "params", "t"):
        assert_close(getattr(g, attr), getattr(rg, attr), 1e-9, f"core vs reference {attr}")


def test_value_and_grad_mse_matches_finite_differences():
    """End to end: d/d(y0, params, t) of MSE(solve(f, y0, t, params)) by central differences
    (rk4 on a grid not aligned with t: the y0/params gradient is exact, the t gradient the
    continuous identity)."""
    f, y0, t, _, _ = problem(B=2)
    targets = RNG.standard_normal((4,) + y0.shape)
    loss = MSE(targets)
    value, g = of.value_and_grad(f, y0, t, loss, **FIXED)

    def L(y=y0, p=f.params, tt=t):
        return MSE(targets).value(of.solve(f, y, tt, params=p, **FIXED).ys, y)

    assert value == pytest.approx(L(), rel=1e-15)
    assert_close(g.y0, central(lambda y: L(y=y), y0), 1e-7, "dMSE/dy0")
    assert_close(g.params, central(lambda p: L(p=p), f.params.copy()), 1e-7, "dMSE/dparams")
    assert_close(g.t, central(lambda tt: L(tt=tt), t), 1e-3, "dMSE/dt")


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_value_and_grad_1d_y0(adjoint):
    f, y0, t, _, _ = problem()
    y0 = y0[0]
    targets = RNG.standard_normal((4, 3))
    value, g = of.value_and_grad(f, y0, t, MSE(targets), adjoint=adjoint, **FIXED)
    assert g.y0.shape == (3,) and g.params.shape == f.params.shape and g.t.shape == (4,)
    assert g.solution.ys.shape == (4, 3)
    v2, g2 = of.value_and_grad(f, y0[None], t, MSE(targets[:, None]), adjoint=adjoint, **FIXED)
    assert value == pytest.approx(v2, rel=1e-15)
    assert_close(g.y0, g2.y0[0], 1e-15, "1-D vs (1, D)")
    assert_close(g.params, g2.params, 1e-15, "1-D vs (1, D) params")


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("one_d", (False, True), ids=["batch", "1-D"])
def test_value_and_grad_closure_includes_the_direct_y0_term(one_d, adjoint):
    """Closure L = sum_b ||y_b(T) - y0_b||^2 depends on y0 directly: g.y0 = (dy(T)/dy0)^T
    2 (y(T) - y0) - 2 (y(T) - y0); checked by finite differences of L(solve(y0), y0)."""
    f, y0, t, A, b = problem()
    f = of.Linear(A, b)
    if one_d:
        y0 = y0[0]
    value, g = of.value_and_grad(f, y0, t, Closure(), adjoint=adjoint, **FIXED)
    sol = of.solve(f, y0, t, **FIXED)
    d = sol.ys[-1] - y0
    assert value == pytest.approx(np.sum(d * d), rel=1e-14)
    cot = np.zeros_like(sol.ys)
    cot[-1] = 2 * d
    gv = of.vjp(f, y0, t, cot, adjoint=adjoint, **FIXED)
    assert_close(g.y0, gv.y0 - 2 * d, 1e-13, "g.y0 = vjp - 2 (y(T) - y0)")
    assert_close(g.params, gv.params, 1e-13, "g.params")
    assert g.y0.shape == y0.shape

    def L(y):
        return Closure().value(of.solve(f, y, t, **FIXED).ys, y)

    tol = 1e-7 if adjoint == "checkpoint" else 1e-5   # backsolve: continuous adjoint of rk4
    assert_close(g.y0, central(L, y0), tol, "dClosure/dy0")


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_value_and_grad_custom_loss(adjoint):
    f, y0, t, _, _ = problem(B=2)
    value_fn, grad_fn, hvp_fn = quartic()
    loss = Custom(value_fn, grad_fn, hvp_fn)
    value, g = of.value_and_grad(f, y0, t, loss, adjoint=adjoint, **FIXED)
    assert value == pytest.approx(value_fn(of.solve(f, y0, t, **FIXED).ys, y0), rel=1e-14)

    def L(y=y0, p=f.params):
        return value_fn(of.solve(f, y, t, params=p, **FIXED).ys, y)

    tol = 1e-7 if adjoint == "checkpoint" else 1e-5
    assert_close(g.y0, central(lambda y: L(y=y), y0), tol, "dCustom/dy0")
    assert_close(g.params, central(lambda p: L(p=p), f.params.copy()), tol, "dCustom/dparams")


def test_value_and_grad_per_trajectory_params_and_float32():
    f, y0, t, _, _ = problem(B=4)
    P = f.params * (1 + 0.1 * RNG.standard_normal((4, f.n_params)))
    targets = RNG.standard_normal((4,) + y0.shape)
    value, g = of.value_and_grad(f, y0, t, MSE(targets), params=P, **FIXED)
    assert g.params.shape == (4, f.n_params)
    # each row: the gradient of that trajectory's share of the mean
    for b in range(4):
        vb, gb = of.value_and_grad(f, y0[b], t, MSE(targets[:, b]), params=P[b], **FIXED)
        # MSE averages over B as well: the batch loss is the mean of the solo losses
        assert_close(g.params[b], gb.params / 4, 1e-12, f"row {b}")
    v32, g32 = of.value_and_grad(f, y0.astype(np.float32), t, MSE(targets), params=P, **FIXED)
    assert isinstance(v32, float) and v32 == pytest.approx(value, rel=1e-4)
    assert g32.y0.dtype == g32.params.dtype == g32.t.dtype == np.float32
    assert_close(g32.params, g.params, 1e-3, "float32 vs float64")


def test_value_and_grad_python_dynamics():
    """PythonDynamics (with a user vjp) goes through the NumPy reference; same answers."""
    def fn(t, y, p):
        return np.stack([y[:, 1], -p[0] * y[:, 0] - 0.1 * y[:, 1]], axis=1)

    def vjp(t, y, p, a):
        gy = np.stack([-p[0] * a[:, 1], a[:, 0] - 0.1 * a[:, 1]], axis=1)
        gp = (-y[:, 0] * a[:, 1])[:, None]
        return gy, gp, np.zeros(y.shape[0])

    f = of.PythonDynamics(fn, vjp=vjp, params=[2.0])
    lin = of.Linear([[0.0, 1.0], [-2.0, -0.1]])            # the same system, compiled
    y0 = RNG.standard_normal((2, 2))
    t = np.array([0.0, 0.4, 1.1])
    targets = RNG.standard_normal((3, 2, 2))
    value, g = of.value_and_grad(f, y0, t, MSE(targets), **FIXED)
    lv, lg = of.value_and_grad(lin, y0, t, MSE(targets), **FIXED)
    assert value == pytest.approx(lv, rel=1e-13)
    assert_close(g.y0, lg.y0, 1e-12, "y0")
    assert_close(g.t, lg.t, 1e-12, "t")
    # dL/dp = -dL/dA[1, 0] since A[1, 0] = -p
    assert_close(g.params, -lg.params[2:3], 1e-12, "params")
