"""odefast.dask: ensembles solved chunk by chunk on Dask — the local threaded scheduler and a
LocalCluster of 2 worker processes on loopback.

* results bitwise equal to one ``odefast.solve`` of the whole batch (every chunking, NumPy and
  dask inputs, one initial state broadcast, several dynamics and dtypes);
* gradients equal to ``odefast.vjp`` / ``odefast.value_and_grad`` of the whole batch
  (per-trajectory ones bitwise where the core's adjoint is batch-independent, the tree-reduced
  sums to 1e-12 relative);
* failures reported with global indices (status, SolveWarning / SolveError, ``failures()``);
* the dynamics and their parameters are one key of the graph (and one pickle per submission);
* a worker killed in the middle of a run: Dask recomputes its chunks, the result is complete
  and bitwise correct;
* bad input gets a ValueError / TypeError naming the argument.
"""
from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest

pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from dask.core import get_dependencies  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

import odefast as of  # noqa: E402
from odefast import SolveError, SolveWarning  # noqa: E402
from odefast.dask import (EnsembleGradient, EnsembleSolution, auto_chunks,  # noqa: E402
                          solve_ensemble, value_and_grad_ensemble, vjp_ensemble)
from problems import assert_same_solution  # noqa: E402

KW = dict(method="dopri5", rtol=1e-8, atol=1e-8)


def lorenz_ensemble(B, t1=1.0, n_out=3):
    """W4-like: per-trajectory rho swept over [0, 28], z0 = (1, 0, 0)."""
    f = of.Lorenz()
    params = np.tile(f.params, (B, 1))
    params[:, 1] = np.linspace(0.0, 28.0, B)
    y0 = np.tile([1.0, 0.0, 0.0], (B, 1))
    return f, y0, np.linspace(0.0, t1, n_out), params


def oscillators(omegas):
    """Harmonic oscillators with per-trajectory frequency (Linear with (B, P) params)."""
    f = of.Linear(np.array([[0.0, 1.0], [-1.0, 0.0]]))
    params = np.array([[0.0, 1.0, -w * w, 0.0, 0.0, 0.0] for w in omegas])
    return f, np.tile([1.0, 0.0], (len(omegas), 1)), params


def threads_seen(client=None, **kw):
    """The odefast thread counts the chunks' solves ran with, as the chunks' own threads see
    them: a field equal to odefast.get_num_threads() integrates exactly to it over [0, 1]."""
    seen = of.PythonDynamics(lambda t, y, p: np.full_like(y, of.get_num_threads()))
    sol = solve_ensemble(seen, np.zeros((40, 1)), [0.0, 1.0], chunks=10, client=client,
                         compute=True, method="euler", dt=1.0, **kw)
    return set(sol.ys[-1].ravel().tolist())


