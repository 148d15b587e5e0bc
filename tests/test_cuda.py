"""The CUDA backend.

Its kernels run one trajectory per GPU thread through odefast/trajectory_adjoint.hpp
(trajectory_solve, trajectory_adjoint): the same tableaus, integrator, dynamics and vjps as the
CPU path. Without a GPU the tests here run those per-trajectory bodies on the CPU
(cuda/host_mirror.cpp, `host=True`), with the kernels' memory layouts (interleaved tapes,
per-trajectory parameter-cotangent rows), against the CPU backend: everything but the launch.
Tests marked ``cuda`` run the kernels themselves and skip without a GPU.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import odefast as of
import pytest
from odefast import _core
from odefast._gradients import _run_cuda
from odefast._problem import finish, prepare
from problems import FIXED_METHODS, linear_ensemble, lorenz_ensemble, nbody_ensemble

METHODS = ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")
DTYPES = (np.float64, np.float32)


def make(name, dtype):
    """(dynamics, y0 sampler, horizon)."""
    dt = np.dtype(dtype)
    if name == "lorenz":
        return (*lorenz_ensemble(), 0.4)
    if name == "linear":
        return (*linear_ensemble(4, seed=3), 1.0)
    if name == "nbody":
        return (*nbody_ensemble(), 1.0)
    if name == "mlp-time":
        return (of.MLP([3, 16, 3], activation="softplus", seed=2, dtype=dt, time_dependent=True),
                (lambda rng, B: rng.standard_normal((B, 3))), 1.0)
    act = name[4:]
    return (of.MLP([2, 32, 32, 2], activation=act, seed=1, dtype=dt),
            (lambda rng, B: rng.uniform(-1, 1, (B, 2))), 1.0)


DYNAMICS = ("lorenz", "linear", "nbody", "mlp-tanh", "mlp-relu", "mlp-sigmoid", "mlp-identity", "mlp-time")


def controls(method, dtype):
    f64 = np.dtype(dtype) == np.float64
    if method in FIXED_METHODS:
        return dict(method=method, dt=0.02)
    return dict(method=method, rtol=1e-7 if f64 else 1e-4, atol=1e-9 if f64 else 1e-6)


def problem(name, dtype, B, per_trajectory, seed=0, n_times=4):
    f, sample, T = make(name, dtype)
    rng = np.random.default_rng(seed)
    y0 = sample(rng, B).astype(dtype)
    params = None
    if per_trajectory:
        p = f.params.astype(np.float64)
        params = (p * (1.0 + 0.03 * rng.standard_normal((B, p.shape[0])))).astype(dtype)
    return f, y0, np.linspace(0.0, T, n_times).astype(dtype), params


def mirror_solve(f, y0, t, params=None, **kw):
    """of.solve through the CUDA backend's per-trajectory code on the CPU."""
    pb = prepare(f, y0, t, kw.get("method", "dopri5"), kw.get("rtol", 1e-6), kw.get("atol", 1e-8),
                 kw.get("dt"), kw.get("max_steps"), params)
    out = _core.gpu_solve(pb.f._spec(), pb.dtype.name, pb.method, pb.y0, pb.t, pb.params, pb.rtol,
                          pb.atol, pb.dt, pb.max_steps, host=True)
    return finish(pb, *out, on_failure="ignore")


def mirror_vjp(f, y0, t, cot, params=None, **kw):
    """of.vjp(adjoint='checkpoint', device='cuda') with the kernels' code run on the CPU."""
    pb = prepare(f, y0, t, kw.get("method", "dopri5"), kw.get("rtol", 1e-6), kw.get("atol", 1e-8),
                 kw.get("dt"), kw.get("max_steps"), params)
    cot = np.ascontiguousarray(cot, dtype=pb.dtype)
    g, _ = _run_cuda(pb, lambda sol: (cot, None), "checkpoint", "ignore", host=True)
    return g


def tolerance(dtype, method):
    return 1e-12 if np.dtype(dtype) == np.float64 else 2e-5


