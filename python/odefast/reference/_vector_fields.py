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


# ---------------------------------------------------------------------------------------------
# Vector-Jacobian products: vjp(t, y, p, a) -> (a·∂f/∂y (B, D), a·∂f/∂p (B, P), a·∂f/∂t (B,)).
# The parameter part is per trajectory (B, P) even for shared parameters; callers sum it.


def lorenz_vjp(t, y, p, a):
    p = _rows(p, y.shape[0])
    sigma, rho, beta = p[:, 0], p[:, 1], p[:, 2]
    x, yy, z = y[:, 0], y[:, 1], y[:, 2]
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    gy = np.stack([-sigma * a0 + (rho - z) * a1 + yy * a2,
                   sigma * a0 - a1 + x * a2,
                   -x * a1 - beta * a2], axis=1)
    gp = np.stack([(yy - x) * a0, x * a1, -z * a2], axis=1)
    return gy, gp, np.zeros(y.shape[0], y.dtype)


def linear_vjp(D):
    def vjp(t, y, p, a):
        B = y.shape[0]
        A = _rows(p, B)[:, : D * D].reshape(B, D, D)
        gy = np.einsum("bij,bi->bj", A, a)
        gp = np.concatenate([(a[:, :, None] * y[:, None, :]).reshape(B, D * D), a], axis=1)
        return gy, gp, np.zeros(B, y.dtype)
    return vjp


def nbody_vjp(n, dim, G, softening):
    def vjp(t, y, p, a):
        B = y.shape[0]
        m = _rows(p, B)
        x = y[:, : n * dim].reshape(B, n, dim)
        ax, av = a[:, : n * dim], a[:, n * dim:].reshape(B, n, dim)
        d = x[:, None, :, :] - x[:, :, None, :]                      # d[b, i, j] = x_j - x_i
        r2 = np.sum(d * d, axis=-1) + softening ** 2
        eye = np.eye(n, dtype=bool)
        r2 = np.where(eye, 1.0, r2)
        inv3 = np.where(eye, 0.0, r2 ** -1.5)
        inv5 = np.where(eye, 0.0, r2 ** -2.5)
        # acc_i = sum_j G m_j d_ij inv3_ij; K_ij = I inv3_ij - 3 d_ij d_ij^T inv5_ij (symmetric in i, j)
        # gx_j = sum_{i != j} K_ij (G m_j av_i - G m_i av_j)
        w = G * (m[:, None, :, None] * av[:, :, None, :] - m[:, :, None, None] * av[:, None, :, :])  # [b, i, j, :]
        dw = np.sum(d * w, axis=-1)
        Kw = inv3[..., None] * w - 3 * (inv5 * dw)[..., None] * d
        gx = np.sum(Kw, axis=1)                                         # sum over i -> [b, j, :]
        gm = G * np.einsum("bij,bijd,bid->bj", inv3, d, av)
        gy = np.concatenate([gx.reshape(B, n * dim), ax], axis=1)
        return gy, gm, np.zeros(B, y.dtype)
    return vjp


def activation_grad(name):
    """d act / d z as a function of (z, act(z))."""
    if name == "tanh":
        return lambda z, h: 1 - h * h
    if name == "relu":
        return lambda z, h: (z > 0).astype(z.dtype)
    if name == "softplus":
        return lambda z, h: activation("sigmoid")(z)
    if name == "sigmoid":
        return lambda z, h: h * (1 - h)
    if name == "identity":
        return lambda z, h: np.ones_like(z)
    raise ValueError(f"activation: unknown {name!r}")


def mlp_vjp(model: MLP):
    act, dact = activation(model.activation), activation_grad(model.activation)

    def vjp(t, y, p, a):
        B = y.shape[0]
        shared = p.ndim == 1
        x = np.concatenate([y, t[:, None].astype(y.dtype)], axis=1) if model.time_dependent else y
        layers = model._split(p)
        inputs, pre = [], []
        h = x
        for i, (W, b) in enumerate(layers):
            inputs.append(h)
            z = (h @ W.T + b) if shared else (np.einsum("boi,bi->bo", W, h) + b)
            pre.append(z)
            h = act(z) if i < len(layers) - 1 else z
        g = a
        grads = []
        for i in range(len(layers) - 1, -1, -1):
            W, _ = layers[i]
            grads.append((g[:, :, None] * inputs[i][:, None, :], g))
            gx = (g @ W) if shared else np.einsum("boi,bo->bi", W, g)
            if i > 0:
                g = gx * dact(pre[i - 1], act(pre[i - 1]))
        grads.reverse()
        gp = np.concatenate([np.concatenate([gW.reshape(B, -1), gb], axis=1) for gW, gb in grads], axis=1)
        D = y.shape[1]
        gt = gx[:, D] if model.time_dependent else np.zeros(B, y.dtype)
        return gx[:, :D], gp, gt
    return vjp


def vector_field_vjp(f: Dynamics):
    """The NumPy vjp (t, y, params, a) -> (gy, gp per trajectory (B, P), gt) of a dynamics object."""
    if isinstance(f, Lorenz):
        return lorenz_vjp
    if isinstance(f, Linear):
        return linear_vjp(f.dim)
    if isinstance(f, NBody):
        return nbody_vjp(f.n_bodies, f.dim, f.G, f.softening)
    if isinstance(f, MLP):
        return mlp_vjp(f)
    if isinstance(f, PythonDynamics):
        if f.vjp is None:
            raise ValueError("f: gradients through PythonDynamics need its vjp(t, y, params, a) callable")
        user = f.vjp

        def call(t, y, p, a):
            gy, gp, gt = user(t, y, p, a)
            B = y.shape[0]
            gy = np.asarray(gy, dtype=y.dtype).reshape(y.shape)
            gp = np.asarray(gp, dtype=y.dtype)
            if gp.ndim == 1:  # already summed over the rows (shared params): keep the total once
                total, gp = gp, np.zeros((B, p.shape[-1]), y.dtype)
                gp[0] = total
            gp = gp.reshape(B, p.shape[-1])
            gt = np.broadcast_to(np.asarray(gt, dtype=y.dtype), (B,))
            return gy, gp, gt
        return call
    raise TypeError(f"f: no NumPy vjp for {type(f).__name__}")
