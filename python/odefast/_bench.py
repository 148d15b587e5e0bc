"""``python -m odefast bench``: the standard workloads, small, odefast against its NumPy oracle.

A compact, installed-package version of ``benchmarks/run.py --quick --no-peers`` (workloads of
WORKLOADS.md, the benchmarks' spec): it needs nothing outside the package, so it runs wherever
odefast is installed. The full suite — all sizes, peers (torchdiffeq, torchode, diffrax), JSONL
records — is ``python benchmarks/run.py`` in a source checkout.

    W1  MLP 2 -> 64 -> 64 -> 2 (tanh), RK4 with 100 steps on [0, 1]
    W2  the same MLP, dopri5 rtol 1e-6 atol 1e-8, 11 outputs
    W3  value and gradient of mean((z(1) - target)**2), dopri5, both adjoints
    W4  Lorenz ensemble, rho = linspace(0, 28, B) per trajectory, dopri5 rtol = atol = 1e-8
    W5  12 x 12 Hessian of the figure-eight orbit's non-closure, dopri5 rtol = atol = 1e-10

Each time is the median of repeated calls after a warm-up. The NumPy reference is timed once, on
at most ``ref_batch`` trajectories, and scaled to the full batch ("~" in the table).
"""
from __future__ import annotations

import time

import numpy as np

import odefast as of