# ---------------------------------------------------------------------------------------------
# The kernels' code on the CPU (no GPU needed)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", METHODS)
def test_kernel_solve_matches_cpu(method, name, dtype):
    """Same steps, statuses and counters as the CPU backend; the states agree to rounding
    (the CPU's SIMD kernels and the kernels' plain loops sum in the same order)."""
    for B, per in ((1, False), (19, False), (19, True)):
        f, y0, t, params = problem(name, dtype, B, per)
        kw = controls(method, dtype)
        cpu = of.solve(f, y0, t, params=params, **kw)
        gpu = mirror_solve(f, y0, t, params=params, **kw)
        assert np.all(cpu.status == 0)
        np.testing.assert_array_equal(gpu.status, cpu.status)
        for k in ("nfev", "steps", "rejected"):
            np.testing.assert_array_equal(gpu.stats[k], cpu.stats[k], err_msg=f"{k} B={B} per={per}")
        scale = np.maximum(np.abs(cpu.ys), 1.0)
        assert np.max(np.abs(gpu.ys - cpu.ys) / scale) <= tolerance(dtype, method), f"B={B} per={per}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", ("euler", "rk4", "bosh3", "dopri5", "tsit5", "dopri8"))
def test_kernel_adjoint_matches_cpu_checkpoint(method, name, dtype):
    """The per-trajectory discrete adjoint (tape in the kernels' interleaved layout, reverse
    sweep, time gradients) equals the CPU's checkpoint adjoint to rounding."""
    for B, per in ((1, False), (13, False), (13, True)):
        f, y0, t, params = problem(name, dtype, B, per, seed=4)
        kw = controls(method, dtype)
        cot = np.random.default_rng(5).standard_normal((len(t), B, y0.shape[1])).astype(dtype)
        cpu = of.vjp(f, y0, t, cot, params=params, **kw)
        gpu = mirror_vjp(f, y0, t, cot, params=params, **kw)
        assert np.all(gpu.status == 0)
        tol = 1e-10 if np.dtype(dtype) == np.float64 else 2e-3
        for what in ("y0", "params", "t"):
            a, b = getattr(gpu, what), getattr(cpu, what)
            assert a.shape == b.shape and a.dtype == b.dtype, what
            err = np.max(np.abs(a.astype(np.float64) - b) / np.maximum(np.abs(b), 1.0))
            assert err <= tol, f"{what}: B={B} per={per}: {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("method", ("rk4", "dopri5", "dopri8"))
def test_kernel_recording_solve_is_the_plain_solve(method, dtype):
    """The adjoint kernel's recording solve takes exactly the plain solve's steps (the tape is
    sized from them): bitwise the same outputs and counters, and no tape overflow."""
    f, y0, t, params = problem("mlp-tanh", dtype, 9, False)
    pb = prepare(f, y0, t, method, 1e-7, 1e-9, 0.02 if method == "rk4" else None, None, params)
    args = (pb.f._spec(), pb.dtype.name, pb.method, pb.y0, pb.t, pb.params)
    ctl = (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    plain = _core.gpu_solve(*args, *ctl, host=True)
    cot = np.ones((len(t), 9, 2), dtype=dtype)
    tape_steps = int(plain[2].max())
    *_, n_overflow, recorded = _core.gpu_adjoint(*args, cot, *ctl, tape_steps=tape_steps, host=True)
    assert n_overflow == 0
    for a, b in zip(recorded, plain):
        np.testing.assert_array_equal(a, b)
    # one step short of the longest trajectory: reported, never written past the tape
    *_, n_overflow, _ = _core.gpu_adjoint(*args, cot, *ctl, tape_steps=tape_steps - 1, host=True)
    assert n_overflow == int(np.sum(plain[2] == tape_steps))


def test_kernel_gradient_vs_finite_differences():
    """An independent truth: the kernels' discrete adjoint against central differences of the
    kernels' own solve (Lorenz with per-trajectory rho, dopri5)."""
    f = of.Lorenz()
    B = 3
    params = np.tile(f.params, (B, 1))
    params[:, 1] = [5.0, 15.0, 28.0]
    y0 = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-2.0, 1.0, 3.0]])
    t = np.array([0.0, 0.3, 0.6])
    kw = dict(method="dopri5", rtol=1e-12, atol=1e-12)
    cot = np.random.default_rng(0).standard_normal((3, B, 3))
    g = mirror_vjp(f, y0, t, cot, params=params, **kw)

    def L(y0_, p_):
        return float(np.sum(cot * mirror_solve(f, y0_, t, params=p_, **kw).ys))

    h = 1e-6
    for b in range(B):
        for d in range(3):
            e = np.zeros_like(y0)
            e[b, d] = h
            fd = (L(y0 + e, params) - L(y0 - e, params)) / (2 * h)
            assert abs(g.y0[b, d] - fd) <= 1e-6 * max(1.0, abs(fd))
        for j in range(3):
            e = np.zeros_like(params)
            e[b, j] = h
            fd = (L(y0, params + e) - L(y0, params - e)) / (2 * h)
            assert abs(g.params[b, j] - fd) <= 1e-6 * max(1.0, abs(fd))


