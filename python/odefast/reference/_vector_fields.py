"""NumPy evaluation of every built-in vector field: f(t, y, params) with y (B, D), t (B,),
params (P,) shared or (B, P) per trajectory. Written for clarity, not speed."""
from __future__ import annotations

import numpy as np

from .._dynamics import MLP, Dynamics, Linear, Lorenz, NBody, PythonDynamics


def _rows(p: np.ndarray, B: int) -> np.ndarray:
    """Per-trajectory view (B, P) of shared or per-trajectory parameters."""
    return np.broadcast_to(p, (B, p.shape[-1])) if p.ndim == 1 else p


def lorenz(t, y, p):
    p = _rows(p, y.shape[0])
    sigma, rho, beta = p[:, 0], p[:, 1], p[:, 2]
    x, yy, z = y[:, 0], y[:, 1], y[:, 2]
    return np.stack([sigma * (yy - x), x * (rho - z) - yy, x * yy - beta * z], axis=1)


def linear(D):
    def f(t, y, p):
        if p.ndim == 1:
            A, b = p[: D * D].reshape(D, D), p[D * D:]
            return y @ A.T + b
        A, b = p[:, : D * D].reshape(-1, D, D), p[:, D * D:]
        return np.einsum("bij,bj->bi", A, y) + b
    return f


def nbody(n, dim, G, softening):
    def f(t, y, p):
        m = _rows(p, y.shape[0])                                    # (B, n)
        x = y[:, : n * dim].reshape(-1, n, dim)
        v = y[:, n * dim:]
        d = x[:, None, :, :] - x[:, :, None, :]                     # d[b, i, j] = x_j - x_i
        r2 = np.sum(d * d, axis=-1) + softening ** 2
        np.einsum("bii->bi", r2)[...] = 1.0                          # self-interaction: any finite value
        w = G * m[:, None, :] / (r2 * np.sqrt(r2))
        np.einsum("bii->bi", w)[...] = 0.0
        acc = np.einsum("bij,bijd->bid", w, d)
        return np.concatenate([v, acc.reshape(-1, n * dim)], axis=1)
    return f


def activation(name):
    if name == "tanh":
        return np.tanh
    if name == "relu":
        return lambda x: np.maximum(x, 0)
    if name == "softplus":
        return lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    if name == "sigmoid":
        def sigmoid(x):
            e = np.exp(-np.abs(x))
            return np.where(x < 0, e / (1 + e), 1 / (1 + e))
        return sigmoid
    if name == "identity":
        return lambda x: x
    raise ValueError(f"activation: unknown {name!r}")


def mlp(model: MLP):
    act = activation(model.activation)

    def f(t, y, p):
        h = np.concatenate([y, t[:, None].astype(y.dtype)], axis=1) if model.time_dependent else y
        layers = model._split(p)
        for i, (W, b) in enumerate(layers):
            h = (h @ W.T + b) if p.ndim == 1 else (np.einsum("boi,bi->bo", W, h) + b)
            if i < len(layers) - 1:
                h = act(h)
        return h
    return f


def vector_field(f: Dynamics):
    """The NumPy callable (t, y, params) -> dy for a dynamics object."""
    if isinstance(f, Lorenz):
        return lorenz
    if isinstance(f, Linear):
        return linear(f.dim)
    if isinstance(f, NBody):
        return nbody(f.n_bodies, f.dim, f.G, f.softening)
    if isinstance(f, MLP):
        return mlp(f)
    if isinstance(f, PythonDynamics):
        user = f.fn

        def call(t, y, p):
            dy = np.asarray(user(t, y, p))
            if dy.shape != y.shape:
                raise ValueError(f"fn: PythonDynamics returned shape {dy.shape}, expected {y.shape}")
            return dy.astype(y.dtype, copy=False)
        return call
    raise TypeError(f"f: no NumPy vector field for {type(f).__name__}")
