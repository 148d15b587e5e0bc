"""Standard benchmark workload data (shared/WORKLOADS.md), pure NumPy.

This module is imported both by ``benchmarks/run.py`` (odefast side) and by
``benchmarks/peers.py`` (peers' virtualenv), so it must depend on NumPy only.
Every array is built in float64 exactly as WORKLOADS.md prescribes; float32
runs cast the float64 master copy with ``.astype(np.float32)``.

Run ``python benchmarks/workloads.py`` to assert the published check values.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "MLP_SIZES", "mlp_weights", "mlp_params", "mlp_z0", "mlp_target", "mlp_f",
    "W1_BATCHES", "W1_DTYPES", "W1_T", "W1_DT",
    "W2_BATCHES", "W2_T", "W2_RTOL", "W2_ATOL",
    "W3_B", "W3_T", "W3_RTOL", "W3_ATOL",
    "LORENZ_SIGMA", "LORENZ_BETA", "lorenz_rho", "lorenz_params", "lorenz_z0",
    "lorenz_f", "W4_DOPRI_BATCHES", "W4_RK4_B", "W4_T", "W4_RTOL", "W4_ATOL", "W4_RK4_DT",
    "fig8_s0", "FIG8_T", "fig8_f", "W5_RTOL", "W5_ATOL",
    "ROOFLINE_SHAPES", "rk4_fixed", "check",
    "w1_cases", "w2_cases", "w3_cases", "w4_cases", "w5_cases",
]

# ---------------------------------------------------------------- MLP (W1-W3)
MLP_SIZES = [(2, 64), (64, 64), (64, 2)]  # (fan_in, fan_out), in draw order


def mlp_weights():
    """Return ([W1, W2, W3], [b1, b2, b3]) in float64; W_i has shape (out, in)."""
    rng = np.random.RandomState(0)
    weights, biases = [], []
    for fan_in, fan_out in MLP_SIZES:
        a = np.sqrt(6.0 / (fan_in + fan_out))                 # Glorot-uniform bound
        W = rng.uniform(-a, a, size=(fan_out, fan_in)) * 2.0  # gain 2.0
        b = np.zeros(fan_out)                                 # no rng draws for biases
        weights.append(W)
        biases.append(b)
    return weights, biases


def mlp_params():
    """Flat parameter vector in the odefast order: W1 row-major, b1, W2, b2, W3, b3."""
    weights, biases = mlp_weights()
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(weights, biases)])


def mlp_z0(B):
    return np.random.RandomState(1).uniform(-1.0, 1.0, size=(B, 2))


def mlp_target(B=256):
    return np.random.RandomState(2).uniform(-1.0, 1.0, size=(B, 2))


def mlp_f(z, weights=None, biases=None):
    """Batched MLP vector field, z of shape (B, 2)."""
    if weights is None:
        weights, biases = mlp_weights()
    W1, W2, W3 = weights
    b1, b2, b3 = biases
    h = np.tanh(z @ W1.T + b1)
    h = np.tanh(h @ W2.T + b2)
    return h @ W3.T + b3


W1_BATCHES = [1, 64, 4096]
W1_DTYPES = ["float32", "float64"]
W1_T = np.array([0.0, 1.0])
W1_DT = 0.01                       # 100 steps

W2_BATCHES = [1, 256]
W2_T = np.linspace(0.0, 1.0, 11)
W2_RTOL, W2_ATOL = 1e-6, 1e-8

W3_B = 256
W3_T = np.array([0.0, 1.0])
W3_RTOL, W3_ATOL = 1e-6, 1e-8

# ---------------------------------------------------------------- Lorenz (W4)
LORENZ_SIGMA = 10.0
LORENZ_BETA = 8.0 / 3.0
W4_DOPRI_BATCHES = [1000, 100000]
W4_RK4_B = 100000
W4_T = np.array([0.0, 1.0])
W4_RTOL = W4_ATOL = 1e-8
W4_RK4_DT = 0.001                  # 1000 steps, float32


def lorenz_rho(B):
    return np.linspace(0.0, 28.0, B)


def lorenz_params(B):
    """(B, 3) per-trajectory parameters in odefast's Lorenz order (sigma, rho, beta)."""
    p = np.empty((B, 3))
    p[:, 0] = LORENZ_SIGMA
    p[:, 1] = lorenz_rho(B)
    p[:, 2] = LORENZ_BETA
    return p


def lorenz_z0(B):
    z0 = np.zeros((B, 3))
    z0[:, 0] = 1.0
    return z0


def lorenz_f(z, params):
    """Batched Lorenz field; z (B, 3), params (B, 3) or (3,)."""
    params = np.asarray(params)
    sigma, rho, beta = (params[..., 0], params[..., 1], params[..., 2])
    x, y, w = z[:, 0], z[:, 1], z[:, 2]
    return np.stack([sigma * (y - x), x * (rho - w) - y, x * y - beta * w], axis=1)


# ---------------------------------------------------------------- figure-eight (W5)
FIG8_T = 6.32591398
W5_RTOL = W5_ATOL = 1e-10


def fig8_s0():
    """s = (x1,y1,x2,y2,x3,y3,vx1,vy1,vx2,vy2,vx3,vy3), float64, shape (12,)."""
    x1 = np.array([0.97000436, -0.24308753])
    x2 = -x1
    x3 = np.zeros(2)
    v3 = np.array([-0.93240737, -0.86473146])
    v1 = v2 = -v3 / 2.0
    return np.concatenate([x1, x2, x3, v1, v2, v3])