def assert_close(a, b, rtol=1e-12, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(float(np.max(np.abs(b))), 1e-300)
    err = float(np.max(np.abs(a - b))) / scale
    assert err <= rtol, f"{what}: relative difference {err:.3e} > {rtol:.0e}"


def assert_same_gradient(g, ref, exact_y0=True, exact_params=True, what=""):
    """Per-trajectory parts bitwise, summed parts to 1e-12 relative."""
    check_y0 = np.testing.assert_array_equal if exact_y0 else (
        lambda a, b, err_msg: assert_close(a, b, what=err_msg))
    check_y0(g.y0, ref.y0, err_msg=f"{what}: y0")
    if exact_params:
        np.testing.assert_array_equal(g.params, ref.params, err_msg=f"{what}: params")
    else:
        assert_close(g.params, ref.params, what=f"{what}: params")
    assert_close(g.t, ref.t, what=f"{what}: t")
    np.testing.assert_array_equal(g.status, ref.status)
    assert_same_solution(g.solution, ref.solution, what)


# ---------------------------------------------------------------------------------------------
# the local threaded scheduler
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", ["auto", 3, 97, 1000, 2000, (1, 500, 499, 1000)])
def test_threads_bitwise_equal_to_one_solve(chunks):
    f, y0, t, params = lorenz_ensemble(2000)
    ref = of.solve(f, y0, t, params=params, **KW)
    sol = solve_ensemble(f, y0, t, params=params, chunks=chunks, **KW)
    assert isinstance(sol, EnsembleSolution)
    assert isinstance(sol.ys, da.Array) and sol.ys.shape == (3, 2000, 3)
    assert sol.ys.chunks[1] == sol.chunks and sum(sol.chunks) == 2000
    assert sol.status.shape == (2000,) and sol.status.dtype == np.int32
    assert_same_solution(sol.compute(), ref, f"chunks={chunks}")
    ys, status, nfev = dask.compute(sol.ys, sol.status, sol.stats["nfev"])
    assert np.array_equal(ys, ref.ys) and np.array_equal(status, ref.status)
    assert np.array_equal(nfev, ref.stats["nfev"])
    assert np.array_equal(sol.ys[-1, 123:456].compute(), ref.ys[-1, 123:456])


def test_chunks_run_on_their_own_thread_count():
    """Each chunk runs on odefast_threads threads (default 1), set for its task's thread only:
    Dask's threads give the parallelism and this process's count is left as it was."""
    here = of.get_num_threads()
    assert threads_seen() == {1.0}
    assert threads_seen(odefast_threads=3) == {3.0}
    assert of.get_num_threads() == here


def test_compute_true_returns_numpy_solution():
    f, y0, t, params = lorenz_ensemble(300)
    out = solve_ensemble(f, y0, t, params=params, chunks=64, compute=True, **KW)
    assert isinstance(out, of.Solution) and isinstance(out.ys, np.ndarray)
    assert_same_solution(out, of.solve(f, y0, t, params=params, **KW))


def test_dask_array_inputs_keep_their_chunks():
    f, y0, t, params = lorenz_ensemble(1000)
    ref = of.solve(f, y0, t, params=params, **KW)
    y0_d = da.from_array(y0, chunks=(250, 3))
    p_d = da.from_array(params, chunks=(250, 3))
    sol = solve_ensemble(f, y0_d, t, params=p_d, **KW)
    assert sol.chunks == (250,) * 4 and sol.ys.chunks == ((3,), (250,) * 4, (3,))
    assert_same_solution(sol.compute(), ref, "dask inputs")
    # explicit chunks rechunk both
    sol = solve_ensemble(f, y0_d, t, params=p_d, chunks=(100, 900), **KW)
    assert sol.chunks == (100, 900)
    assert_same_solution(sol.compute(), ref, "rechunked")
    # one dask input, one NumPy input: the dask chunks win
    sol = solve_ensemble(f, y0, t, params=da.from_array(params, chunks=(300, 3)), **KW)
    assert sol.chunks == (300, 300, 300, 100)
    assert_same_solution(sol.compute(), ref, "mixed")


def test_one_initial_state_broadcast_to_every_trajectory():
    f, y0, t, params = lorenz_ensemble(500)
    ref = of.solve(f, y0, t, params=params, **KW)
    sol = solve_ensemble(f, np.array([1.0, 0.0, 0.0]), t, params=params, chunks=128, **KW)
    assert sol.ys.shape == (3, 500, 3)
    assert_same_solution(sol.compute(), ref, "broadcast y0")


@pytest.mark.parametrize("case", ["mlp-f32-rk4", "mlp-f64-tsit5", "nbody", "linear", "python"])
def test_other_dynamics_and_dtypes(case):
    rng = np.random.default_rng(3)
    if case.startswith("mlp"):
        dtype = np.float32 if "f32" in case else np.float64
        f = of.MLP([2, 16, 16, 2], dtype=dtype.__name__, seed=1)
        y0 = rng.uniform(-1, 1, size=(333, 2)).astype(dtype)
        t = np.linspace(0.0, 1.0, 4).astype(dtype)
        kw = dict(method="rk4", dt=0.05) if "rk4" in case else dict(method="tsit5")
        params = None
    elif case == "nbody":
        f = of.NBody([1.0, 0.5, 0.25], dim=2, softening=0.1)
        y0 = rng.normal(size=(50, 12))
        t, kw, params = np.array([0.0, 0.5]), dict(method="dopri8", rtol=1e-9, atol=1e-9), None
    elif case == "linear":
        f = of.Linear(np.array([[-0.1, 2.0], [-2.0, -0.1]]), b=[0.1, 0.0])
        y0, t, kw = rng.normal(size=(200, 2)), np.linspace(0, 2, 5), dict(method="bosh3")
        params = np.tile(f.params, (200, 1)) * rng.uniform(0.5, 1.5, size=(200, 1))
    else:
        f = of.PythonDynamics(lambda t, y, p: -p[..., :1] * y, params=[0.7])
        y0, t, kw = rng.normal(size=(40, 2)), np.array([0.0, 1.0]), dict(method="dopri5")
        params = None
    ref = of.solve(f, y0, t, params=params, **kw)
    sol = solve_ensemble(f, y0, t, params=params, chunks=17 if case != "nbody" else 7, **kw)
    assert sol.ys.dtype == ref.ys.dtype
    if case == "python":
        assert_reference_close(sol.compute(), ref)
    else:
        assert_same_solution(sol.compute(), ref, case)


def assert_reference_close(a, b):
    """PythonDynamics run in the NumPy reference, whose vectorised (BLAS) stage sums may round
    differently for different batch sizes: the same steps, values to rounding."""
    for k in ("nfev", "steps", "rejected"):
        np.testing.assert_array_equal(a.stats[k], b.stats[k])
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_allclose(a.ys, b.ys, rtol=1e-13, atol=1e-15)


def test_each_chunk_solves_once(monkeypatch):
    """Several outputs computed together share the chunk tasks (no solve runs twice)."""
    import odefast.dask as ofd
    calls = []

    def counting_solve(*args, **kwargs):
        calls.append(args[1].shape[0])
        return of.solve(*args, **kwargs)

    monkeypatch.setattr(ofd, "_solve", counting_solve)
    f, y0, t, params = lorenz_ensemble(1000)
    sol = solve_ensemble(f, y0, t, params=params, chunks=200, **KW)
    dask.compute(sol.ys, sol.status, *sol.stats.values())
    assert sorted(calls) == [200] * 5
    calls.clear()
    sol.compute()
    assert sorted(calls) == [200] * 5
    calls.clear()
    kept = sol.persist()
    assert len(calls) == 5
    kept.compute(), kept.failures(), kept.ys.compute()
    assert len(calls) == 5


class CountingLorenz(of.Lorenz):
    """Counts how often it is pickled; unpickles as a plain Lorenz."""

    pickled = 0

    def __reduce__(self):
        type(self).pickled += 1
        return (of.Lorenz, tuple(float(x) for x in self.params))


def test_dynamics_and_shared_params_are_one_key_of_the_graph():
    """However many chunks, exactly one graph task carries the dynamics (and shared params);
    every chunk task depends on it; the chunk tasks themselves are small."""
    f = CountingLorenz()
    B = 4000
    y0 = np.random.default_rng(0).normal(size=(B, 3))
    sol = solve_ensemble(f, y0, [0.0, 0.1], chunks=250, **KW)           # 16 chunks
    graph = dict(sol.ys.__dask_graph__())
    carriers = []
    for key, task in graph.items():
        before = CountingLorenz.pickled
        pickle.dumps(task)
        if CountingLorenz.pickled > before:
            carriers.append(key)
    assert len(carriers) == 1 and str(carriers[0]).startswith("odefast-shared-")
    solve_keys = [k for k in graph if isinstance(k, tuple) and k[0].startswith("odefast-solve-")]
    assert len(solve_keys) == 16
    assert all(carriers[0] in get_dependencies(graph, k) for k in solve_keys)

    # the same with a large MLP: its 67k parameters (530 kB) are in one task only
    mlp = of.MLP([2, 256, 256, 2], seed=0)
    z0 = np.random.default_rng(1).uniform(-1, 1, size=(1600, 2))
    sol = solve_ensemble(mlp, z0, [0.0, 0.1], chunks=100, method="rk4", dt=0.1)
    graph = dict(sol.ys.__dask_graph__())
    sizes = {k: len(pickle.dumps(v)) for k, v in graph.items()}
    big = [k for k, n in sizes.items() if n > mlp.params.nbytes]
    assert len(big) == 1 and str(big[0]).startswith("odefast-shared-")
    solve_sizes = [n for k, n in sizes.items() if isinstance(k, tuple) and "solve" in k[0]]
    assert len(solve_sizes) == 16 and max(solve_sizes) < z0[:100].nbytes + 2000


def test_auto_chunks():
    """About 6 tasks per thread, shrinking linearly to a fifth along the batch (guided), within
    4096..2^18 trajectories a chunk; equal sizes where shrinking would break those bounds."""
    assert auto_chunks(300, 2) == (300,)
    c = auto_chunks(10**6, 2)
    steps = np.diff(c)
    assert sum(c) == 10**6 and len(c) == 12 and c[0] <= 2**18
    assert abs(c[-1] / c[0] - 0.2) < 1e-4 and np.all(steps < 0) and np.ptp(steps) <= 2
    c = auto_chunks(100_003, 1)
    assert sum(c) == 100_003 and len(c) == 6 and min(c) >= 4096 and c == tuple(sorted(c)[::-1])
    for B, threads in ((10**9, 64), (10**6, 1), (50_000, 2)):   # capped at 2^18, or at 4096
        c = auto_chunks(B, threads)
        assert sum(c) == B and max(c) <= 2**18 and max(c) - min(c) <= 1 and min(c) >= 4096


# ---------------------------------------------------------------------------------------------
# gradients (threaded scheduler)
# ---------------------------------------------------------------------------------------------

def test_value_and_grad_mse_equals_single_process():
    """MSE is a mean over the whole ensemble: each chunk contributes its share; the value and
    the summed gradients match to 1e-12, the per-trajectory ones bitwise."""
    f, y0, t, params = lorenz_ensemble(600, n_out=4)
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(4, 600, 3))
    for weights in (None, rng.uniform(0, 2, size=(4, 600, 3)), np.array([0.0, 1.0, 2.0, 3.0])[:, None, None]):
        loss = of.losses.MSE(targets, weights)
        v_ref, g_ref = of.value_and_grad(f, y0, t, loss, params=params, **KW)
        lazy = value_and_grad_ensemble(f, y0, t, loss, params=params, chunks=128, **KW)
        assert isinstance(lazy, EnsembleGradient) and lazy.y0.chunks[0] == lazy.solution.chunks
        v, g = lazy.compute()
        assert abs(v - v_ref) <= 1e-12 * abs(v_ref)
        assert_same_gradient(g, g_ref, what=f"MSE weights={None if weights is None else weights.shape}")
        assert abs(float(lazy.value.compute()) - v_ref) <= 1e-12 * abs(v_ref)
    # shared params: their gradient is a sum over the ensemble, reduced by a tree
    loss = of.losses.MSE(targets)
    v_ref, g_ref = of.value_and_grad(f, y0, t, loss, **KW)
    v, g = value_and_grad_ensemble(f, y0, t, loss, chunks=50, compute=True, **KW)  # 12 chunks: 2 levels
    assert abs(v - v_ref) <= 1e-12 * abs(v_ref) and g.params.shape == (3,)
    assert_same_gradient(g, g_ref, exact_params=False, what="MSE shared params")


