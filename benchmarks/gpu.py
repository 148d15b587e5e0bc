"""GPU workloads G1 and G2 of shared/WORKLOADS.md: odefast's CUDA kernels against the CPU
backend and, when installed with a GPU, torchdiffeq (torch) and diffrax (JAX), in one run.

G1 (the DiffEqGPU protocol): Lorenz, float32, rho = linspace(0, 28, N) per trajectory,
z0 = (1, 0, 0), t in [0, 1], final state only. Fixed: 1000 steps of 0.001 -- with classical
RK4 (4 evaluations a step), as odefast's fixed-step methods are euler/midpoint/heun/rk4; the
protocol's Tsit5 takes 6 a step, so the anchor's fixed column does 1.5x our work. Adaptive:
tsit5 at rtol = atol = 1e-8, each trajectory with its own steps.
G2: the W1 MLP (2 -> 64 -> 64 -> 2, tanh), float32, RK4 with 100 steps on [0, 1], forward and
value+gradient of the W3 loss (mean squared distance of z(1) to targets), B in {1024, 65536,
1048576}; achieved TFLOP/s at 8,704 FLOPs per sample per evaluation (plus 128 tanh).

Times are end to end through the public API: NumPy arrays in, NumPy arrays out (the copies
to and from the GPU are included). Without a GPU it says so and exits (nothing is estimated).

    python benchmarks/gpu.py [--quick] [--out FILE] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads as wl  # noqa: E402

try:
    import odefast as of
except ImportError:  # a source checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import odefast as of

G1_SIZES = (8, 8192, 131072, 2097152, 8388608)
G2_SIZES = (1024, 65536, 1048576)
MLP_FLOPS_PER_EVAL = 8704


def fmt(seconds):
    return f"{seconds * 1e3:10.2f} ms" if seconds is not None else f"{'-':>13s}"


def timed(fn, repeats):
    fn()  # warm-up (CUDA context, module load)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def g1_odefast(N, adaptive, device, repeats):
    f = of.Lorenz()
    params = wl.lorenz_params(N).astype(np.float32)
    z0 = wl.lorenz_z0(N).astype(np.float32)
    t = np.array([0.0, 1.0], dtype=np.float32)
    kw = dict(method="tsit5", rtol=1e-8, atol=1e-8) if adaptive else dict(method="rk4", dt=0.001)
    return timed(lambda: of.solve(f, z0, t, params=params, device=device, on_failure="ignore", **kw), repeats)


def device_array_maker():
    """to_device(ndarray) with PyTorch (CUDA) or CuPy, for zero-copy solves; None without."""
    try:
        import torch
        if torch.cuda.is_available():
            return lambda a: torch.as_tensor(a, device="cuda")
    except ImportError:
        pass
    try:
        import cupy
        return cupy.asarray
    except ImportError:
        return None


def g1_odefast_on_device(to_device, N, adaptive, repeats):
    """G1 with y0 and params already on the GPU and ys left there (no host copies)."""
    f = of.Lorenz()
    params = to_device(wl.lorenz_params(N).astype(np.float32))
    z0 = to_device(wl.lorenz_z0(N).astype(np.float32))
    t = np.array([0.0, 1.0], dtype=np.float32)
    kw = dict(method="tsit5", rtol=1e-8, atol=1e-8) if adaptive else dict(method="rk4", dt=0.001)
    return timed(lambda: of.solve(f, z0, t, params=params, device="cuda", on_failure="ignore", **kw), repeats)


def g2_odefast(B, grad, device, repeats):
    weights, biases = wl.mlp_weights()
    f = of.MLP.from_weights([W.astype(np.float32) for W in weights], [b.astype(np.float32) for b in biases])
    z0 = np.random.RandomState(1).uniform(-1.0, 1.0, size=(B, 2)).astype(np.float32)
    target = np.random.RandomState(2).uniform(-1.0, 1.0, size=(B, 2)).astype(np.float32)
    t = np.array([0.0, 1.0], dtype=np.float32)
    kw = dict(method="rk4", dt=0.01, device=device)
    if not grad:
        return timed(lambda: of.solve(f, z0, t, **kw), repeats)
    targets = np.stack([target, target])
    weights_ = np.stack([np.zeros_like(target), 2.0 * np.ones_like(target)])  # only z(1) counts
    loss = of.losses.MSE(targets, weights=weights_)
    return timed(lambda: of.value_and_grad(f, z0, t, loss, **kw), repeats)


def torch_peer():
    try:
        import torch
        import torchdiffeq
    except ImportError:
        return None
    return (torch, torchdiffeq) if torch.cuda.is_available() else None


def g1_torchdiffeq(peer, N, repeats):
    torch, tde = peer
    dev = torch.device("cuda")
    rho = torch.as_tensor(wl.lorenz_rho(N), dtype=torch.float32, device=dev)
    z0 = torch.as_tensor(wl.lorenz_z0(N), dtype=torch.float32, device=dev)
    t = torch.tensor([0.0, 1.0], device=dev)

    def f(_, z):
        x, y, w = z[:, 0], z[:, 1], z[:, 2]
        return torch.stack([10.0 * (y - x), x * (rho - w) - y, x * y - (8 / 3) * w], dim=1)

    def run():
        out = tde.odeint(f, z0, t, method="rk4", options={"step_size": 0.001})[-1]
        torch.cuda.synchronize()
        return out.cpu().numpy()
    return timed(run, repeats)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the smaller sizes only")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="JSONL file for the records")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: the same table on the CPU backend (a smoke test of this script)")
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cuda" and not of.backends()["cuda"]:
        info = of.build_info()
        why = "no CUDA kernels in this build" if not info["cuda_compiled"] else "no CUDA GPU visible"
        print(f"gpu.py: {why} (odefast.backends()['cuda'] is False); nothing to measure")
        return 0
    records = []
    g1 = G1_SIZES[:3] if args.quick else G1_SIZES
    g2 = G2_SIZES[:2] if args.quick else G2_SIZES
    if dev == "cpu":
        g1, g2 = (8, 8192), (1024,)
    on_gpu = dev == "cuda"
    peer = torch_peer() if on_gpu else None
    to_device = device_array_maker() if on_gpu else None
    print("odefast cuda: NumPy in and out (copies included); zero-copy: CuPy/PyTorch arrays on the GPU")
    print(f"{'case':46s} {'odefast ' + dev:>13s} {'zero-copy':>13s} {'odefast cpu':>13s} {'torchdiffeq':>13s}  notes")
    for adaptive in (False, True):
        for N in g1:
            name = f"G1 lorenz {'tsit5 1e-8' if adaptive else 'rk4 dt=1e-3'} N={N}"
            gpu_s, sol = g1_odefast(N, adaptive, dev, args.repeats)
            dev_s = g1_odefast_on_device(to_device, N, adaptive, args.repeats)[0] if to_device else None
            cpu_s = g1_odefast(N, adaptive, "cpu", 1)[0] if on_gpu and N <= 131072 else None
            tde_s = g1_torchdiffeq(peer, N, 1)[0] if peer and not adaptive and N <= 2097152 else None
            steps = float(np.mean(sol.stats["steps"]))
            rate = N * steps / gpu_s
            records.append(dict(case=name, device=dev, N=N, gpu_s=gpu_s, zero_copy_s=dev_s, cpu_s=cpu_s, torchdiffeq_s=tde_s,
                                mean_steps=steps, trajectory_steps_per_s=rate,
                                failed=int(np.sum(sol.status != 0))))
            print(f"{name:46s} {fmt(gpu_s)} {fmt(dev_s)} {fmt(cpu_s)} {fmt(tde_s)}  {rate:.3g} trajectory-steps/s")
    for grad in (False, True):
        for B in g2:
            name = f"G2 mlp rk4x100 {'value+grad' if grad else 'forward'} B={B}"
            gpu_s, _ = g2_odefast(B, grad, dev, args.repeats)
            cpu_s = g2_odefast(B, grad, "cpu", 1)[0] if on_gpu and B <= 65536 else None
            flops = B * 400 * MLP_FLOPS_PER_EVAL * (3 if grad else 1)  # backward ~ 2 forwards
            records.append(dict(case=name, device=dev, B=B, gpu_s=gpu_s, cpu_s=cpu_s, tflops=flops / gpu_s / 1e12))
            print(f"{name:46s} {fmt(gpu_s)} {fmt(None)} {fmt(cpu_s)} {fmt(None)}  {flops / gpu_s / 1e12:.2f} TFLOP/s")
    if args.out:
        with open(args.out, "w") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
