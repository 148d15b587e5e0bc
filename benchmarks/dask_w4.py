"""W4 (Lorenz ensemble, dopri5, float64) on Dask: odefast.dask against a plain odefast.solve.

    python benchmarks/dask_w4.py [--batch 1000000] [--repeats 7] [--wait-idle 900]
                                 [--max-load 0.5] [--chunks auto] [--out results.jsonl]

W4 exactly as in shared/WORKLOADS.md (the inputs come from benchmarks/workloads.py): sigma = 10,
beta = 8/3, rho = linspace(0, 28, B) per trajectory, z0 = (1, 0, 0), t in [0, 1] with the
output at t = 1, dopri5 with rtol = atol = 1e-8, float64 — here at B = 10^6 (``--batch`` to
shrink it). Timed after one warm-up call each, median of ``--repeats`` calls:

* ``plain``: ``odefast.solve`` of the whole batch in this process on 1 odefast thread;
* ``dask 1 worker`` / ``dask 2 workers``: ``odefast.dask.solve_ensemble(..., client=client,
  compute=True)`` on a ``LocalCluster`` of 1 or 2 single-threaded workers, from the NumPy
  inputs in this process to the NumPy Solution back in this process (graph, shipping inputs
  and results included), with worker processes and with worker threads (``processes=False``:
  the workers share this process — Dask's advice on one machine for code that releases the
  GIL, as the core does — and no data moves between processes);
* ``dask 2 workers, reduced on the cluster`` (worker processes): the same ensemble reduced on
  the cluster (``sol.ys[-1].mean(axis=0)`` and the failure count): nothing per-trajectory
  comes back, the pattern for ensembles too big for one machine.

Each repeat visits every case in turn (plain, 1 worker, 2 workers, ...), so that a drifting
machine disturbs them alike. Only the timed case's cluster is up, started afresh and warmed up
by one call, whose result is checked bitwise against the plain solve. The targets of issue 7:
the Dask path on 1 worker within 10% of the plain solve, 2 workers >= 1.8x faster than 1
worker (on 2 cores). Before measuring it waits (up to ``--wait-idle`` s) until the 1-minute load average is
under ``--max-load``, and it reports the load average before and after every series.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "python")
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import workloads as wl  # noqa: E402

try:
    import odefast as of
except ImportError:  # a source tree with the extension built in place
    sys.path.insert(0, SRC)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    import odefast as of
from odefast.dask import solve_ensemble  # noqa: E402


def loadavg() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, wait_s: float) -> tuple:
    """Poll the 1-minute load average until it is under max_load: (load, seconds waited)."""
    t0 = time.monotonic()
    while True:
        load = loadavg()
        waited = time.monotonic() - t0
        if load < max_load or waited >= wait_s:
            return load, waited
        print(f"  waiting for a quiet machine: load average {load:.2f} >= {max_load} "
              f"({waited:.0f}/{wait_s:.0f} s)", flush=True)
        time.sleep(15)


def same(a, b) -> bool:
    return (np.array_equal(a.ys, b.ys) and np.array_equal(a.status, b.status)
            and all(np.array_equal(a.stats[k], b.stats[k]) for k in a.stats))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1_000_000, help="B (default 10^6)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--chunks", default="auto", help="'auto' or trajectories per chunk")
    ap.add_argument("--max-load", type=float, default=0.5)
    ap.add_argument("--wait-idle", type=float, default=900.0,
                    help="seconds to wait at most for the load average to drop under --max-load")
    ap.add_argument("--out", default=None, help="append the records to this JSONL file")
    args = ap.parse_args(argv)
    chunks = args.chunks if args.chunks == "auto" else int(args.chunks)

    from distributed import Client, LocalCluster

    # the lazily reduced case submits the NumPy inputs (tens of MB) inside its graph, on purpose
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)

    B = args.batch
    f = of.Lorenz(sigma=wl.LORENZ_SIGMA, beta=wl.LORENZ_BETA)
    y0, params, t = wl.lorenz_z0(B), wl.lorenz_params(B), wl.W4_T
    kw = dict(method="dopri5", rtol=wl.W4_RTOL, atol=wl.W4_ATOL)
    print(f"W4 Lorenz dopri5 float64, B = {B:,}, rtol = atol = {wl.W4_RTOL:g}; "
          f"{os.cpu_count()} cores, odefast {of.__version__}", flush=True)
    load, waited = wait_for_quiet(args.max_load, args.wait_idle)
    print(f"load average {load:.2f} after waiting {waited:.0f} s"
          + ("" if load < args.max_load else f" (NOT under {args.max_load}: numbers disturbed)"),
          flush=True)

    of.set_num_threads(1)
    plain = lambda: of.solve(f, y0, t, params=params, **kw)  # noqa: E731
    ref = plain()

    def on(client):
        return lambda: solve_ensemble(f, y0, t, params=params, chunks=chunks, client=client,
                                      compute=True, **kw)

    def reduced(client):
        def run():
            sol = solve_ensemble(f, y0, t, params=params, chunks=chunks, client=client, **kw)
            return client.compute([sol.ys[-1].mean(axis=0), (sol.status != 0).sum()], sync=True)
        return run

    def cluster(stack, n_workers, processes):
        c = stack.enter_context(LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                             processes=processes, dashboard_address=":0"))
        client = stack.enter_context(Client(c))
        client.wait_for_workers(n_workers)
        return client

    # (cluster: (workers, processes) or None for the plain solve, [(case name, call(client))])
    processes, threads = "worker processes", "worker threads (processes=False)"
    groups = [(None, [("plain odefast.solve, 1 thread", lambda _: plain)]),
              ((1, True), [(f"dask 1 worker, {processes}, NumPy result", on)]),
              ((2, True), [(f"dask 2 workers, {processes}, NumPy result", on),
                           (f"dask 2 workers, {processes}, reduced on the cluster", reduced)]),
              ((1, False), [(f"dask 1 worker, {threads}, NumPy result", on)]),
              ((2, False), [(f"dask 2 workers, {threads}, NumPy result", on)])]
    names = [name for _, cases in groups for name, _ in cases]
    times = {name: [] for name in names}
    loads = {name: [] for name in names}
    n_chunks = {}
    # Each repeat visits every case in turn, so that a machine that drifts (other processes,
    # clock) disturbs them alike; only the timed case's cluster is up (an idle one still costs
    # CPU, in this process for worker threads), each started afresh and warmed up by one call
    # (checked against the plain solve) before the timed one.
    for rep in range(args.repeats):
        for spec, cases in groups:
            with contextlib.ExitStack() as stack:
                client = None if spec is None else cluster(stack, *spec)
                for name, make in cases:
                    fn = make(client)
                    out = fn()
                    if "NumPy" in name:
                        assert same(out, ref), f"{name}: the Dask result differs from the plain solve"
                    elif client is not None:
                        mean, n_failed = out
                        assert np.allclose(mean, ref.ys[-1].mean(axis=0), rtol=1e-12) and n_failed == 0
                    if client is not None:
                        n_chunks[name] = len(solve_ensemble(f, y0, t, params=params, chunks=chunks,
                                                            client=client, **kw).chunks)
                    l0 = loadavg()
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
                    loads[name].append(l0)
        print(f"  repeat {rep + 1}/{args.repeats}: " + ", ".join(
            f"{times[n][-1]:.3f}" for n in names) + f" s (load {loadavg():.2f})", flush=True)
    records = [dict(case=name, median_s=statistics.median(times[name]), times_s=times[name],
                    load_before=min(loads[name]), load_after=max(loads[name]),
                    **({"chunks": n_chunks[name]} if name in n_chunks else {}))
               for name in names]
    plain_s, d1, d2, _, t1, t2 = (r["median_s"] for r in records)
    ratios = {"dask_1_worker_over_plain": d1 / plain_s, "speedup_2_workers_over_1": d1 / d2,
              "plain_over_dask_2_workers": plain_s / d2,
              "threads_1_worker_over_plain": t1 / plain_s, "threads_speedup_2_workers_over_1": t1 / t2}
    print()
    print(f"{'case':70s} {'median s':>9s} {'min s':>7s} {'max s':>7s}  load min/max")
    for r in records:
        print(f"{r['case']:70s} {r['median_s']:9.3f} {min(r['times_s']):7.3f} "
              f"{max(r['times_s']):7.3f}  {r['load_before']:.2f} / {r['load_after']:.2f}")
    print()
    for kind, one, two in (("worker processes", "dask_1_worker_over_plain", "speedup_2_workers_over_1"),
                           ("worker threads", "threads_1_worker_over_plain",
                            "threads_speedup_2_workers_over_1")):
        print(f"{kind}: 1 worker / plain solve {ratios[one]:.3f} (target <= 1.10: "
              f"{'met' if ratios[one] <= 1.10 else 'NOT met'}); 2 workers vs 1 worker "
              f"{ratios[two]:.2f}x (target >= 1.8x: {'met' if ratios[two] >= 1.8 else 'NOT met'})")
    print(f"plain solve / Dask 2 worker processes: {ratios['plain_over_dask_2_workers']:.2f}x")
    if args.out:
        meta = {"kind": "meta", "benchmark": "dask_w4", "B": B, "repeats": args.repeats,
                "cpu_count": os.cpu_count(), "platform": platform.platform(),
                "odefast": of.__version__, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "load_at_start": load, "waited_s": waited, **ratios}
        with open(args.out, "a") as fh:
            for r in [meta] + records:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