def test_kernel_failures_match_cpu():
    """Statuses per trajectory (max_steps, non-finite) as on the CPU; failed rows have NaN
    outputs and NaN gradients, the others are untouched."""
    f = of.Linear(np.array([[2.0, 0.0], [0.0, -1.0]]))
    y0 = np.array([[1.0, 1.0], [1e300, 1.0], [0.5, 0.5]])
    t = np.array([0.0, 1.0, 400.0])
    for kw in (dict(method="rk4", dt=0.5), dict(method="dopri5", max_steps=200),
               dict(method="tsit5", max_steps=50)):
        cpu = of.solve(f, y0, t, on_failure="ignore", **kw)
        gpu = mirror_solve(f, y0, t, **kw)
        np.testing.assert_array_equal(gpu.status, cpu.status)
        assert np.any(cpu.status != 0)
        np.testing.assert_array_equal(np.isnan(gpu.ys), np.isnan(cpu.ys))
        for k in ("nfev", "steps", "rejected"):
            np.testing.assert_array_equal(gpu.stats[k], cpu.stats[k])
    ok = np.array([True, False, True])
    y0[1, 0] = 1e308  # overflows within [0, 0.5]
    kw = dict(method="dopri5")
    t2 = np.array([0.0, 0.5])
    cpu = of.vjp(f, y0, t2, np.ones((2, 3, 2)), on_failure="ignore", **kw)
    gpu = mirror_vjp(f, y0, t2, np.ones((2, 3, 2)), **kw)
    np.testing.assert_array_equal(gpu.status, cpu.status)
    assert np.all(np.isnan(gpu.y0[~ok])) and np.all(cpu.status[~ok] != 0)
    np.testing.assert_allclose(gpu.y0[ok], cpu.y0[ok], rtol=1e-12)


def test_kernel_failed_trajectory_longer_than_the_tape():
    """A trajectory that fails after more steps than any successful one (the tape is sized
    from those) gets NaN gradients; the others are exact."""
    f = of.Linear(np.array([[-1.0, 0.0], [0.0, -50.0]]))
    y0 = np.array([[1.0, 1.0], [1.0, 1.0]])
    params = np.tile(f.params, (2, 1))
    params[1, 3] = -5000.0  # stiff: many short steps, then max_steps
    t = np.array([0.0, 1.0])
    kw = dict(method="dopri5", max_steps=400)
    cpu = of.vjp(f, y0, t, np.ones((2, 2, 2)), params=params, on_failure="ignore", **kw)
    gpu = mirror_vjp(f, y0, t, np.ones((2, 2, 2)), params=params, **kw)
    assert list(gpu.status) == [0, 1] and list(cpu.status) == [0, 1]
    assert gpu.solution.stats["steps"][1] > gpu.solution.stats["steps"][0]
    assert np.all(np.isnan(gpu.y0[1])) and np.all(np.isnan(gpu.params[1]))
    np.testing.assert_allclose(gpu.y0[0], cpu.y0[0], rtol=1e-12)
    np.testing.assert_allclose(gpu.params[0], cpu.params[0], rtol=1e-12)