def fig8_f(s):
    """Planar three-body gravity, G = 1, unit masses; s shape (..., 12)."""
    s = np.asarray(s)
    x = s[..., :6].reshape(s.shape[:-1] + (3, 2))
    v = s[..., 6:]
    acc = np.zeros_like(x)
    for i in range(3):
        for j in range(3):
            if i != j:
                d = x[..., j, :] - x[..., i, :]
                r3 = np.sum(d * d, axis=-1, keepdims=True) ** 1.5
                acc[..., i, :] += d / r3
    return np.concatenate([v, acc.reshape(s.shape[:-1] + (6,))], axis=-1)


# ---------------------------------------------------------------- roofline
ROOFLINE_SHAPES = [(4096, 64, 64), (1024, 1024, 1024)]  # (M, K, N)


# ---------------------------------------------------------------- checks
def rk4_fixed(f, y0, t0, t1, n_steps):
    """Tiny classical RK4 (for the check values only)."""
    y = np.array(y0, dtype=float)
    h = (t1 - t0) / n_steps
    for _ in range(n_steps):
        k1 = f(y)
        k2 = f(y + 0.5 * h * k1)
        k3 = f(y + 0.5 * h * k2)
        k4 = f(y + h * k3)
        y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


_RK4_Z1_B4 = np.array([
    [0.22541154018087817, 0.03232557962496495],
    [-0.20955705318724793, 0.1810131202863376],
    [-0.5118922459294404, 0.00977181371915223],
    [-0.06725590741397768, 0.14902918964180334],
])


def check(verbose=True):
    """Assert every check value published in WORKLOADS.md."""
    (W1, W2, W3), (b1, b2, b3) = mlp_weights()
    assert W1.shape == (64, 2) and W2.shape == (64, 64) and W3.shape == (2, 64)
    assert not (b1.any() or b2.any() or b3.any())
    checks = [
        ("W1.sum()", W1.sum(), -0.23555076844382095),
        ("W2.sum()", W2.sum(), -3.156464715570791),
        ("W3.sum()", W3.sum(), 1.7600469892344588),
        ("W1[0,0]", W1[0, 0], 0.05887130081071856),
        ("mlp_z0(4096).sum()", mlp_z0(4096).sum(), -25.662453524816424),
        ("mlp_target(256).sum()", mlp_target(256).sum(), -5.273424911966545),
    ]
    for name, got, want in checks:
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (name, got, want)
        if verbose:
            print(f"ok  {name:24s} {float(got)!r}  (want {want!r})")
    z1 = rk4_fixed(mlp_f, mlp_z0(4), 0.0, 1.0, 100)
    err = np.max(np.abs(z1 - _RK4_Z1_B4))
    assert err <= 1e-13, ("rk4 z(1) B=4", z1, err)
    if verbose:
        print(f"ok  RK4 100 steps B=4 z(1)   max abs err {err:.2e}")
    # the qualitative statements next to the gain choice; WORKLOADS.md's |.| is the
    # element-wise absolute value averaged over all B*2 entries (not a row norm)
    z0 = mlp_z0(4096)
    mean_f = np.mean(np.abs(mlp_f(z0)))
    y, max_abs = z0.copy(), np.abs(z0).max()
    for _ in range(100):
        y = rk4_fixed(mlp_f, y, 0.0, 0.01, 1)
        max_abs = max(max_abs, np.abs(y).max())
    mean_dz = np.mean(np.abs(y - z0))
    for name, got, want in [("mean|f(z0)|", mean_f, 0.84), ("mean|z(1)-z0|", mean_dz, 0.52),
                            ("max|z(t)|", max_abs, 1.12)]:
        assert abs(got - want) < 0.01, (name, got, want)
        if verbose:
            print(f"ok  {name:24s} {got:.4f}  (doc {want})")
    # other workload data sanity
    p = lorenz_params(100000)
    assert p.shape == (100000, 3) and p[0, 1] == 0.0 and p[-1, 1] == 28.0
    s0 = fig8_s0()
    assert s0.shape == (12,)
    # figure-eight has zero total momentum
    assert np.allclose(s0[6:8] + s0[8:10] + s0[10:12], 0.0)
    if verbose:
        print("all workload checks passed")
    return True


if __name__ == "__main__":
    check()


# ---------------------------------------------------------------- case lists
# run.py (odefast side) and peers.py build their cases from these, so the
# "case" strings match and results can be joined.  --quick shrinks them.

def w1_cases(quick=False):
    if quick:
        return [{"case": "B=64 float64", "B": 64, "dtype": "float64"}]
    return [{"case": f"B={B} {dt}", "B": B, "dtype": dt} for B in W1_BATCHES for dt in W1_DTYPES]


def w2_cases(quick=False):
    return [{"case": f"B={B} float64", "B": B, "dtype": "float64"} for B in ([1] if quick else W2_BATCHES)]


def w3_cases(quick=False):
    B = 16 if quick else W3_B
    return [{"case": f"B={B} float64", "B": B, "dtype": "float64"}]


def w4_cases(quick=False):
    if quick:
        spec = [("dopri5", 1000, "float64"), ("rk4", 1000, "float32")]
    else:
        spec = [("dopri5", B, "float64") for B in W4_DOPRI_BATCHES] + [("rk4", W4_RK4_B, "float32")]
    return [{"case": f"{m} B={B} {dt}", "method": m, "B": B, "dtype": dt} for m, B, dt in spec]


def w5_cases(quick=False):
    return [{"case": "12x12 float64", "dtype": "float64"}]
