"""Peer libraries on the standard workloads (shared/WORKLOADS.md).

Runs in the peers' own virtualenv (torch==2.13.0 CPU, torchdiffeq, torchode,
diffrax/JAX, SciPy), never in odefast's environment:

    /work/peers-venv/bin/python benchmarks/peers.py [--quick] [--workloads W1,W2,...]
                                                    [--libs torchdiffeq,diffrax,...]
                                                    [--out peers.jsonl]

Every library is optional: one that does not import is reported with a
``"status": "skipped"`` record, and every case that raises is reported with
``"status": "error"`` and the message; no number is ever made up.

Output: one JSON object per line.  Timing records carry

    workload, name, case, library, variant, status, median_s, repeats, times_s,
    compile_s (JAX: lower+compile, excluded from median_s), nfev, steps,
    accepted, rejected (per trajectory; mean, with *_max where they vary),
    and cross-check fields (final-state sums, loss and gradient sums,
    Hessian eigenvalues, ...) that odefast's run.py records the same way.

Timing protocol: one warm-up call, then repeated calls until both
``min_repeats`` calls and ``budget`` seconds are spent (at most ``max_repeats``);
the median is reported.  Torch runs with ``torch.set_num_threads(2)``; JAX runs
on its CPU backend with ``jax_enable_x64`` (float32 cases use float32 arrays).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl  # noqa: E402
from common import (Cfg, CpuMonitor, bench, dumps, grad_fields, hessian_fields, loadavg,  # noqa: E402
                    set_quick, stat_fields, state_checksums, timing_fields, wait_idle)

ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "roofline"]
ALL_LIBS = ["torchdiffeq", "torchode", "diffrax", "jax", "scipy", "numpy", "torch"]
NAMES = {"W1": "mlp-rk4", "W2": "mlp-dopri5", "W3": "mlp-grad", "W4": "lorenz-ensemble",
         "W5": "figure-eight-hessian", "roofline": "roofline"}

# ----------------------------------------------------------------------------- output


class Out:
    def __init__(self, path=None):
        self.f = open(path, "a") if path else None

    def emit(self, rec):
        line = dumps(rec)
        print(line, flush=True)
        if self.f:
            self.f.write(line + "\n")
            self.f.flush()


_REF_CACHE = {}


def numpy_rk4_lorenz(B):
    """float64 classical RK4, dt=0.001, of the W4 ensemble (for cross-checking the rk4 case)."""
    if ("lorenz", B) not in _REF_CACHE:
        p = wl.lorenz_params(B)
        n = int(round(1.0 / wl.W4_RK4_DT))
        _REF_CACHE[("lorenz", B)] = wl.rk4_fixed(lambda z: wl.lorenz_f(z, p), wl.lorenz_z0(B), 0.0, 1.0, n)
    return _REF_CACHE[("lorenz", B)]


def numpy_rk4_mlp(B):
    if ("mlp", B) not in _REF_CACHE:
        _REF_CACHE[("mlp", B)] = wl.rk4_fixed(wl.mlp_f, wl.mlp_z0(B), 0.0, 1.0, 100)
    return _REF_CACHE[("mlp", B)]


def dop853_mlp(B):
    """Tight SciPy DOP853 solution of the MLP batch at W2_T, shape (11, B, 2)."""
    if ("dop853", B) not in _REF_CACHE:
        from scipy.integrate import solve_ivp
        sol = solve_ivp(lambda t, y: wl.mlp_f(y.reshape(B, 2)).ravel(), (0.0, 1.0),
                        wl.mlp_z0(B).ravel(), method="DOP853", t_eval=wl.W2_T,
                        rtol=1e-13, atol=1e-14)
        _REF_CACHE[("dop853", B)] = sol.y.T.reshape(len(wl.W2_T), B, 2)
    return _REF_CACHE[("dop853", B)]


# ----------------------------------------------------------------------------- libs

LIBS = {}


def load_libs(wanted, out):
    def _try(name, fn):
        if name not in wanted:
            return
        try:
            LIBS[name] = fn()
            out.emit({"record": "library", "library": name, "status": "ok",
                      "version": getattr(LIBS[name], "__version__", None)})
        except Exception as e:  # ImportError and friends: skip the library
            out.emit({"record": "library", "library": name, "status": "skipped",
                      "reason": f"{type(e).__name__}: {e}"})

    def _torch():
        import torch
        torch.set_num_threads(2)
        return torch

    def _jax():
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        return jax

    def _scipy():
        import scipy
        import scipy.integrate  # noqa: F401
        return scipy

    _try("numpy", lambda: np)
    _try("torch", _torch)
    if "torchdiffeq" in wanted or "torchode" in wanted:
        if "torch" not in LIBS:
            try:
                LIBS["torch"] = _torch()
            except Exception:
                pass
    _try("torchdiffeq", lambda: __import__("torchdiffeq"))
    _try("torchode", lambda: __import__("torchode"))
    if "diffrax" in wanted and "jax" not in wanted:
        try:
            LIBS["jax"] = _jax()
        except Exception:
            pass
    _try("jax", _jax)
    _try("diffrax", lambda: __import__("diffrax"))
    _try("scipy", _scipy)


def have(*names):
    return all(n in LIBS for n in names)


def run_case(out, base, fn):
    """fn() -> dict of fields; errors become a status=error record."""
    rec = dict(base)
    try:
        rec.update(fn())
        rec.setdefault("status", "ok")
        rec["loadavg_1m"] = loadavg()
    except Exception as e:
        rec["status"] = "error"
        rec["error"] = f"{type(e).__name__}: {e}"[:2000]
        rec["traceback_tail"] = traceback.format_exc()[-1500:]
    out.emit(rec)
    return rec


def base_rec(workload, case, library, variant, **kw):
    r = {"record": "result", "side": "peers", "workload": workload, "name": NAMES[workload], "case": case,
         "library": library, "variant": variant}
    r.update(kw)
    return r


# ----------------------------------------------------------------------------- torch helpers


def torch_mlp_module(dtype):
    torch = LIBS["torch"]
    (W1, W2, W3), (b1, b2, b3) = wl.mlp_weights()
    npdt = np.dtype(dtype)

    class MLPField(torch.nn.Module):
        def __init__(self):
            super().__init__()
            P = lambda a: torch.nn.Parameter(torch.from_numpy(a.astype(npdt)))  # noqa: E731
            self.W1, self.b1 = P(W1), P(b1)
            self.W2, self.b2 = P(W2), P(b2)
            self.W3, self.b3 = P(W3), P(b3)
            self.nfev = 0

        def forward(self, t, z):
            self.nfev += 1
            h = torch.tanh(torch.addmm(self.b1, z, self.W1.t()))
            h = torch.tanh(torch.addmm(self.b2, h, self.W2.t()))
            return torch.addmm(self.b3, h, self.W3.t())

    return MLPField()


def torch_lorenz(rho, dtype):
    torch = LIBS["torch"]
    sigma = torch.tensor(wl.LORENZ_SIGMA, dtype=dtype)
    beta = torch.tensor(wl.LORENZ_BETA, dtype=dtype)
    rho = torch.as_tensor(rho, dtype=dtype)
    counter = {"nfev": 0}

    def f(t, y):
        counter["nfev"] += 1
        x, yy, z = y[:, 0], y[:, 1], y[:, 2]
        return torch.stack([sigma * (yy - x), x * (rho - z) - yy, x * yy - beta * z], dim=1)

    return f, counter


def torchode_rk4_class():
    import torchode as to
    from torchode.interpolation import LinearInterpolation
    from torchode.single_step_methods.runge_kutta import ButcherTableau, ExplicitRungeKutta

    class RK4(ExplicitRungeKutta):
        """Classical RK4 as a torchode ButcherTableau (torchode ships no RK4)."""
        TABLEAU = ButcherTableau.from_lists(
            c=[0.0, 0.5, 0.5, 1.0], a=[[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
            b=[1 / 6, 1 / 3, 1 / 3, 1 / 6], b_err=[0.0, 0.0, 0.0, 0.0])

        def __init__(self, term=None):
            super().__init__(term, RK4.TABLEAU)

        def convergence_order(self):
            return 4

        def build_interpolation(self, data):
            return LinearInterpolation(data.t0, data.dt, data.y0, data.y1)

    del to
    return RK4


def torchode_stats(sol):
    s = sol.stats
    g = lambda k: s[k].detach().cpu().numpy() if k in s else None  # noqa: E731
    steps, acc = g("n_steps"), g("n_accepted")
    rej = None if steps is None or acc is None else steps - acc
    return stat_fields(nfev=g("n_f_evals"), steps=steps, accepted=acc, rejected=rej)


# ----------------------------------------------------------------------------- jax helpers


def jnp_mlp_params(dtype):
    import jax.numpy as jnp
    (W1, W2, W3), (b1, b2, b3) = wl.mlp_weights()
    return tuple(jnp.asarray(a.astype(dtype)) for a in (W1, b1, W2, b2, W3, b3))


def jax_mlp_f(params, z):
    import jax.numpy as jnp
    W1, b1, W2, b2, W3, b3 = params
    h = jnp.tanh(z @ W1.T + b1)
    h = jnp.tanh(h @ W2.T + b2)
    return h @ W3.T + b3


def jax_lorenz_f(z, rho):
    """z (..., 3), rho broadcastable to z[..., 0]."""
    import jax.numpy as jnp
    sigma, beta = wl.LORENZ_SIGMA, wl.LORENZ_BETA
    x, y, w = z[..., 0], z[..., 1], z[..., 2]
    return jnp.stack([sigma * (y - x), x * (rho - w) - y, x * y - beta * w], axis=-1).astype(z.dtype)


def jax_rk4(f, y0, t0, dt, n_steps):
    """Hand-written classical RK4 in a lax.fori_loop (the 'jax-rk4' peer)."""
    import jax
    dt = jnp_scalar(dt, y0.dtype)
    half = jnp_scalar(0.5, y0.dtype)
    sixth = jnp_scalar(1.0 / 6.0, y0.dtype)
    two = jnp_scalar(2.0, y0.dtype)

    def body(i, y):
        k1 = f(y)
        k2 = f(y + half * dt * k1)
        k3 = f(y + half * dt * k2)
        k4 = f(y + dt * k3)
        return y + dt * sixth * (k1 + two * k2 + two * k3 + k4)

    return jax.lax.fori_loop(0, n_steps, body, y0)


def jnp_scalar(x, dtype):
    import jax.numpy as jnp
    return jnp.asarray(x, dtype=dtype)


def diffrax_rk4_class():
    import diffrax

    class RK4(diffrax.AbstractERK):
        """Classical RK4 through diffrax's own ERK machinery (diffrax ships no RK4)."""
        tableau = diffrax.ButcherTableau(
            c=np.array([0.5, 0.5, 1.0]),
            b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
            b_error=np.array([0.0, 0.0, 0.0, 0.0]),
            a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
        )
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    return RK4


