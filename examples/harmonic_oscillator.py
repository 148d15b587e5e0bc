"""Hessian of orbit non-closure for a higher-dimensional harmonic oscillator, against its
closed form (the pedagogical example of Ciceri & Fischbacher, arXiv:2301.08085).

    dz/dt = A z,   z = (q, p) in R^(2n),   A = [[0, I], [-Omega^2, 0]],   Omega = diag(omega_k).

The flow is linear, z(T) = M z0 with M = expm(A T), so the non-closure
L(z0) = |z(T) - z0|^2 = |(M - I) z0|^2 has the same Hessian at every z0,

    d^2 L / dz0^2 = 2 (M - I)^T (M - I),

whose null space holds the oscillators that close, omega_k T in 2 pi Z. odefast.hessian computes it
with the second-order adjoint through a dopri5 solve of odefast.Linear(A); M comes from
scipy.linalg.expm when SciPy is installed, else from NumPy's eigendecomposition of A.

Run it:  python examples/harmonic_oscillator.py [--omega 1 1.4142 2] [--T 6.2832] [--rtol 1e-12]
or from Python:  ``from harmonic_oscillator import main; max_error = main(verbose=False)``.
"""
from __future__ import annotations

import argparse

import numpy as np

import odefast as of


def expm(A: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import expm as scipy_expm
    except ImportError:
        lam, V = np.linalg.eig(A)                 # A is diagonalisable (distinct omega_k > 0)
        return (V @ np.diag(np.exp(lam)) @ np.linalg.inv(V)).real
    return scipy_expm(A)


def main(omega=(1.0, np.sqrt(2.0), 2.0), T=2 * np.pi, rtol=1e-12, verbose=True) -> float:
    """Print odefast's Hessian, the closed form and their difference; return max |difference|."""
    n = len(omega)
    A = np.block([[np.zeros((n, n)), np.eye(n)], [-np.diag(np.square(omega)), np.zeros((n, n))]])
    z0 = np.random.default_rng(0).standard_normal(2 * n)   # any z0: the Hessian is constant
    H = of.hessian(of.Linear(A), z0, np.array([0.0, T]), of.losses.Closure(),
                   method="dopri5", rtol=rtol, atol=rtol)
    M = expm(A * T)
    H_exact = 2 * (M - np.eye(2 * n)).T @ (M - np.eye(2 * n))
    error = float(np.max(np.abs(H - H_exact)))
    if verbose:
        np.set_printoptions(precision=6, suppress=True, linewidth=120)
        print(f"omega = {np.round(omega, 6).tolist()}, T = {T:.6f}, dopri5 rtol = atol = {rtol:g}")
        print("odefast.hessian:\n", H)
        print("closed form 2 (M - I)^T (M - I), M = expm(A T):\n", H_exact)
        print("eigenvalues:", np.linalg.eigvalsh(H_exact))
        print("closing oscillators (omega T in 2 pi Z):",
              [w for w in omega if abs(np.sin(w * T / 2)) < 1e-9] or "none")
        print(f"max |odefast - closed form| = {error:.3e}")
    return error


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--omega", type=float, nargs="+", default=[1.0, np.sqrt(2.0), 2.0])
    parser.add_argument("--T", type=float, default=2 * np.pi, help="period of the closure test")
    parser.add_argument("--rtol", type=float, default=1e-12, help="dopri5 rtol = atol")
    args = parser.parse_args()
    main(args.omega, args.T, args.rtol)
