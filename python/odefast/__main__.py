"""Command line: ``python -m odefast demo`` (more commands arrive with later releases)."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def demo(args) -> int:
    import odefast as of

    print(f"odefast {of.__version__} — backends {of.backends()}, {of.get_num_threads()} CPU threads")
    rows = []

    # 1. Lorenz ensemble: every trajectory has its own rho, its own adaptive steps.
    B = args.batch
    params = np.tile([10.0, 28.0, 8.0 / 3.0], (B, 1))
    params[:, 1] = np.linspace(0.0, 28.0, B)
    y0 = np.tile([1.0, 0.0, 0.0], (B, 1))
    t = np.array([0.0, 1.0])
    f = of.Lorenz()
    kw = dict(method="dopri5", rtol=1e-8, atol=1e-8, params=params)
    sol = of.solve(f, y0, t, **kw)
    ref_B = min(B, 200)
    ref = of.reference.solve(f, y0[:ref_B], t, method="dopri5", rtol=1e-8, atol=1e-8, params=params[:ref_B])
    err = np.max(np.abs(sol.ys[:, :ref_B] - ref.ys))
    t_fast = _median_time(lambda: of.solve(f, y0, t, **kw), args.repeats)
    t_ref = _median_time(lambda: of.reference.solve(f, y0[:ref_B], t, method="dopri5", rtol=1e-8,
                                                    atol=1e-8, params=params[:ref_B]), 1) * B / ref_B
    rows.append((f"Lorenz ensemble dopri5, B={B}", t_fast, t_ref, err, sol.stats["nfev"].mean()))

    # 2. MLP neural ODE (2 -> 64 -> 64 -> 2, tanh), classical RK4 with 100 steps.
    mlp = of.MLP([2, 64, 64, 2], seed=0)
    z0 = np.random.default_rng(1).uniform(-1, 1, size=(args.mlp_batch, 2))
    kw = dict(method="rk4", dt=0.01)
    sol = of.solve(mlp, z0, t, **kw)
    ref = of.reference.solve(mlp, z0, t, **kw)
    err = np.max(np.abs(sol.ys - ref.ys))
    t_fast = _median_time(lambda: of.solve(mlp, z0, t, **kw), args.repeats)
    t_ref = _median_time(lambda: of.reference.solve(mlp, z0, t, **kw), 1)
    rows.append((f"MLP neural ODE rk4 x100, B={args.mlp_batch}", t_fast, t_ref, err, sol.stats["nfev"].mean()))

    print(f"\n{'workload':38s} {'odefast':>11s} {'NumPy ref':>11s} {'speed-up':>9s} {'max |diff|':>11s} {'nfev':>7s}")
    for name, tf, tr, e, nfev in rows:
        print(f"{name:38s} {tf * 1e3:9.2f}ms {tr * 1e3:9.1f}ms {tr / tf:8.0f}x {e:11.2e} {nfev:7.0f}")
    print("\n(NumPy reference timed on min(B, 200) trajectories and scaled to B for the ensemble.)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m odefast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="solve a Lorenz ensemble and an MLP neural ODE; time them "
                                    "against the NumPy reference")
    p.add_argument("--batch", type=int, default=10000, help="Lorenz ensemble size (default 10000)")
    p.add_argument("--mlp-batch", type=int, default=256, help="MLP batch size (default 256)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