def test_value_and_grad_closure_and_custom():
    f = of.Linear(np.array([[0.0, 1.0], [-1.3 ** 2, 0.0]]))
    y0 = np.random.default_rng(2).normal(size=(90, 2))
    t = [0.0, 2.0]
    kw = dict(method="dopri5", rtol=1e-10, atol=1e-12)
    for adjoint in ("checkpoint", "backsolve"):
        v_ref, g_ref = of.value_and_grad(f, y0, t, of.losses.Closure(), adjoint=adjoint, **kw)
        v, g = value_and_grad_ensemble(f, y0, t, of.losses.Closure(), chunks=20, adjoint=adjoint,
                                       compute=True, **kw)
        assert abs(v - v_ref) <= 1e-12 * abs(v_ref)
        assert_same_gradient(g, g_ref, exact_params=False, what=f"Closure {adjoint}")
    quartic = of.losses.Custom(lambda ys, y0: float(np.sum(ys[-1] ** 4)),
                               lambda ys, y0: (np.concatenate([np.zeros_like(ys[:1]), 4 * ys[1:] ** 3]),
                                               np.zeros_like(y0)))
    v_ref, g_ref = of.value_and_grad(f, y0, t, quartic, **kw)
    v, g = value_and_grad_ensemble(f, y0, t, quartic, chunks=(10, 80), additive=True, compute=True, **kw)
    assert abs(v - v_ref) <= 1e-12 * abs(v_ref)
    assert_same_gradient(g, g_ref, exact_params=False, what="Custom")


