"""odefast.dask: ensembles of solves, and their gradients, on Dask — beyond one machine.

For 10^7–10^9 trajectories (parameter sweeps, uncertainty quantification) the batch is split
along its trajectories into chunks; each chunk is one ordinary ``odefast.solve`` (or ``vjp`` /
``value_and_grad``) call of the compiled core, run as one Dask task — on the local threaded
scheduler (the core releases the GIL) or, given a ``distributed.Client``, on that cluster
(a ``LocalCluster``, SLURM through dask-jobqueue, Kubernetes through dask-kubernetes, ...)::

    import odefast as of
    from odefast.dask import solve_ensemble, value_and_grad_ensemble

    sol = solve_ensemble(of.Lorenz(), y0, t, params=params, chunks=100_000, client=client)
    sol.ys            # dask array (len(t), B, D), chunked along B — lazy
    sol.status        # dask array (B,), 0 = success (odefast.STATUS_MESSAGES)
    sol.failures()    # which trajectories failed and why
    sol.compute()     # an odefast.Solution in NumPy; warns (or raises) about failures

What the results promise:

* Bitwise the same numbers as one ``odefast.solve`` of the whole batch, for every chunking, every
  number of workers and threads: trajectories are independent and the core's solves do not
  depend on the batch they share or on the thread count. Per-trajectory gradients (``y0``,
  per-trajectory ``params``) are bit for bit those of ``odefast.vjp`` on each chunk, and equal
  those of one ``odefast.vjp`` of the whole batch bitwise wherever the core's adjoint is
  batch-independent (Lorenz, Linear; the MLP adjoint may differ by rounding, ~1e-15, for the
  trajectories of a partly filled SIMD lane block). The summed ones (shared ``params``, ``t``,
  the loss value) are reduced over the chunks by a fixed tree (``SPLIT_EVERY`` chunks at a
  time, on the cluster), so they equal the single-process sums to rounding (about 1e-15
  relative), the same on every run.
* Failed trajectories are never dropped: their ``status`` is nonzero (1 max_steps, 2 step size
  underflow, 3 non-finite state), their outputs NaN, and ``compute()`` applies ``on_failure``
  ('warn': SolveWarning, 'raise': SolveError, 'ignore') to the whole ensemble with global
  trajectory indices, as ``odefast.solve`` does for one batch.
* The dynamics, shared parameters, output times and options travel once: they are one key of
  the task graph that every chunk task depends on, shipped to each worker once (not once per
  chunk) and, unlike ``client.scatter``'d data, recomputable from the graph when the worker
  holding it dies. A killed worker's chunks are recomputed by Dask, with the same bits.

Threads: each chunk's solve runs on ``odefast_threads`` odefast threads (default 1), set for
the thread that runs the task only (``odefast.set_num_threads``, the process's count, is left
alone), and Dask's threads give the parallelism — in worker processes, in workers that share the
client's process (``processes=False``) and on the local threaded scheduler alike. Start one
single-threaded worker per core (``LocalCluster(n_workers=cores, threads_per_worker=1)``,
dask-jobqueue's ``processes=cores``) or one worker with ``nthreads=cores``; on one machine,
threads (``LocalCluster(processes=False)``) move no data between processes, since the core
releases the GIL. (odefast's own thread pool runs one parallel region at a time per process, so
Dask threads that each ask for several odefast threads take turns.)

Inputs may be NumPy arrays or dask arrays chunked along the batch only. NumPy inputs are cut
into chunks and each chunk becomes part of the graph; for inputs of many MB per worker prefer
dask arrays that the workers load or generate themselves (``da.from_zarr``, ``da.linspace``,
``map_blocks``): the data then never passes through the client. ``compute()`` fetches each
chunk as soon as it is done (transfers overlap the chunks still running), straight from the
workers on a ``LocalCluster``, else as the client is configured (``direct_to_workers``); for
ensembles too big for one machine, reduce the lazy arrays on the cluster instead.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import uuid
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

try:
    import dask
    import dask.array as da
    import dask.threaded
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('odefast.dask needs Dask: pip install "odefast[dask]" '
                      '(dask[array] and distributed)') from e

from . import _core
from ._dynamics import Dynamics
from ._grad import Gradient, check_adjoint
from ._gradients import value_and_grad as _value_and_grad
from ._gradients import vjp as _vjp
from ._problem import (STATUS_MESSAGES, Solution, SolveError, SolveWarning, check_on_failure,
                       failure_message, prepare)
from ._solve import check_device
from ._solve import solve as _solve
from ._validate import as_float_array, check_finite
from .losses import MSE, Closure, Custom, Loss

__all__ = ["solve_ensemble", "vjp_ensemble", "value_and_grad_ensemble", "EnsembleSolution",
           "EnsembleGradient", "Failures", "auto_chunks"]

SPLIT_EVERY = 8          # fan-in of the tree reductions of summed gradients and loss values
_AUTO_TASKS_PER_THREAD = 6
_AUTO_LAST_OVER_FIRST = 0.2   # guided chunking: the last chunk a fifth of the first
_AUTO_MIN_CHUNK = 4096
_AUTO_MAX_CHUNK = 1 << 18


# ------------------------------------------------------------------------------------ results

@dataclass
class Failures:
    """The failed trajectories of an ensemble.

    index: (F,) int64 global trajectory indices, ascending; status: (F,) their status codes
    (``odefast.STATUS_MESSAGES[code]`` says why and what to do); n_trajectories: B."""

    index: np.ndarray
    status: np.ndarray
    n_trajectories: int

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __iter__(self):
        """(index, status code, reason) for each failed trajectory."""
        for i, code in zip(self.index.tolist(), self.status.tolist()):
            yield i, code, STATUS_MESSAGES.get(code, f"status {code}")

    def by_status(self) -> dict:
        """{status code: indices of the trajectories that failed with it}."""
        return {int(c): self.index[self.status == c] for c in np.unique(self.status)}

    @property
    def message(self) -> str:
        """Which trajectories failed and why, in words (the SolveWarning's text)."""
        if len(self) == 0:
            return "all trajectories succeeded"
        parts = []
        for code, idx in self.by_status().items():
            shown = ", ".join(map(str, idx[:10])) + (", ..." if idx.size > 10 else "")
            parts.append(f"{idx.size} trajector{'y' if idx.size == 1 else 'ies'} [{shown}]: "
                         f"{STATUS_MESSAGES.get(code, f'status {code}')}")
        return f"{len(self)} of {self.n_trajectories} trajectories failed: " + "; ".join(parts)

    def __repr__(self) -> str:
        return f"Failures({self.message})"


class EnsembleSolution:
    """A lazy ensemble solve (from :func:`solve_ensemble`); nothing runs until asked.

    ys: dask array (len(t), B, D), chunked along B as ``chunks``; NaN after a trajectory failed.
    status: dask array (B,) int32: 0 success, 1 max_steps, 2 step size underflow, 3 non-finite.
    stats: dict of dask arrays (B,) int64: 'nfev', 'steps', 'rejected'.
    t: NumPy output times; method; chunks: the batch chunk sizes.

    ``compute()`` gives an ``odefast.Solution`` in NumPy (and reports failures); ``persist()``
    keeps the chunk results in memory (on the cluster) so that ``ys``, ``status`` and
    ``failures()`` reuse them; ``failures()`` lists the failed trajectories. The arrays share
    the chunk tasks: ``dask.compute(sol.ys, sol.status)`` solves once, but two separate
    ``.compute()`` calls of a lazy (not persisted) solution solve twice.
    """

    def __init__(self, ctx):
        self._ctx = ctx
        N, D = ctx.t.shape[0], ctx.D
        self.t = ctx.t
        self.method = ctx.method
        self.chunks = ctx.chunks
        self.ys = _concat(ctx, "ys", (N, ctx.B, D), 1, ctx.dtype)
        self.status = _concat(ctx, "status", (ctx.B,), 0, np.int32)
        self.stats = {k: _concat(ctx, k, (ctx.B,), 0, np.int64) for k in ("nfev", "steps", "rejected")}

    @property
    def shape(self) -> tuple:
        return self.ys.shape

    def compute(self, on_failure: Optional[str] = None) -> Solution:
        """Run the solves and return an ``odefast.Solution`` (NumPy), applying ``on_failure``
        (default: the one given to :func:`solve_ensemble`)."""
        on_failure = self._ctx.on_failure if on_failure is None else check_on_failure(on_failure)
        sol = _solution(self._ctx, _assemble(self._ctx, _SOLUTION_FIELDS))
        _report(sol.status, on_failure, "", " (see sol.status)")
        return sol

    def persist(self) -> "EnsembleSolution":
        """The same solution with its chunk results computed and kept in memory (on the
        cluster's workers with a client — computing in the background — else here)."""
        return EnsembleSolution(_persist(self._ctx))

    def failures(self) -> Failures:
        """The failed trajectories (global indices) and why. Runs the solves unless the
        solution was persisted; only the failures travel back."""
        return _failures(self._ctx, "status")

    def __repr__(self) -> str:
        return (f"EnsembleSolution(method={self.method!r}, ys.shape={self.ys.shape}, "
                f"dtype={self.ys.dtype}, chunks={len(self.chunks)} of up to {max(self.chunks)} "
                f"trajectories, scheduler={self._ctx.scheduler_name})")


class EnsembleGradient:
    """Lazy gradients of an ensemble (from :func:`vjp_ensemble` / :func:`value_and_grad_ensemble`).

    y0: dask array shaped like y0 — (B, D) chunked along B, or (D,) summed over the ensemble
        when one initial state was broadcast to every trajectory.
    params: dask array (P,) summed over the ensemble (shared params), or (B, P) chunked
        (per-trajectory params).
    t: dask array (len(t),), summed over the ensemble.
    value: dask array () — the loss (value_and_grad_ensemble), None for vjp_ensemble.
    status: dask array (B,): 0 where the forward and adjoint solves succeeded.
    solution: the forward EnsembleSolution (the same tasks: computing both together solves once).

    Summed quantities are NaN when any trajectory failed (as in ``odefast.vjp``), per-trajectory
    ones only in the failed rows. ``compute()`` returns what ``odefast.vjp`` /
    ``odefast.value_and_grad`` return: a NumPy ``odefast.Gradient`` (or ``(value, Gradient)``).
    """

    def __init__(self, ctx):
        self._ctx = ctx
        N, D, P, B, dt = ctx.t.shape[0], ctx.D, ctx.P, ctx.B, ctx.dtype
        self.adjoint = ctx.adjoint
        self.solution = EnsembleSolution(ctx)
        self.status = _concat(ctx, "g_status", (B,), 0, np.int32)
        self.y0 = (_reduced(ctx, "g_y0", (D,), dt) if ctx.broadcast_y0
                   else _concat(ctx, "g_y0", (B, D), 0, dt))
        self.params = (_concat(ctx, "g_params", (B, P), 0, dt) if ctx.per_trajectory_params
                       else _reduced(ctx, "g_params", (P,), dt))
        self.t = _reduced(ctx, "g_t", (N,), dt)
        self.value = _reduced(ctx, "value", (), np.float64) if ctx.task == "value_and_grad" else None

    def compute(self, on_failure: Optional[str] = None):
        """Run the solves and adjoints; ``odefast.Gradient`` (vjp_ensemble) or
        ``(value, odefast.Gradient)`` (value_and_grad_ensemble), in NumPy."""
        ctx = self._ctx
        on_failure = ctx.on_failure if on_failure is None else check_on_failure(on_failure)
        local, summed = list(_SOLUTION_FIELDS) + ["g_status"], ["g_t"]
        (summed if ctx.broadcast_y0 else local).append("g_y0")
        (local if ctx.per_trajectory_params else summed).append("g_params")
        if ctx.task == "value_and_grad":
            summed.append("value")
        out = _assemble(ctx, tuple(local), tuple(summed))
        g = Gradient(y0=out["g_y0"], params=out["g_params"], t=out["g_t"],
                     solution=_solution(ctx, out), status=out["g_status"], adjoint=ctx.adjoint)
        _report(g.status, on_failure, "gradient: ",
                " in the forward or adjoint solve (their gradients are NaN; see g.status and "
                "g.solution.status)")
        if ctx.task == "value_and_grad":
            return float(out["value"]), g
        return g

    def persist(self) -> "EnsembleGradient":
        """The same gradients with the chunk results computed and kept in memory."""
        return EnsembleGradient(_persist(self._ctx))

    def failures(self) -> Failures:
        """Trajectories whose forward or adjoint solve failed, and why."""
        return _failures(self._ctx, "g_status")

    def __repr__(self) -> str:
        return (f"EnsembleGradient(adjoint={self.adjoint!r}, y0.shape={self.y0.shape}, "
                f"params.shape={self.params.shape}, t.shape={self.t.shape}, "
                f"chunks={len(self._ctx.chunks)}, scheduler={self._ctx.scheduler_name})")


_SOLUTION_FIELDS = ("ys", "status", "nfev", "steps", "rejected")


# ------------------------------------------------------------------------------ public calls

def solve_ensemble(f, y0, t, params=None, chunks="auto", client=None, *, method="dopri5",
                   rtol=1e-6, atol=1e-8, dt=None, max_steps=None, device="cpu",
                   on_failure="warn", compute=False, odefast_threads=1):
    """Solve an ensemble of initial-value problems in chunks on Dask.

    Args:
        f: dynamics (MLP, Linear, Lorenz, NBody; PythonDynamics works but runs in NumPy).
        y0: (B, D) initial states — NumPy, or a dask array chunked along B only — or one state
            (D,) shared by every trajectory, when ``params`` is (B, P).
        t: 1-D output times (NumPy), as for ``odefast.solve``.
        params: None (f.params), (P,) shared by all, or (B, P) per trajectory (NumPy or a dask
            array chunked along B only, like y0).
        chunks: trajectories per task: 'auto' (the dask inputs' batch chunks, else about 8 tasks
            per worker thread, 4096 to 262144 trajectories each), an int, or a sequence of
            positive ints summing to B (dask inputs are rechunked to it).
        client: a ``distributed.Client`` to run on; None runs on the local threaded scheduler.
        method, rtol, atol, dt, max_steps, device: as for ``odefast.solve``.
        on_failure: 'warn', 'raise' or 'ignore', applied when the result is computed.
        compute: False returns a lazy :class:`EnsembleSolution`; True runs it and returns an
            ``odefast.Solution`` in NumPy.
        odefast_threads: odefast threads per chunk, for the task's thread only (default 1; see
            the module docstring).

    Returns:
        EnsembleSolution (lazy dask arrays ys (len(t), B, D), status (B,), stats), or
        odefast.Solution when ``compute=True``. Bitwise equal to ``odefast.solve`` of the whole
        batch.
    """
    ctx = _build("solve", f, y0, t, params, chunks, client, method, rtol, atol, dt, max_steps,
                 device, on_failure, odefast_threads)
    sol = EnsembleSolution(ctx)
    return sol.compute() if compute else sol


def vjp_ensemble(f, y0, t, cotangent, params=None, chunks="auto", client=None, *,
                 adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8, dt=None,
                 max_steps=None, device="cpu", seminorm=False, on_failure="warn",
                 compute=False, odefast_threads=1):
    """Gradients of L = sum(cotangent * ys) over an ensemble: one ``odefast.vjp`` per chunk on
    the workers, the summed gradients (shared params, t) reduced on the cluster.

    Args:
        cotangent: dL/dys, (len(t), B, D): NumPy, or a dask array chunked along B only.
        adjoint, seminorm: as for ``odefast.vjp``. Other arguments as for :func:`solve_ensemble`.

    Returns:
        EnsembleGradient (lazy), or with ``compute=True`` an ``odefast.Gradient`` equal to
        ``odefast.vjp`` on the whole batch (per-trajectory entries bitwise those of each chunk's
        vjp, sums to rounding; see the module docstring).
    """
    ctx = _build("vjp", f, y0, t, params, chunks, client, method, rtol, atol, dt, max_steps,
                 device, on_failure, odefast_threads, adjoint=adjoint, seminorm=seminorm,
                 cotangent=cotangent)
    g = EnsembleGradient(ctx)
    return g.compute() if compute else g


def value_and_grad_ensemble(f, y0, t, loss, params=None, chunks="auto", client=None, *,
                            adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8,
                            dt=None, max_steps=None, device="cpu", seminorm=False,
                            on_failure="warn", additive=False, compute=False,
                            odefast_threads=1):
    """A loss of the whole ensemble and its gradients: ``odefast.value_and_grad`` per chunk on
    the workers, the loss and the summed gradients reduced on the cluster.

    Args:
        loss: ``odefast.losses.MSE(targets, weights)`` — the mean over the whole ensemble, as
            on one machine: each chunk contributes its share (targets, and weights that vary
            along the batch, are cut into the chunks); ``odefast.losses.Closure()`` (a sum
            over trajectories); or an ``odefast.losses.Custom`` loss with ``additive=True``,
            declaring that it is a sum of per-trajectory terms, so that the ensemble's loss is
            the sum of its chunks' losses (its value and grad are called on each chunk).
        Other arguments as for :func:`vjp_ensemble`.

    Returns:
        EnsembleGradient (lazy; ``.value`` is the loss), or with ``compute=True``
        ``(value, odefast.Gradient)`` equal to ``odefast.value_and_grad`` on the whole batch
        (per-trajectory gradients as for :func:`vjp_ensemble`, the value and sums to rounding).
    """
    ctx = _build("value_and_grad", f, y0, t, params, chunks, client, method, rtol, atol, dt,
                 max_steps, device, on_failure, odefast_threads, adjoint=adjoint,
                 seminorm=seminorm, loss=loss, additive=additive)
    g = EnsembleGradient(ctx)
    return g.compute() if compute else g


def auto_chunks(B: int, n_threads: int) -> tuple:
    """The 'auto' chunking: about 6 tasks per worker thread (load balance for trajectories of
    unequal cost, little lost work when a worker dies), 4096 to 262144 trajectories per chunk.
    The sizes shrink linearly along the batch, the last a fifth of the first (guided
    scheduling: the workers end on short tasks, so the first to run out of work waits less for
    the others); equal sizes where that would break the bounds."""
    size = -(-B // max(1, _AUTO_TASKS_PER_THREAD * n_threads))
    size = min(max(size, min(B, _AUTO_MIN_CHUNK)), _AUTO_MAX_CHUNK)
    n = -(-B // size)
    weights = np.linspace(1.0, _AUTO_LAST_OVER_FIRST, n)
    edges = np.round(np.concatenate(([0.0], np.cumsum(weights))) * (B / weights.sum()))
    guided = tuple(int(c) for c in np.diff(edges.astype(np.int64)))
    if n > 1 and guided[0] <= _AUTO_MAX_CHUNK and guided[-1] >= _AUTO_MIN_CHUNK:
        return guided
    return _even_chunks(B, n)


# ------------------------------------------------------------------------ the chunk task

@dataclass
class _Shared:
    """Everything every chunk needs: one key of the graph, sent to each worker once."""

    task: str                      # "solve" | "vjp" | "value_and_grad"
    f: Dynamics
    t: np.ndarray
    params: Optional[np.ndarray]   # shared (P,) params; None: per-trajectory blocks
    y0_row: Optional[np.ndarray]   # one (D,) state for every trajectory; None: blocks
    solve_kwargs: dict             # method, rtol, atol, dt, max_steps
    grad_kwargs: dict              # adjoint, seminorm
    loss: Optional[Loss]           # Closure / additive Custom, applied per chunk
    mse_weights: Optional[np.ndarray]  # MSE weights that do not vary along the batch
    mse_n: int                     # MSE: number of entries of the whole ensemble's ys
    odefast_threads: int


class _Chunk:
    """A chunk's results: arrays by name (an opaque object to the task graph)."""

    __slots__ = ("data",)

    def __init__(self, data: dict):
        self.data = data


class _ChunkMSE(Loss):
    """A chunk's share of MSE over the whole ensemble: sum(w r^2) / n_total; its gradient
    (2 / n_total) w r is computed exactly as MSE.grad computes the same entries."""

    def __init__(self, targets, weights, n_total):
        self.targets, self.weights, self.n = targets, weights, n_total

    def _w(self, ys):
        return 1.0 if self.weights is None else self.weights.astype(ys.dtype)

    def value(self, ys, y0) -> float:
        r = ys - self.targets.astype(ys.dtype)
        return float(np.sum(self._w(ys) * r * r)) / self.n

    def grad(self, ys, y0):
        r = ys - self.targets.astype(ys.dtype)
        return (2.0 / self.n) * self._w(ys) * r, np.zeros_like(y0)


def _chunk(shared: _Shared, start: int, stop: int, y0, params, data, weights) -> _Chunk:
    """One chunk, trajectories start:stop, solved (and differentiated) by the core on
    shared.odefast_threads threads (this task's thread only)."""
    previous = _core.set_thread_num_threads(shared.odefast_threads)
    try:
        return _chunk_here(shared, start, stop, y0, params, data, weights)
    finally:
        _core.set_thread_num_threads(previous)


def _chunk_here(shared: _Shared, start: int, stop: int, y0, params, data, weights) -> _Chunk:
    if y0 is None:
        y0 = np.broadcast_to(shared.y0_row, (stop - start, shared.y0_row.shape[0]))
    if params is None:
        params = shared.params
    kw = dict(shared.solve_kwargs, params=params, on_failure="ignore")
    try:
        if shared.task == "solve":
            sol, g, value = _solve(shared.f, y0, shared.t, **kw), None, None
        elif shared.task == "vjp":
            g = _vjp(shared.f, y0, shared.t, data, **shared.grad_kwargs, **kw)
            sol, value = g.solution, None
        else:
            loss = shared.loss if data is None else _ChunkMSE(
                data, shared.mse_weights if weights is None else weights, shared.mse_n)
            value, g = _value_and_grad(shared.f, y0, shared.t, loss, **shared.grad_kwargs, **kw)
            sol = g.solution
    except (ValueError, TypeError) as e:
        raise type(e)(f"{e} (in trajectories {start}:{stop} of the ensemble)") from None
    out = {"ys": sol.ys, "status": sol.status, **{k: _compact(v) for k, v in sol.stats.items()}}
    if g is not None:
        out.update(g_y0=g.y0.sum(axis=0) if shared.y0_row is not None else g.y0,
                   g_params=g.params, g_t=g.t, g_status=g.status)
    if value is not None:
        out["value"] = np.float64(value)
    return _Chunk(out)


def _pick(part: _Chunk, name: str, dtype):
    return np.asarray(part.data[name], dtype=dtype)


def _select(part: _Chunk, names: tuple) -> _Chunk:
    return _Chunk({k: part.data[k] for k in names})


def _compact(counts: np.ndarray) -> np.ndarray:
    """int64 work counters as int32 when they fit: a sixth less to keep and to send back
    (read back as int64)."""
    if counts.dtype == np.int64 and counts.size and counts.max() < 2**31 and counts.min() >= 0:
        return counts.astype(np.int32)
    return counts


def _failed(part: _Chunk, name: str, start: int):
    status = part.data[name]
    bad = np.flatnonzero(status)
    return bad + start, status[bad]


def _sum_field(name, *parts):
    out = np.array(parts[0].data[name], copy=True)
    for p in parts[1:]:
        out += p.data[name]
    return out


def _sum(*xs):
    out = np.array(xs[0], copy=True)
    for x in xs[1:]:
        out += x
    return out


# ------------------------------------------------------------------ building the graph

@dataclass
class _Ctx:
    """An ensemble's graph — the shared key, the inputs, one task per chunk — and its shape."""

    task: str
    token: str
    client: object
    B: int
    D: int
    P: int
    dtype: np.dtype
    t: np.ndarray
    method: str
    chunks: tuple
    starts: tuple
    on_failure: str
    broadcast_y0: bool
    per_trajectory_params: bool
    adjoint: Optional[str]
    layers: dict                  # HighLevelGraph layers up to the chunk tasks
    dependencies: dict
    held: tuple = ()              # futures of persisted chunks (kept alive with the graph)

    @property
    def scheduler_name(self) -> str:
        return "threads" if self.client is None else "distributed"

    @property
    def chunk_layer(self) -> str:
        return f"odefast-{self.task.replace('_', '-')}-{self.token}"

    @property
    def chunk_keys(self) -> list:
        return [(self.chunk_layer, i) for i in range(len(self.chunks))]

    def graph(self, extra: dict) -> HighLevelGraph:
        """The chunks' graph plus `extra` layers {name: (tasks, dependency layer names)}."""
        layers, deps = dict(self.layers), dict(self.dependencies)
        for name, (tasks, needs) in extra.items():
            layers[name], deps[name] = tasks, set(needs)
        return HighLevelGraph(layers, deps)


def _build(task, f, y0, t, params, chunks, client, method, rtol, atol, dt, max_steps, device,
           on_failure, odefast_threads, adjoint=None, seminorm=False, cotangent=None, loss=None,
           additive=False) -> _Ctx:
    on_failure = check_on_failure(on_failure)
    check_device(device)
    if task != "solve":
        adjoint = check_adjoint(adjoint)
    if isinstance(odefast_threads, bool) or not isinstance(odefast_threads, numbers.Integral) \
            or odefast_threads < 1:
        raise ValueError(f"odefast_threads: expected a positive integer, got {odefast_threads!r}")
    if client is not None:
        _check_client(client)
    if not isinstance(f, Dynamics):
        prepare(f, np.zeros((1, 1)), t)  # raises the TypeError naming f

    # --- y0 and params: the batch size B, the state dimension D, the dtype
    if _is_dask(y0) and y0.ndim == 1:
        y0 = y0.compute()
    if _is_dask(y0):
        dtype = _float_dtype(y0.dtype, "y0")
        if y0.ndim != 2:
            raise ValueError(f"y0: expected shape (B, D) or (D,), got {y0.shape}")
    else:
        y0 = as_float_array(y0, "y0")
        if y0.ndim not in (1, 2):
            raise ValueError(f"y0: expected shape (B, D) or (D,), got {y0.shape}")
        check_finite(y0, "y0")
        dtype = y0.dtype
    broadcast_y0 = y0.ndim == 1
    D = int(y0.shape[-1])
    want_D = f.state_dim()
    if D == 0 or (want_D is not None and D != want_D):
        raise ValueError(f"y0: {type(f).__name__} has state dimension {want_D}, got y0 with "
                         f"D = {D}; pass y0 of shape (B, {want_D})")

    P = f.n_params
    if _is_dask(params) and params.ndim == 1:
        params = params.compute()
    if params is None:
        p = f.params
    elif _is_dask(params):
        _float_dtype(params.dtype, "params")
        p = params
    else:
        p = as_float_array(params, "params")
    per_traj = p.ndim == 2
    if broadcast_y0 and not per_traj:
        raise ValueError(f"y0: one initial state of shape {y0.shape} makes an ensemble only "
                         f"with per-trajectory params of shape (B, {P}); pass y0 of shape "
                         f"(B, {D}) for B trajectories")
    B = int(p.shape[0]) if broadcast_y0 else int(y0.shape[0])
    if B == 0:
        raise ValueError(f"y0: expected at least one trajectory, got shape {y0.shape}")
    if p.ndim not in (1, 2) or p.shape[-1] != P or (per_traj and p.shape[0] != B):
        raise ValueError(f"params: expected shape ({P},) or ({B}, {P}), got {p.shape}")
    if not _is_dask(p):
        check_finite(p, "params")

    # method, tolerances, dt, max_steps, t and the dtypes, checked exactly as odefast.solve
    # checks them, on one representative trajectory
    proxy_p = np.zeros((1, P), dtype=p.dtype) if per_traj else p
    pb = prepare(f, np.zeros((1, D), dtype=dtype), t, method, rtol, atol, dt, max_steps, proxy_p)
    N = pb.t.shape[0]

    # --- per-trajectory operands: {name: (array, batch axis)}
    batched = {} if broadcast_y0 else {"y0": (y0, 0)}
    if per_traj:
        batched["params"] = (p, 0)
    mse_weights, mse_n, chunk_loss = None, 0, None
    if task == "vjp":
        batched["cotangent"] = (_check_batched_operand(cotangent, "cotangent", (N, B, D)), 1)
    elif task == "value_and_grad":
        if isinstance(loss, MSE):
            if loss.targets.shape != (N, B, D):
                raise ValueError(f"targets: expected the shape of the ensemble's ys {(N, B, D)}, "
                                 f"got {loss.targets.shape}")
            batched["targets"] = (loss.targets, 1)
            w = loss.weights
            if w is not None and w.ndim >= 2 and w.shape[-2] == B and B > 1:
                batched["weights"] = (w, w.ndim - 2)
            else:
                mse_weights = w
            mse_n = N * B * D
        elif isinstance(loss, Closure) or (isinstance(loss, Custom) and additive):
            chunk_loss = loss
        elif isinstance(loss, Custom):
            raise TypeError("loss: a Custom loss is evaluated chunk by chunk on the workers and "
                            "the chunks' values summed, which is right only for a sum of "
                            "per-trajectory terms; if yours is one, pass additive=True")
        else:
            raise TypeError(f"loss: expected odefast.losses.MSE, Closure or (with additive=True) "
                            f"Custom, got {type(loss).__name__}")

    # --- the chunking: explicit, else the dask inputs', else auto
    sizes = _resolve_chunks(chunks, B, batched, _client_threads(client))
    starts = tuple(int(s) for s in np.cumsum((0,) + sizes[:-1]))

    token = uuid.uuid4().hex[:16]
    shared_key = f"odefast-shared-{token}"
    shared = _Shared(task=task, f=f, t=pb.t, params=None if per_traj else pb.params,
                     y0_row=y0 if broadcast_y0 else None,
                     solve_kwargs=dict(method=method, rtol=rtol, atol=atol, dt=dt,
                                       max_steps=max_steps),
                     grad_kwargs={} if task == "solve" else dict(adjoint=adjoint,
                                                                  seminorm=seminorm),
                     loss=chunk_loss, mse_weights=mse_weights, mse_n=mse_n,
                     odefast_threads=int(odefast_threads))
    layers, deps = {shared_key: {shared_key: shared}}, {shared_key: set()}
    args = {}
    for name, (x, axis) in batched.items():
        args[name] = _blocks(x, axis, sizes, starts, layers, deps)
    chunk_layer = f"odefast-{task.replace('_', '-')}-{token}"
    none = [None] * len(sizes)
    data = args.get("cotangent", args.get("targets", none))
    layers[chunk_layer] = {
        (chunk_layer, i): (_chunk, shared_key, s, s + n, args.get("y0", none)[i],
                           args.get("params", none)[i], data[i], args.get("weights", none)[i])
        for i, (s, n) in enumerate(zip(starts, sizes))}
    deps[chunk_layer] = set(layers) - {chunk_layer}
    return _Ctx(task=task, token=token, client=client, B=B, D=D, P=P, dtype=np.dtype(dtype),
                t=pb.t, method=method, chunks=sizes, starts=starts, on_failure=on_failure,
                broadcast_y0=broadcast_y0, per_trajectory_params=per_traj, adjoint=adjoint,
                layers=layers, dependencies=deps)


def _is_dask(x) -> bool:
    return isinstance(x, da.Array)


def _float_dtype(dtype, name):
    return as_float_array(np.zeros(0, dtype=dtype), name).dtype


def _check_client(client) -> None:
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        raise TypeError('client: a distributed.Client needs the distributed package: '
                        'pip install "odefast[dask]"') from None
    if not isinstance(client, Client):
        raise TypeError(f"client: expected a distributed.Client or None (the local threaded "
                        f"scheduler), got {type(client).__name__}")
    if client.status not in ("running", "connecting", "newly-created"):
        raise ValueError(f"client: the Client is {client.status}, not running")


def _client_threads(client) -> int:
    if client is None:
        return os.cpu_count() or 1
    return max(1, sum(client.nthreads().values()))


def _check_batched_operand(x, name, shape):
    if _is_dask(x):
        _float_dtype(x.dtype, name)
    else:
        x = as_float_array(x, name)
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected the shape of the ensemble's ys {shape}, got {tuple(x.shape)}")
    if not _is_dask(x):
        check_finite(x, name)
    return x


def _even_chunks(B: int, n: int) -> tuple:
    n = max(1, min(n, B))
    return tuple(B // n + (1 if i < B % n else 0) for i in range(n))


_ALONG = {"y0": "the state dimension D", "params": "the parameters P",
          "cotangent": "the output times or the state dimension",
          "targets": "the output times or the state dimension",
          "weights": "an axis other than the batch"}


def _resolve_chunks(chunks, B, batched, n_threads) -> tuple:
    """The batch chunk sizes; checks the dask inputs' chunking along the batch and elsewhere."""
    dask_chunks = {}
    for name, (x, axis) in batched.items():
        if not _is_dask(x):
            continue
        if any(math.isnan(c) for cs in x.chunks for c in cs):
            raise ValueError(f"{name}: has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                             "first")
        for ax, cs in enumerate(x.chunks):
            if ax != axis and len(cs) > 1:
                raise ValueError(f"{name}: a dask array must be chunked along the batch only, but "
                                 f"it is chunked along {_ALONG[name]} (axis {ax}: chunks {cs}); "
                                 f"use {name}.rechunk({{{ax}: -1}})")
        dask_chunks[name] = tuple(int(c) for c in x.chunks[axis])

    if isinstance(chunks, str) and chunks == "auto":
        if dask_chunks:
            (first, want), *rest = dask_chunks.items()
            for name, got in rest:
                if got != want:
                    raise ValueError(
                        f"{name}: its chunks along the batch {_short(got)} differ from "
                        f"{first}'s {_short(want)}; rechunk one to match "
                        f"({name}.rechunk({{{batched[name][1]}: {first}.chunks"
                        f"[{batched[first][1]}]}})) or pass chunks=... to rechunk both")
            return want
        return auto_chunks(B, n_threads)
    expected = f"expected 'auto', a positive int or a sequence of positive ints summing to B = {B}"
    if isinstance(chunks, (bool, str)):
        raise TypeError(f"chunks: {expected}, got {chunks!r}")
    if isinstance(chunks, numbers.Integral):
        if chunks < 1:
            raise ValueError(f"chunks: expected a positive number of trajectories per chunk, "
                             f"got {chunks}")
        size = min(int(chunks), B)
        return tuple([size] * (B // size) + ([B % size] if B % size else []))
    try:
        sizes = list(chunks)
    except TypeError:
        raise TypeError(f"chunks: {expected}, got {type(chunks).__name__}") from None
    for i, c in enumerate(sizes):
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise TypeError(f"chunks: expected integer chunk sizes, got {c!r} at position {i}"
                            + (" (pass y0.chunks[0], the batch chunks, not y0.chunks)"
                               if isinstance(c, tuple) else ""))
        if c < 1:
            raise ValueError(f"chunks: every chunk needs at least one trajectory, got {c} at "
                             f"position {i}")
    if not sizes:
        raise ValueError(f"chunks: expected at least one chunk for B = {B} trajectories")
    if sum(sizes) != B:
        raise ValueError(f"chunks: the chunk sizes sum to {sum(sizes)}, but the ensemble has "
                         f"B = {B} trajectories")
    return tuple(int(c) for c in sizes)


def _short(chunks: tuple) -> str:
    return str(chunks) if len(chunks) <= 6 else f"({', '.join(map(str, chunks[:5]))}, ...)"


def _blocks(x, axis, sizes, starts, layers, deps) -> list:
    """Per-chunk arguments for a batched operand: NumPy views (each becomes part of its chunk's
    task), or the keys of a dask array's blocks (its graph joins ours)."""
    if not _is_dask(x):
        index = [slice(None)] * x.ndim
        out = []
        for s, n in zip(starts, sizes):
            index[axis] = slice(s, s + n)
            out.append(x[tuple(index)])
        return out
    if tuple(int(c) for c in x.chunks[axis]) != tuple(sizes):
        x = x.rechunk({axis: tuple(sizes)})
    # optimised as x.compute() would submit it: the same keys then mean the same tasks when
    # the user computes x too (distributed warns about, and may deadlock on, anything else)
    (x,) = dask.optimize(x)
    graph = x.__dask_graph__()
    layers.update(graph.layers)
    deps.update(graph.dependencies)
    return list(flatten(x.__dask_keys__()))   # one block per chunk: only the batch is split


# ------------------------------------------------------------- lazy arrays and computing

def _concat(ctx, field, shape, axis, dtype) -> da.Array:
    """The dask array of one per-trajectory field: block i is chunk i's."""
    name = f"odefast-{field.replace('_', '-')}-{ctx.token}"
    tasks = {}
    for i, key in enumerate(ctx.chunk_keys):
        index = [0] * len(shape)
        index[axis] = i
        tasks[(name, *index)] = (_pick, key, field, np.dtype(dtype))
    chunks = tuple(ctx.chunks if ax == axis else (n,) for ax, n in enumerate(shape))
    return da.Array(ctx.graph({name: (tasks, {ctx.chunk_layer})}), name, chunks, dtype=dtype)


def _tree(ctx, field, final_key) -> dict:
    """Layers summing chunk results' `field` SPLIT_EVERY at a time (a fixed tree, the same on
    every run), the total under final_key: {layer name: (tasks, dependency layers)}."""
    name = final_key[0] if isinstance(final_key, tuple) else final_key
    partial = f"{name}-partial"
    level, depth, tasks = ctx.chunk_keys, 0, {}
    while True:
        groups = [level[i:i + SPLIT_EVERY] for i in range(0, len(level), SPLIT_EVERY)]
        head = (_sum_field, field) if depth == 0 else (_sum,)
        if len(groups) == 1:
            top = {final_key: head + tuple(groups[0])}
            break
        level = [(partial, depth, j) for j in range(len(groups))]
        tasks.update({key: head + tuple(g) for key, g in zip(level, groups)})
        depth += 1
    if not tasks:
        return {name: (top, {ctx.chunk_layer})}
    return {partial: (tasks, {ctx.chunk_layer}), name: (top, {partial})}


def _reduced(ctx, field, shape, dtype) -> da.Array:
    name = f"odefast-total-{field.replace('_', '-')}-{ctx.token}"
    key = (name,) + (0,) * len(shape)
    chunks = tuple((n,) for n in shape)
    return da.Array(ctx.graph(_tree(ctx, field, key)), name, chunks, dtype=dtype)


def _get(ctx, extra: dict, keys: list, sync=True, on_result=None):
    """Compute `keys` of the chunks' graph plus `extra` layers, one submission (shared tasks
    run once): results in order — each also passed to on_result(i, result) as it arrives, and
    dropped when that returns True — or (with a client and sync=False) futures."""
    graph = ctx.graph(extra).cull(set(keys))
    if ctx.client is None:
        results = list(dask.threaded.get(dict(graph), keys))
        if on_result is not None:
            for i, res in enumerate(results):
                on_result(i, res)
        return results
    with warnings.catch_warnings():
        # NumPy inputs are part of the graph on purpose (the chunks stay recomputable when a
        # worker dies), which can exceed distributed's "large graph" warning threshold
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        futures = ctx.client.get(graph, keys, sync=False)
    if not sync:
        return futures
    from distributed import as_completed

    # gathered as they finish, so that transfers (and on_result's copies) overlap the chunks
    # still running; straight from the workers when they run on this machine (LocalCluster),
    # else as the client is configured (distributed.client.direct-to-workers)
    direct = ctx.client.direct_to_workers
    if direct is None and _local_cluster(ctx.client):
        direct = True
    results, where = [None] * len(futures), {fut.key: i for i, fut in enumerate(futures)}
    try:
        for batch in as_completed(futures).batches():
            for fut, res in zip(batch, ctx.client.gather(batch, direct=direct)):
                i = where[fut.key]
                if on_result is not None and on_result(i, res):
                    res = None                          # consumed: free it now
                results[i] = res
                fut.release()
    finally:
        for fut in futures:
            fut.release()
    return results


def _local_cluster(client) -> bool:
    try:
        from distributed import LocalCluster
    except ImportError:  # pragma: no cover
        return False
    return isinstance(getattr(client, "cluster", None), LocalCluster)


def _field_shape(ctx, field) -> tuple:
    """Shape and dtype of a per-trajectory field of the whole ensemble."""
    N, B = ctx.t.shape[0], ctx.B
    return {"ys": ((N, B, ctx.D), ctx.dtype), "g_y0": ((B, ctx.D), ctx.dtype),
            "g_params": ((B, ctx.P), ctx.dtype), "status": ((B,), np.int32),
            "g_status": ((B,), np.int32)}.get(field, ((B,), np.int64))


def _assemble(ctx, local: tuple, summed: tuple = ()) -> dict:
    """Per-trajectory fields copied into the ensemble's arrays as the chunks arrive (only they
    travel back), summed fields reduced by the tree on the cluster."""
    if ctx.task == "solve":       # the chunks hold nothing else: fetch them as they finish
        extra, keys = {}, list(ctx.chunk_keys)
    else:                         # leave the partial sums behind
        name = f"odefast-select-{ctx.token}"
        extra = {name: ({(name, i): (_select, key, local) for i, key in enumerate(ctx.chunk_keys)},
                        {ctx.chunk_layer})}
        keys = [(name, i) for i in range(len(ctx.chunks))]
    for field in summed:
        total = (f"odefast-sum-{field.replace('_', '-')}-{ctx.token}",)
        extra.update(_tree(ctx, field, total))
        keys.append(total)
    out = {}
    for field in local:
        shape, dtype = _field_shape(ctx, field)
        out[field] = np.empty(shape, dtype=dtype)
    n = len(ctx.chunks)

    def fill(i, res) -> bool:
        if i >= n:
            return False
        s, e = ctx.starts[i], ctx.starts[i] + ctx.chunks[i]
        for field in local:
            if field == "ys":
                out[field][:, s:e] = res.data[field]
            else:
                out[field][s:e] = res.data[field]
        return True

    results = _get(ctx, extra, keys, on_result=fill)
    out.update(zip(summed, results[n:]))
    return out


def _persist(ctx) -> _Ctx:
    """The same ensemble with its chunk results computed: in memory here (threads), or as
    futures on the cluster (computing in the background)."""
    if ctx.client is None:
        results = _get(ctx, {}, ctx.chunk_keys)
        return dataclasses.replace(ctx, layers={ctx.chunk_layer: dict(zip(ctx.chunk_keys, results))},
                                   dependencies={ctx.chunk_layer: set()}, held=())
    futures = _get(ctx, {}, ctx.chunk_keys, sync=False)
    return dataclasses.replace(ctx, layers={ctx.chunk_layer: dict(zip(ctx.chunk_keys, futures))},
                               dependencies={ctx.chunk_layer: set()}, held=tuple(futures))


def _failures(ctx, field) -> Failures:
    name = f"odefast-failed-{ctx.token}"
    tasks = {(name, i): (_failed, key, field, s)
             for i, (key, s) in enumerate(zip(ctx.chunk_keys, ctx.starts))}
    res = _get(ctx, {name: (tasks, {ctx.chunk_layer})}, list(tasks))
    idx = np.concatenate([r[0] for r in res]).astype(np.int64)
    codes = np.concatenate([r[1] for r in res]).astype(np.int32)
    return Failures(index=idx, status=codes, n_trajectories=ctx.B)


def _solution(ctx, out) -> Solution:
    return Solution(ys=out["ys"], t=ctx.t, status=out["status"].astype(np.int32, copy=False),
                    stats={k: out[k] for k in ("nfev", "steps", "rejected")}, method=ctx.method)


def _report(status, on_failure, prefix, suffix) -> None:
    if on_failure == "ignore" or not np.any(status):
        return
    msg = prefix + failure_message(status) + suffix
    if on_failure == "raise":
        raise SolveError(msg)
    warnings.warn(msg, SolveWarning, stacklevel=4)
