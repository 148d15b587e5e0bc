"""odefast.torch: an nn.Sequential vector field solved by odefast, gradients by odefast's adjoint.

Checked against odefast itself (same numbers to rounding), against finite differences
(torch.autograd.gradcheck) and, where torchdiffeq is installed, against torchdiffeq.odeint.
Every test skips without torch (CI has none)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
oft = pytest.importorskip("odefast.torch")

import odefast as of  # noqa: E402


def _net(dtype=torch.float64, act=nn.Tanh, hidden=(16, 16), D=2, seed=0, time_input=False,
         bias=True):
    torch.manual_seed(seed)
    sizes = [D + (1 if time_input else 0), *hidden, D]
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(dtype)


def _inputs(dtype=torch.float64, B=5, N=4, D=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    y0 = torch.randn(B, D, generator=g, dtype=dtype).requires_grad_()
    t = torch.linspace(0.0, 1.0, N, dtype=dtype).requires_grad_()
    w = torch.randn(N, B, D, generator=g, dtype=dtype)
    return y0, t, w


def _grads(odeint, func, net, y0, t, w, **kw):
    for p in [*net.parameters(), y0, t]:
        p.grad = None
    ys = odeint(func, y0, t, **kw)
    (ys * w).sum().backward()
    return ys.detach(), [p.grad.clone() for p in net.parameters()], y0.grad.clone(), t.grad.clone()


@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_odefast(adjoint, dtype):
    net = _net(dtype)
    y0, t, w = _inputs(dtype)
    kw = dict(method="dopri5", rtol=1e-6, atol=1e-8)
    ys, gp, gy0, gt = _grads(oft.odeint, oft.SequentialField(net), net, y0, t, w, adjoint=adjoint,
                             **kw)
    assert ys.dtype == dtype and ys.shape == (4, 5, 2)
    assert all(g.dtype == dtype for g in [*gp, gy0, gt])

    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    mlp = of.MLP.from_weights([m.weight.detach().numpy() for m in net if isinstance(m, nn.Linear)],
                              [m.bias.detach().numpy() for m in net if isinstance(m, nn.Linear)])
    y0n, tn = y0.detach().numpy(), t.detach().numpy()
    np.testing.assert_array_equal(ys.numpy(), of.solve(mlp, y0n, tn, **kw).ys)
    g = of.vjp(mlp, y0n, tn, w.numpy(), adjoint=adjoint, **kw)
    flat = np.concatenate([p.numpy().ravel() for p in gp])
    np.testing.assert_array_equal(flat, g.params.astype(np_dtype))
    np.testing.assert_array_equal(gy0.numpy(), g.y0)
    np.testing.assert_array_equal(gt.numpy(), g.t)


def test_gradients_vs_finite_differences_fixed_step():
    """rk4 on a fixed grid: the discrete adjoint is the exact derivative of the solution."""
    net = _net(hidden=(6,))
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)

    def run(y):
        return oft.odeint(net, y, t, method="rk4", options={"step_size": 0.1})

    assert torch.autograd.gradcheck(run, (y0,))
    w = torch.randn(3, 3, 2, dtype=torch.float64)
    (run(y0) * w).sum().backward()
    eps = 1e-6
    with torch.no_grad():
        for p in net.parameters():
            flat, grad = p.view(-1), p.grad.view(-1)
            for i in range(0, flat.numel(), max(1, flat.numel() // 4)):
                old = flat[i].item()
                flat[i] = old + eps
                plus = (run(y0) * w).sum().item()
                flat[i] = old - eps
                minus = (run(y0) * w).sum().item()
                flat[i] = old
                assert abs((plus - minus) / (2 * eps) - grad[i].item()) < 1e-7


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, nn.Softplus, nn.Sigmoid, nn.Identity])
def test_activations_one_euler_step(act):
    net = _net(act=act, hidden=(8, 8))
    y0 = torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.1], dtype=torch.float64)
    ys = oft.odeint(net, y0, t, method="euler")          # one step per output interval
    with torch.no_grad():
        torch.testing.assert_close(ys[1], y0 + 0.1 * net(y0), rtol=1e-14, atol=1e-14)
    assert oft.to_mlp(net).activation == oft.ACTIVATIONS[act]


def test_time_input_and_no_bias_and_1d_y0():
    net = _net(time_input=True, bias=False, hidden=(8,))
    func = oft.SequentialField(net, time_input=True)
    y0 = torch.tensor([0.5, -0.3], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.05], dtype=torch.float64)
    ys = oft.odeint(func, y0, t, method="euler")
    assert ys.shape == (2, 2)
    with torch.no_grad():
        torch.testing.assert_close(ys[1], y0 + 0.05 * func(t[0], y0))
    ys.sum().backward()
    assert y0.grad.shape == (2,)
    assert all(p.grad is not None for p in net.parameters())
    mlp = oft.to_mlp(func)
    assert mlp.time_dependent and mlp.layers == [2, 8, 2]


def test_neural_ode_module_trains():
    torch.manual_seed(0)
    model = oft.NeuralODE(_net(hidden=(16,)), method="dopri5", rtol=1e-6, atol=1e-8)
    y0, t = torch.randn(16, 2, dtype=torch.float64), torch.linspace(0, 1, 5, dtype=torch.float64)
    target = torch.zeros(5, 16, 2, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((model(y0, t) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert "rtol=1e-06" in repr(model)


@pytest.mark.parametrize("module, word", [(nn.Dropout(0.1), "Dropout"),
                                          (nn.LayerNorm(16), "LayerNorm"),
                                          (nn.GELU(), "GELU")])
def test_unsupported_modules_are_named(module, word):
    net = nn.Sequential(nn.Linear(2, 16), module, nn.Linear(16, 2))
    with pytest.raises(TypeError, match=word):
        oft.odeint(net, torch.zeros(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match=word):
        oft.SequentialField(net)


def test_other_errors():
    class ODEFunc(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, t, y):
            return self.net(y)

    y0, t = torch.zeros(2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(TypeError, match="SequentialField"):
        oft.odeint(ODEFunc(), y0, t)
    with pytest.raises(TypeError, match="follows the last nn.Linear"):
        oft.odeint(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), y0, t)
    with pytest.raises(TypeError, match="one activation"):
        oft.odeint(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(),
                                 nn.Linear(4, 2)), y0, t)
    with pytest.raises(TypeError, match="beta"):
        oft.odeint(nn.Sequential(nn.Linear(2, 4), nn.Softplus(beta=2), nn.Linear(4, 2)), y0, t)
    with pytest.raises(TypeError, match="expected 3"):
        oft.SequentialField(_net(), time_input=True)
    with pytest.raises(ValueError, match="adaptive_heun.*torchdiffeq"):
        oft.odeint(_net(), y0, t, method="adaptive_heun")
    with pytest.raises(ValueError, match="options"):
        oft.odeint(_net(), y0, t, options={"grid_points": t})
    with pytest.raises(TypeError, match="y0"):
        oft.odeint(_net(), torch.zeros(2, dtype=torch.int64), t)


# ------------------------------------------------------------------ against torchdiffeq

@pytest.fixture(scope="module")
def torchdiffeq():
    return pytest.importorskip("torchdiffeq")


@pytest.mark.parametrize("time_input", [False, True])
def test_dopri5_gradients_match_torchdiffeq(torchdiffeq, time_input):
    net = _net(time_input=time_input)
    func = oft.SequentialField(net, time_input=time_input)
    y0, t, w = _inputs()
    kw = dict(method="dopri5", rtol=1e-10, atol=1e-12)
    ours = _grads(oft.odeint, func, net, y0, t, w, **kw)
    theirs = _grads(torchdiffeq.odeint, func, net, y0, t, w, **kw)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-8, atol=1e-9)
    for a, b in zip(ours[1], theirs[1]):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(ours[2], theirs[2], rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(ours[3], theirs[3], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_fixed_grid_matches_torchdiffeq(torchdiffeq, method):
    """Same method on the same grid (one step per output interval, torchdiffeq's default, or
    step_size): the same numbers to rounding, and the same parameter gradients."""
    net = _net()
    y0, t, w = _inputs(N=6)
    for options in (None, {"step_size": 0.05}):
        ours = _grads(oft.odeint, net, net, y0, t, w, method=method, options=options)
        theirs = _grads(torchdiffeq.odeint, oft.SequentialField(net), net, y0, t, w,
                        method=method, options=options)
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-12)
        for a, b in zip(ours[1] + [ours[2]], theirs[1] + [theirs[2]]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_float32_matches_torchdiffeq(torchdiffeq):
    net = _net(torch.float32)
    y0, t, w = _inputs(torch.float32)
    kw = dict(method="dopri5", rtol=1e-6, atol=1e-7)
    ours = _grads(oft.odeint, net, net, y0, t, w, **kw)
    theirs = _grads(torchdiffeq.odeint, oft.SequentialField(net), net, y0, t, w, **kw)
    assert ours[0].dtype == torch.float32
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(ours[1], theirs[1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_public_names_documented():
    import inspect
    for name in oft.__all__:
        obj = getattr(oft, name)
        if callable(obj):
            assert inspect.getdoc(obj), name