def test_kernel_decreasing_times_and_dense_outputs():
    """Backwards in time, and many outputs inside steps (dense output): as the CPU."""
    f, y0, _, _ = problem("mlp-tanh", np.float64, 5, False)
    t = np.linspace(1.0, -1.0, 41)
    cot = np.random.default_rng(1).standard_normal((41, 5, 2))
    for method in ("bosh3", "dopri5", "tsit5", "dopri8"):
        cpu = of.vjp(f, y0, t, cot, method=method)
        gpu = mirror_vjp(f, y0, t, cot, method=method)
        np.testing.assert_allclose(gpu.solution.ys, cpu.solution.ys, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gpu.y0, cpu.y0, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gpu.params, cpu.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gpu.t, cpu.t, rtol=1e-10, atol=1e-12)


def test_kernel_bad_arguments():
    f, y0, t, _ = problem("lorenz", np.float64, 2, False)
    pb = prepare(f, y0, t, "dopri5", 1e-6, 1e-8, None, None, None)
    args = (pb.f._spec(), pb.dtype.name, pb.method, pb.y0, pb.t, pb.params)
    ctl = (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    with pytest.raises(ValueError, match="cotangent"):
        _core.gpu_adjoint(*args, np.ones((4, 2, 2)), *ctl, tape_steps=10, host=True)
    with pytest.raises(ValueError, match="tape_steps"):
        _core.gpu_adjoint(*args, np.ones((4, 2, 3)), *ctl, tape_steps=0, host=True)
    with pytest.raises(ValueError, match="method"):
        _core.gpu_solve(pb.f._spec(), "float64", "rk5", pb.y0, pb.t, pb.params, *ctl, host=True)


# ---------------------------------------------------------------------------------------------
# device="cuda": what a user without a GPU gets, and what a GPU must give
# ---------------------------------------------------------------------------------------------

def test_build_reports_cuda():
    info = of.build_info()
    assert of.backends()["cuda"] == (info["cuda_compiled"] and _core.cuda_device_count() > 0)


def test_cuda_unavailable_is_a_clear_error():
    if of.backends()["cuda"]:
        pytest.skip("a CUDA GPU is present")
    f = of.Lorenz()
    for call in (lambda: of.solve(f, [1.0, 0.0, 0.0], [0.0, 1.0], device="cuda"),
                 lambda: of.vjp(f, [1.0, 0.0, 0.0], [0.0, 1.0], np.ones((2, 3)), device="cuda"),
                 lambda: of.hvp(f, [1.0, 0.0, 0.0], [0.0, 1.0], of.losses.Closure(), [1.0, 0, 0],
                                device="cuda")):
        with pytest.raises(ValueError, match="device") as e:
            call()
        assert "cpu" in str(e.value)
    if not of.build_info()["cuda_compiled"]:
        with pytest.raises(RuntimeError, match="no CUDA kernels"):
            _core.gpu_solve(f._spec(), "float64", "dopri5", np.ones((1, 3)), np.array([0.0, 1.0]),
                            f.params, 1e-6, 1e-8, 0.0, 1000)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", METHODS)
def test_gpu_solve_matches_cpu(method, name, dtype):
    for B, per in ((1, False), (300, False), (300, True)):
        f, y0, t, params = problem(name, dtype, B, per)
        kw = controls(method, dtype)
        cpu = of.solve(f, y0, t, params=params, **kw)
        gpu = of.solve(f, y0, t, params=params, device="cuda", **kw)
        np.testing.assert_array_equal(gpu.status, cpu.status)
        # the GPU's own fma and libm (tanh, exp) round differently from the CPU's: states agree
        # to a few ulps per step; counters may differ where a step sits on accept/reject
        tol = 1e-9 if np.dtype(dtype) == np.float64 else 1e-3
        scale = np.maximum(np.abs(cpu.ys), 1.0)
        assert np.max(np.abs(gpu.ys - cpu.ys) / scale) <= tol
        if method in FIXED_METHODS:
            np.testing.assert_array_equal(gpu.stats["steps"], cpu.stats["steps"])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", DYNAMICS)
@pytest.mark.parametrize("method", ("rk4", "dopri5", "tsit5"))
def test_gpu_vjp_matches_cpu(method, name, dtype):
    for B, per in ((1, False), (300, False), (300, True)):
        f, y0, t, params = problem(name, dtype, B, per, seed=4)
        kw = controls(method, dtype)
        cot = np.random.default_rng(5).standard_normal((len(t), B, y0.shape[1])).astype(dtype)
        cpu = of.vjp(f, y0, t, cot, params=params, **kw)
        gpu = of.vjp(f, y0, t, cot, params=params, device="cuda", **kw)
        tol = 1e-7 if np.dtype(dtype) == np.float64 else 1e-2
        for what in ("y0", "params", "t"):
            a, b = getattr(gpu, what), getattr(cpu, what)
            assert a.shape == b.shape and a.dtype == b.dtype
            assert np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)) <= tol, what