def jax_compile(fn, *args):
    """AOT-compile jit(fn) for these args; returns (compiled, compile_s)."""
    import jax
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def jax_bench(compiled, *args):
    import jax
    return bench(lambda: jax.block_until_ready(compiled(*args)))


def diffrax_stats(stats):
    g = lambda k: np.asarray(stats[k]) if k in stats else None  # noqa: E731
    return stat_fields(steps=g("num_steps"), accepted=g("num_accepted_steps"),
                       rejected=g("num_rejected_steps"))


# ============================================================================= W1


def run_w1(out):
    for c in wl.w1_cases(Cfg.quick):
        case, B, dtype = c["case"], c["B"], c["dtype"]
        ref = numpy_rk4_mlp(B)
        extra = lambda z1: {**state_checksums(z1),  # noqa: E731
                            "max_abs_diff_vs_numpy_rk4_f64": float(np.abs(np.asarray(z1, np.float64) - ref).max())}
        common = {"B": B, "dtype": dtype, "method": "rk4", "dt": wl.W1_DT}

        if have("torchdiffeq"):
            def td():
                torch, tdq = LIBS["torch"], LIBS["torchdiffeq"]
                f = torch_mlp_module(dtype)
                z0 = torch.from_numpy(wl.mlp_z0(B).astype(dtype))
                t = torch.tensor(wl.W1_T, dtype=z0.dtype)

                def call():
                    with torch.no_grad():
                        return tdq.odeint(f, z0, t, method="rk4", options={"step_size": wl.W1_DT})[-1]
                f.nfev = 0
                call()
                nfev = f.nfev
                med, times, z1 = bench(call)
                return {**timing_fields(med, times), **stat_fields(nfev=nfev, steps=nfev / 4),
                        **extra(z1.numpy()),
                        "note": "torchdiffeq 'rk4' is Kutta's 3/8 rule (rk4_alt_step_func), not classical RK4"}
            run_case(out, base_rec("W1", case, "torchdiffeq", "rk4(3/8-rule) step_size=0.01", **common), td)

        if have("torchode"):
            def tode():
                torch, to = LIBS["torch"], LIBS["torchode"]
                f = torch_mlp_module(dtype)
                z0 = torch.from_numpy(wl.mlp_z0(B).astype(dtype))
                t_eval = torch.tensor(wl.W1_T, dtype=z0.dtype).repeat(B, 1)
                term = to.ODETerm(f)
                solver = to.AutoDiffAdjoint(torchode_rk4_class()(term), to.FixedStepController())
                dt0 = torch.full((B,), wl.W1_DT, dtype=z0.dtype)

                def call():
                    with torch.no_grad():
                        return solver.solve(to.InitialValueProblem(y0=z0, t_eval=t_eval), dt0=dt0)
                med, times, sol = bench(call)
                return {**timing_fields(med, times), **torchode_stats(sol), **extra(sol.ys[:, -1].numpy()),
                        "note": "classical RK4 as a custom torchode ButcherTableau (torchode ships no RK4); "
                                "eager mode (no torch.compile); torchode accumulates t += dt in the state dtype "
                                "and stops once t >= 1, so in float32 it may take a 101st step and linearly "
                                "interpolate back to t=1"}
            run_case(out, base_rec("W1", case, "torchode", "rk4(custom tableau) FixedStepController", **common), tode)

        if have("jax"):
            def jrk4():
                import jax.numpy as jnp
                params = jnp_mlp_params(dtype)
                z0 = jnp.asarray(wl.mlp_z0(B).astype(dtype))
                fn = lambda p, z: jax_rk4(lambda y: jax_mlp_f(p, y), z, 0.0, wl.W1_DT, 100)  # noqa: E731
                compiled, cs = jax_compile(fn, params, z0)
                med, times, z1 = jax_bench(compiled, params, z0)
                return {**timing_fields(med, times, cs), **stat_fields(nfev=400, steps=100),
                        **extra(np.asarray(z1))}
            run_case(out, base_rec("W1", case, "jax", "jax-rk4 lax.fori_loop batched", **common), jrk4)

        if have("diffrax"):
            for variant, solver_name in (("RK4(custom ButcherTableau) ConstantStepSize vmap", "rk4"),
                                         ("Tsit5 ConstantStepSize vmap (nearest built-in)", "tsit5")):
                if Cfg.quick and solver_name == "tsit5":
                    continue
                def dfx(solver_name=solver_name):
                    import jax
                    import jax.numpy as jnp
                    import diffrax
                    params = jnp_mlp_params(dtype)
                    z0 = jnp.asarray(wl.mlp_z0(B).astype(dtype))
                    solver = diffrax_rk4_class()() if solver_name == "rk4" else diffrax.Tsit5()
                    term = diffrax.ODETerm(lambda t, y, p: jax_mlp_f(p, y))
                    t0, t1, dt0 = (jnp.asarray(v, dtype=dtype) for v in (0.0, 1.0, wl.W1_DT))

                    def one(p, y0):
                        sol = diffrax.diffeqsolve(term, solver, t0, t1, dt0, y0, args=p,
                                                  stepsize_controller=diffrax.ConstantStepSize(),
                                                  saveat=diffrax.SaveAt(t1=True))
                        return sol.ys[-1], sol.stats

                    fn = jax.vmap(one, in_axes=(None, 0))
                    compiled, cs = jax_compile(fn, params, z0)
                    med, times, (z1, stats) = jax_bench(compiled, params, z0)
                    steps = np.asarray(stats["num_steps"])
                    per = 4 if solver_name == "rk4" else 6
                    r = {**timing_fields(med, times, cs), **diffrax_stats(stats),
                         **extra(np.asarray(z1))}
                    r["nfev"] = float(per * steps.mean())
                    r["nfev_note"] = f"computed as {per}*steps (diffrax does not count evaluations)"
                    if solver_name == "tsit5":
                        r["method"] = "tsit5"
                        r["note"] = ("diffrax has no classical RK4 class; Tsit5 at the same fixed dt is the "
                                     "nearest built-in (6 stages/step, 5th order) - not the same method")
                    else:
                        r["note"] = "diffrax ships no RK4; classical RK4 given to diffrax.AbstractERK as a ButcherTableau"
                    return r
                run_case(out, base_rec("W1", case, "diffrax", variant, **common), dfx)