def _median(fn, repeats: int, budget: float = 1.0) -> float:
    fn()  # warm-up
    times: list = []
    t_end = time.perf_counter() + budget
    while len(times) < repeats and (not times or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def workload_mlp(dtype="float64") -> of.MLP:
    """The W1-W3 MLP of WORKLOADS.md: Glorot-uniform weights x 2 from RandomState(0), zero
    biases."""
    rng = np.random.RandomState(0)
    weights, biases = [], []
    for fan_in, fan_out in [(2, 64), (64, 64), (64, 2)]:
        a = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append((rng.uniform(-a, a, size=(fan_out, fan_in)) * 2.0).astype(dtype))
        biases.append(np.zeros(fan_out, dtype))
    return of.MLP.from_weights(weights, biases, activation="tanh")


def _z0(B, dtype="float64"):
    return np.random.RandomState(1).uniform(-1.0, 1.0, size=(B, 2)).astype(dtype)


class _Row:
    def __init__(self, name, t_fast, t_ref, scaled, diff, nfev):
        self.name, self.t_fast, self.t_ref, self.scaled = name, t_fast, t_ref, scaled
        self.diff, self.nfev = diff, nfev


def _solve_row(name, f, y0, t, kw, repeats, ref_batch, params=None) -> _Row:
    B = y0.shape[0]
    sol = of.solve(f, y0, t, params=params, **kw)
    t_fast = _median(lambda: of.solve(f, y0, t, params=params, **kw), repeats)
    b = min(B, ref_batch)
    p_ref = None if params is None else params[:b]
    ref: list = []
    t_ref = _once(lambda: ref.append(of.reference.solve(f, y0[:b], t, params=p_ref, **kw))) * B / b
    diff = float(np.max(np.abs(sol.ys[:, :b] - ref[0].ys)))
    return _Row(name, t_fast, t_ref, b < B, diff, float(sol.stats["nfev"].mean()))


def run(repeats: int = 5, ref_batch: int = 64, hessian: bool = True):
    """The rows of the table: list of _Row (times in seconds)."""
    rows = []
    t1 = np.array([0.0, 1.0])
    for B, dtype in ((64, "float64"), (4096, "float32")):       # W1
        f = workload_mlp(dtype)
        rows.append(_solve_row(f"W1 MLP rk4 x100, B={B} {dtype}", f, _z0(B, dtype),
                               t1.astype(dtype), dict(method="rk4", dt=0.01), repeats, ref_batch))
    f = workload_mlp()
    B = 256                                                       # W2
    rows.append(_solve_row(f"W2 MLP dopri5, B={B} float64", f, _z0(B), np.linspace(0, 1, 11),
                           dict(method="dopri5", rtol=1e-6, atol=1e-8), repeats, ref_batch))
    target = np.random.RandomState(2).uniform(-1.0, 1.0, size=(B, 2))   # W3
    targets = np.stack([np.zeros_like(target), target])   # ys = (z(0), z(1)); z(0) weighs 0
    z0 = _z0(B)
    b = min(B, ref_batch)
    # mean over the B x 2 entries of z(1); the reference's batch of b keeps the same weight per
    # trajectory (1 / B), so that its gradients and its adaptive steps are the same
    loss = of.losses.MSE(targets, weights=np.array([0.0, 2.0])[:, None, None])
    loss_b = of.losses.MSE(targets[:, :b], weights=np.array([0.0, 2.0 * b / B])[:, None, None])
    for adjoint in ("checkpoint", "backsolve"):
        kw = dict(method="dopri5", rtol=1e-6, atol=1e-8, adjoint=adjoint)
        _, g = of.value_and_grad(f, z0, t1, loss, **kw)
        t_fast = _median(lambda kw=kw: of.value_and_grad(f, z0, t1, loss, **kw), repeats)
        ref: list = []
        t_ref = _once(lambda kw=kw, ref=ref: ref.append(
            of.reference.value_and_grad(f, z0[:b], t1, loss_b, **kw)))
        diff = float(np.max(np.abs(g.y0[:b] - ref[0][1].y0)))
        rows.append(_Row(f"W3 MLP value+grad {adjoint}, B={B}", t_fast, t_ref * B / b, b < B, diff,
                         float(g.solution.stats["nfev"].mean())))
    B = 1000                                                      # W4
    params = np.tile([10.0, 28.0, 8.0 / 3.0], (B, 1))
    params[:, 1] = np.linspace(0.0, 28.0, B)
    rows.append(_solve_row(f"W4 Lorenz ensemble dopri5, B={B}", of.Lorenz(),
                           np.tile([1.0, 0.0, 0.0], (B, 1)), t1,
                           dict(method="dopri5", rtol=1e-8, atol=1e-8), repeats, ref_batch,
                           params=params))
    if hessian:                                                   # W5
        from . import _figure8 as F8
        bodies, z = F8.dynamics(), F8.figure_eight()
        s0, T = z[:-1], z[-1]
        kw = dict(method="dopri5", rtol=1e-10, atol=1e-10)
        H = of.hessian(bodies, s0, [0.0, T], of.losses.Closure(), **kw)
        t_fast = _median(lambda: of.hessian(bodies, s0, [0.0, T], of.losses.Closure(), **kw),
                         max(1, repeats // 2))
        lam = np.linalg.eigvalsh((H + H.T) / 2).max()
        rows.append(_Row(f"W5 figure-eight Hessian 12x12 (max eig {lam:.2f})", t_fast,
                         float("nan"), False, float("nan"), float("nan")))
    return rows


def _ms(s: float) -> str:
    return "-" if not np.isfinite(s) else (f"{s * 1e3:9.2f} ms" if s < 10 else f"{s:9.2f} s ")


def bench(args) -> int:
    """The command: print the table."""
    if args.threads is not None:
        of.set_num_threads(args.threads)
    info = of.build_info()
    print(f"odefast {of.__version__} ({info['compiler']}), {of.get_num_threads()} CPU threads; "
          f"median of up to {args.repeats} calls after a warm-up")
    clock = time.perf_counter()
    rows = run(repeats=args.repeats, ref_batch=args.ref_batch, hessian=not args.no_hessian)
    print(f"\n{'workload':48s} {'odefast':>12s} {'NumPy ref':>13s} {'speed-up':>9s} "
          f"{'max |diff|':>11s} {'nfev/traj':>9s}")
    for r in rows:
        ref = ("~" if r.scaled else " ") + _ms(r.t_ref).rjust(12) if np.isfinite(r.t_ref) else \
            "not timed".rjust(13)
        speed = f"{r.t_ref / r.t_fast:8.0f}x" if np.isfinite(r.t_ref) else " " * 9
        diff = f"{r.diff:11.1e}" if np.isfinite(r.diff) else " " * 11
        nfev = f"{r.nfev:9.0f}" if np.isfinite(r.nfev) else " " * 9
        print(f"{r.name:48s} {_ms(r.t_fast):>12s} {ref} {speed} {diff} {nfev}")
    print(f"\n~ : the NumPy reference ran once on {args.ref_batch} trajectories, scaled to the "
          "batch; max |diff| is over those (W3: of dL/dz0).")
    print("The full suite (all sizes, peers, JSONL records) is `python benchmarks/run.py` in a "
          f"source checkout. Total {time.perf_counter() - clock:.1f} s.")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time the standard workloads (small sizes) against the "
                                     "NumPy reference and print the table",
                       description="The standard workloads W1-W5 at small sizes, odefast "
                                   "against its NumPy reference (the full suite with peers is "
                                   "benchmarks/run.py in a source checkout).")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    p.add_argument("--ref-batch", type=int, default=64,
                   help="trajectories the NumPy reference runs, scaled to the batch (default 64)")
    p.add_argument("--threads", type=int, help="CPU threads (default: odefast's)")
    p.add_argument("--no-hessian", action="store_true", help="skip W5 (the figure-eight Hessian)")
    p.set_defaults(func=bench)