def test_vjp_ensemble_numpy_and_dask_cotangent_and_broadcast_y0():
    f, y0, t, params = lorenz_ensemble(400)
    cot = np.random.default_rng(5).normal(size=(3, 400, 3))
    g_ref = of.vjp(f, y0, t, cot, params=params, **KW)
    g = vjp_ensemble(f, y0, t, cot, params=params, chunks=64, compute=True, **KW)
    assert isinstance(g, of.Gradient)
    assert_same_gradient(g, g_ref, what="vjp")
    lazy = vjp_ensemble(f, da.from_array(y0, chunks=(100, 3)), t, da.from_array(cot, chunks=(3, 100, 3)),
                        params=params, **KW)
    assert lazy.value is None and lazy.params.chunks[0] == (100,) * 4
    assert_same_gradient(lazy.compute(), g_ref, what="vjp dask")
    # one initial state for every trajectory: its gradient is summed over the ensemble
    g1 = vjp_ensemble(f, np.array([1.0, 0.0, 0.0]), t, cot, params=params, chunks=64, compute=True, **KW)
    assert g1.y0.shape == (3,)
    assert_close(g1.y0, g_ref.y0.sum(axis=0), what="summed y0 gradient")
    np.testing.assert_array_equal(g1.params, g_ref.params)


