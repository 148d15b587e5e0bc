"""odefast.torch: odefast's solver and adjoint gradients behind a PyTorch interface.

A drop-in for ``torchdiffeq.odeint`` when the vector field is an ``nn.Sequential`` of
``nn.Linear`` layers and one of the activations ``nn.Tanh``, ``nn.ReLU``, ``nn.Softplus``
(beta = 1), ``nn.Sigmoid``, ``nn.Identity``::

    import torch
    from torch import nn
    import odefast.torch as oft

    net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2))
    func = oft.SequentialField(net)          # func(t, y) = net(y): also works with torchdiffeq
    ys = oft.odeint(func, y0, t, method="dopri5", rtol=1e-7, atol=1e-9)   # (len(t), B, 2)
    loss = ((ys - targets) ** 2).mean()
    loss.backward()                          # gradients in net's parameters, y0.grad, t.grad

Each call reads the Sequential's current weights into an ``odefast.MLP`` (``MLP.from_weights``),
solves with the compiled core, and on ``backward()`` computes the gradients with
``odefast.vjp`` — the discrete "checkpoint" adjoint by default (the exact gradient of the
returned solution; the backward pass repeats the forward solve, which is deterministic, to
record its steps) or the continuous "backsolve" adjoint. Gradients flow to the Sequential's
parameters, to ``y0`` and to ``t``; second derivatives through ``backward`` are not supported
(use ``odefast.hvp`` / ``odefast.hessian`` on ``to_mlp(func)``).

Shapes as in torchdiffeq: ``y0`` (D,) or (B, D), ``t`` (N,), result (N, D) or (N, B, D).
The dtype (float32 or float64) follows ``y0``; ``t`` and the weights are converted to it and the
gradients back to each tensor's own dtype. Tensors on a GPU are copied to the CPU for the solve
and the results come back to ``y0``'s device.

Differences from torchdiffeq worth knowing: odefast's ``rk4`` is the classical RK4 (torchdiffeq's
``rk4`` uses the 3/8 rule: same order, slightly different numbers); its adaptive step-size
controller is a PI controller (Hairer), so adaptive solutions agree to the tolerance, not to
rounding; a fixed-step method without ``options={"step_size": ...}`` takes one step per output
interval, as torchdiffeq does.
"""
from __future__ import annotations

from typing import Optional

try:
    import torch
    from torch import nn
    from torch.autograd.function import once_differentiable
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError('odefast.torch needs PyTorch: pip install "odefast[torch]" '
                      "(or torch>=2.1)") from e

import numpy as np

import odefast as of

from . import _tableaus

__all__ = ["odeint", "SequentialField", "NeuralODE", "to_mlp", "ACTIVATIONS"]

ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Softplus: "softplus", nn.Sigmoid: "sigmoid",
               nn.Identity: "identity"}
_SUPPORTED = "nn.Linear, nn.Tanh, nn.ReLU, nn.Softplus (beta=1), nn.Sigmoid, nn.Identity"


class SequentialField(nn.Module):
    """The vector field func(t, y) = net(y) — or net(cat([y, t])) with ``time_input=True`` —
    of an ``nn.Sequential`` ``net``, in torchdiffeq's calling convention.

    net: Linear layers with one supported activation between them (the same after every hidden
    layer) and a Linear output layer; checked here, a TypeError names what is not supported.
    y: (..., D); with time_input the first Linear takes D + 1 inputs, the last one is t."""

    def __init__(self, net: nn.Module, time_input: bool = False):
        super().__init__()
        _parse(net, time_input)
        self.net = net
        self.time_input = bool(time_input)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.time_input:
            return self.net(y)
        tt = torch.as_tensor(t, dtype=y.dtype, device=y.device).reshape(1)
        return self.net(torch.cat([y, tt.expand(*y.shape[:-1], 1)], dim=-1))

    def extra_repr(self) -> str:
        return f"time_input={self.time_input}"


class _Spec:
    """What odefast needs from a Sequential: its Linear layers (in order) and the activation."""

    def __init__(self, linears: list[nn.Linear], activation: str, time_input: bool):
        self.linears, self.activation, self.time_input = linears, activation, time_input
        self.dim = linears[-1].out_features

    def params(self) -> list[torch.Tensor]:
        """The tensors the solve depends on, in order: W0, b0 (if any), W1, ..."""
        out = []
        for lin in self.linears:
            out.append(lin.weight)
            if lin.bias is not None:
                out.append(lin.bias)
        return out


