"""``python -m odefast train``: fit a neural ODE to the spiral of the neural-ODE paper.

The data, made here (nothing is downloaded): the cubic spiral of Chen et al. (2018), as in
torchdiffeq's ``examples/ode_demo.py``,

    dy/dt = (y**3) @ A,   A = [[-0.1, 2.0], [-2.0, -0.1]],   y(0) = (2, 0),

observed at 1000 equally spaced times on [0, 25] (solved by odefast at rtol 1e-10).

The model: an ``odefast.MLP`` vector field f(y; θ), 2 -> 64 -> 64 -> 2 with tanh. Each
iteration draws ``batch`` windows of ``batch_time`` consecutive observations at random start
points, integrates the model from every window's first observation (one batched solve; the
model is autonomous, so every window starts at t = 0) and takes the mean squared error against
the observations (ode_demo.py uses the L1 distance). The gradient dL/dθ comes from
``odefast.value_and_grad`` — the discrete "checkpoint" adjoint by default — and Adam updates θ
with a learning rate halved every ``lr_halflife`` iterations. The schedule is a function of the
global iteration count, so ``--resume`` continues it where it stopped.

Everything is seeded: the initial weights and the windows come from ``numpy.random.default_rng
(seed)``, and odefast's results do not depend on the number of threads, so a run is reproducible
bit for bit — and a run resumed from its checkpoint equals the uninterrupted run.

The output folder gets ``model.npz`` (the model, readable by ``odefast.MLP.load``, plus the
optimizer state, the random generator's state and the loss history, for ``--resume``) and, with
matplotlib, ``spiral.png`` and ``loss.png``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

import odefast as of

from . import _tableaus

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0_TRUE = np.array([2.0, 0.0])
T_END = 25.0
N_POINTS = 1000
CHECKPOINT = "model.npz"

# defaults of the command (None in argparse, so that --resume can tell what was given)
DEFAULTS: dict = dict(hidden=[64, 64], activation="tanh", iterations=2000, lr=1e-2, lr_halflife=500.0,
                method="dopri5", rtol=1e-6, atol=1e-8, dt=None, adjoint="checkpoint", batch=32,
                batch_time=10, seed=0, eval_every=100)
# what a checkpoint fixes (a resumed run takes the other settings from it unless given again)
ARCHITECTURE = ("hidden", "activation")


def spiral(n_points: int = N_POINTS, t_end: float = T_END):
    """The data: (t (n_points,), ys (n_points, 2)), float64, the spiral from y(0) = (2, 0)."""
    true = of.PythonDynamics(lambda t, y, p: (y ** 3) @ A_TRUE)
    t = np.linspace(0.0, t_end, n_points)
    sol = of.solve(true, Y0_TRUE, t, method="dopri5", rtol=1e-10, atol=1e-12, on_failure="raise")
    return t, sol.ys


class Adam:
    """Adam (Kingma & Ba 2015) on a flat float64 parameter vector.

    Written out in NumPy rather than taken from a library: it is ten lines, and a dependency
    (torch, optax, ...) for ten lines would be the heaviest part of the package."""

    def __init__(self, n_params: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(n_params)      # first-moment estimate
        self.v = np.zeros(n_params)      # second-moment estimate
        self.step = 0

    def update(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        """θ - lr m̂ / (sqrt(v̂) + eps), with bias-corrected moments m̂, v̂."""
        self.step += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1 ** self.step)
        v_hat = self.v / (1 - self.beta2 ** self.step)
        return theta - lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state(self) -> dict:
        return {"adam_m": self.m, "adam_v": self.v, "adam_step": np.int64(self.step)}

    def load_state(self, z) -> None:
        self.m, self.v, self.step = np.array(z["adam_m"]), np.array(z["adam_v"]), int(z["adam_step"])


def learning_rate(lr: float, halflife: float, iteration: int) -> float:
    """lr at a global iteration (1-based): halved every ``halflife`` iterations."""
    return lr * 0.5 ** (iteration / halflife)


@dataclass
class History:
    """What the training loop records, saved in the checkpoint and drawn in loss.png."""

    loss: list[float] = field(default_factory=list)          # minibatch MSE, one per iteration
    eval_iteration: list[int] = field(default_factory=list)  # iterations of the evaluations
    eval_loss: list[float] = field(default_factory=list)     # whole-trajectory MSE there
    resumed_at: list[int] = field(default_factory=list)      # iterations a run was resumed at
    nfev_forward: int = 0                                    # f evaluations, forward solves
    vjp_backward: int = 0                                    # f VJPs, adjoint (checkpoint)
    skipped: int = 0                                         # iterations with a failed solve
    wall_time: float = 0.0                                   # seconds, all runs together

    def arrays(self) -> dict:
        return {"loss_history": np.asarray(self.loss, float),
                "eval_iteration": np.asarray(self.eval_iteration, np.int64),
                "eval_loss": np.asarray(self.eval_loss, float),
                "resumed_at": np.asarray(self.resumed_at, np.int64),
                "counters": np.array([self.nfev_forward, self.vjp_backward, self.skipped], np.int64),
                "wall_time": np.float64(self.wall_time)}

    @classmethod
    def from_file(cls, z) -> History:
        nf, nv, sk = (int(x) for x in z["counters"])
        return cls(list(z["loss_history"]), [int(i) for i in z["eval_iteration"]],
                   list(z["eval_loss"]), [int(i) for i in z["resumed_at"]], nf, nv, sk,
                   float(z["wall_time"]))


class TrainError(ValueError):
    """A problem with the command's options or the checkpoint; the message says what to do."""