# ============================================================================= W2


def run_w2(out):
    rtol, atol, T = wl.W2_RTOL, wl.W2_ATOL, wl.W2_T
    for c in wl.w2_cases(Cfg.quick):
        case, B = c["case"], c["B"]
        ref = dop853_mlp(B) if have("scipy") else None

        def extra(ys):
            ys = np.asarray(ys, np.float64)
            d = {"ys_sum": float(ys.sum()), **state_checksums(ys[-1])}
            if ref is not None:
                d["max_abs_err_vs_dop853"] = float(np.abs(ys - ref).max())
            return d
        common = {"B": B, "dtype": "float64", "method": "dopri5", "rtol": rtol, "atol": atol,
                  "outputs": len(T)}

        if have("torchdiffeq"):
            def td():
                torch, tdq = LIBS["torch"], LIBS["torchdiffeq"]
                f = torch_mlp_module("float64")
                z0 = torch.from_numpy(wl.mlp_z0(B))
                t = torch.from_numpy(T)

                def call():
                    with torch.no_grad():
                        return tdq.odeint(f, z0, t, method="dopri5", rtol=rtol, atol=atol)
                f.nfev = 0
                call()
                nfev = f.nfev
                med, times, ys = bench(call)
                return {**timing_fields(med, times), **stat_fields(nfev=nfev), **extra(ys.numpy()),
                        "note": "one step size shared by the whole batch (RMS error norm over all B*2 entries)"}
            run_case(out, base_rec("W2", case, "torchdiffeq", "dopri5 batched", **common), td)

        if have("torchode"):
            def tode():
                torch, to = LIBS["torch"], LIBS["torchode"]
                f = torch_mlp_module("float64")
                z0 = torch.from_numpy(wl.mlp_z0(B))
                t_eval = torch.from_numpy(T).repeat(B, 1)
                term = to.ODETerm(f)
                solver = to.AutoDiffAdjoint(to.Dopri5(term), to.IntegralController(atol=atol, rtol=rtol, term=term))

                def call():
                    with torch.no_grad():
                        return solver.solve(to.InitialValueProblem(y0=z0, t_eval=t_eval))
                med, times, sol = bench(call)
                return {**timing_fields(med, times), **torchode_stats(sol),
                        **extra(sol.ys.permute(1, 0, 2).numpy()),
                        "note": "per-trajectory step sizes; eager mode (no torch.compile)"}
            run_case(out, base_rec("W2", case, "torchode", "Dopri5 IntegralController", **common), tode)

        if have("diffrax"):
            def dfx():
                import jax
                import jax.numpy as jnp
                import diffrax
                params = jnp_mlp_params("float64")
                z0 = jnp.asarray(wl.mlp_z0(B))
                term = diffrax.ODETerm(lambda t, y, p: jax_mlp_f(p, y))
                ts = jnp.asarray(T)

                def one(p, y0):
                    sol = diffrax.diffeqsolve(term, diffrax.Dopri5(), 0.0, 1.0, None, y0, args=p,
                                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                              saveat=diffrax.SaveAt(ts=ts))
                    return sol.ys, sol.stats
                fn = jax.vmap(one, in_axes=(None, 0))
                compiled, cs = jax_compile(fn, params, z0)
                med, times, (ys, stats) = jax_bench(compiled, params, z0)
                return {**timing_fields(med, times, cs), **diffrax_stats(stats),
                        **extra(np.swapaxes(np.asarray(ys), 0, 1)),
                        "note": "jit(vmap(diffeqsolve)): per-trajectory step sizes; PIDController default "
                                "(pcoeff=0, icoeff=1: an I controller); dt0=None (automatic initial step)"}
            run_case(out, base_rec("W2", case, "diffrax", "Dopri5 PIDController SaveAt(ts) vmap", **common), dfx)

        if have("scipy"):
            def sp():
                from scipy.integrate import solve_ivp
                z0 = wl.mlp_z0(B)
                counter = {"n": 0}

                def call():
                    ys = np.empty((len(T), B, 2))
                    nfev = np.empty(B)
                    for i in range(B):
                        s = solve_ivp(lambda t, y: wl.mlp_f(y[None])[0], (0.0, 1.0), z0[i], method="RK45",
                                      t_eval=T, rtol=rtol, atol=atol)
                        ys[:, i] = s.y.T
                        nfev[i] = s.nfev
                    counter["nfev"] = nfev
                    return ys
                med, times, ys = bench(call)
                return {**timing_fields(med, times), **stat_fields(nfev=counter["nfev"]), **extra(ys),
                        "note": "scipy.integrate.solve_ivp RK45 (Dormand-Prince 5(4)), one call per trajectory"}
            run_case(out, base_rec("W2", case, "scipy", "solve_ivp RK45 per trajectory", **common), sp)


