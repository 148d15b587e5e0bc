"""Losses of a solution: scalar functions L(ys, y0) with their gradient and Hessian-vector
product, in NumPy. ``ys`` has the shape of ``sol.ys``: (len(t), B, D), or (len(t), D) for a 1-D
y0; ``y0`` has the shape the user passed."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

__all__ = ["Loss", "MSE", "Closure", "Custom"]


class Loss:
    """Interface: value(ys, y0) -> float; grad(ys, y0) -> (d_ys, d_y0);
    hvp(ys, y0, v_ys, v_y0) -> (h_ys, h_y0).

    ys: the solution, (len(t), B, D) or (len(t), D); y0: (B, D) or (D,); float32 or float64.
    Every returned array has the shape and dtype of the argument it differentiates against."""

    def value(self, ys, y0) -> float:
        """L(ys, y0), a Python float."""
        raise NotImplementedError

    def grad(self, ys, y0):
        """(dL/dys shaped like ys, dL/dy0 shaped like y0) — the partial derivatives, y0's
        influence through ys not included (the adjoint adds it)."""
        raise NotImplementedError

    def hvp(self, ys, y0, v_ys, v_y0):
        """(h_ys, h_y0) = ∇²L [v_ys, v_y0]: the second derivative of L along (v_ys, v_y0),
        shaped like (ys, y0)."""
        raise NotImplementedError

    def hvps(self, ys, y0, V_ys, V_y0):
        """hvp along K directions at once: V_ys (K, *ys.shape), V_y0 (K, *y0.shape) ->
        (H_ys, H_y0) of the same shapes. A loop over hvp here; the built-in losses, linear in
        the direction with fixed coefficients, do all K in one array expression."""
        pairs = [self.hvp(ys, y0, v_ys, v_y0) for v_ys, v_y0 in zip(V_ys, V_y0)]
        return (np.stack([h for h, _ in pairs]) if pairs else np.zeros_like(V_ys),
                np.stack([h for _, h in pairs]) if pairs else np.zeros_like(V_y0))


class MSE(Loss):
    """mean(weights * (ys - targets)**2) over all entries (like torch.nn.MSELoss).

    targets: shaped like sol.ys; weights: None or broadcastable to it."""

    def __init__(self, targets, weights=None):
        self.targets = np.asarray(targets)
        if self.targets.dtype.kind not in "fiu":
            raise TypeError(f"targets: expected a real-valued array, got dtype {self.targets.dtype}")
        if not np.all(np.isfinite(self.targets)):
            raise ValueError("targets: contains non-finite values (inf or NaN); mask them with "
                             "weights=0 and give finite placeholders")
        self.weights = None if weights is None else np.asarray(weights)
        if self.weights is not None:
            try:
                np.broadcast_shapes(self.weights.shape, self.targets.shape)
            except ValueError:
                raise ValueError(f"weights: shape {self.weights.shape} does not broadcast to "
                                 f"targets' shape {self.targets.shape}") from None

    def _check(self, ys):
        if ys.shape != self.targets.shape:
            raise ValueError(f"targets: expected the shape of sol.ys {ys.shape}, got {self.targets.shape}")

    def _w(self, ys):
        return 1.0 if self.weights is None else self.weights.astype(ys.dtype)

    def value(self, ys, y0) -> float:
        self._check(ys)
        r = ys - self.targets.astype(ys.dtype)
        return float(np.mean(self._w(ys) * r * r))

    def grad(self, ys, y0):
        self._check(ys)
        r = ys - self.targets.astype(ys.dtype)
        return (2.0 / ys.size) * self._w(ys) * r, np.zeros_like(y0)

    def hvp(self, ys, y0, v_ys, v_y0):
        return (2.0 / ys.size) * self._w(ys) * v_ys, np.zeros_like(y0)

    def hvps(self, ys, y0, V_ys, V_y0):
        return (2.0 / ys.size) * self._w(ys) * V_ys, np.zeros_like(V_y0)

    def __repr__(self) -> str:
        return f"MSE(targets.shape={self.targets.shape}, weighted={self.weights is not None})"


class Closure(Loss):
    """Orbit non-closure: sum over trajectories of ||y(t[-1]) - y0||^2."""

    def value(self, ys, y0) -> float:
        d = ys[-1] - y0
        return float(np.sum(d * d))

    def grad(self, ys, y0):
        d = ys[-1] - y0
        g = np.zeros_like(ys)
        g[-1] = 2 * d
        return g, -2 * d

    def hvp(self, ys, y0, v_ys, v_y0):
        dv = v_ys[-1] - v_y0
        h = np.zeros_like(ys)
        h[-1] = 2 * dv
        return h, -2 * dv

    def hvps(self, ys, y0, V_ys, V_y0):
        dv = V_ys[:, -1] - V_y0
        H = np.zeros_like(V_ys)
        H[:, -1] = 2 * dv
        return H, -2 * dv

    def __repr__(self) -> str:
        return "Closure()"


class Custom(Loss):
    """A loss from NumPy callables: value(ys, y0) -> float, grad(ys, y0) -> (d_ys, d_y0),
    hvp(ys, y0, v_ys, v_y0) -> (h_ys, h_y0) (hvp only needed for second order)."""

    def __init__(self, value: Callable, grad: Callable, hvp: Optional[Callable] = None):
        for name, fn in (("value", value), ("grad", grad)):
            if not callable(fn):
                raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
        if hvp is not None and not callable(hvp):
            raise TypeError(f"hvp: expected a callable or None, got {type(hvp).__name__}")
        self._value, self._grad, self._hvp = value, grad, hvp

    def value(self, ys, y0) -> float:
        return float(self._value(ys, y0))

    def grad(self, ys, y0):
        d_ys, d_y0 = self._grad(ys, y0)
        return _shaped(d_ys, ys, "grad: d_ys"), _shaped(d_y0, y0, "grad: d_y0")

    def hvp(self, ys, y0, v_ys, v_y0):
        if self._hvp is None:
            raise ValueError("hvp: this Custom loss was built without an hvp callable; build it "
                             "as Custom(value, grad, hvp) for second derivatives")
        h_ys, h_y0 = self._hvp(ys, y0, v_ys, v_y0)
        return _shaped(h_ys, ys, "hvp: h_ys"), _shaped(h_y0, y0, "hvp: h_y0")

    def __repr__(self) -> str:
        return f"Custom(value={getattr(self._value, '__name__', '?')})"


def _shaped(x, like, name):
    x = np.zeros_like(like) if x is None else np.asarray(x, dtype=like.dtype)
    if x.shape != like.shape:
        raise ValueError(f"{name}: expected shape {like.shape}, got {x.shape}")
    return x
