"""Trajectories are independent: a trajectory's result (ys and stats) is bitwise the same
whether it is solved alone, at any position of a batch of any size (lone-trajectory path, full
8/16-lane SIMD blocks, the tail after the blocks), with shared or per-trajectory parameters,
and whatever the number of threads (set_num_threads or ODEFAST_NUM_THREADS)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import odefast as of
import pytest
from problems import (FIXED_METHODS, assert_same_solution, linear_ensemble, lorenz_ensemble,
                      nbody_ensemble)


def child_pythonpath(env):
    """PYTHONPATH for a child interpreter that imports the very odefast imported here (an
    installed wheel in CI, the source tree with a built module in development)."""
    pkg_parent = str(Path(of.__file__).resolve().parents[1])
    return os.pathsep.join([pkg_parent] + [p for p in [env.get("PYTHONPATH")] if p])


DTYPES = (np.float64, np.float32)
METHODS = ("euler", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")
DYNAMICS = ("lorenz", "linear", "nbody", "mlp-tanh", "mlp-relu", "mlp-sigmoid", "mlp-time",
            "mlp-narrow")


def make(name, dtype):
    dt = np.dtype(dtype)
    if name == "lorenz":
        return (*lorenz_ensemble(), 0.5)
    if name == "linear":
        return (*linear_ensemble(5, seed=1), 1.0)
    if name == "nbody":
        return (*nbody_ensemble(), 1.0)
    act = name[4:]
    if act == "time":
        f = of.MLP([3, 24, 3], seed=2, dtype=dt, time_dependent=True)
    elif act == "narrow":  # narrow layers (< 8 units: split sums) with partial input registers
        f = of.MLP([3, 5, 19, 3], seed=3, dtype=dt)
    else:
        f = of.MLP([3, 20, 20, 3], activation=act, seed=1, dtype=dt)
    return f, (lambda rng, B: rng.standard_normal((B, 3))), 1.0


def kwargs(method, dtype):
    if method in FIXED_METHODS:
        return {"method": method, "dt": 0.05}
    return {"method": method, "rtol": 1e-6 if np.dtype(dtype) == np.float64 else 1e-4,
                "atol": 1e-8 if np.dtype(dtype) == np.float64 else 1e-6}


def row(sol, b):
    """A Solution restricted to trajectory b (as a batch of one)."""
    return of.Solution(ys=sol.ys[:, b:b + 1], t=sol.t, status=sol.status[b:b + 1],
                       stats={k: v[b:b + 1] for k, v in sol.stats.items()}, method=sol.method)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", METHODS)
def test_batch_independence(method, name, dtype):
    f, sample, T = make(name, dtype)
    rng = np.random.default_rng(11)
    t = np.linspace(0.0, T, 4)
    kw = kwargs(method, dtype)
    y_star = sample(rng, 1).astype(dtype)
    alone = of.solve(f, y_star, t, **kw)
    assert alone.status[0] == 0
    for B in (2, 15, 16, 17, 100):
        others = sample(rng, B).astype(dtype)
        for pos in sorted({0, B // 2, B - 1}):
            y0 = others.copy()
            y0[pos] = y_star[0]
            sol = of.solve(f, y0, t, **kw)
            assert_same_solution(row(sol, pos), alone, f"B={B} pos={pos}")
            assert np.all(sol.status == 0)
    # and a 1-D y0 is the same lone trajectory
    one_d = of.solve(f, y_star[0], t, **kw)
    assert np.array_equal(one_d.ys, alone.ys[:, 0], equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", ("rk4", "dopri5", "dopri8"))
def test_per_trajectory_params_equal_individual_solves(method, name, dtype):
    """params of shape (B, P) give every trajectory its own parameters: each row of the batch is
    bitwise the solve of that trajectory alone with those parameters, both as (P,) and (1, P)."""
    f, sample, T = make(name, dtype)
    rng = np.random.default_rng(5)
    B = 19            # two float64 blocks + 3, one float32 block + 3
    y0 = sample(rng, B).astype(dtype)
    p = f.params.astype(np.float64)
    params = (p * (1.0 + 0.05 * rng.standard_normal((B, p.shape[0])))).astype(dtype)
    t = np.linspace(0.0, T, 3)
    kw = kwargs(method, dtype)
    sol = of.solve(f, y0, t, params=params, **kw)
    assert np.all(sol.status == 0)
    for b in (0, 1, 7, 8, 15, 16, 18):
        shared = of.solve(f, y0[b:b + 1], t, params=params[b], **kw)
        per_row = of.solve(f, y0[b:b + 1], t, params=params[b:b + 1], **kw)
        assert_same_solution(row(sol, b), per_row, f"row {b}: batch vs (1, P)")
        assert_same_solution(row(sol, b), shared, f"row {b}: batch vs (P,)")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", ("rk4", "dopri5"))
@pytest.mark.parametrize("per_trajectory", (False, True), ids=["shared", "per-traj"])
def test_gradient_batch_independence(method, name, dtype, per_trajectory):
    """A trajectory's gradients (dL/dy0, its own dL/dparams) are bitwise the same alone (the
    lone-trajectory vjp) and at any position of a batch (lane blocks, the tail after them)."""
    f, sample, T = make(name, dtype)
    rng = np.random.default_rng(21)
    t = np.linspace(0.0, T, 3)
    kw = kwargs(method, dtype)
    P = f.params.shape[0]
    y_star = sample(rng, 1).astype(dtype)
    cot_star = rng.standard_normal((3, 1, y_star.shape[1])).astype(dtype)
    p_star = f.params.astype(dtype)[None] if per_trajectory else None
    alone = of.vjp(f, y_star, t, cot_star, params=p_star, **kw)
    for B in (16, 19):
        y0 = sample(rng, B).astype(dtype)
        cot = rng.standard_normal((3, B, y0.shape[1])).astype(dtype)
        params = np.tile(f.params.astype(dtype), (B, 1)) if per_trajectory else None
        for pos in (0, 9, B - 1):
            y0[pos], cot[:, pos] = y_star[0], cot_star[:, 0]
            g = of.vjp(f, y0, t, cot, params=params, **kw)
            assert np.array_equal(g.y0[pos], alone.y0[0]), f"B={B} pos={pos}: dL/dy0 differs"
            if per_trajectory:
                assert g.params.shape == (B, P)
                assert np.array_equal(g.params[pos], alone.params[0]), f"B={B} pos={pos}: dL/dp"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", ("lorenz", "nbody", "mlp-tanh"))
def test_identical_params_rows_equal_shared_params(name, dtype):
    """(B, P) params whose rows are all f.params give bitwise the shared-params solve."""
    f, sample, T = make(name, dtype)
    y0 = sample(np.random.default_rng(3), 21).astype(dtype)
    t = np.linspace(0.0, T, 3)
    kw = kwargs("dopri5", dtype)
    shared = of.solve(f, y0, t, **kw)
    per = of.solve(f, y0, t, params=np.tile(f.params.astype(dtype), (21, 1)), **kw)
    assert_same_solution(per, shared)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("batch", (1, 40), ids=["lone", "blocks"])
def test_packed_weights_follow_every_parameter_change(dtype, batch):
    """The core reuses its packed copy of an MLP's shared weights while they stay bitwise the
    same; a weight changed in place, a restored one, and another network with the same
    parameter count and values are all seen. The truth is the per-trajectory path, which packs
    nothing (rows equal to the shared vector give bitwise the shared solve)."""
    rng = np.random.default_rng(6)
    f = of.MLP([1, 8, 1], seed=4, dtype=np.dtype(dtype))
    g = of.MLP([1, 2, 5, 1], seed=4, dtype=np.dtype(dtype))   # also 25 parameters
    assert f.n_params == g.n_params == 25
    y0 = rng.standard_normal((batch, 1)).astype(dtype)
    t = np.array([0.0, 1.0], dtype)

    def check(dyn, params):
        shared = of.solve(dyn, y0, t, method="rk4", dt=0.1, params=params)
        truth = of.solve(dyn, y0, t, method="rk4", dt=0.1, params=np.tile(params, (batch, 1)))
        assert_same_solution(shared, truth)
        return shared.ys

    p0 = f.params.copy()
    before = check(f, f.params)
    f.params[3] *= dtype(1.5)                                # in place: same array, new values
    changed = check(f, f.params)
    assert not np.array_equal(changed, before)
    f.params[3] = p0[3]
    assert np.array_equal(check(f, f.params), before)
    check(g, f.params)                                       # same values, other layer sizes


def test_tape_keeps_its_packed_weights_when_a_later_solve_repacks():
    """A discrete-adjoint tape holds the packed weights of its own forward solve: solves with other
    parameters between forward and backward leave its gradient bitwise unchanged."""
    from odefast import _core
    from odefast._problem import prepare

    f = of.MLP([2, 16, 2], seed=0)
    y0 = np.random.default_rng(1).standard_normal((3, 2))
    pb = prepare(f, y0, [0.0, 0.5, 1.0], "dopri5", 1e-7, 1e-9, None, None, None)
    args = (pb.f._spec(), pb.dtype_name, pb.method, pb.y0, pb.t)
    ctl = (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    cot = np.random.default_rng(2).standard_normal((3, 3, 2))
    fresh = _core.solve_recording(*args, pb.params, *ctl)[-1].backward(cot)
    tape = _core.solve_recording(*args, pb.params, *ctl)[-1]
    for scale in (0.5, 2.0):
        _core.solve(*args, pb.params * scale, *ctl)
    for a, b in zip(tape.backward(cot), fresh):
        assert np.array_equal(a, b)


def test_params_argument_overrides_and_does_not_mutate():
    f = of.Lorenz()
    before = f.params.copy()
    y0 = np.array([[1.0, 1.0, 1.0]] * 3)
    t = [0.0, 0.5]
    a = of.solve(f, y0, t, params=[10.0, 15.0, 8 / 3])
    b = of.solve(of.Lorenz(rho=15.0), y0, t)
    assert_same_solution(a, b)
    assert np.array_equal(f.params, before)


# ---------------------------------------------------------------------------------------------
# Thread counts
#
# The set_num_threads comparisons run in a child process with a timeout: changing the thread
# count of a pool that has already run can deadlock (fresh workers start from generation 0 and
# may run a stale round, so the busy-count goes negative and the caller waits forever; see
# test_switching_thread_counts_never_deadlocks). A deadlock must fail this test, not hang CI.
# The child starts at 1 thread and goes 1 -> 2 -> 3 -> back to 1, so its pool is created fresh
# (2 threads) and resized only once.
# ---------------------------------------------------------------------------------------------

THREAD_CASES = [(m, n, d) for m in ("rk4", "tsit5", "dopri8")
                for n in ("lorenz", "nbody", "mlp-tanh", "mlp-relu", "mlp-time")
                for d in ("float64", "float32")]


def thread_case(method, name, dtype, per_trajectory=False):
    f, sample, T = make(name, dtype)
    rng = np.random.default_rng(9)
    y0 = sample(rng, 133).astype(dtype)
    params = None
    if per_trajectory:
        p = f.params.astype(np.float64)
        params = (p * (1 + 0.02 * rng.standard_normal((133, p.shape[0])))).astype(dtype)
    return of.solve(f, y0, np.linspace(0.0, T, 3), params=params, **kwargs(method, dtype))


_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import odefast as of
from test_batch_and_threads import THREAD_CASES, thread_case
prev = of.get_num_threads()
out, seen = {{}}, []
for n in (1, 2, 3):
    of.set_num_threads(n)
    seen.append(of.get_num_threads())
    for i, case in enumerate(THREAD_CASES):
        for per in (False, True):
            s = thread_case(*case, per_trajectory=per)
            key = f"{{n}}_{{i}}_{{int(per)}}"
            out[key + "_ys"] = s.ys
            out[key + "_status"] = s.status
            for k, v in s.stats.items():
                out[key + "_" + k] = v
of.set_num_threads(prev)
np.savez({path!r}, **out)
print(json.dumps({{"prev": prev, "seen": seen, "restored": of.get_num_threads()}}))
"""