# ============================================================================= W3

def run_w3(out):
    c = wl.w3_cases(Cfg.quick)[0]
    case, B = c["case"], c["B"]
    rtol, atol, T = wl.W3_RTOL, wl.W3_ATOL, wl.W3_T
    common = {"B": B, "dtype": "float64", "method": "dopri5", "rtol": rtol, "atol": atol}
    target_np = wl.mlp_target(B)

    def finish(med_g, times_g, med_f, times_f, extra):
        return {**timing_fields(med_g, times_g), "forward_only_seconds_median": med_f,
                "forward_repeats": len(times_f), "ratio_grad_to_forward": med_g / med_f, **extra}

    if have("torchdiffeq"):
        for variant in ("odeint (backprop)", "odeint_adjoint"):
            def td(variant=variant):
                torch, tdq = LIBS["torch"], LIBS["torchdiffeq"]
                f = torch_mlp_module("float64")
                z0 = torch.from_numpy(wl.mlp_z0(B)).requires_grad_(True)
                t = torch.from_numpy(T)
                target = torch.from_numpy(target_np)
                solve = tdq.odeint if variant.startswith("odeint (") else tdq.odeint_adjoint
                params = [f.W1, f.b1, f.W2, f.b2, f.W3, f.b3]

                def loss_fn():
                    z1 = solve(f, z0, t, method="dopri5", rtol=rtol, atol=atol)[-1]
                    return torch.mean((z1 - target) ** 2)

                def vg():
                    loss = loss_fn()
                    grads = torch.autograd.grad(loss, params + [z0])
                    return loss.detach(), grads

                def fwd():
                    with torch.no_grad():
                        return loss_fn()
                f.nfev = 0
                fwd()
                nfev_fwd = f.nfev
                f.nfev = 0
                vg()
                nfev_total = f.nfev
                med_f, times_f, _ = bench(fwd)
                med_g, times_g, (loss, grads) = bench(vg)  # last, so the CPU diagnostics are its
                return finish(med_g, times_g, med_f, times_f, {
                    **stat_fields(nfev=nfev_fwd), "nfev_forward_plus_backward": nfev_total,
                    **grad_fields(loss.item(), [g.numpy() for g in grads]),
                    "note": "one step size shared by the batch" + (
                        "; adjoint rtol/atol = forward's (torchdiffeq default)" if "adjoint" in variant else "")})
            run_case(out, base_rec("W3", case, "torchdiffeq", variant, **common), td)

    if have("torchode"):
        def tode():
            torch, to = LIBS["torch"], LIBS["torchode"]
            f = torch_mlp_module("float64")
            z0 = torch.from_numpy(wl.mlp_z0(B)).requires_grad_(True)
            t_eval = torch.from_numpy(T).repeat(B, 1)
            target = torch.from_numpy(target_np)
            term = to.ODETerm(f)
            solver = to.AutoDiffAdjoint(to.Dopri5(term), to.IntegralController(atol=atol, rtol=rtol, term=term))
            params = [f.W1, f.b1, f.W2, f.b2, f.W3, f.b3]
            holder = {}

            def loss_fn():
                sol = solver.solve(to.InitialValueProblem(y0=z0, t_eval=t_eval))
                holder["sol"] = sol
                return torch.mean((sol.ys[:, -1] - target) ** 2)

            def vg():
                loss = loss_fn()
                return loss.detach(), torch.autograd.grad(loss, params + [z0])

            def fwd():
                with torch.no_grad():
                    return loss_fn()
            med_f, times_f, _ = bench(fwd)
            med_g, times_g, (loss, grads) = bench(vg)
            return finish(med_g, times_g, med_f, times_f, {
                **torchode_stats(holder["sol"]), **grad_fields(loss.item(), [g.numpy() for g in grads]),
                "note": "per-trajectory step sizes; backprop through the solver; eager mode"})
        run_case(out, base_rec("W3", case, "torchode", "AutoDiffAdjoint (backprop)", **common), tode)

    if have("diffrax"):
        for variant, batched in (("RecursiveCheckpointAdjoint", False), ("BacksolveAdjoint", False),
                                 ("RecursiveCheckpointAdjoint", True), ("BacksolveAdjoint", True)):
            if Cfg.quick and variant == "BacksolveAdjoint":
                continue

            def dfx(variant=variant, batched=batched):
                import jax
                import jax.numpy as jnp
                import diffrax
                params = jnp_mlp_params("float64")
                z0 = jnp.asarray(wl.mlp_z0(B))
                target = jnp.asarray(target_np)
                term = diffrax.ODETerm(lambda t, y, p: jax_mlp_f(p, y))
                adjoint = getattr(diffrax, variant)()

                def one(p, y0):
                    sol = diffrax.diffeqsolve(term, diffrax.Dopri5(), 0.0, 1.0, None, y0, args=p,
                                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                              saveat=diffrax.SaveAt(t1=True), adjoint=adjoint)
                    return sol.ys[-1], sol.stats

                def loss_fn(p, y0):
                    # batched: the (B, 2) batch is one ODE system with one step size (as
                    # torchdiffeq solves it); else vmap: a step size per trajectory
                    z1, stats = one(p, y0) if batched else jax.vmap(one, in_axes=(None, 0))(p, y0)
                    return jnp.mean((z1 - target) ** 2), stats

                vg = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
                cg, cs_g = jax_compile(vg, params, z0)
                cf, cs_f = jax_compile(loss_fn, params, z0)
                med_f, times_f, (_, stats) = jax_bench(cf, params, z0)
                med_g, times_g, ((loss, _), (gp, gz)) = jax_bench(cg, params, z0)
                r = finish(med_g, times_g, med_f, times_f, {
                    **diffrax_stats(stats), **grad_fields(loss, list(gp) + [gz]),
                    "compile_forward_s": cs_f,
                    "note": ("jit(value_and_grad(mean over diffeqsolve of the (B, 2) batch)): one step "
                             "size shared by the batch" if batched else
                             "jit(value_and_grad(mean over vmap(diffeqsolve))): per-trajectory step sizes")})
                r["compile_s"] = cs_g
                return r
            run_case(out, base_rec("W3", case, "diffrax", f"Dopri5 {variant} {'batched' if batched else 'vmap'}",
                                   **common), dfx)


