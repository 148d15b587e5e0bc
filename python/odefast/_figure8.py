"""The figure-eight three-body orbit: the Hessian of its non-closure, the symmetries in its
spectrum, Newton refinement, and nearby orbits along its soft directions. The worked example
of Ciceri & Fischbacher, "On backpropagating Hessians through ODEs" (arXiv:2301.08085), and
workload W5; ``python -m odefast figure8`` runs it.

The mathematics, once. Three unit masses in the plane, G = 1 (``odefast.NBody``), state
s = (x1, y1, x2, y2, x3, y3, vx1, ..., vy3), ds/dt = f(s); φ_T(s0) is the state at time T,
M = ∂φ_T/∂s0 the monodromy matrix, d = φ_T(s0) − s0 the miss, and with z = (s0, T)

    L(z)       = |d|²                                            (odefast.losses.Closure)
    ∇_s0 L     = 2 (M − I)ᵀ d,        ∂L/∂T = 2 dᵀ f(φ_T)           (odefast.value_and_grad)
    ∇²_s0 L    = 2 (M − I)ᵀ (M − I) + 2 Σ_k d_k ∇²φ_T,k              (odefast.hessian)
    ∂²L/∂s0∂T  = 2 Mᵀ (f(φ_T) + Df(φ_T)ᵀ d) − 2 f(φ_T)              (odefast.vjp: Mᵀ q)
    ∂²L/∂T²    = 2 |f(φ_T)|² + 2 (Df(φ_T)ᵀ d) · f(φ_T).

The T row and column use ∂φ_T/∂T = f(φ_T), the time derivative of the exact flow (equal to
the computed solution's to the solver tolerance); f and Dfᵀ come from odefast.reference.
Dropping the terms in d gives the Gauss–Newton matrix 2 JᵀJ, J = [M − I, f(φ_T)]; its s0 block
is odefast.hessian of the loss |φ_T(s0) − s0 − d_now|², whose own miss vanishes at s0.

Symmetries. On a closed orbit (d = 0) the Hessian is 2 JᵀJ; its null space is where the orbit
stays closed. Generators (δx_i, δv_i; δT), e a unit vector, J₉₀ the 90° rotation:
    translation  (e, 0; 0)              L is constant along it, for any s0 and T;
    rotation     (J₉₀ x_i, J₉₀ v_i; 0)  L is invariant along it;
    time shift   (f(s0); 0)             moves the start along the orbit;
    scaling      (x_i, −v_i/2; 3T/2)    x → λx, v → λ^(−1/2) v, T → λ^(3/2) T: a symmetry only
                                        with T free;
    boost        (0, e; 0)              not a symmetry: the centre of mass drifts by T e, so
                                        (M − I) maps it to T × translation and Mᵀ maps the
                                        translation to itself + T × boost (momentum is
                                        conserved): an exact eigenvector, eigenvalue 2T².
Near-null: 4 at fixed T (2 translations, rotation, time shift), 5 with T free (+ scaling).
Off a closed orbit 2 Σ d_k ∇²φ_k lifts the rotation and time-shift eigenvalues to O(|∇L|):
an eigenvalue counts as near-null below max(NULL_RTOL · λ_max, NULL_GRAD · |∇L|).

Refinement: Levenberg–Marquardt, restricted to the complement Q (13 × 8, orthonormal) of the
five symmetry directions at the current point, where the Hessian model K is not singular:
δ = −Q (QᵀKQ + μ·max diag(QᵀKQ)·I)⁻¹ Qᵀ∇L; μ starts at 0 (a Newton step), grows ×10 while a
step does not lower L and shrinks ×10 after each accepted step. K is the Gauss–Newton matrix
by default: near the eight |2 Σ d_k ∇²φ_k| ≈ 1750 |d|, which exceeds the soft eigenvalues
(6·10⁻⁴) and makes the exact Hessian indefinite off the symmetries until |d| < ~3·10⁻⁷, so
with K = the exact Hessian the 10⁻³ start of the CLI takes 18 iterations (linear in between)
instead of 7.

Soft directions: the eigenvectors of QᵀHQ with the smallest eigenvalues, the deformations that
cost least non-closure. We step along them, refine again and compare the orbit found with the
figure-eight modulo symmetries: centre of mass at 0, scaled to the figure-eight's energy, then
the distance minimised over the time along the orbit, rotations (closed form in 2-D) and
relabellings of the bodies. T·|E|^(3/2) is a scale-free invariant (Kepler's third law), and so
are the minimum distances × |E| of the three pairs of bodies over a period, which are equal on
a choreography such as the eight.

What it finds (dopri5, 10⁻¹⁰): besides the eight, a second closed orbit 0.016 away modulo
symmetries, with T·|E|^(3/2) larger by 1.6·10⁻⁶ relative, not a choreography (one pair of
bodies comes closer than the other two): reached from most 10⁻³ starts and by steps of
0.01–0.03 along the two softest directions; a distorted figure-eight like the one the paper
attributes to Simó.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

import odefast as of
from .reference._vector_fields import vector_field, vector_field_vjp

X1 = np.array([0.97000436, -0.24308753])       # x1 = -x2, x3 = 0
V3 = np.array([-0.93240737, -0.86473146])      # v1 = v2 = -v3 / 2
PERIOD = 6.32591398
CLOSURE = of.losses.Closure()
J90 = np.array([[0.0, -1.0], [1.0, 0.0]])
NULL_RTOL, NULL_GRAD = 1e-9, 3.0
SYMMETRIES = ("translation", "rotation", "time shift", "scaling")   # the last needs T free


def dynamics() -> of.NBody:
    return of.NBody(masses=[1.0, 1.0, 1.0], dim=2)


def figure_eight() -> np.ndarray:
    """z = (s0, T) of the figure-eight as published (Chenciner & Montgomery 2000), 8 digits."""
    x = np.concatenate([X1, -X1, [0.0, 0.0]])
    v = np.concatenate([-V3 / 2, -V3 / 2, V3])
    return np.concatenate([x, v, [PERIOD]])


def _field(f, s):
    return vector_field(f)(np.zeros(1), s[None], f.params)[0]


def _field_vjp(f, s, a):
    """aᵀ Df(s)."""
    return vector_field_vjp(f)(np.zeros(1), s[None], f.params, a[None])[0][0]


def _split(z):
    return z[:-1], z[-1], np.array([0.0, z[-1]])


def _bodies(s):
    return s[:6].reshape(3, 2), s[6:].reshape(3, 2)


def non_closure(f, z, solve_kw) -> float:
    s, _, t = _split(z)
    d = of.solve(f, s, t, **solve_kw).ys[-1] - s
    return float(d @ d)


def _closure_against(miss):
    """|y(T) − y0 − miss|²: with miss = the current d, its Hessian is the Gauss–Newton matrix."""
    def grad(ys, y0):
        r = ys[-1] - y0 - miss
        g = np.zeros_like(ys)
        g[-1] = 2 * r
        return g, -2 * r
    return of.losses.Custom(lambda ys, y0: np.sum((ys[-1] - y0 - miss) ** 2), grad, CLOSURE.hvp)


def derivatives(f, z, solve_kw, wrt_T=True, gauss_newton=False):
    """(L, ∇L, H) at z = (s0, T): 13 and 13 x 13 (T last), or 12 and 12 x 12 with wrt_T=False
    (T fixed). H is the exact Hessian as computed (not symmetrised), or with gauss_newton=True
    the Gauss–Newton matrix 2 JᵀJ."""
    s, _, t = _split(z)
    L, grad = of.value_and_grad(f, s, t, CLOSURE, **solve_kw)
    y = grad.solution.ys[-1]
    d = y - s
    loss = _closure_against(d) if gauss_newton else CLOSURE
    H_ss = of.hessian(f, s, t, loss, wrt="y0", **solve_kw)
    if not wrt_T:
        return L, grad.y0, H_ss
    fy = _field(f, y)
    dDf = np.zeros_like(fy) if gauss_newton else _field_vjp(f, y, d)     # Df(φ_T)ᵀ d
    cot = np.zeros((2, s.size))
    cot[-1] = 2 * (fy + dDf)
    H_sT = of.vjp(f, s, t, cot, **solve_kw).y0 - 2 * fy
    H_TT = 2 * fy @ fy + 2 * dDf @ fy
    H = np.block([[H_ss, H_sT[:, None]], [H_sT[None, :], np.array([[H_TT]])]])
    return L, np.append(grad.y0, grad.t[-1]), H


def generators(f, z) -> dict:
    """Symmetry (and boost) generators at z = (s0, T): name -> (13, k) columns (δs; δT)."""
    s, T, _ = _split(z)
    x, v = _bodies(s)

    def vec(dx, dv, dT=0.0):
        return np.concatenate([np.broadcast_to(dx, (3, 2)).ravel(),
                               np.broadcast_to(dv, (3, 2)).ravel(), [dT]])

    e = np.eye(2)
    return {"translation": np.stack([vec(e[i], 0.0) for i in range(2)], axis=1),
            "rotation": vec(x @ J90.T, v @ J90.T)[:, None],
            "time shift": np.append(_field(f, s), 0.0)[:, None],
            "scaling": vec(x, -v / 2, 1.5 * T)[:, None],
            "boost": np.stack([vec(0.0, e[i]) for i in range(2)], axis=1)}


def _orth(A):
    return np.linalg.qr(A)[0]


def symmetry_complement(f, z) -> np.ndarray:
    """Orthonormal basis (13, 8) of the complement of the five symmetry directions at z."""
    gens = generators(f, z)
    S = _orth(np.concatenate([gens[k] for k in SYMMETRIES], axis=1))
    return np.linalg.svd(np.eye(z.size) - S @ S.T)[0][:, : z.size - S.shape[1]]


@dataclass
class Spectrum:
    """Eigen-decomposition of a symmetrised Hessian, each eigenvector's overlap (norm of its
    projection) with each generator group, and how much of each group lies in the near-null
    eigenspace (the smallest cosine of the principal angles)."""
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    near_null: np.ndarray              # (n,) bool
    overlaps: dict                     # group -> (n,)
    in_null_space: dict                # group -> float
    asymmetry: float                   # max |H − Hᵀ| / max |H|

    def best_match(self, k):
        name = max(self.overlaps, key=lambda g: self.overlaps[g][k])
        return name, float(self.overlaps[name][k])


def spectrum(f, z, H, grad) -> Spectrum:
    """The Spectrum of H (12 x 12, T fixed, or 13 x 13) at z; grad = ∇L sets the near-null
    threshold."""
    n = H.shape[0]
    lam, U = np.linalg.eigh((H + H.T) / 2)
    null = np.abs(lam) < max(NULL_RTOL * np.abs(lam).max(), NULL_GRAD * np.linalg.norm(grad))
    bases = {name: _orth(G[:n]) for name, G in generators(f, z).items()}
    return Spectrum(lam, U, null,
                    {name: np.linalg.norm(B.T @ U, axis=0) for name, B in bases.items()},
                    {name: float(np.linalg.svd(U[:, null].T @ B, compute_uv=False).min(initial=1.0)
                                 if null.any() else 0.0) for name, B in bases.items()},
                    float(np.abs(H - H.T).max() / np.abs(H).max()))


@dataclass
class Refinement:
    z: np.ndarray
    K: np.ndarray                                 # the Hessian model at z
    history: list = field(default_factory=list)   # (iteration, L, |step|, mu)
    converged: bool = False


def refine(f, z, solve_kw, target=1e-12, max_iter=30, gauss_newton=True) -> Refinement:
    """Levenberg–Marquardt on L(s0, T) off the symmetry directions (module docstring). Runs
    until L <= target and an iteration no longer lowers L by 1000x, no step lowers L, or
    max_iter iterations."""
    z = np.array(z, dtype=np.float64)
    L, g, K = derivatives(f, z, solve_kw, gauss_newton=gauss_newton)
    out = Refinement(z, K, [(0, L, 0.0, 0.0)])
    mu = 0.0
    for it in range(1, max_iter + 1):
        Q = symmetry_complement(f, z)
        Kr, gr = Q.T @ ((K + K.T) / 2) @ Q, Q.T @ g
        scale = np.abs(np.diag(Kr)).max()
        while mu < 1e8:
            step = -Q @ np.linalg.solve(Kr + mu * scale * np.eye(Kr.shape[0]), gr)
            L_new = non_closure(f, z + step, solve_kw)
            if L_new < L:
                break
            mu = max(10 * mu, 1e-8)
        else:
            break
        z, mu, L_old = z + step, (mu / 10 if mu > 1e-8 else 0.0), L
        L, g, K = derivatives(f, z, solve_kw, gauss_newton=gauss_newton)
        out.z, out.K = z, K
        out.history.append((it, L, float(np.linalg.norm(step)), mu))
        if L <= target and L > 1e-3 * L_old:
            break
    out.converged = out.history[-1][1] <= target
    return out


def soft_directions(f, z, H, count=2):
    """The `count` softest eigenpairs (λ, unit 13-vector) of H off the symmetry directions."""
    Q = symmetry_complement(f, z)
    lam, W = np.linalg.eigh(Q.T @ ((H + H.T) / 2) @ Q)
    U = Q @ W[:, :count]
    U *= np.sign(U[np.abs(U).argmax(axis=0), range(count)])    # sign: largest entry positive
    return [(float(lam[k]), U[:, k]) for k in range(count)]


def _normalised(f, z, E_ref):
    """z with the centre of mass at 0, scaled (x → λx, v → λ^(-1/2) v, T → λ^(3/2) T) to
    energy E_ref."""
    s, T, _ = _split(z)
    x, v = _bodies(s)
    lam = float(f.energy(s)) / E_ref
    return np.concatenate([(lam * (x - x.mean(axis=0))).ravel(), (v / np.sqrt(lam)).ravel(),
                           [lam ** 1.5 * T]])


def _aligned_distance(states, ref):
    """min over rotations (closed form) and body relabellings of |R a − ref| for each of the
    states a (N, 12): (N,) distances."""
    b = ref.reshape(2, 3, 2)
    best = np.full(states.shape[0], np.inf)
    for perm in itertools.permutations(range(3)):
        a = states.reshape(-1, 2, 3, 2)[:, :, perm]
        theta = np.arctan2(np.einsum("npk,pk->n", a[..., 0], b[..., 1])
                           - np.einsum("npk,pk->n", a[..., 1], b[..., 0]),
                           np.einsum("npkc,pkc->n", a, b))
        c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        rotated = np.stack([c * a[..., 0] - s * a[..., 1], s * a[..., 0] + c * a[..., 1]], -1)
        best = np.minimum(best, np.sqrt(np.sum((rotated - b) ** 2, axis=(1, 2, 3))))
    return best


def distance_modulo_symmetries(f, z, z_ref, solve_kw, samples=2000) -> float:
    """min over the time along the orbit z, rotations and relabellings of the distance of the
    normalised states (_normalised) to the normalised start of z_ref."""
    E_ref = float(f.energy(z_ref[:-1]))
    ref = _normalised(f, z_ref, E_ref)[:-1]
    s, T, _ = _split(_normalised(f, z, E_ref))

    def at(tau):
        return _aligned_distance(of.solve(f, s, np.array([0.0, tau]), **solve_kw).ys[-1:], ref)[0]

    taus = np.linspace(0.0, T, samples + 1)
    on_grid = _aligned_distance(of.solve(f, s, taus, **solve_kw).ys, ref)
    k = int(np.argmin(on_grid))
    centre = taus[k] if k > 0 else T                     # τ = 0 and τ = T are the same state
    lo, hi = centre - T / samples, centre + T / samples
    for _ in range(40):                                  # golden-section search in τ
        m1, m2 = hi - 0.618034 * (hi - lo), lo + 0.618034 * (hi - lo)
        lo, hi = (lo, m2) if at(m1) < at(m2) else (m1, hi)
    return float(min(at((lo + hi) / 2), on_grid[k]))


def invariants(f, z, solve_kw, samples=4000) -> dict:
    """Period T, energy E, angular momentum ℓ, the scale-free T|E|^(3/2), and the scale-free
    minimum distance × |E| of each pair of bodies over one period (sorted)."""
    s, T, _ = _split(z)
    x, v = _bodies(s)
    E = float(f.energy(s))
    X = of.solve(f, s, np.linspace(0.0, T, samples + 1), **solve_kw).ys[:, :6].reshape(-1, 3, 2)
    pairs = sorted(float(np.linalg.norm(X[:, i] - X[:, j], axis=1).min()) * abs(E)
                   for i, j in ((0, 1), (0, 2), (1, 2)))
    return {"T": float(T), "E": E, "ell": float(np.sum(x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0])),
            "T|E|^1.5": float(T) * abs(E) ** 1.5, "pair distances": pairs}


def can_plot() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(path, f, orbits, spectra, solve_kw) -> bool:
    """The orbits (label -> z) and the spectra (label -> eigenvalues) to a PNG; False without
    matplotlib."""
    if not can_plot():
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(orbits) + 1, figsize=(5 * (len(orbits) + 1), 4.5))
    for ax, (label, z) in zip(axes, orbits.items()):
        s, T, _ = _split(z)
        X = of.solve(f, s, np.linspace(0.0, T, 1001), **solve_kw).ys[:, :6].reshape(-1, 3, 2)
        for i in range(3):
            line, = ax.plot(X[:, i, 0], X[:, i, 1], lw=1, label=f"body {i + 1}")
            ax.plot(*X[0, i], "o", color=line.get_color())
        ax.set(title=f"{label} (T = {T:.6f})", aspect="equal")
        ax.legend(fontsize=7)
    for label, lam in spectra.items():
        axes[-1].semilogy(np.arange(1, lam.size + 1), np.sort(np.abs(lam)), "o-", label=label)
    axes[-1].set(title="Hessian of L(s0, T): |eigenvalues|", xlabel="index", ylabel="|eigenvalue|")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