def _resolve(args) -> dict:
    """The run's settings: given options, else (with --resume) the checkpoint's, else defaults."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    if given.get("hidden") is not None:
        given["hidden"] = _parse_hidden(given["hidden"])
    out = Path(args.out)
    saved = {}
    if args.resume:
        path = out / CHECKPOINT
        if not path.exists():
            raise TrainError(f"--resume: no checkpoint {path}; train first without --resume "
                             f"(python -m odefast train --out {out})")
        with np.load(path, allow_pickle=False) as z:
            if "config" not in z.files:
                raise TrainError(f"--resume: {path} was not written by `python -m odefast train` "
                                 "(no optimizer state); choose another --out")
            saved = json.loads(str(z["config"]))
        for k in ARCHITECTURE:
            if k in given and given[k] != saved[k]:
                raise TrainError(f"--{k}: the checkpoint {path} has {k} = {saved[k]}, not "
                                 f"{given[k]}; drop --{k} to resume it, or train a new model "
                                 "with another --out")
    # a resumed run continues with the checkpoint's settings, except those given again
    cfg = {**DEFAULTS, **{k: v for k, v in saved.items() if k in DEFAULTS and k != "iterations"},
           **given}
    if cfg["iterations"] < 0:
        raise TrainError(f"--iterations: expected >= 0, got {cfg['iterations']}")
    if cfg["batch_time"] < 2 or cfg["batch_time"] > N_POINTS // 2:
        raise TrainError(f"--batch-time: expected 2 to {N_POINTS // 2} observations per window, "
                         f"got {cfg['batch_time']}")
    if not 1 <= cfg["batch"] <= N_POINTS - cfg["batch_time"]:
        raise TrainError(f"--batch: expected 1 to {N_POINTS - cfg['batch_time']} windows, "
                         f"got {cfg['batch']}")
    if cfg["lr"] <= 0 or cfg["lr_halflife"] <= 0:
        raise TrainError("--lr and --lr-halflife: expected positive numbers")
    if cfg["eval_every"] < 1:
        raise TrainError(f"--eval-every: expected >= 1, got {cfg['eval_every']}")
    if cfg["method"] not in _tableaus.METHODS:
        raise TrainError(f"--method: unknown {cfg['method']!r}; supported: "
                         f"{', '.join(_tableaus.METHODS)}")
    if cfg["dt"] is None and not _tableaus.TABLEAUS[cfg["method"]].adaptive:
        cfg["dt"] = T_END / (N_POINTS - 1)   # one step per observation interval
    return cfg


def _parse_hidden(values) -> list:
    """``--hidden 64 64`` or ``--hidden 64,64`` -> [64, 64]."""
    try:
        sizes = [int(v) for item in values for v in str(item).split(",") if v.strip()]
    except ValueError:
        raise TrainError(f"--hidden: expected widths of the hidden layers like `64 64`, got "
                         f"{' '.join(map(str, values))}") from None
    if not sizes or min(sizes) < 1:
        raise TrainError(f"--hidden: expected one or more positive widths, got {sizes}")
    return sizes


def _save(path: Path, model, opt: Adam, rng, hist: History, iteration: int, cfg: dict) -> None:
    """Checkpoint: the model (MLP.save) with the optimizer and generator state, atomically."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    model.save(tmp, iteration=np.int64(iteration), config=json.dumps(cfg),
               rng_state=json.dumps(rng.bit_generator.state), **opt.state(), **hist.arrays())
    os.replace(tmp, path)