# ============================================================================= W4


def run_w4(out):
    for c in wl.w4_cases(Cfg.quick):
        case, method, B, dtype = c["case"], c["method"], c["B"], c["dtype"]
        rho_np = wl.lorenz_rho(B)
        z0_np = wl.lorenz_z0(B).astype(dtype)
        common = {"B": B, "dtype": dtype, "method": method}
        if method == "dopri5":
            common.update(rtol=wl.W4_RTOL, atol=wl.W4_ATOL)
        else:
            common.update(dt=wl.W4_RK4_DT)
        n_rk4 = int(round(1.0 / wl.W4_RK4_DT))
        ref = numpy_rk4_lorenz(B) if method == "rk4" else None

        def checks(z1):
            d = state_checksums(z1)
            if ref is not None:
                d["max_abs_diff_vs_numpy_rk4_f64"] = float(np.abs(np.asarray(z1, np.float64) - ref).max())
            return d

        if have("torchdiffeq"):
            def td():
                torch, tdq = LIBS["torch"], LIBS["torchdiffeq"]
                tdt = getattr(torch, dtype)
                f, counter = torch_lorenz(torch.from_numpy(rho_np).to(tdt), tdt)
                z0 = torch.from_numpy(z0_np)
                t = torch.tensor(wl.W4_T, dtype=tdt)
                if method == "dopri5":
                    kw = dict(method="dopri5", rtol=wl.W4_RTOL, atol=wl.W4_ATOL)
                else:
                    kw = dict(method="rk4", options={"step_size": wl.W4_RK4_DT})

                def call():
                    with torch.no_grad():
                        return tdq.odeint(f, z0, t, **kw)[-1]
                counter["nfev"] = 0
                call()
                nfev = counter["nfev"]
                med, times, z1 = bench(call)
                note = "one step size shared by all B trajectories (RMS norm over the batch)"
                if method == "rk4":
                    note = "torchdiffeq 'rk4' is the 3/8 rule"
                return {**timing_fields(med, times),
                        **stat_fields(nfev=nfev, steps=(nfev / 4 if method == "rk4" else None)),
                        **checks(z1.numpy()), "note": note}
            run_case(out, base_rec("W4", case, "torchdiffeq",
                                   "dopri5 batched" if method == "dopri5" else "rk4(3/8-rule) step_size=0.001",
                                   **common), td)

        if have("torchode"):
            def tode():
                torch, to = LIBS["torch"], LIBS["torchode"]
                tdt = getattr(torch, dtype)
                f, _ = torch_lorenz(torch.from_numpy(rho_np).to(tdt), tdt)
                z0 = torch.from_numpy(z0_np)
                t_eval = torch.tensor(wl.W4_T, dtype=tdt).repeat(B, 1)
                term = to.ODETerm(f)
                if method == "dopri5":
                    solver = to.AutoDiffAdjoint(to.Dopri5(term),
                                                to.IntegralController(atol=wl.W4_ATOL, rtol=wl.W4_RTOL, term=term))
                    dt0 = None
                else:
                    solver = to.AutoDiffAdjoint(torchode_rk4_class()(term), to.FixedStepController())
                    dt0 = torch.full((B,), wl.W4_RK4_DT, dtype=tdt)

                def call():
                    with torch.no_grad():
                        return solver.solve(to.InitialValueProblem(y0=z0, t_eval=t_eval), dt0=dt0)
                med, times, sol = bench(call)
                return {**timing_fields(med, times), **torchode_stats(sol),
                        **checks(sol.ys[:, -1].numpy()),
                        "note": "eager mode; per-trajectory steps" + (
                            "; float32 time accumulation: torchode takes a 1001st step past t=1 and linearly "
                            "interpolates back (visible in max_abs_diff_vs_numpy_rk4_f64)" if method == "rk4" else "")}
            run_case(out, base_rec("W4", case, "torchode",
                                   "Dopri5 IntegralController" if method == "dopri5" else "rk4(custom tableau) fixed",
                                   **common), tode)

        if have("diffrax"):
            def dfx():
                import jax
                import jax.numpy as jnp
                import diffrax
                rho = jnp.asarray(rho_np.astype(dtype))
                z0 = jnp.asarray(z0_np)
                term = diffrax.ODETerm(lambda t, y, r: jax_lorenz_f(y, r))
                if method == "dopri5":
                    solver, ctrl, dt0 = diffrax.Dopri5(), diffrax.PIDController(rtol=wl.W4_RTOL, atol=wl.W4_ATOL), None
                    t0, t1 = 0.0, 1.0
                else:
                    solver, ctrl = diffrax_rk4_class()(), diffrax.ConstantStepSize()
                    t0, t1, dt0 = (jnp.asarray(v, dtype=dtype) for v in (0.0, 1.0, wl.W4_RK4_DT))

                def one(y0, r):
                    sol = diffrax.diffeqsolve(term, solver, t0, t1, dt0, y0, args=r, stepsize_controller=ctrl,
                                              saveat=diffrax.SaveAt(t1=True), max_steps=16384)
                    return sol.ys[-1], sol.stats
                fn = jax.vmap(one)
                compiled, cs = jax_compile(fn, z0, rho)
                med, times, (z1, stats) = jax_bench(compiled, z0, rho)
                r = {**timing_fields(med, times, cs), **diffrax_stats(stats), **checks(np.asarray(z1)),
                     "note": "jit(vmap(diffeqsolve)), per-trajectory step sizes"}
                if method == "rk4":
                    r["nfev"] = 4 * r["steps"]
                    r["note"] += "; classical RK4 as a custom ButcherTableau (diffrax ships no RK4)"
                return r
            run_case(out, base_rec("W4", case, "diffrax",
                                   "Dopri5 PIDController vmap" if method == "dopri5" else "RK4(custom tableau) vmap",
                                   **common), dfx)

        if have("jax") and method == "rk4":
            def jrk4():
                import jax.numpy as jnp
                rho = jnp.asarray(rho_np.astype(dtype))
                z0 = jnp.asarray(z0_np)
                fn = lambda y0, r: jax_rk4(lambda y: jax_lorenz_f(y, r), y0, 0.0, wl.W4_RK4_DT, n_rk4)  # noqa: E731
                compiled, cs = jax_compile(fn, z0, rho)
                med, times, z1 = jax_bench(compiled, z0, rho)
                return {**timing_fields(med, times, cs), **stat_fields(nfev=4 * n_rk4, steps=n_rk4),
                        **checks(np.asarray(z1))}
            run_case(out, base_rec("W4", case, "jax", "jax-rk4 lax.fori_loop batched", **common), jrk4)


