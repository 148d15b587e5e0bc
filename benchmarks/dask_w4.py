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
  and results included; both clusters up side by side, idle when not timed);
* ``dask 2 workers, reduced on the cluster`` (worker processes): the same ensemble reduced on
  the cluster (``sol.ys[-1].mean(axis=0)`` and the failure count): nothing per-trajectory
  comes back, the pattern for ensembles too big for one machine.

Two phases, each with only its own clusters up: worker processes, then worker threads
(``processes=False``: the workers share this process, Dask's advice on one machine for code
that releases the GIL, as the core does; no data moves between processes). Within a phase the
cases take turns in each repeat (plain, 1 worker, 2 workers, ..., plain, ...), so that a
drifting machine disturbs them alike, and each phase's ratios use its own plain solve. Every
Dask result is checked bitwise against the plain solve. The targets of issue 7: the Dask path
on 1 worker within 10% of the plain solve, 2 workers >= 1.8x faster than 1 worker (on 2
cores). Before measuring it waits (up to ``--wait-idle`` s) until the 1-minute load average is
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

    def phase(processes: bool) -> list:
        """The cases of one kind of worker, each timed `repeats` times, taking turns with a
        plain solve; only this phase's clusters are up (idle ones still cost CPU)."""
        kind = "worker processes" if processes else "worker threads (processes=False)"
        with contextlib.ExitStack() as stack:
            def cluster(n_workers):
                c = stack.enter_context(LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                                     processes=processes, dashboard_address=":0"))
                client = stack.enter_context(Client(c))
                client.wait_for_workers(n_workers)
                return client

            one, two = cluster(1), cluster(2)
            cases = [("plain odefast.solve, 1 thread", plain, None),
                     (f"dask 1 worker, {kind}, NumPy result", on(one), one),
                     (f"dask 2 workers, {kind}, NumPy result", on(two), two)]
            if processes:
                cases.append((f"dask 2 workers, {kind}, reduced on the cluster", reduced(two), two))
            for name, fn, client in cases:                 # warm-up, and the checks
                out = fn()
                if "NumPy" in name:
                    assert same(out, ref), f"{name}: the Dask result differs from the plain solve"
                elif client is not None:
                    mean, n_failed = out
                    assert np.allclose(mean, ref.ys[-1].mean(axis=0), rtol=1e-12) and n_failed == 0
            n_chunks = {name: len(solve_ensemble(f, y0, t, params=params, chunks=chunks,
                                                 client=client, **kw).chunks)
                        for name, _, client in cases if client is not None}
            # the cases take turns, repeat after repeat, so that a machine that drifts (other
            # processes, clock) disturbs them alike
            times = {name: [] for name, _, _ in cases}
            loads = {name: [] for name, _, _ in cases}
            print(kind + ":", flush=True)
            for rep in range(args.repeats):
                for name, fn, _ in cases:
                    l0 = loadavg()
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
                    loads[name].append(l0)
                print(f"  repeat {rep + 1}/{args.repeats}: " + ", ".join(
                    f"{times[n][-1]:.3f}" for n, _, _ in cases) + f" s (load {loadavg():.2f})",
                    flush=True)
        return [dict(case=name, phase=kind, median_s=statistics.median(times[name]),
                     times_s=times[name], load_before=min(loads[name]), load_after=max(loads[name]),
                     **({"chunks": n_chunks[name]} if name in n_chunks else {}))
                for name, _, _ in cases]

    by_processes = phase(True)
    by_threads = phase(False)
    records = by_processes + by_threads
    plain, d1, d2 = (r["median_s"] for r in by_processes[:3])
    plain_t, t1, t2 = (r["median_s"] for r in by_threads)
    ratios = {"dask_1_worker_over_plain": d1 / plain, "speedup_2_workers_over_1": d1 / d2,
              "plain_over_dask_2_workers": plain / d2,
              "threads_1_worker_over_plain": t1 / plain_t, "threads_speedup_2_workers_over_1": t1 / t2}
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
