"""odefast's command line.

    python -m odefast train     train a neural ODE on the spiral of the neural-ODE paper (the main
                                job; PNGs with matplotlib, --resume continues)
    python -m odefast figure8   the Hessian of the figure-eight three-body orbit's non-closure
    python -m odefast bench     the standard workloads, small, odefast against the NumPy reference
    python -m odefast demo      a Lorenz ensemble and an MLP neural ODE against the NumPy reference

``python -m odefast COMMAND --help`` lists each command's options."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def demo(args) -> int:
    import odefast as of

    print(f"odefast {of.__version__} — backends {of.backends()}, {of.get_num_threads()} CPU threads")
    rows = []

    # 1. Lorenz ensemble: every trajectory has its own rho, its own adaptive steps.
    B = args.batch
    params = np.tile([10.0, 28.0, 8.0 / 3.0], (B, 1))
    params[:, 1] = np.linspace(0.0, 28.0, B)
    y0 = np.tile([1.0, 0.0, 0.0], (B, 1))
    t = np.array([0.0, 1.0])
    f = of.Lorenz()
    kw = dict(method="dopri5", rtol=1e-8, atol=1e-8, params=params)
    sol = of.solve(f, y0, t, **kw)
    ref_B = min(B, 200)
    ref = of.reference.solve(f, y0[:ref_B], t, method="dopri5", rtol=1e-8, atol=1e-8, params=params[:ref_B])
    err = np.max(np.abs(sol.ys[:, :ref_B] - ref.ys))
    t_fast = _median_time(lambda: of.solve(f, y0, t, **kw), args.repeats)
    t_ref = _median_time(lambda: of.reference.solve(f, y0[:ref_B], t, method="dopri5", rtol=1e-8,
                                                    atol=1e-8, params=params[:ref_B]), 1) * B / ref_B
    rows.append((f"Lorenz ensemble dopri5, B={B}", t_fast, t_ref, err, sol.stats["nfev"].mean()))

    # 2. MLP neural ODE (2 -> 64 -> 64 -> 2, tanh), classical RK4 with 100 steps.
    mlp = of.MLP([2, 64, 64, 2], seed=0)
    z0 = np.random.default_rng(1).uniform(-1, 1, size=(args.mlp_batch, 2))
    kw = dict(method="rk4", dt=0.01)
    sol = of.solve(mlp, z0, t, **kw)
    ref = of.reference.solve(mlp, z0, t, **kw)
    err = np.max(np.abs(sol.ys - ref.ys))
    t_fast = _median_time(lambda: of.solve(mlp, z0, t, **kw), args.repeats)
    t_ref = _median_time(lambda: of.reference.solve(mlp, z0, t, **kw), 1)
    rows.append((f"MLP neural ODE rk4 x100, B={args.mlp_batch}", t_fast, t_ref, err, sol.stats["nfev"].mean()))

    print(f"\n{'workload':38s} {'odefast':>11s} {'NumPy ref':>11s} {'speed-up':>9s} {'max |diff|':>11s} {'nfev':>7s}")
    for name, tf, tr, e, nfev in rows:
        print(f"{name:38s} {tf * 1e3:9.2f}ms {tr * 1e3:9.1f}ms {tr / tf:8.0f}x {e:11.2e} {nfev:7.0f}")
    print("\n(NumPy reference timed on min(B, 200) trajectories and scaled to B for the ensemble.)")
    return 0


def _spectrum_table(sp) -> None:
    groups = list(sp.overlaps)
    lam_max = np.abs(sp.eigenvalues).max()
    print(f"    {'#':>2s} {'eigenvalue':>12s}  {'class':9s} {'best match':>18s}" +
          "".join(f"{g:>12s}" for g in groups))
    for k, lam in enumerate(sp.eigenvalues):
        kind = "near-null" if sp.near_null[k] else ("soft" if abs(lam) < 1e-5 * lam_max else "")
        name, overlap = sp.best_match(k)
        match = f"{name:>12s} {overlap:5.3f}" if overlap >= 0.5 else f"{'-':>18s}"
        print(f"    {k + 1:2d} {lam:12.4e}  {kind:9s} {match}" +
              "".join(f"{sp.overlaps[g][k]:12.3f}" for g in groups))
    print(f"    {sp.near_null.sum()} near-null eigenvalues. Share of each generator inside the "
          "near-null eigenspace (1 = inside): " +
          ", ".join(f"{g} {v:.3f}" for g, v in sp.in_null_space.items()))


def _vector(v) -> str:
    return "(" + ", ".join(f"{x:.12g}" for x in v) + ")"


class _Orbits:
    """The distinct closed orbits met so far, named modulo symmetries; the first is the
    figure-eight."""

    def __init__(self, F8, f, kw, eight):
        self.F8, self.f, self.kw = F8, f, kw
        self.known = {"figure-eight": eight}

    def describe(self, z) -> str:
        F8, f, kw = self.F8, self.f, self.kw
        dists = {label: F8.distance_modulo_symmetries(f, z, zk, kw) for label, zk in self.known.items()}
        label = min(dists, key=dists.get)
        if dists[label] > 1e-4:
            label = f"orbit {chr(ord('A') + len(self.known))}"
            self.known[label] = z
        inv = F8.invariants(f, z, kw)
        pairs = inv["pair distances"]
        kind = "a choreography" if pairs[-1] - pairs[0] < 1e-4 else "not a choreography"
        return (f"{label}: T|E|^1.5 = {inv['T|E|^1.5']:.9f}, angular momentum {inv['ell']:.0e}, "
                f"min pair distances x |E| {' '.join(f'{p:.5f}' for p in pairs)} ({kind}), "
                f"distance from the figure-eight modulo symmetries {dists['figure-eight']:.2e}")


def _refine(F8, f, z, kw, gauss_newton=True):
    t0 = time.perf_counter()
    ref = F8.refine(f, z, kw, gauss_newton=gauss_newton)
    print(f"    {'iter':>4s} {'L(s0, T)':>11s} {'|step|':>10s} {'mu':>8s}")
    for it, L, step, mu in ref.history:
        print(f"    {it:4d} {L:11.3e} {step:10.3e} {mu:8.0e}")
    print(f"    {'converged' if ref.converged else 'NOT converged'}: L = {ref.history[-1][1]:.3e} "
          f"after {len(ref.history) - 1} iterations, {time.perf_counter() - t0:.2f} s")
    print(f"    final s0 = {_vector(ref.z[:-1])}, T = {ref.z[-1]:.12f}")
    return ref


def figure8(args) -> int:
    from . import _figure8 as F8

    kw = dict(method=args.method, rtol=args.rtol, atol=args.atol)
    f, z_pub = F8.dynamics(), F8.figure_eight()
    clock = time.perf_counter()
    print("The figure-eight three-body orbit (Ciceri & Fischbacher, arXiv:2301.08085): unit masses, "
          f"G = 1, T = {z_pub[-1]}, {args.method} rtol = {args.rtol:g}, atol = {args.atol:g}, float64")

    # 1. The Hessian of L(s0) = |s(T) - s0|^2 at the published orbit, T fixed.
    t0 = time.perf_counter()
    L, g, H = F8.derivatives(f, z_pub, kw, wrt_T=False)
    t_hessian = time.perf_counter() - t0
    sp = F8.spectrum(f, z_pub, H, g)
    print(f"\n1. Published orbit: non-closure L(s0) = {L:.4e}, |grad L| = {np.linalg.norm(g):.2e}, "
          f"E = {float(f.energy(z_pub[:-1])):.8f}")
    print(f"   Hessian d2L/ds0^2 (odefast.hessian, checkpoint adjoint, {t_hessian:.2f} s; "
          f"max|H - H^T| / max|H| = {sp.asymmetry:.1e}):")
    for row in H:
        print("    " + " ".join(f"{h:9.2e}" for h in row))
    print("   Spectrum of (H + H^T)/2 and the overlaps (norm of the projection) of each eigenvector "
          "with the generators:")
    _spectrum_table(sp)
    print(f"   The boosts are exact eigenvectors, eigenvalue 2 T^2 = {2 * z_pub[-1] ** 2:.4f}: not a "
          "symmetry, the centre of mass drifts by T x the boost.")

    # 2. Refinement of (s0, T) from a perturbed start; the published orbit polished alike.
    model = "the exact Hessian" if args.exact_hessian else "the Gauss-Newton matrix 2 J^T J"
    print(f"\n2. Refinement of (s0, T) from the published orbit perturbed by {args.perturbation:g} "
          f"(seed {args.seed}): Levenberg-Marquardt with {model} (s0 block from odefast.hessian), "
          "steps off the 5 symmetry directions")
    z_start = z_pub + args.perturbation * np.random.default_rng(args.seed).standard_normal(z_pub.size)
    ref = _refine(F8, f, z_start, kw, gauss_newton=not args.exact_hessian)
    print("   The published orbit, polished alike:")
    eight = _refine(F8, f, z_pub, kw).z
    orbits = _Orbits(F8, f, kw, eight)
    print("   Orbits reached (named modulo translations, rotations, time shifts, scaling and "
          "relabelling of the bodies):")
    print("    published, polished: " + orbits.describe(eight))
    print("    perturbed, refined:  " + orbits.describe(ref.z))
    _, g8, H8 = F8.derivatives(f, eight, kw)
    print("   Hessian of L(s0, T) with T free at the polished figure-eight (13 x 13):")
    _spectrum_table(F8.spectrum(f, eight, H8, g8))

    # 3. Soft directions: step along them, refine with T free, name the closed orbit reached.
    print("\n3. Soft directions: the softest eigenvectors u of the 13 x 13 Hessian off the symmetries; "
          "refine from (s0, T) + step u")
    print(f"    {'u':>2s} {'eigenvalue':>10s} {'step':>6s} {'iters':>5s} {'final L':>9s}  orbit reached")
    for i, (lam, u) in enumerate(F8.soft_directions(f, eight, H8, args.soft_directions)):
        for step in (a * sign for a in args.soft_steps for sign in (1, -1)):
            r = F8.refine(f, eight + step * u, kw)
            print(f"    {i + 1:2d} {lam:10.3e} {step:+6.3f} {len(r.history) - 1:5d} "
                  f"{r.history[-1][1]:9.2e}  " + (orbits.describe(r.z) if r.converged else "not closed"))
    spectra = {"figure-eight": np.linalg.eigvalsh((H8 + H8.T) / 2)}
    for label, z in list(orbits.known.items())[1:]:
        Hz = F8.derivatives(f, z, kw)[2]
        spectra[label] = np.linalg.eigvalsh((Hz + Hz.T) / 2)
        soft = [lam for lam, _ in F8.soft_directions(f, z, Hz, 2)]
        print(f"    {label}: s0 = {_vector(z[:-1])}, T = {z[-1]:.12f}, E = {float(f.energy(z[:-1])):.12f}; "
              f"softest eigenvalues off the symmetries {soft[0]:.3e}, {soft[1]:.3e} (figure-eight: "
              f"{', '.join(f'{lam:.3e}' for lam, _ in F8.soft_directions(f, eight, H8, 2))})")

    if args.plot and F8.plot(args.plot, f, orbits.known, spectra, kw):
        print(f"\nwrote {args.plot}: the orbits and their Hessian spectra (T free)")
    elif args.plot or not F8.can_plot():
        print("\nno matplotlib here: `pip install odefast[plot]` (or matplotlib) gives pictures "
              "(--plot out.png)")
    print(f"\ntotal {time.perf_counter() - clock:.1f} s")
    return 0


def main(argv=None) -> int:
    from . import _bench, _train

    parser = argparse.ArgumentParser(prog="python -m odefast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train.add_parser(sub)
    p = sub.add_parser("demo", help="solve a Lorenz ensemble and an MLP neural ODE; time them "
                                    "against the NumPy reference")
    p.add_argument("--batch", type=int, default=10000, help="Lorenz ensemble size (default 10000)")
    p.add_argument("--mlp-batch", type=int, default=256, help="MLP batch size (default 256)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.set_defaults(func=demo)
    p = sub.add_parser("figure8", help="Hessian of the figure-eight three-body orbit's non-closure: "
                                       "spectrum, symmetries, Newton refinement, soft directions")
    p.add_argument("--method", default="dopri5", help="Runge-Kutta method (default dopri5)")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative tolerance (default 1e-10)")
    p.add_argument("--atol", type=float, default=1e-10, help="absolute tolerance (default 1e-10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbed start (default 0)")
    p.add_argument("--perturbation", type=float, default=1e-3,
                   help="size of the random perturbation of (s0, T) (default 1e-3)")
    p.add_argument("--exact-hessian", action="store_true",
                   help="refine with the exact Hessian instead of the Gauss-Newton matrix")
    p.add_argument("--soft-directions", type=int, default=2, help="how many soft directions (default 2)")
    p.add_argument("--soft-steps", type=float, nargs="*", default=[0.01, 0.03],
                   help="step sizes along each soft direction, both signs (default 0.01 0.03)")
    p.add_argument("--plot", metavar="PNG", help="draw the orbits and the spectra (needs matplotlib)")
    p.add_argument("--quick", action="store_true",
                   help="fast settings: rtol = atol = 1e-8, one soft direction, one step")
    p.set_defaults(func=figure8)
    _bench.add_parser(sub)
    args = parser.parse_args(argv)
    if getattr(args, "quick", False):
        args.rtol = args.atol = 1e-8
        args.soft_directions, args.soft_steps = 1, args.soft_steps[:1]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