# ---------------------------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------------------------

def test_failures_reported_with_global_indices():
    """Trajectory 7 (in the second chunk) needs more than max_steps: its status is 1, it is
    NaN, the warning names it by its index in the ensemble, the others are as solved alone."""
    omegas = [1.0] * 12
    omegas[7] = 300.0
    f, y0, params = oscillators(omegas)
    t = np.linspace(0.0, 3.0, 4)
    kw = dict(method="dopri5", rtol=1e-6, atol=1e-8, max_steps=200)
    with pytest.warns(SolveWarning, match=r"1 of 12 trajectories failed.*\[7\].*max_steps"):
        ref = of.solve(f, y0, t, params=params, **kw)
    sol = solve_ensemble(f, y0, t, params=params, chunks=5, **kw)
    with pytest.warns(SolveWarning, match=r"1 of 12 trajectories failed.*\[7\].*max_steps"):
        out = sol.compute()
    assert_same_solution(out, ref, "with a failure")
    assert list(sol.status.compute()) == [0] * 7 + [1] + [0] * 4
    fails = sol.failures()
    assert len(fails) == 1 and fails.index.tolist() == [7] and fails.status.tolist() == [1]
    assert fails.by_status()[1].tolist() == [7]
    (i, code, why), = list(fails)
    assert (i, code) == (7, 1) and "max_steps" in why
    with pytest.raises(SolveError, match=r"\[7\]"):
        solve_ensemble(f, y0, t, params=params, chunks=5, on_failure="raise", compute=True, **kw)
    solve_ensemble(f, y0, t, params=params, chunks=5, on_failure="ignore", compute=True, **kw)
    # gradients: NaN where (and as) odefast.vjp puts them, reported by index
    cot = np.ones((4, 12, 2))
    with pytest.warns(SolveWarning):
        g_ref = of.vjp(f, y0, t, cot, params=params, **kw)
    with pytest.warns(SolveWarning, match=r"gradient: 1 of 12 trajectories failed.*\[7\]"):
        g = vjp_ensemble(f, y0, t, cot, params=params, chunks=5, compute=True, **kw)
    np.testing.assert_array_equal(g.y0, g_ref.y0)
    np.testing.assert_array_equal(g.params, g_ref.params)
    assert np.all(np.isnan(g.y0[7])) and not np.any(np.isnan(g.y0[:7]))
    assert vjp_ensemble(f, y0, t, cot, params=params, chunks=5, **kw).failures().index.tolist() == [7]


