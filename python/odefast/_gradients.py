"""odefast.vjp and odefast.value_and_grad: first derivatives of solves in the compiled core.

adjoint="checkpoint" (default): the discrete adjoint — reverse mode through the steps the
forward solve actually took (recorded in the forward pass), the exact gradient of the computed
solution w.r.t. y0 and params. adjoint="backsolve": the continuous adjoint of Chen et al.
(2018): the augmented system [z, a, dL/dparams] integrated backwards with the same method and
tolerances, O(1) memory in the number of steps; it may be inaccurate for dissipative or chaotic
dynamics, where integrating z backwards loses the trajectory.

Time gradients (both adjoints) use the continuous-time identities dL/dt_i = cot_i . f(t_i, y_i)
(i >= 1) and dL/dt_0 = -a(t_0) . f(t_0, y0); for fixed-step methods on grids that move with t
they are the derivative of the exact flow, not of the step-size rule.
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._dynamics import PythonDynamics
from ._grad import (Gradient, assemble, check_adjoint, check_cotangent, check_loss,
                    loss_cotangent, time_gradients)
from ._problem import check_on_failure, finish, prepare
from ._solve import check_cuda_dynamics, check_device

# GPU memory the discrete adjoint's kernels may use for tapes and work (the batch runs in
# chunks that fit; a fixed partition, so results do not depend on the GPU's free memory).
GPU_ADJOINT_MEMORY = 1 << 30


def _field(pb, tt, y):
    return _core.field(pb.f._spec(), pb.dtype_name, np.ascontiguousarray(tt), np.ascontiguousarray(y),
                       pb.params)


def _run(pb, cot_fn, adjoint, seminorm, on_failure, device="cpu"):
    """Forward solve, cotangent from cot_fn(sol) -> (cot (N, B, D), extra), then the adjoint."""
    spec, dt_name = pb.f._spec(), pb.dtype_name
    args = (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    if seminorm and adjoint == "checkpoint":
        raise ValueError("seminorm: only meaningful with adjoint='backsolve'")
    if device == "cuda":
        return _run_cuda(pb, cot_fn, adjoint, on_failure)
    if adjoint == "checkpoint":
        *out, tape = _core.solve_recording(spec, dt_name, pb.method, pb.y0, pb.t, pb.params, *args)
    else:
        out = _core.solve(spec, dt_name, pb.method, pb.y0, pb.t, pb.params, *args)
    ys, status = out[0], out[4]
    sol = finish(pb, *out, on_failure="ignore")
    cot, extra = cot_fn(sol)
    # failed trajectories still go through the adjoint (cheaply: the checkpoint sweep skips
    # them, backsolve stops at their non-finite state); assemble() reports them as NaN
    if adjoint == "checkpoint":
        ybar0, pbar = tape.backward(cot)
    else:
        # seminorm: error control on [z, a] only, not on the parameter-gradient channels
        error_dims = 2 * pb.y0.shape[1] if seminorm else 0
        ybar0, pbar, back_status, _ = _core.backsolve(spec, dt_name, pb.method,
                                                      np.ascontiguousarray(ys[-1]), pb.t, pb.params,
                                                      cot, *args, error_dims=error_dims)
        status = np.where(status != 0, status, back_status)
    pbar_rows = pbar if pbar.ndim == 2 else pbar[None, :]
    g_t = time_gradients(pb, lambda tt, y: _field(pb, tt, y), ys, cot, ybar0)
    return assemble(pb, sol, cot, ybar0, pbar_rows, g_t, status, adjoint, on_failure), extra


def _run_cuda(pb, cot_fn, adjoint, on_failure, host=False):
    """The discrete adjoint on the GPU (host=True: the kernels' code on the CPU, for tests):
    a plain GPU solve gives the solution and each trajectory's number of accepted steps, which
    sizes the tapes exactly; then one kernel per chunk of trajectories re-solves with recording,
    sweeps its steps backwards and forms its time gradients."""
    if adjoint != "checkpoint":
        raise ValueError("adjoint: device='cuda' computes the discrete adjoint; use "
                         "adjoint='checkpoint' (or device='cpu' for 'backsolve')")
    spec, dt_name = pb.f._spec(), pb.dtype_name
    args = (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    out = _core.gpu_solve(spec, dt_name, pb.method, pb.y0, pb.t, pb.params, *args, host=host)
    status, steps = out[4], out[2]
    sol = finish(pb, *out, on_failure="ignore")
    cot, extra = cot_fn(sol)
    ok = status == 0
    tape_steps = max(1, int(steps[ok].max())) if ok.any() else 1
    ybar0, pbar, gt_rows, n_overflow, _ = _core.gpu_adjoint(
        spec, dt_name, pb.method, pb.y0, pb.t, pb.params, cot, *args, tape_steps=tape_steps,
        memory_budget=GPU_ADJOINT_MEMORY, host=host)
    if n_overflow:  # the recording solve must take the plain solve's steps
        raise RuntimeError(f"odefast internal error: {n_overflow} trajectories took more steps in "
                           f"the GPU adjoint's recording solve than in the forward solve")
    pbar_rows = pbar if pbar.ndim == 2 else pbar[None, :]
    g_t = gt_rows.sum(axis=0, dtype=np.float64)
    return assemble(pb, sol, cot, ybar0, pbar_rows, g_t, status, adjoint, on_failure), extra


def vjp(f, y0, t, cotangent, adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8,
        dt=None, max_steps=None, params=None, device="cpu", seminorm=False,
        on_failure="warn") -> Gradient:
    """Vector-Jacobian product of a solve: the gradients of L = sum(cotangent * sol.ys).

    Args:
        cotangent: dL/dys, the shape of sol.ys ((len(t), B, D) or (len(t), D) for 1-D y0).
        adjoint: 'checkpoint' (discrete, exact for the computed solution; default) or
            'backsolve' (continuous adjoint, O(1) memory; CPU only).
        device: 'cpu' or 'cuda' (the checkpoint adjoint per trajectory in one GPU kernel).
        Other arguments as for :func:`odefast.solve`.

    Returns:
        Gradient with .y0 (shape of y0), .params ((P,) summed over trajectories, or (B, P) for
        per-trajectory params), .t (shape of t), .solution (the forward Solution), .status.
    """
    on_failure = check_on_failure(on_failure)
    adjoint = check_adjoint(adjoint)
    check_device(device)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    check_cuda_dynamics(pb.f, device)
    cot = check_cotangent(cotangent, pb)
    if isinstance(pb.f, PythonDynamics):
        from . import reference
        return reference.vjp(f, y0, t, cotangent, adjoint=adjoint, method=method, rtol=rtol,
                             atol=atol, dt=dt, max_steps=max_steps, params=params,
                             seminorm=seminorm, on_failure=on_failure)
    g, _ = _run(pb, lambda sol: (cot, None), adjoint, seminorm, on_failure, device)
    return g


def value_and_grad(f, y0, t, loss, adjoint="checkpoint", method="dopri5", rtol=1e-6, atol=1e-8,
                   dt=None, max_steps=None, params=None, device="cpu", seminorm=False,
                   on_failure="warn"):
    """Value and gradients of a loss of the solution, L(sol.ys, y0).

    Args:
        loss: an odefast.losses loss: MSE(targets, weights), Closure(), Custom(value, grad, hvp).
        Other arguments as for :func:`vjp`.

    Returns:
        (value: float, Gradient) — Gradient.y0 includes the loss's direct dependence on y0.
    """
    on_failure = check_on_failure(on_failure)
    adjoint = check_adjoint(adjoint)
    loss = check_loss(loss)
    check_device(device)
    check_cuda_dynamics(f, device)
    if isinstance(f, PythonDynamics):
        from . import reference
        return reference.value_and_grad(f, y0, t, loss, adjoint=adjoint, method=method, rtol=rtol,
                                        atol=atol, dt=dt, max_steps=max_steps, params=params,
                                        seminorm=seminorm, on_failure=on_failure)
    pb = prepare(f, y0, t, method, rtol, atol, dt, max_steps, params)
    y0_user = pb.y0[0] if pb.squeeze else pb.y0

    def cot_fn(sol):
        value, cot, d_y0 = loss_cotangent(loss, sol, y0_user, pb)
        return cot, (value, d_y0)

    g, (value, d_y0) = _run(pb, cot_fn, adjoint, seminorm, on_failure, device)
    g.y0 = g.y0 + d_y0
    return value, g
