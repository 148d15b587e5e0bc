"""Peak memory of a gradient against the number of steps (issue: gradients).

adjoint="checkpoint" records every accepted step of every trajectory (t, h and the state), so
its memory grows with the number of steps; adjoint="backsolve" (the continuous adjoint)
integrates the augmented system backwards and keeps only the current state: its memory does
not depend on the number of steps. Each case runs in a fresh process and reports its peak
resident memory (ru_maxrss) above the resident memory just before the gradient call.

Case: an ensemble of harmonic oscillators dz/dt = A z (A a rotation generator; odefast.Linear),
float64, dopri5 at rtol = atol = 1e-8, cotangent 1 on z(T), for horizons T = 1 .. 64 periods
(the number of steps grows linearly with T). A chaotic system is a poor test here: backsolve
re-integrates the state backwards and diverges from it on long horizons (see the README).

    python benchmarks/memory.py [--batch 2000] [--horizons 1,4,16,64]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def one_case(batch: int, horizon: float, adjoint: str) -> dict:
    """Runs in the child process: one vjp, its peak memory above the baseline."""
    import numpy as np
    import odefast as of

    f = of.Linear(np.array([[0.0, 2 * np.pi], [-2 * np.pi, 0.0]]))  # period 1
    y0 = np.random.RandomState(0).standard_normal((batch, 2))
    t = np.array([0.0, horizon])
    cot = np.zeros((2, batch, 2))
    cot[-1] = 1.0
    kw = dict(method="dopri5", rtol=1e-8, atol=1e-8)
    of.vjp(f, y0, np.array([0.0, 0.01]), np.zeros((2, batch, 2)), adjoint=adjoint, **kw)  # warm-up
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steps = of.solve(f, y0, t, **kw).stats["steps"]
    base_kib = max(base_kib, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    g = of.vjp(f, y0, t, cot, adjoint=adjoint, on_failure="raise", **kw)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the exact gradient: z(T) = expm(A T) z0, dL/dz0 = expm(A T)^T 1 (a rotation by -2 pi T)
    c, s = np.cos(2 * np.pi * horizon), np.sin(2 * np.pi * horizon)
    exact = np.array([c - s, s + c])
    return {"max_grad_error": float(np.max(np.abs(g.y0 - exact))), "adjoint": adjoint, "T": horizon, "batch": batch,
            "mean_steps": float(np.mean(steps)), "extra_peak_mib": (peak_kib - base_kib) / 1024.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--horizons", default="1,4,16,64")
    ap.add_argument("--child", nargs=3, metavar=("BATCH", "T", "ADJOINT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_case(int(args.child[0]), float(args.child[1]), args.child[2])))
        return
    print(f"{'adjoint':<11} {'T':>5} {'steps/traj':>11} {'extra peak MiB':>15} {'max |grad error|':>17}")
    for adjoint in ("checkpoint", "backsolve"):
        for horizon in (float(h) for h in args.horizons.split(",")):
            out = subprocess.run([sys.executable, __file__, "--child", str(args.batch), str(horizon), adjoint],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['adjoint']:<11} {r['T']:>5g} {r['mean_steps']:>11.1f} {r['extra_peak_mib']:>15.1f} "
                  f"{r['max_grad_error']:>17.1e}")


if __name__ == "__main__":
    main()