def test_error_inside_a_chunk_names_its_trajectories():
    f, y0, t, params = lorenz_ensemble(300)
    y0[150, 1] = np.nan
    with pytest.raises(ValueError, match=r"y0: contains non-finite"):
        solve_ensemble(f, y0, t, params=params, chunks=100, **KW)      # NumPy: checked at once
    lazy = solve_ensemble(f, da.from_array(y0, chunks=(100, 3)), t, params=params, **KW)
    with pytest.raises(ValueError, match=r"y0: contains non-finite.*in trajectories 100:200 of the ensemble"):
        lazy.compute()


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_bad_input_names_the_argument():
    f, y0, t, params = lorenz_ensemble(100)
    bad = [
        (dict(chunks=(50, 40)), ValueError, r"chunks: the chunk sizes sum to 90, but the ensemble has B = 100"),
        (dict(chunks=(50, 0, 50)), ValueError, r"chunks: every chunk needs at least one trajectory, got 0 at position 1"),
        (dict(chunks=(60, -10, 50)), ValueError, r"chunks: every chunk needs at least one trajectory"),
        (dict(chunks=0), ValueError, r"chunks: expected a positive number"),
        (dict(chunks=-5), ValueError, r"chunks: expected a positive number"),
        (dict(chunks=2.5), TypeError, r"chunks: expected 'auto'"),
        (dict(chunks="big"), TypeError, r"chunks: expected 'auto'"),
        (dict(chunks=True), TypeError, r"chunks: expected 'auto'"),
        (dict(chunks=(50.0, 50.0)), TypeError, r"chunks: expected integer chunk sizes"),
        (dict(chunks=((50, 50), (3,))), TypeError, r"chunks: .*y0.chunks\[0\]"),
        (dict(chunks=()), ValueError, r"chunks: expected at least one chunk"),
        (dict(y0=da.from_array(y0, chunks=(50, 2))), ValueError, r"y0: a dask array must be chunked along the batch only.*state dimension D"),
        (dict(params=da.from_array(params, chunks=(50, 1))), ValueError, r"params: a dask array must be chunked along the batch only"),
        (dict(y0=da.from_array(y0, chunks=(50, 3)), params=da.from_array(params, chunks=(40, 3))),
         ValueError, r"params: its chunks along the batch \(40, 40, 20\) differ from y0's \(50, 50\)"),
        (dict(params=params[:99]), ValueError, r"params: expected shape \(3,\) or \(100, 3\), got \(99, 3\)"),
        (dict(params=np.ones(4)), ValueError, r"params: expected shape \(3,\) or \(100, 3\)"),
        (dict(y0=np.ones(3), params=None), ValueError, r"y0: one initial state .* per-trajectory params"),
        (dict(y0=np.ones((100, 2))), ValueError, r"y0: Lorenz has state dimension 3"),
        (dict(y0=np.ones((2, 100, 3))), ValueError, r"y0: expected shape \(B, D\)"),
        (dict(y0=np.ones((0, 3)), params=None), ValueError, r"y0: expected at least one trajectory"),
        (dict(method="rk5"), ValueError, r"method: unknown"),
        (dict(rtol=-1.0), ValueError, r"rtol"),
        (dict(method="rk4"), ValueError, r"dt: the fixed-step method"),
        (dict(client="tcp://127.0.0.1:8786"), TypeError, r"client: expected a distributed.Client"),
        (dict(odefast_threads=0), ValueError, r"odefast_threads"),
        (dict(on_failure="sometimes"), ValueError, r"on_failure"),
        (dict(device="gpu"), ValueError, r"device"),
    ]
    for change, exc, pattern in bad:
        kw = dict(y0=y0, params=params, **KW)
        kw.update(change)
        with pytest.raises(exc, match=pattern):
            solve_ensemble(f, kw.pop("y0"), t, **kw)
    with pytest.raises(TypeError, match=r"f: expected an odefast dynamics"):
        solve_ensemble(lambda t, y: y, y0, t)
    cot = np.ones((3, 100, 3))
    with pytest.raises(ValueError, match=r"cotangent: expected the shape of the ensemble's ys \(3, 100, 3\)"):
        vjp_ensemble(f, y0, t, cot[:, :50], params=params)
    with pytest.raises(ValueError, match=r"cotangent: its chunks along the batch"):
        vjp_ensemble(f, da.from_array(y0, chunks=(50, 3)), t, da.from_array(cot, chunks=(3, 25, 3)), params=params)
    with pytest.raises(ValueError, match=r"cotangent: a dask array must be chunked along the batch only"):
        vjp_ensemble(f, y0, t, da.from_array(cot, chunks=(1, 50, 3)), params=params)
    with pytest.raises(ValueError, match=r"adjoint"):
        vjp_ensemble(f, y0, t, cot, params=params, adjoint="exact")
    with pytest.raises(TypeError, match=r"loss: a Custom loss .* additive=True"):
        value_and_grad_ensemble(f, y0, t, of.losses.Custom(lambda ys, y0: 0.0, lambda ys, y0: (ys, y0)),
                                params=params)
    with pytest.raises(TypeError, match=r"loss: expected odefast.losses.MSE"):
        value_and_grad_ensemble(f, y0, t, "mse", params=params)
    with pytest.raises(ValueError, match=r"targets: expected the shape of the ensemble's ys"):
        value_and_grad_ensemble(f, y0, t, of.losses.MSE(np.zeros((3, 99, 3))), params=params)