@pytest.mark.cuda
def test_gpu_adjoint_chunks_and_determinism(monkeypatch):
    """A memory budget that forces many chunks gives bitwise the one-chunk gradient, and two
    runs are bitwise equal (fixed tree sums, no atomics)."""
    import odefast._gradients as gr
    f, y0, t, _ = problem("mlp-tanh", np.float32, 5000, False)
    cot = np.random.default_rng(2).standard_normal((len(t), 5000, 2)).astype(np.float32)
    kw = dict(method="dopri5", rtol=1e-5, atol=1e-7, device="cuda")
    a = of.vjp(f, y0, t, cot, **kw)
    b = of.vjp(f, y0, t, cot, **kw)
    monkeypatch.setattr(gr, "GPU_ADJOINT_MEMORY", 1 << 20)
    c = of.vjp(f, y0, t, cot, **kw)
    for g in (b, c):
        np.testing.assert_array_equal(g.y0, a.y0)
        np.testing.assert_array_equal(g.params, a.params)


@pytest.mark.cuda
def test_gpu_failures_and_unsupported():
    f = of.Linear(np.array([[2.0, 0.0], [0.0, -1.0]]))
    y0 = np.array([[1.0, 1.0], [1e300, 1.0], [0.5, 0.5]])
    sol = of.solve(f, y0, [0.0, 400.0], method="dopri5", max_steps=100, device="cuda",
                   on_failure="ignore")
    cpu = of.solve(f, y0, [0.0, 400.0], method="dopri5", max_steps=100, on_failure="ignore")
    np.testing.assert_array_equal(sol.status, cpu.status)
    with pytest.raises(ValueError, match="adjoint"):
        of.vjp(f, y0[:1], [0.0, 1.0], np.ones((2, 1, 2)), adjoint="backsolve", device="cuda")
    with pytest.raises(ValueError, match="device"):
        of.hessian(f, y0[0], [0.0, 1.0], of.losses.Closure(), device="cuda")
    with pytest.raises(ValueError, match="device"):
        of.solve(of.PythonDynamics(lambda t, y, p: -y), [1.0], [0.0, 1.0], device="cuda")


# ---------------------------------------------------------------------------------------------
# Zero-copy device arrays (CuPy / PyTorch): the checks, and the pointer entry point on the CPU
# ---------------------------------------------------------------------------------------------

class FakeDeviceArray:
    """Stands in for a CuPy array: a __cuda_array_interface__ over host memory (never given
    to a kernel: only the checks in odefast._cuda and the pointer plumbing run)."""
    __module__ = "cupy._core.core"

    def __init__(self, a, strides=None, mask=None):
        self.a = a
        self.device = SimpleNamespace(id=0)
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str, "version": 3,
                                         "data": (a.ctypes.data, False), "strides": strides,
                                         "mask": mask}


