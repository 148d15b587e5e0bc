"""Fit a neural ODE to observed trajectories of a damped spiral (the classic exercise).

The "unknown" system is the cubic spiral of Chen et al.'s demo (torchdiffeq's ``ode_demo.py``)

    dz/dt = A z**3,   A = [[-0.1, 2.0], [-2.0, -0.1]]   (z**3 elementwise),

observed at a few times along trajectories from several initial states. A small MLP vector
field f(z; theta) (2 -> 16 -> 2, tanh) is fitted to the observations by gradient descent
(Adam, written out in NumPy) on

    L(theta) = mean over times, trajectories and components of (z(t_i; theta) - z_obs(t_i))**2

with ``odefast.value_and_grad(f, y0, t, odefast.losses.MSE(targets), params=theta)``: one
forward solve of the whole batch and one adjoint pass (the default, exact discrete adjoint
"checkpoint") per iteration.

Run it:  python examples/fit_neural_ode.py [--iterations 300] [--seed 0]
or from Python:  ``from fit_neural_ode import main; history = main(iterations=50)``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import odefast as of

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def true_dynamics() -> of.PythonDynamics:
    """The system that generates the data (written in NumPy; never seen by the model)."""
    return of.PythonDynamics(lambda t, y, p: (y ** 3) @ A_TRUE.T)


def make_data(n_traj=16, n_obs=8, horizon=1.5, seed=0):
    """Observations of the true system: (y0 (B, 2), t (n_obs,), targets (n_obs, B, 2)).

    Initial states are drawn on the annulus 0.5 <= |z| <= 2 (where the spiral lives)."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.5, 2.0, n_traj)
    phi = rng.uniform(0.0, 2 * np.pi, n_traj)
    y0 = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    t = np.linspace(0.0, horizon, n_obs)
    sol = of.solve(true_dynamics(), y0, t, method="dopri5", rtol=1e-8, atol=1e-10)
    return y0, t, sol.ys


class Adam:
    """Adam (Kingma & Ba 2015) on a flat parameter vector."""

    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = self.v = None
        self.k = 0

    def step(self, theta, grad):
        if self.m is None:
            self.m, self.v = np.zeros_like(theta), np.zeros_like(theta)
        self.k += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1 ** self.k)
        v_hat = self.v / (1 - self.beta2 ** self.k)
        return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def main(iterations=300, seed=0, hidden=16, lr=5e-2, print_every=25, n_traj=16, n_obs=8,
         horizon=1.5, verbose=True):
    """Fit the MLP; returns the loss history (one value per iteration, before the update)."""
    y0, t, targets = make_data(n_traj=n_traj, n_obs=n_obs, horizon=horizon, seed=seed)
    model = of.MLP([2, hidden, 2], activation="tanh", seed=seed)
    loss = of.losses.MSE(targets)
    theta = model.params.copy()
    opt = Adam(lr=lr)
    history = []
    start = time.perf_counter()
    for it in range(iterations):
        value, g = of.value_and_grad(model, y0, t, loss, params=theta, method="dopri5",
                                     rtol=1e-6, atol=1e-8)
        history.append(value)
        if verbose and (it % print_every == 0 or it == iterations - 1):
            print(f"iter {it:4d}  loss {value:.6f}  |grad| {np.linalg.norm(g.params):.3e}  "
                  f"({time.perf_counter() - start:.2f} s)")
        theta = opt.step(theta, g.params)
    model.params = theta
    if verbose:
        print(f"loss {history[0]:.5f} -> {history[-1]:.5f} "
              f"({history[0] / history[-1]:.1f}x lower) in {iterations} iterations, "
              f"{time.perf_counter() - start:.2f} s")
        # held out: fresh initial states, same observation times
        y0_new, _, targets_new = make_data(n_traj=n_traj, n_obs=n_obs, horizon=horizon,
                                           seed=seed + 1000)
        pred = of.solve(model, y0_new, t, method="dopri5", rtol=1e-6, atol=1e-8).ys
        print(f"held-out trajectories: MSE {np.mean((pred - targets_new) ** 2):.5f}")
    return history


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-2)
    args = ap.parse_args()
    main(iterations=args.iterations, seed=args.seed, hidden=args.hidden, lr=args.lr)


if __name__ == "__main__":
    _cli()
