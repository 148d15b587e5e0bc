"""The Hessian of the figure-eight three-body orbit's non-closure, in a few lines of odefast.

    L(s0) = |s(T; s0) - s0|^2,   s = (x1, y1, x2, y2, x3, y3, vx1, ..., vy3),

for three unit masses in the plane (G = 1) on the Chenciner-Montgomery figure-eight. On a closed
orbit the Hessian is 2 (M - I)^T (M - I), M = ds(T)/ds0: it vanishes along the continuous
symmetries that keep the orbit closed (translations, rotation, time shift), while a Galilean
boost is an exact eigenvector with eigenvalue 2 T^2 (the centre of mass drifts by T x boost).

`python -m odefast figure8` goes further: the symmetry table, the refinement of (s0, T) by
Levenberg-Marquardt, and the nearby closed orbits along the soft directions of the spectrum.

Run it:  python examples/figure8.py
"""
import numpy as np

import odefast as of

f = of.NBody(masses=[1.0, 1.0, 1.0], dim=2)
x1, v3 = np.array([0.97000436, -0.24308753]), np.array([-0.93240737, -0.86473146])
s0 = np.concatenate([x1, -x1, [0.0, 0.0], -v3 / 2, -v3 / 2, v3])
T = 6.32591398
kw = dict(method="dopri5", rtol=1e-10, atol=1e-10)

L, grad = of.value_and_grad(f, s0, np.array([0.0, T]), of.losses.Closure(), **kw)
H = of.hessian(f, s0, np.array([0.0, T]), of.losses.Closure(), **kw)
lam, U = np.linalg.eigh((H + H.T) / 2)
print(f"non-closure L = {L:.3e}, dL/dT = {grad.t[-1]:.3e}, max |H - H^T| = {np.abs(H - H.T).max():.1e}")
print("eigenvalues of the Hessian:", np.array2string(lam, precision=4))

x, v = s0[:6].reshape(3, 2), s0[6:].reshape(3, 2)
rot90 = np.array([[0.0, -1.0], [1.0, 0.0]])
h = 1e-4                                    # time shift: f(s0), by central differences of solves
f_s0 = (of.solve(f, s0, np.array([0.0, h]), **kw).ys[-1]
        - of.solve(f, s0, np.array([0.0, -h]), **kw).ys[-1]) / (2 * h)
generators = {
    "translation x": np.r_[np.tile([1.0, 0.0], 3), np.zeros(6)],
    "translation y": np.r_[np.tile([0.0, 1.0], 3), np.zeros(6)],
    "rotation": np.r_[(x @ rot90.T).ravel(), (v @ rot90.T).ravel()],
    "time shift": f_s0,
    "boost x": np.r_[np.zeros(6), np.tile([1.0, 0.0], 3)],
}
print(f"\n{'generator g':14s} {'g.Hg / g.g':>11s} {'share in the 4 softest eigenvectors':>36s}")
for name, gen in generators.items():
    gen = gen / np.linalg.norm(gen)
    print(f"{name:14s} {gen @ H @ gen:11.3e} {np.linalg.norm(U[:, :4].T @ gen):36.4f}")
print(f"(2 T^2 = {2 * T * T:.4f}: the boost's eigenvalue)")