def test_device_array_checks():
    from odefast._cuda import describe, is_device_array
    a = np.zeros((4, 3))
    assert is_device_array(FakeDeviceArray(a)) and not is_device_array(a)
    d = describe(FakeDeviceArray(a), "y0")
    assert d.shape == (4, 3) and d.dtype == np.float64 and d.address == a.ctypes.data
    with pytest.raises(TypeError, match="y0.*float32 or float64"):
        describe(FakeDeviceArray(np.zeros((4, 3), np.int32)), "y0")
    with pytest.raises(ValueError, match="y0.*C-contiguous"):
        describe(FakeDeviceArray(a, strides=(8, 32)), "y0")
    with pytest.raises(ValueError, match="masked"):
        describe(FakeDeviceArray(a, mask=object()), "y0")
    other = type("Foreign", (), {"__cuda_array_interface__": {}})()
    with pytest.raises(TypeError, match="y0.*CuPy or PyTorch"):
        describe(other, "y0")
    with pytest.raises(ValueError, match="device"):  # device arrays want device='cuda'
        of.solve(of.Lorenz(), FakeDeviceArray(np.ones((2, 3))), [0.0, 1.0])
    with pytest.raises(ValueError if not of.backends()["cuda"] else TypeError, match="device|y0"):
        of.solve(of.Lorenz(), np.ones((2, 3)), [0.0, 1.0], params=FakeDeviceArray(np.ones(3)),
                 device="cuda")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("per", (False, True), ids=["shared", "per-traj"])
def test_pointer_entry_matches_array_entry(dtype, per):
    """gpu_solve_buffers (arrays as addresses: the zero-copy path) runs the same solve as
    gpu_solve (NumPy arrays), bitwise, on the kernels' code on the CPU."""
    f, y0, t, params = problem("mlp-tanh", dtype, 7, per)
    pb = prepare(f, y0, t, "dopri5", 1e-6, 1e-8, None, None, params)
    spec, ctl = pb.f._spec(), (pb.rtol, pb.atol, pb.dt, pb.max_steps)
    want = _core.gpu_solve(spec, pb.dtype.name, "dopri5", pb.y0, pb.t, pb.params, *ctl, host=True)
    ys = np.empty((len(t), 7, 2), dtype)
    addr = lambda a: (a.ctypes.data, False)  # noqa: E731
    got = _core.gpu_solve_buffers(spec, pb.dtype.name, "dopri5", 7, len(t), f.n_params, per,
                                  addr(pb.y0), addr(pb.t), addr(pb.params), addr(ys), *ctl, host=True)
    np.testing.assert_array_equal(ys, want[0])
    for a, b in zip(got, want[1:]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="y0: null"):
        _core.gpu_solve_buffers(spec, pb.dtype.name, "dopri5", 7, len(t), f.n_params, per, (0, False),
                                addr(pb.t), addr(pb.params), addr(ys), *ctl, host=True)
    with pytest.raises(ValueError, match="ys: device memory"):
        _core.gpu_solve_buffers(spec, pb.dtype.name, "dopri5", 7, len(t), f.n_params, per, addr(pb.y0),
                                addr(pb.t), addr(pb.params), (ys.ctypes.data, True), *ctl, host=True)


@pytest.mark.cuda
def test_gpu_zero_copy_with_torch_or_cupy():
    """Device arrays in, sol.ys on the same GPU out, equal to the NumPy path."""
    try:
        import torch
        if not torch.cuda.is_available():
            raise ImportError
        to_dev = lambda a: torch.as_tensor(a, device="cuda")  # noqa: E731
        to_host = lambda x: x.cpu().numpy()  # noqa: E731
    except ImportError:
        cupy = pytest.importorskip("cupy", reason="neither PyTorch with CUDA nor CuPy is installed")
        to_dev, to_host = cupy.asarray, cupy.asnumpy
    f, y0, t, params = problem("lorenz", np.float32, 1000, True)
    kw = dict(method="tsit5", rtol=1e-6, atol=1e-6, device="cuda")
    want = of.solve(f, y0, t, params=params, **kw)
    got = of.solve(f, to_dev(y0), t, params=to_dev(params), **kw)
    assert type(got.ys).__module__.split(".")[0] in ("torch", "cupy")
    np.testing.assert_array_equal(to_host(got.ys), want.ys)
    np.testing.assert_array_equal(got.status, want.status)
    got_host_params = of.solve(f, to_dev(y0), to_dev(t), params=params, **kw)
    np.testing.assert_array_equal(to_host(got_host_params.ys), want.ys)
