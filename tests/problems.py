"""Test problems with exact (or independently known) answers.

Everything here is plain NumPy/SciPy and independent of odefast's integrators; the dynamics
objects are the public ``odefast`` classes so the same problem can be fed to every solver.
"""
from __future__ import annotations

import numpy as np
import odefast as of
from scipy.linalg import expm

FIXED_METHODS = ("euler", "midpoint", "heun", "rk4")
ADAPTIVE_METHODS = ("bosh3", "dopri5", "tsit5", "dopri8")
DENSE_METHODS = ("bosh3", "dopri5", "tsit5")       # dense output: outputs never shorten steps
ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4,
         "bosh3": 3, "dopri5": 5, "tsit5": 5, "dopri8": 8}


# ---------------------------------------------------------------------------------------------
# Linear systems y' = A y + b: exact solution through the matrix exponential
# ---------------------------------------------------------------------------------------------

def linear_exact(A, b, y0, t):
    """Exact solution of y' = A y + b, y(t[0]) = y0, at the times t.

    y0: (D,) or (B, D). Returns (len(t), D) or (len(t), B, D) in float64. b is folded in with
    the augmented matrix [[A, b], [0, 0]] acting on [y; 1], so A may be singular.
    """
    A = np.asarray(A, dtype=np.float64)
    D = A.shape[0]
    b = np.zeros(D) if b is None else np.asarray(b, dtype=np.float64)
    M = np.zeros((D + 1, D + 1))
    M[:D, :D] = A
    M[:D, D] = b
    y0 = np.asarray(y0, dtype=np.float64)
    Y0 = np.atleast_2d(y0)
    z0 = np.concatenate([Y0, np.ones((Y0.shape[0], 1))], axis=1)       # (B, D + 1)
    t = np.asarray(t, dtype=np.float64)
    out = np.stack([z0 @ expm(M * (ti - t[0])).T for ti in t])[..., :D]
    return out[:, 0, :] if y0.ndim == 1 else out


def spiral_3x3():
    """A 3x3 system with complex eigenvalues -0.1 +- 2i and -0.5 (a damped rotation plus decay),
    rotated so that no entry is zero; b = 0."""
    J = np.array([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.0], [0.0, 0.0, -0.5]])
    Q, _ = np.linalg.qr(np.array([[1.0, 0.3, -0.2], [0.4, 1.0, 0.5], [-0.3, 0.2, 1.0]]))
    return Q @ J @ Q.T


def random_linear(D, seed=0, b=True):
    """A random, mildly stable D x D linear system (and offset b)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((D, D)) / np.sqrt(D) - 0.3 * np.eye(D)
    return A, (rng.standard_normal(D) if b else None)


# Ensembles of the built-in dynamics: (dynamics, sample(rng, B) -> B initial states), for
# the tests that compare trajectories across batch layouts, thread counts and devices.
def lorenz_ensemble():
    return of.Lorenz(), (lambda rng, B: np.array([1.0, 2.0, 20.0]) + rng.standard_normal((B, 3)))


def linear_ensemble(D, seed):
    A, b = random_linear(D, seed=seed)
    return of.Linear(A, b), (lambda rng, B: rng.standard_normal((B, D)))


def nbody_ensemble():
    f = of.NBody([1.0, 0.8, 1.2], dim=2, softening=0.1)
    base = np.array([1.0, 0.0, -0.5, 0.8, -0.4, -0.9, 0.0, 0.5, -0.4, -0.2, 0.3, -0.3])
    return f, (lambda rng, B: base + 0.05 * rng.standard_normal((B, 12)))


def harmonic_oscillator(omega=1.0):
    """y = (x, v), x'' = -omega^2 x as a Linear system, and its exact solution."""
    f = of.Linear(np.array([[0.0, 1.0], [-omega * omega, 0.0]]))

    def exact(y0, t):
        """y0 (D,) or (B, D) -> (len(t), D) or (len(t), B, D)."""
        y0 = np.asarray(y0, dtype=np.float64)
        tau = np.asarray(t, dtype=np.float64) - float(t[0])
        wt = (omega * tau).reshape((-1,) + (1,) * (y0.ndim - 1))
        c, s = np.cos(wt), np.sin(wt)
        x0, v0 = y0[..., 0], y0[..., 1]
        return np.stack([x0 * c + v0 / omega * s, -x0 * omega * s + v0 * c], axis=-1)
    return f, exact


def exponential_decay(rate=0.7):
    """y' = -rate y (D = 1) as a Linear system, and its exact solution y0 exp(-rate (t - t0))."""
    f = of.Linear(np.array([[-rate]]))

    def exact(y0, t):
        t = np.asarray(t, dtype=np.float64)
        y0 = np.asarray(y0, dtype=np.float64)
        g = np.exp(-rate * (t - t[0]))
        return g.reshape((-1,) + (1,) * y0.ndim) * y0[None]
    return f, exact


# ---------------------------------------------------------------------------------------------
# Python vector fields (the slow path)
# ---------------------------------------------------------------------------------------------