@pytest.fixture(scope="module")
def thread_results(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("threads") / "results.npz")
    env = dict(os.environ)
    env["ODEFAST_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = child_pythonpath(env)
    script = _CHILD.format(tests=str(Path(__file__).resolve().parent), path=path)
    try:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("solving with set_num_threads(1), (2), (3) in a child process did not finish "
                    "in 300 s: the thread pool deadlocked (see "
                    "test_switching_thread_counts_never_deadlocks)")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    with np.load(path) as z:
        return info, {k: z[k] for k in z.files}


def test_set_num_threads_round_trip_in_child(thread_results):
    info, _ = thread_results
    assert info == {"prev": 1, "seen": [1, 2, 3], "restored": 1}


@pytest.mark.parametrize("per_trajectory", (False, True), ids=["shared", "per-trajectory"])
@pytest.mark.parametrize("case", range(len(THREAD_CASES)),
                         ids=["-".join(c) for c in THREAD_CASES])
def test_thread_count_determinism(thread_results, case, per_trajectory):
    """set_num_threads(1), (2), (3) give bitwise identical solutions, equal to this process's
    (default thread count)."""
    _, res = thread_results
    here = thread_case(*THREAD_CASES[case], per_trajectory=per_trajectory)
    for n in (1, 2, 3):
        key = f"{n}_{case}_{int(per_trajectory)}"
        got = of.Solution(ys=res[key + "_ys"], t=here.t, status=res[key + "_status"],
                          stats={k: res[key + "_" + k] for k in ("nfev", "steps", "rejected")},
                          method=here.method)
        assert_same_solution(got, here, f"{n} thread(s) vs {of.get_num_threads()} here")


def test_a_thread_own_count_is_its_alone():
    """_core.set_thread_num_threads(n) sets the calling thread's count (what odefast.dask's
    tasks use): that thread's solves use it, other threads and the process's count do not see
    it, 0 restores the process's; solves in several threads at once give the same bits."""
    import threading
    from odefast import _core
    f, make_y0 = lorenz_ensemble()
    y0, t = make_y0(np.random.default_rng(5), 300), np.linspace(0.0, 1.0, 4)
    params = np.tile(f.params, (300, 1)) * np.linspace(0.9, 1.1, 300)[:, None]
    here = of.get_num_threads()
    expected = of.solve(f, y0, t, params=params, method="dopri5", rtol=1e-8, atol=1e-8)
    assert _core.set_thread_num_threads(3) == 0
    try:
        assert of.get_num_threads() == 3
        seen = []
        other = threading.Thread(target=lambda: seen.append(of.get_num_threads()))
        other.start()
        other.join()
        assert seen == [here]
    finally:
        assert _core.set_thread_num_threads(0) == 3
    assert of.get_num_threads() == here

    results = [None] * 4

    def solve_alone(i):
        _core.set_thread_num_threads(1 + i % 2)
        results[i] = of.solve(f, y0, t, params=params, method="dopri5", rtol=1e-8, atol=1e-8)

    threads = [threading.Thread(target=solve_alone, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for got in results:
        assert_same_solution(got, expected, "a thread's own count")
    assert of.get_num_threads() == here


_STRESS = """
import os, sys, threading, time
import numpy as np
import odefast as of
f = of.Lorenz()
y0 = np.random.default_rng(0).standard_normal((64, 3)) + 5
state = {"i": 0}
def watchdog():
    last = -1
    while True:
        time.sleep(3)
        if state["i"] == last:
            print(f"no progress for 3 s at iteration {last}", flush=True)
            os._exit(3)
        last = state["i"]
threading.Thread(target=watchdog, daemon=True).start()
for i in range(2500):
    of.set_num_threads((8, 16)[i % 2])
    for _ in range(3):
        of.solve(f, y0, [0.0, 0.01], method="euler", dt=0.01)
    state["i"] = i + 1
print("ok")
"""


@pytest.mark.slow
def test_switching_thread_counts_never_deadlocks():
    """Alternating set_num_threads(8) / (16) between many small solves never deadlocks (a
    watchdog in the child turns a 3 s stall into exit code 3)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = child_pythonpath(env)
    out = subprocess.run([sys.executable, "-c", _STRESS], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, f"thread pool deadlocked: {out.stdout.strip()}"


@pytest.mark.parametrize("n_threads", (1, 3))
def test_env_num_threads_honoured_in_subprocess(tmp_path, n_threads):
    """ODEFAST_NUM_THREADS sets the default thread count of a fresh process, and the result there
    is bitwise the one computed here."""
    f, sample, _ = make("mlp-tanh", np.float64)
    y0 = sample(np.random.default_rng(1), 40)
    np.save(tmp_path / "y0.npy", y0)
    here = of.solve(f, y0, [0.0, 0.5, 1.0], method="dopri5")
    script = (
        "import json, sys, numpy as np, odefast as of\n"
        "f = of.MLP([3, 20, 20, 3], activation='tanh', seed=1)\n"
        f"y0 = np.load({str(tmp_path / 'y0.npy')!r})\n"
        "s = of.solve(f, y0, [0.0, 0.5, 1.0], method='dopri5')\n"
        f"np.save({str(tmp_path / 'ys.npy')!r}, s.ys)\n"
        "print(json.dumps({'n': of.get_num_threads(), 'info': of.build_info()['num_threads']}))\n"
    )
    env = dict(os.environ)
    env["ODEFAST_NUM_THREADS"] = str(n_threads)
    env["PYTHONPATH"] = child_pythonpath(env)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"n": n_threads, "info": n_threads}
    assert np.array_equal(np.load(tmp_path / "ys.npy"), here.ys)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_batch_independence_sweep(dtype):
    """Every batch size 1..40 and every position: the same trajectory, bitwise."""
    f, sample, T = make("mlp-tanh", dtype)
    rng = np.random.default_rng(2)
    t = np.linspace(0.0, T, 3)
    kw = kwargs("tsit5", dtype)
    y_star = sample(rng, 1).astype(dtype)
    alone = of.solve(f, y_star, t, **kw)
    for B in range(1, 41):
        base = sample(rng, B).astype(dtype)
        for pos in range(B):
            y0 = base.copy()
            y0[pos] = y_star[0]
            sol = of.solve(f, y0, t, **kw)
            assert np.array_equal(sol.ys[:, pos], alone.ys[:, 0], equal_nan=True), (B, pos)
            assert sol.stats["nfev"][pos] == alone.stats["nfev"][0], (B, pos)


# ---------------------------------------------------------------------------------------------
# Lane refills: an adaptive solve with a full lane block for every thread gives each thread one
# block whose lanes take the next trajectory as theirs ends (succeeded or failed; dynamics of a
# run-time dimension: Linear, MLP, NBody). Whichever lane, block and moment a trajectory starts
# in, its result is bitwise its lone solve. Lorenz (a compile-time dimension, no refills) runs
# the same checks on the plain blocks.
# ---------------------------------------------------------------------------------------------

def refill_case(kind, dtype):
    """A batch of 150 whose trajectories need very different step counts (from 3 to 160), so
    that lanes are refilled at different times, with per-trajectory parameters."""
    rng = np.random.default_rng(4)
    B = 150
    if kind == "lorenz":  # rho from 0 (few steps) to 60 (chaotic, many)
        f = of.Lorenz()
        params = np.tile(f.params, (B, 1))
        params[:, 1] = rng.uniform(0.0, 60.0, B)
        return f, rng.standard_normal((B, 3)), params.astype(dtype), np.linspace(0.0, 2.0, 5)
    if kind == "linear":  # dy/dt = a y with a up to 5000: e^a overflows float32 and float64
        f = of.Linear(np.eye(2))
        a = np.exp(rng.uniform(np.log(0.1), np.log(5000.0), B))
        params = np.zeros((B, 6))
        params[:, 0] = params[:, 3] = a
        return f, rng.uniform(0.5, 1.0, (B, 2)), params.astype(dtype), np.linspace(0.0, 1.0, 4)
    f = of.MLP([3, 20, 20, 3], seed=1, dtype=np.dtype(dtype))  # weights scaled by 0.3 .. 6
    scale = np.exp(rng.uniform(np.log(0.3), np.log(6.0), B))
    params = f.params.astype(np.float64)[None, :] * scale[:, None]
    return f, rng.standard_normal((B, 3)), params.astype(dtype), np.linspace(0.0, 2.0, 6)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", ("lorenz", "linear", "mlp"))
@pytest.mark.parametrize("method", ("bosh3", "dopri5", "tsit5", "dopri8"))
def test_refilled_lanes_equal_lone_solves(method, kind, dtype):
    f, y0, params, t = refill_case(kind, dtype)
    y0 = y0.astype(dtype)
    kw = dict(kwargs(method, dtype), on_failure="ignore")
    full = of.solve(f, y0, t, params=params, **kw)
    attempts = full.stats["steps"] + full.stats["rejected"]
    assert attempts.max() >= 3 * attempts.min(), "lanes should end at different times"
    # half the trajectories stop at max_steps (linear: some overflow to inf before it)
    kw["max_steps"] = int(np.median(attempts))
    sol = of.solve(f, y0, t, params=params, **kw)
    assert 0.3 < np.mean(sol.status != 0) < 0.7
    for b in range(y0.shape[0]):
        for s, max_steps in ((full, None), (sol, kw["max_steps"])):
            alone = of.solve(f, y0[b:b + 1], t, params=params[b], **dict(kw, max_steps=max_steps))
            assert_same_solution(row(s, b), alone, f"trajectory {b}, max_steps={max_steps}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_refilled_lanes_with_trajectories_that_fail_at_the_start(dtype):
    """Every seventh trajectory's derivative overflows at t[0] (status 3 before any step): its
    lane retires it at once and goes on; every row is bitwise its lone solve."""
    rng = np.random.default_rng(8)
    B = 120
    f = of.Linear(np.eye(2))
    params = np.zeros((B, 6))
    params[:, 0] = params[:, 3] = -rng.uniform(0.1, 3.0, B)
    params[::7, 0] = np.finfo(dtype).max
    y0 = rng.uniform(1.0, 2.0, (B, 2)).astype(dtype)
    t = np.linspace(0.0, 1.0, 3)
    kw = dict(kwargs("dopri5", dtype), on_failure="ignore")
    sol = of.solve(f, y0, t, params=params.astype(dtype), **kw)
    assert np.array_equal(np.flatnonzero(sol.status), np.arange(0, B, 7))
    assert np.all(sol.status[::7] == 3) and np.all(sol.stats["steps"][::7] == 0)
    assert np.array_equal(sol.ys[0, ::7], y0[::7]) and np.isnan(sol.ys[1:, ::7]).all()
    for b in range(B):
        alone = of.solve(f, y0[b:b + 1], t, params=params[b].astype(dtype), **kw)
        assert_same_solution(row(sol, b), alone, f"trajectory {b}")


def test_refilled_blocks_with_nan_outputs_after_failure():
    """A trajectory that fails in a refilled lane has NaN outputs from its failure on, and the
    trajectories that succeed agree with the NumPy reference."""
    f, y0, params, t = refill_case("linear", np.float64)
    sol = of.solve(f, y0, t, params=params, on_failure="ignore")
    ref = of.reference.solve(f, y0, t, params=params, on_failure="ignore")
    assert np.count_nonzero(sol.status) > 10
    for b in np.flatnonzero(sol.status):
        bad = np.isnan(sol.ys[:, b]).all(axis=1)
        assert bad.any() and np.all(bad[np.argmax(bad):]), b
    ok = (sol.status == 0) & (ref.status == 0)
    assert np.count_nonzero(ok) > 50
    np.testing.assert_allclose(sol.ys[:, ok], ref.ys[:, ok], rtol=1e-9, atol=1e-12)
