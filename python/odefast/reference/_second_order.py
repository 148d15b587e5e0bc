"""Second-order adjoints in plain NumPy: Hessian-vector products of solves, the oracle for the
compiled ones. (odefast/_second.py holds the arguments, the loss terms and the assembly.)

Tangent system. Along K directions (v_y0_k, v_p_k) the tangents δz_k = ∂z/∂(y0, p) v_k obey

    dδz_k/dt = ∂f/∂z δz_k + ∂f/∂p v_p_k,      δz_k(t0) = v_y0_k.

z and its tangents form one state Z = [z, δz_1, ..., δz_K] (B, (K+1) D) with parameters
Q = [p, v_p_1, ..., v_p_K] and vector field F(t, Z; Q) = [f, δf_1, ..., δf_K], each δf_k the
tangent of f evaluated on dual numbers (_dual.Dual). Its "vjp" G carries an adjoint
A = [a, δa_1, ..., δa_K] to the tangents of the first-order vjp (again dual numbers):

    G(t, Z, Q, A) = [aᵀ∂f/∂(z, p),  δa_kᵀ ∂f/∂(z, p) + aᵀ ∂²f/∂(z, p)² [δz_k, v_p_k]  (k = 1..K)].

The first-order adjoints of reference/_adjoint.py, run on (F, G, Q) with the cotangent
[cot, δcot_1, ..., δcot_K] (δcot_k = ∇²loss [δys_k, v_y0_k] from loss.hvp), then compute the
adjoint [adj, δadj_1, ..., δadj_K] and its parameter part [adj_p, δadj_p_k]: their recurrences
and ODEs are linear in (a, pbar) with coefficients that depend on z only, so on the stacked
state they act on each block alike, and G supplies the derivative of the one nonlinear piece.

* adjoint="checkpoint" (exact): Z is integrated with error control on z alone (error_dims = D),
  so the accepted steps are chosen from primal values only, as in a plain solve, and the δz_k
  follow the same steps: the exact tangent of the discrete map (step sizes h_n constant).
  discrete_adjoint over the recorded steps of Z is then forward-mode differentiation of the
  discrete adjoint: each stage's vjp (Ybar_i, pbar_i) = vjp_f(t + c_i h, Y_i)(kbar_i) comes
  with its tangent from G (along δY_i, v_p and δkbar_i), and every linear update
  (kbar_j += h a_ij Ybar_i, ybar += Ybar_i, pbar += pbar_i) acts on the tangents alike.
  δadj_y0, δadj_p are the exact second derivatives of the computed solution.

* adjoint="backsolve" (continuous): the same forward tangent solve gives z(t_N), δz(t_N); then
  backsolve integrates, interval by interval from t_N to t_0 with the solve's method and
  tolerances, the continuous second-order adjoint system
      dz/dt = f,                 dδz/dt  = ∂f/∂z δz + ∂f/∂p v_p,
      da/dt = −(∂f/∂z)ᵀ a,       dδa/dt  = −(∂f/∂z)ᵀ δa − (∂²f/∂z² [δz] + ∂²f/∂z∂p [v_p])ᵀ a,
      dadj_p/dt = −aᵀ ∂f/∂p,     dδadj_p/dt = −δaᵀ ∂f/∂p − aᵀ (∂²f/∂p∂z [δz] + ∂²f/∂p² [v_p]),
  with the jumps a += cot_i, δa += δcot_i at the outputs t_i.

Either way H v_k = (δadj_y0_k + δcot_k[0] + δdL_dy0_k, δadj_p_k) (see odefast/_second.py).
PythonDynamics has no second derivatives (rejected in odefast/_second.py).
"""
from __future__ import annotations

import numpy as np

from .. import _tableaus
from .._problem import finish
from .._second import HVP, hessian_driver, hvp_driver, loss_terms
from ._adjoint import backsolve, discrete_adjoint
from ._dual import Dual, value_of
from ._rk import StepRecord, integrate
from ._vector_fields import vector_field, vector_field_vjp


def pack(value, tangents):
    """[value, tangents[0], ..., tangents[K-1]] along the last axis: (..., n), (K, ..., n) ->
    (..., (K+1) n)."""
    return np.concatenate([value, *tangents], axis=-1)


def unpack(packed, n):
    """The inverse of pack: (value (..., n), tangents (K, ..., n)), as views."""
    blocks = np.moveaxis(packed.reshape(packed.shape[:-1] + (-1, n)), -2, 0)
    return blocks[0], blocks[1:]


def _dual(x):
    return x if isinstance(x, Dual) else Dual(x)