# ============================================================================= W5


def run_w5(out):
    s0_np = wl.fig8_s0()
    T, rtol, atol = wl.FIG8_T, wl.W5_RTOL, wl.W5_ATOL
    case = wl.w5_cases(Cfg.quick)[0]["case"]
    common = {"dtype": "float64", "rtol": rtol, "atol": atol, "T": T}

    if have("diffrax"):
        import itertools
        for (solver_name, mode) in itertools.product(("Tsit5", "Dopri5"), ("jacfwd(jacfwd) ForwardMode",
                                                                           "jax.hessian DirectAdjoint")):
            if Cfg.quick and (mode.startswith("jax.hessian") or solver_name == "Tsit5"):
                continue

            def dfx(solver_name=solver_name, mode=mode):
                import jax
                import jax.numpy as jnp
                import diffrax

                def fig8(t, s, args):
                    x = s[:6].reshape(3, 2)
                    acc = []
                    for i in range(3):
                        a = jnp.zeros(2, s.dtype)
                        for j in range(3):
                            if i != j:
                                d = x[j] - x[i]
                                a = a + d / jnp.sum(d * d) ** 1.5
                        acc.append(a)
                    return jnp.concatenate([s[6:]] + acc)
                term = diffrax.ODETerm(fig8)
                solver = getattr(diffrax, solver_name)()
                if mode.startswith("jacfwd"):
                    adjoint, max_steps = diffrax.ForwardMode(), 100000
                else:
                    adjoint, max_steps = diffrax.DirectAdjoint(), 8192

                def solve(s0):
                    return diffrax.diffeqsolve(term, solver, 0.0, T, None, s0,
                                               stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                               saveat=diffrax.SaveAt(t1=True), adjoint=adjoint,
                                               max_steps=max_steps)

                def L(s0):
                    sT = solve(s0).ys[-1]
                    return jnp.sum((sT - s0) ** 2)
                hess = jax.jacfwd(jax.jacfwd(L)) if mode.startswith("jacfwd") else jax.hessian(L)
                s0 = jnp.asarray(s0_np)
                compiled, cs = jax_compile(hess, s0)
                med, times, H = jax_bench(compiled, s0)
                sol = jax.jit(solve)(s0)
                Lval = float(jax.jit(L)(s0))
                return {**timing_fields(med, times, cs), **diffrax_stats(sol.stats), "L_value": Lval,
                        **hessian_fields(np.asarray(H)),
                        "note": ("forward-over-forward through the solver" if mode.startswith("jacfwd") else
                                 "jax.hessian = jacfwd(jacrev); reverse mode needs DirectAdjoint here "
                                 "(max_steps=8192 bounds its scan)")}
            run_case(out, base_rec("W5", case, "diffrax", f"{solver_name} {mode}", **common), dfx)

    if have("torchdiffeq") and Cfg.quick:
        out.emit(base_rec("W5", case, "torchdiffeq", "dopri5 autograd.functional.hessian", **common,
                          status="skipped", reason="--quick: one Hessian call takes about a minute"))
    elif have("torchdiffeq"):
        def td():
            torch, tdq = LIBS["torch"], LIBS["torchdiffeq"]
            counter = {"nfev": 0}

            def fig8(t, s):
                counter["nfev"] += 1
                x = s[:6].reshape(3, 2)
                acc = []
                for i in range(3):
                    a = torch.zeros(2, dtype=s.dtype)
                    for j in range(3):
                        if i != j:
                            d = x[j] - x[i]
                            a = a + d / torch.sum(d * d) ** 1.5
                    acc.append(a)
                return torch.cat([s[6:]] + acc)
            t = torch.tensor([0.0, T], dtype=torch.float64)

            def L(s0):
                sT = tdq.odeint(fig8, s0, t, method="dopri5", rtol=rtol, atol=atol)[-1]
                return torch.sum((sT - s0) ** 2)
            s0 = torch.from_numpy(s0_np.copy())
            with torch.no_grad():
                counter["nfev"] = 0
                Lval = L(s0).item()
                nfev = counter["nfev"]
            med, times, H = bench(lambda: torch.autograd.functional.hessian(L, s0))
            return {**timing_fields(med, times), **stat_fields(nfev=nfev), "L_value": Lval,
                    **hessian_fields(H.detach().numpy()),
                    "note": "torch.autograd.functional.hessian (double backprop through odeint, 12 passes)"}
        run_case(out, base_rec("W5", case, "torchdiffeq", "dopri5 autograd.functional.hessian", **common), td)