class _Progress:
    """tqdm when installed (a dependency of odefast; absent only in a bare source checkout),
    else a line every tenth of the run."""

    def __init__(self, start: int, total: int):
        self.start, self.total = start, total
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar, self.clock, self.next_print = None, time.perf_counter(), 0
        else:
            self.bar = tqdm(total=total, initial=start, desc="train", unit="it",
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, k: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.3e}", refresh=False)
            self.bar.update(1)
        elif k - self.start >= self.next_print or k == self.total:
            rate = (k - self.start) / max(time.perf_counter() - self.clock, 1e-9)
            print(f"train {k}/{self.total}  loss {loss:.3e}  {rate:.0f} it/s", file=sys.stderr)
            self.next_print += max(1, (self.total - self.start) // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _whole_trajectory(model, t, ys, cfg) -> tuple:
    """(MSE of the model's trajectory from y(0) against all observations, the trajectory)."""
    kw = dict(method=cfg["method"], rtol=cfg["rtol"], atol=cfg["atol"], dt=cfg["dt"])
    pred = of.solve(model, ys[0], t, on_failure="ignore", **kw).ys
    with np.errstate(all="ignore"):
        mse = float(np.mean((pred - ys) ** 2))
    return (mse if np.isfinite(mse) else float("nan")), pred


def train(args) -> int:
    """The command. Returns the exit status."""
    clock = time.perf_counter()
    try:
        cfg = _resolve(args)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if args.threads is not None:
        of.set_num_threads(args.threads)
    t, ys = spiral()

    if args.resume:
        model = of.MLP.load(ckpt)
        with np.load(ckpt, allow_pickle=False) as z:
            start = int(z["iteration"])
            opt = Adam(model.n_params)
            opt.load_state(z)
            rng = np.random.default_rng()
            rng.bit_generator.state = json.loads(str(z["rng_state"]))
            hist = History.from_file(z)
        hist.resumed_at.append(start)
        last = hist.eval_loss[-1] if hist.eval_loss else float("nan")
        print(f"resuming {ckpt} at iteration {start} (minibatch loss "
              f"{hist.loss[-1] if hist.loss else float('nan'):.3e}, whole trajectory {last:.3e})")
    else:
        model = of.MLP([2, *cfg["hidden"], 2], activation=cfg["activation"], seed=cfg["seed"])
        start, opt, hist = 0, Adam(model.n_params), History()
        rng = np.random.default_rng(cfg["seed"])
        if ckpt.exists():
            print(f"starting afresh: {ckpt} will be overwritten (--resume continues it instead)")
    cfg["hidden"] = list(cfg["hidden"])

    kw = dict(method=cfg["method"], rtol=cfg["rtol"], atol=cfg["atol"], dt=cfg["dt"])
    adaptive = _tableaus.TABLEAUS[cfg["method"]].adaptive
    stages = _tableaus.TABLEAUS[cfg["method"]].stages
    print(f"odefast {of.__version__}: neural ODE {model!r} on the spiral dy/dt = (y**3) @ A "
          f"({N_POINTS} observations on [0, {T_END:g}]), {cfg['method']} "
          + (f"rtol {cfg['rtol']:g} atol {cfg['atol']:g}" if adaptive else f"dt {cfg['dt']:.4g}")
          + f", {cfg['adjoint']} adjoint, Adam lr {cfg['lr']:g} halved every "
          f"{cfg['lr_halflife']:g} it, {cfg['batch']} windows of {cfg['batch_time']} points, "
          f"seed {cfg['seed']}, {of.get_num_threads()} threads")

    theta = model.params.copy()
    window_t = t[: cfg["batch_time"]]
    offsets = np.arange(cfg["batch_time"])[:, None]
    if start == 0:
        hist.eval_iteration.append(0)
        hist.eval_loss.append(_whole_trajectory(model, t, ys, cfg)[0])
    end = start + cfg["iterations"]
    bar = _Progress(start, end)
    run_clock = time.perf_counter()
    k = start
    interrupted = False
    try:
        for k in range(start + 1, end + 1):
            s = rng.choice(N_POINTS - cfg["batch_time"], size=cfg["batch"], replace=False)
            value, g = of.value_and_grad(model, ys[s], window_t, of.losses.MSE(ys[s + offsets]),
                                         params=theta, adjoint=cfg["adjoint"], on_failure="ignore",
                                         **kw)
            st = g.solution.stats
            hist.nfev_forward += int(st["nfev"].sum())
            if cfg["adjoint"] == "checkpoint":   # one VJP per stage of every accepted step
                hist.vjp_backward += int(st["steps"].sum()) * stages
            if np.isfinite(value) and np.all(np.isfinite(g.params)):
                theta = opt.update(theta, g.params, learning_rate(cfg["lr"], cfg["lr_halflife"], k))
            else:  # a window blew up (the solver says why in g.status): skip this step
                hist.skipped += 1
            hist.loss.append(float(value))
            if k % cfg["eval_every"] == 0 or k == end:
                model.params = theta
                hist.eval_iteration.append(k)
                hist.eval_loss.append(_whole_trajectory(model, t, ys, cfg)[0])
            bar.update(k, value)
    except KeyboardInterrupt:
        interrupted = True
        k = len(hist.loss)   # the iterations completed (and recorded)
    finally:
        bar.close()
    run_time = time.perf_counter() - run_clock
    hist.wall_time += run_time
    model.params = theta
    traj_mse, pred = _whole_trajectory(model, t, ys, cfg)
    if hist.eval_iteration[-1] != k:   # interrupted between evaluations
        hist.eval_iteration.append(k)
        hist.eval_loss.append(traj_mse)
    _save(ckpt, model, opt, rng, hist, k, cfg)

    done = k - start
    tail = hist.loss[-50:]
    print(("interrupted: " if interrupted else "") +
          f"trained {done} iterations ({start + 1 if done else start}..{k}) in {run_time:.1f} s "
          f"({done / max(run_time, 1e-9):.0f} it/s)")
    if tail:
        print(f"final loss: minibatch MSE {hist.loss[-1]:.3e} (mean of the last {len(tail)}: "
              f"{np.mean(tail):.3e}); whole trajectory from y(0) = (2, 0) over [0, {T_END:g}]: "
              f"MSE {traj_mse:.3e} (at iteration 0: {hist.eval_loss[0]:.3e})")
    n_it = max(len(hist.loss), 1)
    backward = (f"{hist.vjp_backward:,} vector-Jacobian products (stages x accepted steps, "
                f"{hist.vjp_backward / n_it:.0f} per iteration)"
                if cfg["adjoint"] == "checkpoint" else "not counted by the backsolve adjoint")
    print(f"function evaluations over all {len(hist.loss)} iterations: forward "
          f"{hist.nfev_forward:,} f ({hist.nfev_forward / n_it:.0f} per iteration of "
          f"{cfg['batch']} windows), backward {backward}")
    if hist.skipped:
        print(f"{hist.skipped} iterations skipped: a window's solve failed (non-finite state or "
              "max_steps); a smaller --lr or a tighter --rtol may help")
    print(f"saved {ckpt} (model + Adam state, iteration {k}): odefast.MLP.load('{ckpt}') reads "
          f"the model; `python -m odefast train --resume --out {out}` continues")
    if not args.no_plot:
        _plots(out, model, t, ys, pred, hist)
    print(f"total {time.perf_counter() - clock:.1f} s")
    return 130 if interrupted else 0


def can_plot() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plots(out: Path, model, t, ys, pred, hist: History) -> Optional[list]:
    if not can_plot():
        print('plots: matplotlib is not installed; `pip install "odefast[plot]"` draws '
              "spiral.png and loss.png")
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .reference._vector_fields import vector_field

    fig, ax = plt.subplots(1, 3, figsize=(16, 5))
    for i, (name, dark) in enumerate(zip("xy", ("navy", "darkred"))):
        ax[0].plot(t, ys[:, i], "-", lw=3, color=f"C{i}", alpha=0.45, label=f"data {name}")
        ax[0].plot(t, pred[:, i], "--", lw=1.1, color=dark, label=f"model {name}")
    ax[0].set(title="Trajectories", xlabel="t", ylabel="y(t)")
    ax[0].legend(fontsize=8, ncol=2, loc="upper right")
    ax[1].plot(ys[:, 0], ys[:, 1], "-", color="C0", lw=2.5, alpha=0.5, label="data")
    ax[1].plot(pred[:, 0], pred[:, 1], "--", color="C3", lw=1.2, label="model")
    ax[1].plot(*ys[0], "ko", ms=4)
    ax[1].set(title="Phase portrait", xlabel="x", ylabel="y", aspect="equal")
    ax[1].legend(fontsize=8)
    g = np.linspace(-2.2, 2.2, 41)
    X, Y = np.meshgrid(g, g)
    grid = np.stack([X.ravel(), Y.ravel()], axis=1)
    F = vector_field(model)(np.zeros(grid.shape[0]), grid, model.params)
    U, V = F[:, 0].reshape(X.shape), F[:, 1].reshape(X.shape)
    speed = np.hypot(U, V)
    strm = ax[2].streamplot(X, Y, U, V, color=speed, cmap="viridis", density=1.3, linewidth=0.8)
    fig.colorbar(strm.lines, ax=ax[2], label="|f(y)|")
    ax[2].plot(ys[:, 0], ys[:, 1], "-", color="C3", lw=1, alpha=0.7, label="data")
    ax[2].set(title="Learned vector field f(y; θ)", xlabel="x", ylabel="y", aspect="equal",
              xlim=(g[0], g[-1]), ylim=(g[0], g[-1]))
    ax[2].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"odefast neural ODE after {len(hist.loss)} iterations: {model!r}", fontsize=10)
    fig.tight_layout()
    spiral_png = out / "spiral.png"
    fig.savefig(spiral_png, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    it = np.arange(1, len(hist.loss) + 1)
    loss = np.asarray(hist.loss)
    ax.semilogy(it, loss, color="C0", lw=0.6, alpha=0.35, label="minibatch MSE")
    w = min(50, len(loss))
    if w > 1:
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.semilogy(it[w - 1:], smooth, color="C0", lw=1.5, label=f"minibatch MSE, mean of {w}")
    ax.semilogy(hist.eval_iteration, hist.eval_loss, "o-", color="C3", ms=3, lw=1,
                label="whole trajectory MSE")
    for r in hist.resumed_at:
        ax.axvline(r, color="grey", ls="--", lw=0.8)
    ax.set(title="Training loss" + (" (dashed: resumed)" if hist.resumed_at else ""),
           xlabel="iteration", ylabel="MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    loss_png = out / "loss.png"
    fig.savefig(loss_png, dpi=110)
    plt.close(fig)
    print(f"plots: {spiral_png} (data, learned trajectory, learned vector field), {loss_png}")
    return [spiral_png, loss_png]


def add_parser(sub) -> None:
    """The ``train`` sub-command's options (defaults in DEFAULTS)."""
    d: dict = DEFAULTS
    p = sub.add_parser("train", help="train a neural ODE on the spiral of the neural-ODE paper "
                                     "(the main job)",
                       description="Fit a neural ODE (an odefast.MLP vector field) to the "
                                   "spiral dy/dt = (y**3) @ A of the neural-ODE paper, with odefast "
                                   "gradients and Adam. Writes OUT/model.npz and, with matplotlib, "
                                   "OUT/spiral.png and OUT/loss.png.")
    p.add_argument("--hidden", nargs="+", metavar="WIDTH",
                   help=f"hidden layer widths (default {' '.join(map(str, d['hidden']))})")
    p.add_argument("--activation", choices=["tanh", "relu", "softplus", "sigmoid", "identity"],
                   help=f"activation (default {d['activation']})")
    p.add_argument("--iterations", type=int,
                   help=f"iterations of this run; with --resume, more iterations (default "
                        f"{d['iterations']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {d['lr']:g})")
    p.add_argument("--lr-halflife", type=float,
                   help=f"iterations per halving of the learning rate (default {d['lr_halflife']:g})")
    p.add_argument("--method", help=f"Runge-Kutta method (default {d['method']}; "
                                    f"one of {', '.join(_tableaus.METHODS)})")
    p.add_argument("--rtol", type=float, help=f"relative tolerance (default {d['rtol']:g})")
    p.add_argument("--atol", type=float, help=f"absolute tolerance (default {d['atol']:g})")
    p.add_argument("--dt", type=float, help="step of a fixed-step method (default: the spacing "
                                            "of the observations)")
    p.add_argument("--adjoint", choices=["checkpoint", "backsolve"],
                   help=f"gradient: discrete (checkpoint) or continuous (backsolve) adjoint "
                        f"(default {d['adjoint']})")
    p.add_argument("--batch", type=int, help=f"windows per iteration (default {d['batch']})")
    p.add_argument("--batch-time", type=int,
                   help=f"observations per window (default {d['batch_time']})")
    p.add_argument("--seed", type=int, help=f"seed of the weights and the windows (default "
                                            f"{d['seed']})")
    p.add_argument("--eval-every", type=int,
                   help=f"iterations between whole-trajectory evaluations (default {d['eval_every']})")
    p.add_argument("--threads", type=int, help="CPU threads (default: odefast's; results do "
                                               "not depend on it)")
    p.add_argument("--out", default="odefast-train",
                   help="output folder: model.npz, spiral.png, loss.png (default ./odefast-train)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/model.npz (model, Adam state, iteration count)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNGs")
    p.set_defaults(func=train)