# ---------------------------------------------------------------------------------------------
# a LocalCluster of 2 worker processes on loopback
# ---------------------------------------------------------------------------------------------

def _local_cluster():
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=":0", worker_dashboard_address=":0")


@pytest.fixture(scope="module")
def client():
    with _local_cluster() as cluster, Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def test_cluster_bitwise_equal_and_gradients(client):
    f, y0, t, params = lorenz_ensemble(3000)
    ref = of.solve(f, y0, t, params=params, **KW)
    sol = solve_ensemble(f, y0, t, params=params, chunks=200, client=client, **KW)
    assert "distributed" in repr(sol)
    assert_same_solution(sol.compute(), ref, "cluster")
    assert np.array_equal(sol.ys[-1].compute(), ref.ys[-1])          # the lazy array, on the cluster
    # dask inputs, one initial state, compute=True
    out = solve_ensemble(f, np.array([1.0, 0.0, 0.0]), t, params=da.from_array(params, chunks=(700, 3)),
                         client=client, compute=True, **KW)
    assert_same_solution(out, ref, "cluster, dask params")
    # gradients: MSE over the ensemble (per-trajectory params) and a shared-parameter MLP
    targets = np.random.default_rng(0).normal(size=ref.ys.shape)
    v_ref, g_ref = of.value_and_grad(f, y0, t, of.losses.MSE(targets), params=params, **KW)
    v, g = value_and_grad_ensemble(f, y0, t, of.losses.MSE(targets), params=params, chunks=300,
                                   client=client, compute=True, **KW)
    assert abs(v - v_ref) <= 1e-12 * abs(v_ref)
    assert_same_gradient(g, g_ref, what="cluster MSE")
    mlp = of.MLP([2, 32, 2], seed=4)
    z0 = np.random.default_rng(1).uniform(-1, 1, size=(1000, 2))
    tm = np.linspace(0.0, 1.0, 3)
    cot = np.random.default_rng(2).normal(size=(3, 1000, 2))
    g_ref = of.vjp(mlp, z0, tm, cot, method="tsit5")
    g = vjp_ensemble(mlp, z0, tm, cot, chunks=100, client=client, method="tsit5").compute()
    # per chunk, bit for bit what odefast.vjp gives for that chunk; against one vjp of the
    # whole batch to rounding: the core's MLP adjoint rounds the trajectories of a partial last
    # lane block differently from the same trajectories inside a full block (~1e-15)
    by_chunk = np.concatenate([of.vjp(mlp, z0[i:i + 100], tm, cot[:, i:i + 100], method="tsit5").y0
                               for i in range(0, 1000, 100)])
    np.testing.assert_array_equal(g.y0, by_chunk)
    assert_same_gradient(g, g_ref, exact_y0=False, exact_params=False, what="cluster MLP vjp")
    # a NumPy vector field (a lambda: Dask's cloudpickle carries it to the workers)
    decay = of.PythonDynamics(lambda t, y, p: -p[..., :1] * y, params=[0.7])
    z = np.random.default_rng(3).normal(size=(60, 2))
    out = solve_ensemble(decay, z, [0.0, 1.0], chunks=25, client=client, compute=True)
    assert_reference_close(out, of.solve(decay, z, [0.0, 1.0]))