def _flatten(net: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(net, nn.Sequential):
        return [(f"{name}.{sub_name}" if sub_name else name, m)
                for name, child in net.named_children() for sub_name, m in _flatten_child(child)]
    raise TypeError(f"func: expected an nn.Sequential (or odefast.torch.SequentialField around "
                    f"one), got {type(net).__name__}; odefast.torch cannot look inside an "
                    "arbitrary forward(): wrap your network's nn.Sequential with "
                    "odefast.torch.SequentialField(net)")


def _flatten_child(child: nn.Module):
    if isinstance(child, nn.Sequential):
        return [(n, m) for n, m in _flatten(child)]
    return [("", child)]


def _parse(net: nn.Module, time_input: bool) -> _Spec:
    modules = _flatten(net)
    linears: list[nn.Linear] = []
    gaps: list[list] = []
    current: list = []
    for name, m in modules:
        if isinstance(m, nn.Linear):
            if linears:
                gaps.append(current)
            linears.append(m)
            current = []
        elif type(m) in ACTIVATIONS:
            if type(m) is nn.Softplus and m.beta != 1:
                raise TypeError(f"func: nn.Softplus(beta={m.beta}) at {name!r}: odefast's softplus "
                                "has beta = 1; use nn.Softplus() or rescale the layers")
            if not linears:
                raise TypeError(f"func: {type(m).__name__} at {name!r} comes before the first "
                                "nn.Linear; odefast's MLP starts with a Linear layer")
            if type(m) is not nn.Identity:
                current.append((name, m))
        else:
            raise TypeError(f"func: {type(m).__name__} at {name!r} is not supported by "
                            f"odefast.torch; supported: {_SUPPORTED} (and nested nn.Sequential)")
    if not linears:
        raise TypeError("func: the nn.Sequential has no nn.Linear layer")
    if current:
        name, m = current[0]
        raise TypeError(f"func: {type(m).__name__} at {name!r} follows the last nn.Linear; "
                        "odefast's MLP has a linear output layer (drop the final activation)")
    kinds = set()
    for gap in gaps:
        if len(gap) > 1:
            raise TypeError(f"func: two activations in a row at {gap[0][0]!r} and {gap[1][0]!r}; "
                            "odefast's MLP applies one activation after each hidden layer")
        kinds.add(ACTIVATIONS[type(gap[0][1])] if gap else "identity")
    if len(kinds) > 1:
        raise TypeError(f"func: different activations after the hidden layers ({sorted(kinds)}); "
                        "odefast's MLP uses one activation for all of them")
    activation = kinds.pop() if kinds else "identity"
    D = linears[-1].out_features
    want_in = D + (1 if time_input else 0)
    if linears[0].in_features != want_in:
        raise TypeError(f"func: the first nn.Linear takes {linears[0].in_features} inputs, "
                        f"expected {want_in} (the state dimension {D} of the last layer's output"
                        + (" + 1 for t" if time_input else "") + ")")
    for a, b in zip(linears, linears[1:]):
        if b.in_features != a.out_features:
            raise TypeError(f"func: nn.Linear layers do not chain ({a.out_features} outputs "
                            f"into {b.in_features} inputs)")
    return _Spec(linears, activation, time_input)


def _spec_of(func) -> _Spec:
    if isinstance(func, SequentialField):
        return _parse(func.net, func.time_input)
    if isinstance(func, nn.Sequential):
        return _parse(func, False)
    raise TypeError(f"func: expected an nn.Sequential or an odefast.torch.SequentialField, got "
                    f"{type(func).__name__}; wrap the nn.Sequential inside your module with "
                    "odefast.torch.SequentialField(net) (supported layers: " + _SUPPORTED + ")")


def _numpy(x: torch.Tensor, dtype) -> np.ndarray:
    return x.detach().to("cpu", dtype=dtype).numpy()


def _mlp(spec: _Spec, dtype) -> of.MLP:
    weights = [_numpy(lin.weight, dtype) for lin in spec.linears]
    biases = [(_numpy(lin.bias, dtype) if lin.bias is not None
               else np.zeros(lin.out_features, np.float32 if dtype == torch.float32 else np.float64))
              for lin in spec.linears]
    return of.MLP.from_weights(weights, biases, activation=spec.activation,
                               time_dependent=spec.time_input)


def to_mlp(func, dtype: torch.dtype = torch.float64) -> of.MLP:
    """The odefast.MLP with func's current weights (func: nn.Sequential or SequentialField),
    e.g. for ``odefast.hessian``. dtype: torch.float32 or torch.float64."""
    return _mlp(_spec_of(func), dtype)


class _Settings:
    def __init__(self, spec, kw, adjoint, on_failure):
        self.spec, self.kw, self.adjoint, self.on_failure = spec, kw, adjoint, on_failure


class _ODEInt(torch.autograd.Function):
    """ys = solve(MLP(params), y0, t); backward by odefast.vjp."""

    @staticmethod
    def forward(ctx, settings: _Settings, y0: torch.Tensor, t: torch.Tensor, *params):
        dtype = y0.dtype
        mlp = _mlp(settings.spec, dtype)
        y0_np, t_np = _numpy(y0, dtype), _numpy(t, dtype)
        sol = of.solve(mlp, y0_np, t_np, on_failure=settings.on_failure, **settings.kw)
        ctx.settings, ctx.mlp, ctx.y0, ctx.t = settings, mlp, y0_np, t_np
        ctx.dtypes = (y0.dtype, t.dtype, [p.dtype for p in params])
        ctx.devices = (y0.device, t.device, [p.device for p in params])
        return torch.from_numpy(np.ascontiguousarray(sol.ys)).to(y0.device)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys: torch.Tensor):
        s = ctx.settings
        cot = _numpy(grad_ys, ctx.dtypes[0])
        g = of.vjp(ctx.mlp, ctx.y0, ctx.t, cot, adjoint=s.adjoint, on_failure=s.on_failure, **s.kw)
        (y_dt, t_dt, p_dts), (y_dev, t_dev, p_devs) = ctx.dtypes, ctx.devices
        need = ctx.needs_input_grad
        g_y0 = torch.from_numpy(g.y0).to(y_dev, y_dt) if need[1] else None
        g_t = torch.from_numpy(g.t).to(t_dev, t_dt) if need[2] else None
        grads, i = [], 0
        for (W, b), lin in zip(ctx.mlp._split(g.params), s.spec.linears):
            for arr, present in ((W, True), (b, lin.bias is not None)):
                if present:
                    grads.append(torch.from_numpy(np.ascontiguousarray(arr)).to(p_devs[i], p_dts[i])
                                 if need[3 + i] else None)
                    i += 1
        return (None, g_y0, g_t, *grads)