def van_der_pol(mu=1.0):
    """Van der Pol oscillator x'' = mu (1 - x^2) x' - x as PythonDynamics (params = (mu,))."""

    def fn(t, y, p):
        mu_ = p[..., 0] if p.ndim == 2 else p[0]
        x, v = y[:, 0], y[:, 1]
        return np.stack([v, mu_ * (1.0 - x * x) * v - x], axis=1)

    def scipy_rhs(t, y):
        return [y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]]

    return of.PythonDynamics(fn, params=[mu]), scipy_rhs


def riccati_blowup():
    """y' = y^2: from y(0) = 1 the solution 1/(1 - t) blows up at t = 1."""
    return of.PythonDynamics(lambda t, y, p: y * y)


def lorenz_rhs(sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    def rhs(t, y):
        return [sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]]
    return rhs


def nbody_rhs(masses, dim=2, G=1.0, softening=0.0):
    """SciPy-style right-hand side of NBody (an independent, loop-based implementation)."""
    m = np.asarray(masses, dtype=np.float64)
    n = m.shape[0]

    def rhs(t, y):
        x = y[: n * dim].reshape(n, dim)
        v = y[n * dim:]
        acc = np.zeros((n, dim))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d = x[j] - x[i]
                    r2 = d @ d + softening ** 2
                    acc[i] += G * m[j] * d / (r2 * np.sqrt(r2))
        return np.concatenate([v, acc.ravel()])
    return rhs


# ---------------------------------------------------------------------------------------------
# Gravitational problems
# ---------------------------------------------------------------------------------------------

FIGURE_EIGHT_PERIOD = 6.32591398


def figure_eight():
    """Chenciner & Montgomery's figure-eight choreography of three unit masses (G = 1, 2-D).

    Returns (NBody, y0) with y0 = positions (x1, y1, x2, y2, x3, y3) then velocities; the
    orbit is periodic with period FIGURE_EIGHT_PERIOD.
    """
    x1 = np.array([0.97000436, -0.24308753])
    v3 = np.array([-0.93240737, -0.86473146])
    pos = np.concatenate([x1, -x1, [0.0, 0.0]])
    vel = np.concatenate([-v3 / 2, -v3 / 2, v3])
    return of.NBody([1.0, 1.0, 1.0], dim=2), np.concatenate([pos, vel])


class Kepler:
    """Two bodies (masses m1, m2, G = 1, 2-D) on a Kepler ellipse of semi-major axis a and
    eccentricity e, centre of mass at rest at the origin, starting at periapsis.

    ``exact(t)`` solves Kepler's equation (Newton) for the state at times t.
    """

    def __init__(self, m1=1.0, m2=0.5, a=1.0, e=0.5, G=1.0):
        self.m1, self.m2, self.a, self.e, self.G = m1, m2, a, e, G
        self.mu = G * (m1 + m2)
        self.n = np.sqrt(self.mu / a ** 3)              # mean motion
        self.period = 2 * np.pi / self.n
        self.f = of.NBody([m1, m2], dim=2, G=G)
        self.y0 = self.exact(np.array([0.0]))[0]

    def _relative(self, t):
        a, e = self.a, self.e
        M = self.n * np.asarray(t, dtype=np.float64)
        E = M.copy()
        for _ in range(50):
            E = E - (E - e * np.sin(E) - M) / (1 - e * np.cos(E))
        Edot = self.n / (1 - e * np.cos(E))
        s = np.sqrt(1 - e * e)
        r = np.stack([a * (np.cos(E) - e), a * s * np.sin(E)], axis=-1)
        v = np.stack([-a * np.sin(E) * Edot, a * s * np.cos(E) * Edot], axis=-1)
        return r, v

    def exact(self, t):
        r, v = self._relative(t)
        M = self.m1 + self.m2
        x1, x2 = -self.m2 / M * r, self.m1 / M * r
        v1, v2 = -self.m2 / M * v, self.m1 / M * v
        return np.concatenate([x1, x2, v1, v2], axis=-1)

    def angular_momentum(self, y):
        y = np.asarray(y, dtype=np.float64)
        m = (self.m1, self.m2)
        L = 0.0
        for i in range(2):
            x = y[..., 2 * i: 2 * i + 2]
            v = y[..., 4 + 2 * i: 4 + 2 * i + 2]
            L = L + m[i] * (x[..., 0] * v[..., 1] - x[..., 1] * v[..., 0])
        return L


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def scaled_error(a, b):
    """max |a - b| / max |b| (the relative error in the max norm of the whole array)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def assert_close(actual, desired, rel, what=""):
    """All entries of actual within rel * max|desired| of desired (and no NaNs anywhere)."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    err = scaled_error(actual, desired)
    assert err <= rel, f"{what}: relative error {err:.3e} > {rel:.1e}"


def assert_same_solution(a, b, what=""):
    """Bitwise equality of two Solutions' ys, status and stats."""
    assert a.ys.dtype == b.ys.dtype, what
    assert np.array_equal(a.ys, b.ys, equal_nan=True), f"{what}: ys differ " \
        f"(max diff {np.nanmax(np.abs(a.ys.astype(np.float64) - b.ys)):.3e})"
    assert np.array_equal(a.status, b.status), f"{what}: status {a.status} != {b.status}"
    for k in ("nfev", "steps", "rejected"):
        assert np.array_equal(a.stats[k], b.stats[k]), f"{what}: stats[{k!r}] differ"