def test_cluster_shared_sent_once_and_workers_single_threaded(client):
    """One pickle of the dynamics per submission, whatever the number of chunks; each worker
    holds one copy; the chunks run odefast on 1 thread, no process's own count is changed."""
    threads_here, threads_there = of.get_num_threads(), client.run(of.get_num_threads)
    f = CountingLorenz()
    before = CountingLorenz.pickled
    y0 = np.random.default_rng(0).normal(size=(2000, 3))
    kept = solve_ensemble(f, y0, [0.0, 0.2], chunks=100, client=client, **KW).persist()   # 20 chunks
    kept.compute()
    assert CountingLorenz.pickled - before == 1
    key = f"odefast-shared-{kept._ctx.token}"
    incoming = client.run(lambda dask_worker: [k for log in dask_worker.transfer_incoming_log
                                               for k in log["keys"] if k == key])
    assert sum(len(v) for v in incoming.values()) <= 1              # fetched once by the other worker
    assert threads_seen(client) == {1.0}
    assert client.run(of.get_num_threads) == threads_there
    assert of.get_num_threads() == threads_here
    ran_on = client.run(lambda dask_worker: sum(1 for ts in dask_worker.state.tasks.values()
                                                if str(ts.key).startswith("('odefast-solve-")))
    assert len(ran_on) == 2


class _Recomputed(SchedulerPlugin):
    """Counts, per key, how often it reached memory (2 = computed again after being lost)."""

    name = "odefast-recomputed"

    def __init__(self):
        self.done = {}

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory" and start == "processing":
            self.done[key] = self.done.get(key, 0) + 1


def _progress(dask_scheduler, victim, prefix):
    """(chunks in memory on the victim, chunks in memory anywhere, chunks in total)."""
    chunks = [ts for key, ts in dask_scheduler.tasks.items()
              if isinstance(key, tuple) and str(key[0]).startswith(prefix)]
    on_victim = sum(1 for ts in chunks if any(ws.address == victim for ws in ts.who_has or ()))
    done = sum(1 for ts in chunks if ts.state == "memory")
    return on_victim, done, len(chunks)


def test_workers_in_this_process():
    """Workers that share the client's process (processes=False, threads: no data moved between
    processes) give the same bits, each chunk on its task thread's own count of 1."""
    here = of.get_num_threads()
    f, y0, t, params = lorenz_ensemble(1000)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        out = solve_ensemble(f, y0, t, params=params, chunks=128, client=c, compute=True, **KW)
        assert threads_seen(c) == {1.0}
    assert_same_solution(out, of.solve(f, y0, t, params=params, **KW), "processes=False")
    assert of.get_num_threads() == here


def test_worker_killed_mid_run_result_complete_and_bitwise():
    """Kill one of the two worker processes (SIGKILL) once it holds finished chunks and the run
    is still going: Dask recomputes the chunks it held, the result equals the single-process
    solve bit for bit, and the scheduler's log shows the recomputed chunks."""
    f, y0, t, params = lorenz_ensemble(48_000, t1=20.0, n_out=3)
    ref = of.solve(f, y0, t, params=params, **KW)
    with _local_cluster() as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        client.register_plugin(_Recomputed())
        for chunks in (400, 200, 100):                 # more, shorter tasks if it was too fast
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            lazy = solve_ensemble(f, y0, t, params=params, chunks=chunks, client=client, **KW)
            prefix = f"odefast-solve-{lazy._ctx.token}"
            kept = lazy.persist()
            killed = False
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                on_victim, done, total = client.run_on_scheduler(_progress, victim=victim, prefix=prefix)
                if total < len(lazy.chunks):
                    continue                                   # the graph is not there yet
                if done >= total:
                    break                                      # too fast: try again, smaller chunks
                if on_victim >= 3 and done <= total * 2 // 3:
                    os.kill(pids[victim], signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.005)
            if killed:
                break
        assert killed, "the run always finished before a worker could be killed"
        result = kept.compute()
        assert_same_solution(result, ref, "after a worker was killed")
        assert victim not in client.scheduler_info()["workers"]        # it is gone
        counts = client.run_on_scheduler(lambda dask_scheduler: dict(dask_scheduler.plugins[_Recomputed.name].done))
        recomputed = [k for k, n in counts.items() if n >= 2 and str(k[0]).startswith(prefix)]
        assert len(recomputed) >= on_victim >= 1, (recomputed, on_victim)