def tangent_system(f, D, P):
    """(F(t, Z, Q), G(t, Z, Q, A)) of the tangent system of the dynamics f (module docstring)."""
    field, field_vjp = vector_field(f), vector_field_vjp(f)

    def F(t, Z, Q):
        (z, dz), (p, dp) = unpack(Z, D), unpack(Q, P)
        df = [_dual(field(t, Dual(z, dz_k), Dual(p, dp_k))) for dz_k, dp_k in zip(dz, dp)]
        return pack(df[0].value, [d.tangent for d in df])

    def G(t, Z, Q, A):
        (z, dz), (p, dp), (a, da) = unpack(Z, D), unpack(Q, P), unpack(A, D)
        g = [field_vjp(t, Dual(z, dz[k]), Dual(p, dp[k]), Dual(a, da[k])) for k in range(len(dz))]
        gy, gp = [_dual(g_k[0]) for g_k in g], [_dual(g_k[1]) for g_k in g]
        gt = value_of(g[0][2])      # time gradients are not differentiated (not part of H)
        return (pack(gy[0].value, [d.tangent for d in gy]),
                pack(gp[0].value, [d.tangent for d in gp]), gt)

    return F, G


def hvps(pb, loss, V_y0, V_p, adjoint):
    """The reference backend of odefast/_second.py: K Hessian-vector products at once.

    V_y0: (K, B, D); V_p: (K, P) or (K, B, P). Returns (HY0 (K, B, D), HP (K, P) summed over
    trajectories or (K, B, P), sol, status (B,))."""
    tab = _tableaus.TABLEAUS[pb.method]
    D, P = pb.y0.shape[1], pb.params.shape[-1]
    F, G = tangent_system(pb.f, D, P)
    Q = pack(pb.params, V_p)

    def fun(tt, Z):
        return F(tt, Z, Q)

    record = StepRecord() if adjoint == "checkpoint" else None
    Zs, nfev, steps, rejected, status = integrate(tab, fun, pack(pb.y0, V_y0), pb.t, pb.rtol,
                                                  pb.atol, pb.dt, pb.max_steps, record=record,
                                                  error_dims=D)
    ys, dys = unpack(Zs, D)                                  # (N, B, D), (K, N, B, D)
    sol = finish(pb, ys.copy(), nfev, steps, rejected, status, on_failure="ignore")
    cot, d_cot, d_dL_dy0 = loss_terms(loss, pb, sol, dys)
    cot_Z = pack(cot, d_cot)
    # failed trajectories go through the adjoint too; the driver reports them as NaN
    if adjoint == "checkpoint":
        adj_Z, adj_Q = discrete_adjoint(tab, fun, G, Q, record, cot_Z)
    else:
        adj_Z, adj_Q, back_status, _ = backsolve(tab, fun, G, Q, pb.t, Zs, cot_Z, pb.rtol,
                                                 pb.atol, pb.dt, pb.max_steps)
        status = np.where(status != 0, status, back_status)
    _, d_adj_y0 = unpack(adj_Z, D)                           # (K, B, D)
    _, d_adj_p = unpack(adj_Q, P)                            # (K, B, P)
    HY0 = d_adj_y0 + d_cot[:, 0] + d_dL_dy0
    HP = d_adj_p.sum(axis=1) if pb.params.ndim == 1 else d_adj_p
    return HY0, HP, sol, status


def hvp(f, y0, t, loss, v_y0, v_params=None, adjoint="checkpoint", method="dopri5", rtol=1e-6,
        atol=1e-8, dt=None, max_steps=None, params=None, on_failure="warn") -> HVP:
    """NumPy twin of :func:`odefast.hvp`: the Hessian of L(y0, params) = loss(sol.ys, y0) times
    v = (v_y0, v_params). v_y0 is shaped like y0, v_params like the params in use ((P,) or
    (B, P)); None means zero. adjoint="checkpoint" is the exact second derivative of the
    computed solution, "backsolve" the continuous second-order adjoint. Returns an HVP
    (.y0, .params, .solution, .status)."""
    return hvp_driver(hvps, f, y0, t, loss, v_y0, v_params, adjoint, method, rtol, atol, dt,
                      max_steps, params, on_failure)


def hessian(f, y0, t, loss, wrt="y0", adjoint="checkpoint", method="dopri5", rtol=1e-6,
            atol=1e-8, dt=None, max_steps=None, params=None, on_failure="warn") -> np.ndarray:
    """NumPy twin of :func:`odefast.hessian`. wrt="y0": (B, D, D), the block d²L/dy0[b]² of
    each trajectory ((D, D) for a 1-D y0); wrt="params": (P, P) for shared params, (B, P, P)
    blocks for per-trajectory params. Column k is the HVP with the k-th unit direction; the
    result is not symmetrised."""
    return hessian_driver(hvps, f, y0, t, loss, wrt, adjoint, method, rtol, atol, dt, max_steps,
                          params, on_failure)
