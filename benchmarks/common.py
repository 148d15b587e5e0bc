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


def set_quick(quick, budget=None):
    if quick:
        Cfg.quick, Cfg.budget, Cfg.min_repeats, Cfg.max_repeats = True, 0.1, 2, 5
    if budget is not None:
        Cfg.budget = budget


def bench(fn, max_repeats=None):
    """One warm-up call, then timed calls until min_repeats and the budget are both
    reached (at most max_repeats).  Returns (median_s, times, last_output)."""
    t0 = time.perf_counter()
    out = fn()
    warm = time.perf_counter() - t0
    min_rep = 1 if warm > Cfg.long_call_s else Cfg.min_repeats
    cap = Cfg.max_repeats if max_repeats is None else max(1, min(max_repeats, Cfg.max_repeats))
    min_rep = min(min_rep, cap)
    times = []
    while len(times) < cap and (len(times) < min_rep or sum(times) < Cfg.budget):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times, out


def timing_fields(median, times, compile_s=None):
    return {"median_s": median, "repeats": len(times), "times_s": [round(t, 6) for t in times],
            "compile_s": compile_s}


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