# ============================================================================= roofline


def roofline_child(threads, libs):
    """Runs in a fresh interpreter whose BLAS thread env vars are already set."""
    res = []
    reps = 5 if Cfg.quick else 20
    for lib in libs:
        if lib == "torch":
            try:
                import torch
                torch.set_num_threads(threads)
            except Exception as e:
                res.append({"library": "torch", "status": "skipped", "reason": f"{type(e).__name__}: {e}"})
                continue
        shapes = wl.ROOFLINE_SHAPES[:1] if Cfg.quick else wl.ROOFLINE_SHAPES
        for (M, K, N) in shapes:
            for dtype in ("float32", "float64"):
                rng = np.random.RandomState(0)
                a = rng.standard_normal((M, K)).astype(dtype)
                b = rng.standard_normal((K, N)).astype(dtype)
                if lib == "torch":
                    a, b = torch.from_numpy(a), torch.from_numpy(b)
                    c = torch.empty((M, N), dtype=a.dtype)
                    fn = lambda: torch.matmul(a, b, out=c)  # noqa: E731
                else:
                    c = np.empty((M, N), dtype=dtype)
                    fn = lambda: np.matmul(a, b, out=c)  # noqa: E731
                for _ in range(3):
                    fn()
                times = []
                budget = 0.1 if Cfg.quick else 1.0
                mon = CpuMonitor().start()
                while len(times) < reps or (sum(times) < budget and len(times) < 2000):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                med = float(np.median(times))
                res.append({"library": lib, "status": "ok", "case": f"{M}x{K}@{K}x{N} {dtype} threads={threads}",
                            "M": M, "K": K, "N": N, "dtype": dtype, "threads": threads, "median_s": med,
                            "repeats": len(times), "gflops": 2.0 * M * K * N / med / 1e9,
                            "best_gflops": 2.0 * M * K * N / min(times) / 1e9,
                            "loadavg_1m": loadavg(), "other_cpu_frac": mon.stop()})
    return res


