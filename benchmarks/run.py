"""odefast benchmark suite: the standard workloads of shared/WORKLOADS.md.

    python benchmarks/run.py [--quick] [--workloads W1,W2,W4] [--peers-python PATH]
                             [--no-peers] [--out results.jsonl] [--threads 2]

Times odefast (``of.solve`` / ``of.value_and_grad`` / ``of.hessian``) and its NumPy
oracle (``odefast.reference``) on each workload, then -- when a peers' virtualenv
is found (``--peers-python``, else $ODEFAST_PEERS_PYTHON, else
/work/peers-venv/bin/python if it exists) -- runs ``benchmarks/peers.py`` there on
the same workloads in the same run, and prints one table: median wall time of
every library and variant, its ratio to odefast, work counters per trajectory
and a cross-check value.  Every record also goes to a JSONL file.

A workload whose odefast API is missing is reported as "not available", never
estimated.  The NumPy reference is timed at the full batch when one call fits
in the time limit; otherwise at a smaller batch of the same workload and scaled
per trajectory, which the table marks with "~" and the JSONL with
``scaled_from_B``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import workloads as wl  # noqa: E402
from common import (bench, dumps, grad_fields, hessian_fields, loadavg,  # noqa: E402
                    set_quick, stat_fields, state_checksums, timing_fields)

DEFAULT_PEERS_PYTHON = "/work/peers-venv/bin/python"
ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "roofline"]
NAMES = {"W1": "mlp-rk4", "W2": "mlp-dopri5", "W3": "mlp-grad", "W4": "lorenz-ensemble",
         "W5": "figure-eight-hessian", "roofline": "roofline"}


class NotAvailable(Exception):
    """The odefast API a workload needs is missing (not yet built or not exported)."""


# ----------------------------------------------------------------------------- context


class Ctx:
    def __init__(self, quick, out_path):
        self.quick = quick
        self.records = []
        self.of = None
        self.ref = None
        self.of_reason = None
        self.ref_reason = None
        self.fh = open(out_path, "w") if out_path else None  # noqa: SIM115

    def emit(self, rec):
        self.records.append(rec)
        if self.fh:
            self.fh.write(dumps(rec) + "\n")
            self.fh.flush()

    # per-call time limit for the NumPy reference before it is scaled down
    @property
    def ref_limit_s(self):
        return 2.0 if self.quick else 20.0


def import_odefast(ctx, threads):
    src = os.path.join(os.path.dirname(HERE), "python")
    try:
        import odefast as of
        ctx.of = of
    except ImportError as e:
        # not installed: a source tree with the extension built in place also works
        if os.path.isdir(os.path.join(src, "odefast")) and src not in sys.path:
            sys.path.insert(0, src)
            try:
                import odefast as of
                ctx.of = of
            except Exception as e2:  # noqa: BLE001
                ctx.of_reason = f"import odefast failed: {type(e).__name__}: {e}; " \
                                f"from the source tree {src}: {type(e2).__name__}: {e2}"
        else:
            ctx.of_reason = f"import odefast failed: {type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        ctx.of_reason = f"import odefast failed: {type(e).__name__}: {e}"
    try:
        import odefast.reference as ref
        ctx.ref = ref
    except Exception as e:  # noqa: BLE001
        ctx.ref_reason = f"import odefast.reference failed: {type(e).__name__}: {e}"
    meta = {"record": "meta", "script": "run.py", "python": sys.version.split()[0],
            "executable": sys.executable, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "quick": ctx.quick,
            "numpy": np.__version__, "loadavg_1m": loadavg(), "odefast_threads": threads,
            "odefast_import": ctx.of_reason or "ok", "reference_import": ctx.ref_reason or "ok",
            "odefast_file": getattr(ctx.of, "__file__", None)}
    if ctx.of is not None:
        for name in ("__version__", "backends", "build_info"):
            try:
                v = getattr(ctx.of, name)
                meta["odefast_" + name.strip("_")] = v() if callable(v) else v
            except Exception as e:  # noqa: BLE001
                meta["odefast_" + name.strip("_")] = f"unavailable: {type(e).__name__}: {e}"
        try:
            ctx.of.set_num_threads(threads)
        except Exception as e:  # noqa: BLE001
            meta["odefast_set_num_threads"] = f"failed: {type(e).__name__}: {e}"
    ctx.emit(meta)


def attr(obj, dotted):
    """obj.a.b.c, or NotAvailable naming what is missing."""
    if obj is None:
        raise NotAvailable("odefast does not import")
    cur = obj
    for part in dotted.split("."):
        if not hasattr(cur, part):
            raise NotAvailable(f"{getattr(obj, '__name__', 'odefast')} has no {dotted}")
        cur = getattr(cur, part)
    return cur


def run_case(ctx, base, fn):
    rec = {"record": "result", "side": "odefast", "name": NAMES[base["workload"]], **base}
    try:
        rec.update(fn())
        rec.setdefault("status", "ok")
        rec["loadavg_1m"] = loadavg()
    except NotAvailable as e:
        rec.update(status="not available", reason=str(e))
    except (NotImplementedError, AttributeError, ImportError) as e:
        rec.update(status="not available", reason=f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001
        rec.update(status="error", error=f"{type(e).__name__}: {e}"[:2000],
                   traceback_tail=traceback.format_exc()[-1500:])
    ctx.emit(rec)
    print_progress(rec)
    return rec


def solver_for(ctx, library, fname):
    """library 'odefast' -> of.<fname>; 'reference' -> of.reference.<fname>."""
    if library == "odefast":
        if ctx.of is None:
            raise NotAvailable(ctx.of_reason)
        return attr(ctx.of, fname)
    if ctx.ref is None:
        raise NotAvailable(ctx.ref_reason or ctx.of_reason)
    return attr(ctx.ref, fname)


def sol_stats(sol):
    st = getattr(sol, "stats", None) or {}
    g = lambda k: np.asarray(st[k]) if k in st else None  # noqa: E731
    # odefast's stats["steps"] counts accepted steps; the records (like the peers') carry
    # steps = attempted, accepted, rejected
    acc, rej = g("steps"), g("rejected")
    att = acc + rej if acc is not None and rej is not None else None
    d = stat_fields(nfev=g("nfev"), steps=att, accepted=acc, rejected=rej)
    status = getattr(sol, "status", None)
    if status is not None:
        status = np.asarray(status)
        d["failed_trajectories"] = int(np.count_nonzero(status))
    return d


def reference_batch(ctx, B, time_call):
    """Pick the batch at which to time the NumPy reference.

    time_call(Bsub) runs one call at batch Bsub and returns its wall time.  Full B
    when a call is expected to fit in ctx.ref_limit_s, else a smaller batch (the
    same workload at that B) whose timing is scaled by B / Bsub.
    """
    probe = min(B, 64)
    if probe == B:
        return B
    t = time_call(probe)
    est = t * B / probe
    if est <= ctx.ref_limit_s:
        return B
    Bsub = int(B * ctx.ref_limit_s / est)
    nice = [n for n in (100000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 256, 128, 64) if n <= Bsub]
    return max(probe, nice[0] if nice else probe)


def scale_fields(median, times, B, Bsub):
    d = timing_fields(median * B / Bsub, [t * B / Bsub for t in times])
    if Bsub != B:
        d.update(scaled_from_B=Bsub, median_s_measured=median,
                 scaling_note=f"timed at B={Bsub} (same workload definition at that B) and scaled "
                              f"by B/{Bsub} = {B / Bsub:g} per trajectory")
    return d


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ============================================================================= W1


def mlp_dynamics(ctx, dtype):
    (W1, W2, W3), (b1, b2, b3) = wl.mlp_weights()
    MLP = attr(ctx.of, "MLP")
    return MLP.from_weights([W.astype(dtype) for W in (W1, W2, W3)], [b.astype(dtype) for b in (b1, b2, b3)])


def w1(ctx):
    for c in wl.w1_cases(ctx.quick):
        B, dtype = c["B"], c["dtype"]
        numpy_rk4 = wl.rk4_fixed(wl.mlp_f, wl.mlp_z0(B), 0.0, 1.0, 100)
        t = wl.W1_T.astype(dtype)
        kw = dict(method="rk4", dt=wl.W1_DT)
        base = {"workload": "W1", "case": c["case"], "B": B, "dtype": dtype, **kw}
        of_z1 = {}

        def run(library, B=B, dtype=dtype, t=t, kw=kw, numpy_rk4=numpy_rk4, of_z1=of_z1):
            solve = solver_for(ctx, library, "solve")
            f = mlp_dynamics(ctx, dtype)

            def call_at(Bs):
                z0 = wl.mlp_z0(Bs).astype(dtype)
                return lambda: solve(f, z0, t, **kw)
            Bsub = B
            if library == "reference":
                Bsub = reference_batch(ctx, B, lambda Bs: _time_once(call_at(Bs)))
            med, times, sol = bench(call_at(Bsub), max_repeats=5 if library == "reference" else None)
            z1 = np.asarray(sol.ys)[-1]
            r = {**scale_fields(med, times, B, Bsub), **sol_stats(sol), **state_checksums(z1), "checksum_B": Bsub}
            if Bsub == B:
                r["max_abs_diff_vs_numpy_rk4_f64"] = max_diff(z1, numpy_rk4)
            if library == "odefast":
                of_z1[B] = z1
            elif B in of_z1 and Bsub == B:
                r["max_abs_diff_vs_odefast"] = max_diff(z1, of_z1[B])
            return r
        run_case(ctx, {**base, "library": "odefast", "variant": "rk4 dt=0.01"}, lambda: run("odefast"))
        run_case(ctx, {**base, "library": "reference", "variant": "rk4 dt=0.01"}, lambda: run("reference"))


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ============================================================================= W2


def w2(ctx):
    for c in wl.w2_cases(ctx.quick):
        B = c["B"]
        kw = dict(method="dopri5", rtol=wl.W2_RTOL, atol=wl.W2_ATOL)
        base = {"workload": "W2", "case": c["case"], "B": B, "dtype": "float64", "outputs": len(wl.W2_T), **kw}
        of_ys = {}

        def run(library, B=B, kw=kw, of_ys=of_ys):
            solve = solver_for(ctx, library, "solve")
            f = mlp_dynamics(ctx, "float64")

            def call_at(Bs):
                z0 = wl.mlp_z0(Bs)
                return lambda: solve(f, z0, wl.W2_T, **kw)
            Bsub = B
            if library == "reference":
                Bsub = reference_batch(ctx, B, lambda Bs: _time_once(call_at(Bs)))
            med, times, sol = bench(call_at(Bsub), max_repeats=5 if library == "reference" else None)
            ys = np.asarray(sol.ys)
            r = {**scale_fields(med, times, B, Bsub), **sol_stats(sol), "ys_sum": float(ys.sum()),
                 **state_checksums(ys[-1]), "checksum_B": Bsub}
            if library == "odefast":
                of_ys[B] = ys
            elif B in of_ys and Bsub == B:
                r["max_abs_diff_vs_odefast"] = max_diff(ys, of_ys[B])
            return r
        run_case(ctx, {**base, "library": "odefast", "variant": "dopri5"}, lambda: run("odefast"))
        run_case(ctx, {**base, "library": "reference", "variant": "dopri5"}, lambda: run("reference"))


# ============================================================================= W3

MLP_SHAPES = [(64, 2), (64,), (64, 64), (64,), (2, 64), (2,)]


def split_params(p):
    """Flat odefast MLP params (W1 row-major, b1, W2, b2, W3, b3) -> list of arrays."""
    p = np.asarray(p).reshape(-1)
    out, i = [], 0
    for shp in MLP_SHAPES:
        n = int(np.prod(shp))
        out.append(p[i:i + n].reshape(shp))
        i += n
    if i != p.size:
        raise ValueError(f"expected {i} MLP parameters, got {p.size}")
    return out


def w3_loss_parts(B, target):
    """of.losses.MSE takes the mean over all of ys (t0 and t1 rows); weights 0 at t0
    and 2 at t1 make it mean((z(1) - target)**2) over the B*2 entries of z(1)."""
    targets = np.zeros((2, B, 2))
    targets[1] = target
    weights = np.zeros((2, B, 2))
    weights[1] = 2.0
    return targets, weights


def w3(ctx):
    c = wl.w3_cases(ctx.quick)[0]
    B = c["B"]
    kw = dict(method="dopri5", rtol=wl.W3_RTOL, atol=wl.W3_ATOL)
    base = {"workload": "W3", "case": c["case"], "B": B, "dtype": "float64", **kw}
    of_grads = {}

    def run(library, adjoint, seminorm=False):
        solve = solver_for(ctx, library, "solve")
        f = mlp_dynamics(ctx, "float64")
        semi = {"seminorm": True} if seminorm else {}

        def call_at(Bs):
            z0 = wl.mlp_z0(Bs)
            target = wl.mlp_target(Bs)
            targets, weights = w3_loss_parts(Bs, target)
            if library == "odefast" or hasattr(ctx.ref, "value_and_grad"):
                vg = solver_for(ctx, library, "value_and_grad")
                loss = attr(ctx.of, "losses.MSE")(targets, weights=weights)
                return lambda: _vg_tuple(vg(f, z0, wl.W3_T, loss, adjoint=adjoint, **semi, **kw))
            # the reference lists solve/vjp/hvp/hessian: value and gradient by solve + vjp
            vjp = solver_for(ctx, library, "vjp")

            def vg_ref():
                ys = np.asarray(solve(f, z0, wl.W3_T, **kw).ys)
                n = ys.size
                value = float(np.sum(weights * (ys - targets) ** 2) / n)
                g = vjp(f, z0, wl.W3_T, 2.0 * weights * (ys - targets) / n, adjoint=adjoint, **semi, **kw)
                return value, g
            return vg_ref

        def fwd_at(Bs):
            z0 = wl.mlp_z0(Bs)
            target = wl.mlp_target(Bs)

            def fwd():
                sol = solve(f, z0, wl.W3_T, **kw)
                return float(np.mean((np.asarray(sol.ys)[-1] - target) ** 2)), sol
            return fwd
        Bsub = B
        if library == "reference":
            Bsub = reference_batch(ctx, B, lambda Bs: _time_once(call_at(Bs)))
        cap = 5 if library == "reference" else None
        med_f, times_f, (loss_fwd, sol) = bench(fwd_at(Bsub), max_repeats=cap)
        med_g, times_g, (value, g) = bench(call_at(Bsub), max_repeats=cap)  # last: its CPU diagnostics
        grads = split_params(g.params) + [np.asarray(g.y0)]
        r = {**scale_fields(med_g, times_g, B, Bsub),
             "forward_only_seconds_median": med_f * B / Bsub, "forward_repeats": len(times_f),
             "ratio_grad_to_forward": med_g / med_f, **sol_stats(sol), **grad_fields(value, grads),
             "loss_from_forward_solve": loss_fwd, "checksum_B": Bsub}
        if library == "reference" and not hasattr(ctx.ref, "value_and_grad"):
            r["note"] = "reference: value from reference.solve, gradient from reference.vjp"
        key = (adjoint, seminorm, B)
        if library == "odefast":
            of_grads[key] = grads
        elif key in of_grads and Bsub == B:
            r["max_abs_grad_diff_vs_odefast"] = max(max_diff(a, b) for a, b in zip(grads, of_grads[key]))
        return r

    for library in ("odefast", "reference"):
        for adjoint, seminorm in (("checkpoint", False), ("backsolve", False), ("backsolve", True)):
            variant = f"dopri5 adjoint={adjoint}" + (" seminorm" if seminorm else "")
            run_case(ctx, {**base, "library": library, "variant": variant, "adjoint": adjoint, "seminorm": seminorm},
                     lambda library=library, adjoint=adjoint, seminorm=seminorm: run(library, adjoint, seminorm))


def _vg_tuple(res):
    value, g = res
    return float(value), g


# ============================================================================= W4


def w4(ctx):
    for c in wl.w4_cases(ctx.quick):
        B, dtype, method = c["B"], c["dtype"], c["method"]
        if method == "dopri5":
            kw = dict(method="dopri5", rtol=wl.W4_RTOL, atol=wl.W4_ATOL)
        else:
            kw = dict(method="rk4", dt=wl.W4_RK4_DT)
        t = wl.W4_T.astype(dtype)
        base = {"workload": "W4", "case": c["case"], "B": B, "dtype": dtype, **kw}
        of_z1 = {}

        def run(library, B=B, dtype=dtype, kw=kw, t=t, of_z1=of_z1):
            solve = solver_for(ctx, library, "solve")
            f = attr(ctx.of, "Lorenz")(sigma=wl.LORENZ_SIGMA, rho=28.0, beta=wl.LORENZ_BETA)

            def call_at(Bs):
                z0 = wl.lorenz_z0(Bs).astype(dtype)
                params = wl.lorenz_params(Bs).astype(dtype)
                return lambda: solve(f, z0, t, params=params, **kw)
            Bsub = B
            if library == "reference":
                Bsub = reference_batch(ctx, B, lambda Bs: _time_once(call_at(Bs)))
            med, times, sol = bench(call_at(Bsub), max_repeats=5 if library == "reference" else None)
            z1 = np.asarray(sol.ys)[-1]
            r = {**scale_fields(med, times, B, Bsub), **sol_stats(sol), **state_checksums(z1), "checksum_B": Bsub}
            if library == "odefast":
                of_z1[B] = z1
            elif Bsub == B and B in of_z1:
                r["max_abs_diff_vs_odefast"] = max_diff(z1, of_z1[B])
            elif Bsub != B and ctx.of is not None:
                # cross-check at the reduced batch: one untimed odefast solve
                z0 = wl.lorenz_z0(Bsub).astype(dtype)
                p = wl.lorenz_params(Bsub).astype(dtype)
                r["max_abs_diff_vs_odefast_at_checksum_B"] = max_diff(
                    z1, np.asarray(ctx.of.solve(f, z0, t, params=p, **kw).ys)[-1])
            return r
        run_case(ctx, {**base, "library": "odefast", "variant": method}, lambda: run("odefast"))
        run_case(ctx, {**base, "library": "reference", "variant": method}, lambda: run("reference"))


# ============================================================================= W5


def w5(ctx):
    c = wl.w5_cases(ctx.quick)[0]
    s0 = wl.fig8_s0()
    t = np.array([0.0, wl.FIG8_T])
    base = {"workload": "W5", "case": c["case"], "dtype": "float64", "rtol": wl.W5_RTOL, "atol": wl.W5_ATOL,
            "T": wl.FIG8_T}

    def run(library, method, adjoint):
        if library == "reference" and ctx.quick:
            return {"status": "skipped", "reason": "--quick: the NumPy reference Hessian is not timed"}
        hessian = solver_for(ctx, library, "hessian")
        solve = solver_for(ctx, library, "solve")
        f = attr(ctx.of, "NBody")(np.ones(3), dim=2, G=1.0, softening=0.0)
        loss = attr(ctx.of, "losses.Closure")()
        kw = dict(method=method, rtol=wl.W5_RTOL, atol=wl.W5_ATOL)
        med, times, H = bench(lambda: hessian(f, s0, t, loss, wrt="y0", adjoint=adjoint, **kw),
                              max_repeats=3 if library == "reference" else None)
        sol = solve(f, s0, t, **kw)
        sT = np.asarray(sol.ys)[-1]
        r = {**timing_fields(med, times), **sol_stats(sol), "L_value": float(np.sum((sT - s0) ** 2)),
             **hessian_fields(np.asarray(H))}
        if library == "odefast":  # one Hessian-vector product against one gradient
            v = np.random.RandomState(0).standard_normal(s0.shape)
            hvp, vg = solver_for(ctx, library, "hvp"), solver_for(ctx, library, "value_and_grad")
            med_h, _, _ = bench(lambda: hvp(f, s0, t, loss, v, adjoint=adjoint, **kw))
            med_g, _, _ = bench(lambda: vg(f, s0, t, loss, adjoint=adjoint, **kw))
            r.update({"hvp_seconds_median": med_h, "grad_seconds_median": med_g,
                      "ratio_hvp_to_grad": med_h / med_g})
        return r

    for library in ("odefast", "reference"):
        for method, adjoint in (("dopri5", "checkpoint"), ("dopri5", "backsolve"), ("tsit5", "checkpoint")):
            run_case(ctx, {**base, "library": library, "variant": f"{method} adjoint={adjoint}",
                           "method": method, "adjoint": adjoint},
                     lambda library=library, method=method, adjoint=adjoint: run(library, method, adjoint))


# ============================================================================= subprocess runs


def run_peers_script(ctx, python, workloads, extra_args, side, libs=None):
    """Run peers.py under `python`, stream its JSONL into ctx, return the exit code."""
    cmd = [python, os.path.join(HERE, "peers.py"), "--workloads", ",".join(workloads)] + extra_args
    if libs:
        cmd += ["--libs", libs]
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in p.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            rec["side"] = side
            if side == "odefast-env":
                rec["env"] = "odefast interpreter"
            ctx.emit(rec)
            print_progress(rec)
        rc = p.wait()
        if rc != 0:
            err.seek(0)
            tail = err.read()[-3000:]
            ctx.emit({"record": "peers_failed", "side": side, "returncode": rc, "stderr_tail": tail})
            print(f"[{side}] peers.py exited with {rc}:\n{tail}", file=sys.stderr)
    return rc


def find_peers_python(arg):
    if arg:
        return arg, "--peers-python"
    env = os.environ.get("ODEFAST_PEERS_PYTHON")
    if env:
        return env, "ODEFAST_PEERS_PYTHON"
    if os.path.exists(DEFAULT_PEERS_PYTHON):
        return DEFAULT_PEERS_PYTHON, "default path"
    return None, None


# ============================================================================= printing


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def fmt_num(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float) and x != int(x):
        return f"{x:.{nd}f}"
    return f"{int(x)}" if isinstance(x, (int, float)) else str(x)


def print_progress(rec):
    if rec.get("record") != "result":
        return
    lib = rec.get("library", "?")
    st = rec.get("status")
    what = f"{rec.get('workload')} {rec.get('case')} {lib} [{rec.get('variant')}]"
    if st == "ok":
        print(f"  {what}: {fmt_time(rec.get('median_s'))}", flush=True)
    else:
        print(f"  {what}: {st} {rec.get('reason') or rec.get('error') or ''}"[:300], flush=True)


def check_value(rec):
    w = rec.get("workload")
    if w in ("W1", "W4"):
        v = rec.get("z1_sum")
        return None if v is None else f"sum z1={v:.10g}" + (f" (B={rec['checksum_B']})" if rec.get(
            "checksum_B") not in (None, rec.get("B")) else "")
    if w == "W2":
        v = rec.get("ys_sum")
        return None if v is None else f"sum ys={v:.10g}"
    if w == "W3":
        v = rec.get("loss")
        return None if v is None else f"loss={v:.10g} |g|={rec.get('grad_norm', float('nan')):.8g}"
    if w == "W5":
        ev = rec.get("eigenvalues")
        return None if not ev else f"eig max={ev[-1]:.10g}"
    return None


def print_table(records, workloads):
    res = [r for r in records if r.get("record") == "result" and r.get("workload") != "roofline"]
    order_lib = {"odefast": 0, "reference": 1}
    hdr = f"  {'library':<12} {'variant':<46} {'median':>11} {'x odefast':>9} {'nfev/traj':>9} " \
          f"{'acc.steps':>10} {'compile':>9}  check"
    for w in workloads:
        if w == "roofline":
            continue
        cases = []
        for r in res:
            if r["workload"] == w and r["case"] not in cases:
                cases.append(r["case"])
        for case in cases:
            # stable sort: odefast, reference, then peers by name; variants keep run order
            rows = sorted([r for r in res if r["workload"] == w and r["case"] == case],
                          key=lambda r: (order_lib.get(r.get("library"), 2), r.get("library", "")))
            base = next((r for r in rows if r.get("library") == "odefast" and r.get("status") == "ok"), None)
            base_t = base.get("median_s") if base else None
            print(f"\n{w} {NAMES[w]}  {case}")
            print(hdr)
            for r in rows:
                lib = r.get("library", "?")
                var = str(r.get("variant", ""))[:46]
                if r.get("status") != "ok":
                    why = r.get("reason") or r.get("error") or ""
                    print(f"  {lib:<12} {var:<46} {r.get('status')}: {why}"[:200])
                    continue
                med = r.get("median_s")
                mark = "~" if r.get("scaled_from_B") else " "
                ratio = "-" if not base_t or med is None else f"{med / base_t:.2f}"
                steps = r.get("accepted") if r.get("accepted") is not None else r.get("steps")
                extra = ""
                if w == "W3" and r.get("forward_only_seconds_median") is not None:
                    extra = f" fwd={fmt_time(r['forward_only_seconds_median'])}"
                print(f"  {lib:<12} {var:<46} {mark}{fmt_time(med):>10} {ratio:>9} {fmt_num(r.get('nfev')):>9} "
                      f"{fmt_num(steps):>10} {fmt_time(r.get('compile_s')):>9}  "
                      f"{check_value(r) or ''}{extra}")
    roof = [r for r in records if r.get("record") == "result" and r.get("workload") == "roofline"
            and r.get("status") == "ok"]
    if roof:
        print("\nroofline  matmul GFLOP/s (median; best)")
        for r in roof:
            env = "odefast env" if r.get("side") == "odefast-env" else "peers env"
            print(f"  {r['library']:<7} {env:<12} {r['case']:<42} {r['gflops']:8.1f} ; {r['best_gflops']:.1f}")
    skipped = [r for r in records if r.get("record") == "library" and r.get("status") != "ok"]
    for r in skipped:
        print(f"\n{r.get('side', 'peers')}: library {r['library']} skipped ({r.get('reason')})")
    print("\n~ : NumPy reference timed at a smaller batch of the same workload and scaled per trajectory "
          "(see scaled_from_B in the JSONL).")


# ============================================================================= main


def main(argv=None):
    ap = argparse.ArgumentParser(description="odefast benchmarks (shared/WORKLOADS.md)")
    ap.add_argument("--quick", action="store_true", help="small cases, few repeats: well under a minute")
    ap.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                    help=f"comma-separated subset of {','.join(ALL_WORKLOADS)}")
    ap.add_argument("--peers-python", default=None,
                    help="python of the peers' virtualenv (else $ODEFAST_PEERS_PYTHON, else "
                         f"{DEFAULT_PEERS_PYTHON} if it exists)")
    ap.add_argument("--no-peers", action="store_true", help="odefast and the NumPy reference only")
    ap.add_argument("--out", default=None,
                    help="JSONL output (default benchmarks/results/run-<utc time>.jsonl; '-' for none)")
    ap.add_argument("--threads", type=int, default=2, help="odefast.set_num_threads (default 2)")
    ap.add_argument("--budget", type=float, default=None, help="timed seconds per case after warm-up")
    ap.add_argument("--wait-idle", type=float, default=None,
                    help="before each case wait up to this many seconds for other processes to go quiet "
                         "(default 0; useful on a shared machine)")
    args = ap.parse_args(argv)
    workloads = [s.strip() for s in args.workloads.split(",") if s.strip()]
    bad = [w for w in workloads if w not in ALL_WORKLOADS]
    if bad:
        ap.error(f"unknown workloads {bad}; choose from {ALL_WORKLOADS}")
    set_quick(args.quick, args.budget, args.wait_idle)
    if args.out is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        args.out = os.path.join(HERE, "results", f"run-{stamp}{'-quick' if args.quick else ''}.jsonl")
    out_path = None if args.out == "-" else args.out

    t_start = time.perf_counter()
    wl.check(verbose=False)  # the workload data are what WORKLOADS.md publishes
    ctx = Ctx(args.quick, out_path)
    import_odefast(ctx, args.threads)
    if ctx.of_reason:
        print(f"odefast: not available ({ctx.of_reason})")
    print(f"odefast side ({'quick' if args.quick else 'full'}):", flush=True)
    runners = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5}
    for w in workloads:
        if w == "roofline":
            run_peers_script(ctx, sys.executable, ["roofline"], ["--quick"] if args.quick else [],
                             "odefast-env", libs="numpy,torch")
        else:
            runners[w](ctx)

    passthrough = (["--quick"] if args.quick else []) + (["--budget", str(args.budget)] if args.budget else []) \
        + (["--wait-idle", str(args.wait_idle)] if args.wait_idle else [])
    peers_python, source = (None, None) if args.no_peers else find_peers_python(args.peers_python)
    if peers_python:
        print(f"peers ({peers_python}, from {source}):", flush=True)
        ctx.emit({"record": "peers_python", "python": peers_python, "source": source})
        run_peers_script(ctx, peers_python, workloads, passthrough, "peers")
    else:
        why = "--no-peers" if args.no_peers else "no peers' virtualenv found"
        print(f"peers: not run ({why})")
        ctx.emit({"record": "peers_python", "python": None, "reason": why})

    print_table(ctx.records, workloads)
    wall = time.perf_counter() - t_start
    ctx.emit({"record": "run_done", "wall_s": wall})
    print(f"\ntotal wall time {wall:.1f} s" + (f"; results in {out_path}" if out_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