_TORCHDIFFEQ_ONLY = ("fehlberg2", "adaptive_heun", "heun3", "explicit_adams", "implicit_adams",
                     "fixed_adams", "scipy_solver")


def odeint(func, y0: torch.Tensor, t: torch.Tensor, *, rtol: float = 1e-7, atol: float = 1e-9,
           method: Optional[str] = None, options: Optional[dict] = None,
           adjoint: str = "checkpoint", max_steps: Optional[int] = None,
           on_failure: str = "warn") -> torch.Tensor:
    """Solve dy/dt = func(t, y) with odefast; differentiable like ``torchdiffeq.odeint``.

    Args:
        func: an ``nn.Sequential`` (func(t, y) = net(y)) or ``SequentialField(net, time_input)``.
        y0: (D,) or (B, D), float32 or float64 (the solve's dtype).
        t: (N,) output times, strictly increasing or decreasing; t[0] is the initial time.
        rtol, atol: tolerances of adaptive methods (torchdiffeq's defaults).
        method: 'dopri5' (default), 'bosh3', 'tsit5', 'dopri8', or fixed-step 'euler',
            'midpoint', 'heun', 'rk4'.
        options: {'step_size': dt} for fixed-step methods (default: one step per output
            interval), {'first_step': h0} for adaptive ones.
        adjoint: 'checkpoint' (discrete, exact for the computed solution) or 'backsolve'
            (continuous, O(1) memory) — how backward() computes the gradients.
        max_steps, on_failure: as for :func:`odefast.solve`.

    Returns:
        (N, D) or (N, B, D) tensor on y0's device, y0's dtype; backward() fills the gradients of
        the Sequential's parameters, y0 and t.
    """
    spec = _spec_of(func)
    if not isinstance(y0, torch.Tensor) or not isinstance(t, torch.Tensor):
        raise TypeError(f"y0, t: expected torch tensors, got {type(y0).__name__} and "
                        f"{type(t).__name__} (tuples of tensors are not supported)")
    if y0.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"y0: expected dtype torch.float32 or torch.float64, got {y0.dtype}")
    if not t.is_floating_point():
        t = t.to(y0.dtype)
    method = "dopri5" if method is None else method
    if method not in _tableaus.TABLEAUS:
        extra = (" (a torchdiffeq method odefast does not have)" if method in _TORCHDIFFEQ_ONLY
                 else "")
        raise ValueError(f"method: unknown {method!r}{extra}; supported: "
                         f"{', '.join(_tableaus.METHODS)}")
    options = dict(options or {})
    unknown = set(options) - {"step_size", "first_step"}
    if unknown:
        raise ValueError(f"options: odefast.torch understands 'step_size' (fixed-step methods) and "
                         f"'first_step' (adaptive ones), got {sorted(unknown)}")
    adaptive = _tableaus.TABLEAUS[method].adaptive
    dt = options.get("first_step" if adaptive else "step_size")
    if dt is None and not adaptive:
        if t.numel() < 2:
            raise ValueError("t: a fixed-step method needs options={'step_size': dt} or at least "
                             "two output times")
        dt = float(torch.diff(t.detach().double()).abs().max())   # one step per output interval
    if dt is not None:
        dt = float(dt)
    kw = dict(method=method, rtol=rtol, atol=atol, dt=dt, max_steps=max_steps)
    settings = _Settings(spec, kw, adjoint, on_failure)
    return _ODEInt.apply(settings, y0, t, *spec.params())


class NeuralODE(nn.Module):
    """An ``nn.Module`` y0, t -> odeint(net, y0, t): a neural-ODE block whose parameters are those
    of ``net`` (an nn.Sequential, see :class:`SequentialField`), solved by odefast.

    forward(y0 (D,) or (B, D), t (N,)) -> (N, D) or (N, B, D); the keyword arguments are
    :func:`odeint`'s."""

    def __init__(self, net: nn.Module, time_input: bool = False, **odeint_kwargs):
        super().__init__()
        self.func = net if isinstance(net, SequentialField) else SequentialField(net, time_input)
        self.odeint_kwargs = odeint_kwargs

    def forward(self, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return odeint(self.func, y0, t, **self.odeint_kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.odeint_kwargs.items())