def blas_info():
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        info["numpy_blas"] = cfg.get("Build Dependencies", {}).get("blas", {})
    except Exception:
        pass
    return info


def run_roofline(out, libs):
    libs = [l for l in ("numpy", "torch") if l in libs]
    for threads in (1, 2):
        env = dict(os.environ)
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
        waited = wait_idle()
        cmd = [sys.executable, os.path.abspath(__file__), "--roofline-child", str(threads),
               "--libs", ",".join(libs)] + (["--quick"] if Cfg.quick else [])
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            out.emit(base_rec("roofline", f"threads={threads}", ",".join(libs), "matmul", status="error",
                              error=p.stderr[-2000:]))
            continue
        for r in json.loads(p.stdout.strip().splitlines()[-1]):
            rec = base_rec("roofline", r.pop("case", f"threads={threads}"), r.pop("library"), "matmul")
            rec.update(r)
            rec["waited_for_idle_s"] = round(waited, 1)
            rec["env"] = {"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            out.emit(rec)


# ============================================================================= main


def meta_record():
    m = {"record": "meta", "script": "peers.py", "python": sys.version.split()[0], "executable": sys.executable,
         "platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
         "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "quick": Cfg.quick,
         "budget_s": Cfg.budget, "min_repeats": Cfg.min_repeats, "max_repeats": Cfg.max_repeats,
         "wait_idle_s": Cfg.wait_idle, "retries": Cfg.retries,
         "loadavg_1m": loadavg(), "numpy": np.__version__, **blas_info(),
         "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "JAX_PLATFORMS")}}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    m["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    ap.add_argument("--libs", default=",".join(ALL_LIBS))
    ap.add_argument("--out", default=None, help="append JSONL here too (stdout always)")
    ap.add_argument("--budget", type=float, default=None, help="timed seconds per case")
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="before each case wait up to this many seconds for other processes to go quiet")
    ap.add_argument("--retries", type=int, default=None,
                    help="with --wait-idle: re-measurements of a disturbed series (default 2)")
    ap.add_argument("--cases", default=None,
                    help="only cases whose name contains one of these comma-separated strings, e.g. 'B=4096'")
    ap.add_argument("--roofline-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    set_quick(args.quick, args.budget, args.wait_idle)
    if args.retries is not None:
        Cfg.retries = max(0, args.retries)
    if args.cases:
        wanted_cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        for name in ("w1_cases", "w2_cases", "w3_cases", "w4_cases", "w5_cases"):
            orig = getattr(wl, name)
            setattr(wl, name, lambda quick=False, orig=orig: [c for c in orig(quick)
                                                               if any(w in c["case"] for w in wanted_cases)])
    libs = [s.strip() for s in args.libs.split(",") if s.strip()]
    if args.roofline_child is not None:
        print(json.dumps(roofline_child(args.roofline_child, libs)))
        return 0
    workloads = [s.strip() for s in args.workloads.split(",") if s.strip()]
    bad = [w for w in workloads if w not in ALL_WORKLOADS]
    if bad:
        ap.error(f"unknown workloads {bad}; choose from {ALL_WORKLOADS}")
    out = Out(args.out)
    out.emit(meta_record())
    load_libs(libs, out)
    runners = {"W1": run_w1, "W2": run_w2, "W3": run_w3, "W4": run_w4, "W5": run_w5}
    for w in workloads:
        t0 = time.perf_counter()
        if w == "roofline":
            run_roofline(out, libs)
        else:
            runners[w](out)
        out.emit({"record": "workload_done", "workload": w, "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
