"""Timing harness and cross-check helpers shared by run.py and peers.py (NumPy only)."""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np


class Cfg:
    quick = False
    budget = 2.0        # seconds of timed calls per case, after the warm-up call
    min_repeats = 3
    max_repeats = 30
    long_call_s = 30.0  # a warm-up slower than this gets a single timed repeat
    wait_idle = 0.0     # seconds to wait, before each case, for other processes to go quiet
    idle_threshold = 0.25
    retries = 2         # with wait_idle: re-measure a series disturbed by other processes
    wait_total_cap = 1800.0  # seconds of waiting for quiet in one run, all cases together
    waited_total = 0.0


def set_quick(quick, budget=None, wait_idle=None):
    if quick:
        Cfg.quick, Cfg.budget, Cfg.min_repeats, Cfg.max_repeats = True, 0.1, 2, 5
    if budget is not None:
        Cfg.budget = budget
    if wait_idle is not None:
        Cfg.wait_idle = wait_idle


def _cpu_jiffies():
    """(busy, total) jiffies of the whole machine from /proc/stat, or None."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def _self_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMonitor:
    """Fraction of the machine's CPU used by *other* processes between start() and stop()."""

    def start(self):
        self.j0, self.c0 = _cpu_jiffies(), _self_cpu_s()
        return self

    def stop(self):
        j1, c1 = _cpu_jiffies(), _self_cpu_s()
        if self.j0 is None or j1 is None or j1[1] <= self.j0[1]:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        busy_s = (j1[0] - self.j0[0]) / hz
        total_s = (j1[1] - self.j0[1]) / hz
        return max(0.0, min(1.0, (busy_s - (c1 - self.c0)) / total_s))


def wait_idle():
    """With Cfg.wait_idle > 0: wait (at most that many seconds) until other processes use
    less than Cfg.idle_threshold of the machine over a 1 s sample.  Returns seconds waited."""
    if Cfg.wait_idle <= 0 or Cfg.waited_total >= Cfg.wait_total_cap:
        return 0.0
    t0 = time.perf_counter()
    limit = min(Cfg.wait_idle, Cfg.wait_total_cap - Cfg.waited_total)
    while time.perf_counter() - t0 < limit:
        m = CpuMonitor().start()
        time.sleep(1.0)
        frac = m.stop()
        if frac is None or frac < Cfg.idle_threshold:
            break
    waited = time.perf_counter() - t0
    Cfg.waited_total += waited
    return waited


LAST = {}   # diagnostics of the last bench() call, merged into its record by timing_fields


def bench(fn, max_repeats=None):
    """One warm-up call, then timed calls until min_repeats and the budget are both
    reached (at most max_repeats).  Returns (median_s, times, last_output).

    The share of the machine's CPU that other processes used while the timed calls ran
    is kept in LAST["other_cpu_frac"] (on 2 cores, 0.5 means one core was busy elsewhere)."""
    LAST.clear()
    waited = wait_idle()
    t0 = time.perf_counter()
    out = fn()
    warm = time.perf_counter() - t0
    min_rep = 1 if warm > Cfg.long_call_s else Cfg.min_repeats
    cap = Cfg.max_repeats if max_repeats is None else max(1, min(max_repeats, Cfg.max_repeats))
    min_rep = min(min_rep, cap)
    best = None
    # With --wait-idle, a series during which other processes held the CPU is measured
    # again (after waiting for quiet), at most Cfg.retries times; the series with the least
    # interference is kept.  The choice looks at the interference, never at the times.
    for attempt in range(1 + (Cfg.retries if Cfg.wait_idle > 0 else 0)):
        if attempt:
            waited += wait_idle()
        times = []
        mon = CpuMonitor().start()
        while len(times) < cap and (len(times) < min_rep or sum(times) < Cfg.budget):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        frac = mon.stop()
        if best is None or (frac is not None and (best[1] is None or frac < best[1])):
            best = (times, frac, attempt + 1)
        if frac is None or frac < Cfg.idle_threshold:
            break
    times, frac, n = best
    LAST.update(waited_for_idle_s=round(waited, 1), other_cpu_frac=None if frac is None else round(frac, 3),
                series_measured=attempt + 1, series_kept=n)
    return float(np.median(times)), times, out


def timing_fields(median, times, compile_s=None):
    return {"median_s": median, "repeats": len(times), "times_s": [round(t, 6) for t in times],
            "compile_s": compile_s, **LAST}


def stat_fields(nfev=None, steps=None, accepted=None, rejected=None):
    """Per-trajectory work counters; arrays become their mean (plus min/max when they vary)."""
    d = {}
    for k, v in (("nfev", nfev), ("steps", steps), ("accepted", accepted), ("rejected", rejected)):
        if v is None:
            d[k] = None
            continue
        a = np.asarray(v, dtype=float).ravel()
        d[k] = float(a.mean())
        if a.size > 1 and a.min() != a.max():
            d[k + "_max"] = float(a.max())
            d[k + "_min"] = float(a.min())
    return d


def state_checksums(z1):
    """Cross-check fields of a final state (B, D) or (D,), computed in float64."""
    z1 = np.asarray(z1, dtype=np.float64)
    z2 = z1.reshape(-1, z1.shape[-1])
    return {"z1_sum": float(z1.sum()), "z1_abs_sum": float(np.abs(z1).sum()),
            "z1_col_sums": z2.sum(axis=0).tolist(), "z1_first": z2[0].tolist()}


GRAD_NAMES = ["W1", "b1", "W2", "b2", "W3", "b3", "z0"]


def grad_fields(loss, grads):
    """grads: [dW1, db1, dW2, db2, dW3, db3, dz0]."""
    grads = [np.asarray(g, np.float64) for g in grads]
    return {"loss": float(loss),
            "grad_sums": {n: float(g.sum()) for n, g in zip(GRAD_NAMES, grads)},
            "grad_norm": float(np.sqrt(sum((g ** 2).sum() for g in grads))),
            "grad_W1_00": float(grads[0].ravel()[0])}


def hessian_fields(H):
    H = np.asarray(H, np.float64)
    ev = np.linalg.eigvalsh(0.5 * (H + H.T))
    return {"eigenvalues": ev.tolist(), "hessian": H.tolist(),
            "asymmetry_max": float(np.abs(H - H.T).max()), "hessian_trace": float(np.trace(H))}


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.floating):
        x = float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def dumps(rec):
    return json.dumps(jsonable(rec))
