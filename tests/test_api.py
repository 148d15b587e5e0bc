"""The public API contract of DESIGN.md: names, shapes, dtypes, parameter layouts, reprs."""
from __future__ import annotations

import inspect
import re

import numpy as np
import odefast as of
import pytest
from problems import linear_exact

# ---------------------------------------------------------------------------------------------
# module level
# ---------------------------------------------------------------------------------------------

def test_version():
    assert isinstance(of.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", of.__version__)
    assert of.build_info()["version"] == of.__version__


def test_backends():
    b = of.backends()
    assert set(b) == {"cpu", "cuda"}
    assert b["cpu"] is True
    assert isinstance(b["cuda"], bool)
    if b["cuda"]:
        assert of.build_info()["cuda_compiled"]


def test_build_info():
    info = of.build_info()
    for key in ("version", "compiler", "flags", "openmp", "cuda_compiled", "cuda_archs"):
        assert key in info, key
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert isinstance(info["flags"], str)
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["cuda_compiled"], bool)
    assert isinstance(info["cuda_archs"], list)
    assert all(isinstance(a, str) and a for a in info["cuda_archs"])
    if info["cuda_compiled"]:
        assert info["cuda_archs"]
        assert not any("native" in a for a in info["cuda_archs"])
    assert of.build_info() is not of.build_info()          # a fresh dict every call


def test_all_exports_exist():
    for name in of.__all__:
        assert hasattr(of, name), name
    for name in ("solve", "MLP", "Linear", "Lorenz", "NBody", "PythonDynamics", "backends",
                 "build_info", "set_num_threads", "reference", "__version__"):
        assert name in of.__all__
    assert tuple(of.METHODS) == ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5",
                                 "dopri8")


def test_solve_signature():
    sig = inspect.signature(of.solve)
    names = list(sig.parameters)
    assert names[:3] == ["f", "y0", "t"]
    defaults = {"method": "dopri5", "rtol": 1e-6, "atol": 1e-8, "dt": None, "max_steps": None,
                "params": None, "device": "cpu"}
    for k, v in defaults.items():
        assert sig.parameters[k].default == v, k
    ref = inspect.signature(of.reference.solve)
    for k in ("f", "y0", "t", "method", "rtol", "atol", "dt", "max_steps", "params"):
        assert k in ref.parameters
        assert ref.parameters[k].default == sig.parameters[k].default, k


def test_set_num_threads_round_trip():
    prev = of.get_num_threads()
    assert isinstance(prev, int) and prev >= 1
    try:
        of.set_num_threads(1)          # the serial path: the pool is not resized
        assert of.get_num_threads() == 1
        assert of.build_info()["num_threads"] == 1
        of.set_num_threads(np.int64(1).item())
    finally:
        of.set_num_threads(prev)
    assert of.get_num_threads() == prev


# ---------------------------------------------------------------------------------------------
# Solution
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_solution_fields(dtype):
    y0 = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0], [0.5, 0.5, 0.5]], dtype=dtype)
    t = [0.0, 0.1, 0.2, 0.3]
    sol = of.solve(of.Lorenz(), y0, t)
    assert isinstance(sol, of.Solution)
    assert sol.ys.shape == (4, 3, 3) and sol.ys.dtype == dtype
    assert sol.t.shape == (4,) and sol.t.dtype == dtype
    np.testing.assert_array_equal(sol.t, np.asarray(t, dtype=dtype))
    assert sol.status.shape == (3,) and sol.status.dtype == np.int32
    assert set(sol.stats) == {"nfev", "steps", "rejected"}
    for k, v in sol.stats.items():
        assert v.shape == (3,) and v.dtype == np.int64, k
    assert np.all(sol.stats["nfev"] > 0) and np.all(sol.stats["steps"] > 0)
    assert np.all(sol.stats["rejected"] >= 0)
    assert sol.method == "dopri5"
    assert sol.success is True
    assert sol.message == "all trajectories succeeded"
    assert re.fullmatch(r"Solution\(method='dopri5', ys.shape=\(4, 3, 3\), dtype=float(32|64), "
                        r"failed=0/3, mean nfev=\d+\.\d\)", repr(sol))


def test_solution_1d_y0():
    sol = of.solve(of.Lorenz(), np.array([1.0, 1.0, 1.0]), [0.0, 0.5, 1.0], method="rk4", dt=0.01)
    assert sol.ys.shape == (3, 3)
    assert sol.status.shape == (1,)
    assert sol.stats["steps"].shape == (1,) and sol.stats["steps"][0] == 100
    assert sol.stats["nfev"][0] == 400         # 4 stages per rk4 step


def test_fixed_step_counts():
    """Each output interval gets ceil(|dt_i| / dt) equal steps; nfev = stages * steps."""
    t = np.array([0.0, 0.25, 0.3, 1.0])
    for method, stages in (("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)):
        sol = of.solve(of.Lorenz(), np.ones(3), t, method=method, dt=0.1)
        assert sol.stats["steps"][0] == 3 + 1 + 7
        assert sol.stats["nfev"][0] == stages * 11
        assert sol.stats["rejected"][0] == 0


# ---------------------------------------------------------------------------------------------
# dynamics: parameter layouts
# ---------------------------------------------------------------------------------------------

def test_lorenz_params_order():
    f = of.Lorenz(sigma=1.5, rho=2.5, beta=3.5)
    assert f.params.shape == (3,) and f.params.dtype == np.float64
    np.testing.assert_array_equal(f.params, [1.5, 2.5, 3.5])
    assert f.n_params == 3 and f.state_dim() == 3
    np.testing.assert_allclose(of.Lorenz().params, [10.0, 28.0, 8.0 / 3.0])
    # sigma multiplies (y - x): with y = x = 0, z = 1 only beta acts: dz/dt = -beta z
    sol = of.solve(f, np.array([0.0, 0.0, 1.0]), [0.0, 1.0], method="dopri8", rtol=1e-12,
                   atol=1e-14)
    np.testing.assert_allclose(sol.ys[-1], [0.0, 0.0, np.exp(-3.5)], rtol=1e-10, atol=1e-14)
    # swapping the order of params changes the answer in the expected way
    a = of.solve(of.Lorenz(), np.ones(3), [0.0, 0.3], params=[1.5, 2.5, 3.5])
    b = of.solve(f, np.ones(3), [0.0, 0.3])
    np.testing.assert_array_equal(a.ys, b.ys)


def test_linear_params_order():
    A = np.array([[0.1, 0.7], [-0.4, -0.2]])          # not symmetric: A vs A.T matters
    b = np.array([0.3, -0.5])
    f = of.Linear(A, b)
    np.testing.assert_array_equal(f.params, [0.1, 0.7, -0.4, -0.2, 0.3, -0.5])
    np.testing.assert_array_equal(f.A, A)
    np.testing.assert_array_equal(f.b, b)
    assert f.n_params == 6 and f.state_dim() == 2 and f.dim == 2
    np.testing.assert_array_equal(of.Linear(A).b, [0.0, 0.0])
    y0 = np.array([1.0, 2.0])
    t = np.linspace(0.0, 2.0, 5)
    sol = of.solve(f, y0, t, method="dopri8", rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sol.ys, linear_exact(A, b, y0, t), rtol=1e-9, atol=1e-10)


def test_nbody_params_are_masses():
    f = of.NBody([1.0, 2.0, 3.0], dim=3, G=0.5, softening=0.1)
    np.testing.assert_array_equal(f.params, [1.0, 2.0, 3.0])
    assert f.n_params == 3 and f.state_dim() == 18
    assert f.n_bodies == 3 and f.dim == 3 and f.G == 0.5 and f.softening == 0.1
    # state = all positions, then all velocities: velocities move the positions
    y0 = np.zeros(18)
    y0[:9] = np.arange(9.0) * 10.0                         # far apart: tiny accelerations
    y0[9:] = 1.0
    sol = of.solve(f, y0, [0.0, 1e-3], method="rk4", dt=1e-3)
    np.testing.assert_allclose(sol.ys[-1, :9] - y0[:9], 1e-3, rtol=1e-3)


def test_nbody_energy():
    f = of.NBody([1.0, 2.0], dim=2, G=1.0)
    y = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.5])
    # kinetic 0.5*1*1 + 0.5*2*0.25 = 0.75; potential -1*2/1 = -2
    np.testing.assert_allclose(f.energy(y), -1.25)
    np.testing.assert_allclose(f.energy(np.stack([y, y])), [-1.25, -1.25])
    g = of.NBody([1.0, 2.0], dim=2, G=1.0, softening=1.0)
    np.testing.assert_allclose(g.energy(y), 0.75 - 2.0 / np.sqrt(2.0))


def test_mlp_params_layout():
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((5, 3)), rng.standard_normal((4, 5)), rng.standard_normal((3, 4))]
    b = [rng.standard_normal(5), rng.standard_normal(4), rng.standard_normal(3)]
    f = of.MLP.from_weights(W, b, activation="softplus")
    expected = np.concatenate([W[0].ravel(), b[0], W[1].ravel(), b[1], W[2].ravel(), b[2]])
    np.testing.assert_array_equal(f.params, expected)
    assert f.n_params == 15 + 5 + 20 + 4 + 12 + 3
    assert f.layers == [3, 5, 4, 3] and f.state_dim() == 3 and f.activation == "softplus"
    assert f.time_dependent is False
    for got, want in zip(f.weights, W):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    for got, want in zip(f.biases, b):
        np.testing.assert_array_equal(got, want)
    # weights / biases are views of params (row-major W)
    f.params[0] = 42.0
    assert f.weights[0][0, 0] == 42.0
    f.params[1] = 43.0
    assert f.weights[0][0, 1] == 43.0


def test_mlp_constructor_matches_from_weights():
    f = of.MLP([2, 8, 8, 2], activation="sigmoid", seed=7)
    g = of.MLP.from_weights(f.weights, f.biases, activation="sigmoid")
    np.testing.assert_array_equal(f.params, g.params)
    y0 = np.random.default_rng(1).standard_normal((5, 2))
    a = of.solve(f, y0, [0.0, 1.0])
    c = of.solve(g, y0, [0.0, 1.0])
    np.testing.assert_array_equal(a.ys, c.ys)


def test_mlp_initialisation():
    f = of.MLP([3, 16, 3], seed=0)
    assert f.params.dtype == np.float64
    np.testing.assert_array_equal(f.params, of.MLP([3, 16, 3], seed=0).params)
    assert not np.array_equal(f.params, of.MLP([3, 16, 3], seed=1).params)
    for (W, b), fan_in in zip(zip(f.weights, f.biases), (3, 16)):
        bound = 1 / np.sqrt(fan_in)
        assert np.all(np.abs(W) <= bound) and np.all(np.abs(b) <= bound)
    g = of.MLP([3, 16, 3], seed=0, dtype="float32")
    assert g.params.dtype == np.float32
    np.testing.assert_array_equal(g.params, f.params.astype(np.float32))
    assert of.MLP([3, 16, 3], dtype=np.float32).params.dtype == np.float32


def test_mlp_time_dependent_layout():
    f = of.MLP([2, 6, 2], time_dependent=True, seed=3)
    assert f.weights[0].shape == (6, 3)                 # (hidden, D + 1)
    assert f.weights[1].shape == (2, 6)
    assert f.n_params == 6 * 3 + 6 + 2 * 6 + 2
    assert f.state_dim() == 2 and f.time_dependent is True
    bound = 1 / np.sqrt(3)                              # fan_in counts the time input
    assert np.all(np.abs(f.weights[0]) <= bound)


def test_mlp_time_input_is_the_last_column():
    """identity activation, W1 = [0 | w_t]: f(t, y) = W2 (w_t t + b1) + b2 depends on t only,
    so y(t) = y0 + c1 t^2 / 2 + c0 t, which rk4 integrates exactly."""
    w_t = np.array([[1.0], [-2.0], [0.5]])
    W1 = np.concatenate([np.zeros((3, 2)), w_t], axis=1)
    b1 = np.array([0.1, 0.2, -0.3])
    W2 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
    b2 = np.array([0.05, -0.05])
    f = of.MLP.from_weights([W1, W2], [b1, b2], activation="identity", time_dependent=True)
    c1 = W2 @ w_t[:, 0]
    c0 = W2 @ b1 + b2
    y0 = np.array([1.0, -1.0])
    t = np.array([0.5, 1.0, 2.0])                       # starts at t = 0.5, not 0
    sol = of.solve(f, y0, t, method="rk4", dt=0.1)
    expect = y0 + np.outer(t ** 2 - 0.25, c1) / 2 + np.outer(t - 0.5, c0)
    np.testing.assert_allclose(sol.ys, expect, rtol=1e-13, atol=1e-13)
    ref = of.reference.solve(f, y0, t, method="rk4", dt=0.1)
    np.testing.assert_allclose(ref.ys, expect, rtol=1e-13, atol=1e-13)


def test_mlp_from_weights_dtype():
    W = [np.ones((4, 2), np.float32), np.ones((2, 4), np.float32)]
    b = [np.zeros(4, np.float32), np.zeros(2, np.float32)]
    assert of.MLP.from_weights(W, b).params.dtype == np.float32
    b64 = [np.zeros(4), np.zeros(2)]
    assert of.MLP.from_weights(W, b64).params.dtype == np.float64


@pytest.mark.parametrize("time_dependent", (False, True))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_mlp_save_load_round_trip(tmp_path, time_dependent, dtype):
    f = of.MLP([3, 7, 5, 3], activation="relu", seed=11, dtype=dtype,
               time_dependent=time_dependent)
    path = tmp_path / "model.npz"
    f.save(path)
    g = of.MLP.load(path)
    assert g.layers == f.layers and g.activation == "relu"
    assert g.time_dependent is time_dependent
    assert g.params.dtype == f.params.dtype
    np.testing.assert_array_equal(g.params, f.params)
    y0 = np.random.default_rng(0).standard_normal((4, 3)).astype(dtype)
    a, b = of.solve(f, y0, [0.0, 1.0]), of.solve(g, y0, [0.0, 1.0])
    np.testing.assert_array_equal(a.ys, b.ys)


def test_python_dynamics():
    calls = []

    def fn(t, y, p):
        calls.append((t.shape, y.shape, p.shape))
        return -p[0] * y

    f = of.PythonDynamics(fn, params=[2.0])
    assert f.state_dim() is None and f.n_params == 1
    sol = of.solve(f, np.ones((3, 2)), [0.0, 1.0], method="dopri5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.ys[-1], np.exp(-2.0), rtol=1e-8)
    assert all(ts == (3,) and ys == (3, 2) and ps == (1,) for ts, ys, ps in calls)
    calls.clear()
    of.solve(f, np.ones((3, 2)), [0.0, 1.0], params=np.array([[1.0], [2.0], [3.0]]))
    assert all(ps == (3, 1) for _, _, ps in calls)


def test_dynamics_base_class():
    for f in (of.Lorenz(), of.Linear(np.eye(2)), of.NBody([1.0]), of.MLP([2, 2]),
              of.PythonDynamics(lambda t, y, p: y)):
        assert isinstance(f, of.Dynamics)
        assert f.params.ndim == 1


def test_reprs():
    assert repr(of.Lorenz()) == "Lorenz(sigma=10, rho=28, beta=2.66667)"
    assert repr(of.Linear(np.eye(3))) == \
        "Linear(D=3, A=[[1, 0, 0], [0, 1, 0], [0, 0, 1]], b=[0, 0, 0], dtype=float64)"
    assert repr(of.Linear(np.eye(5))) == "Linear(D=5, dtype=float64)"
    assert repr(of.NBody([1.0, 1.0, 1.0], dim=2, G=1.0, softening=0.0)) == \
        "NBody(n=3, masses=[1, 1, 1], dim=2, G=1, softening=0)"
    assert repr(of.MLP([2, 4, 2], seed=0)) == \
        "MLP(layers=[2, 4, 2], activation='tanh', params=22, dtype=float64)"
    assert repr(of.MLP([2, 4, 2], activation="relu", time_dependent=True, dtype="float32")) == \
        "MLP(layers=[2, 4, 2], activation='relu', time_dependent=True, params=26, dtype=float32)"

    def my_field(t, y, p):
        return y
    assert repr(of.PythonDynamics(my_field, params=[1.0, 2.0])) == \
        "PythonDynamics(fn='my_field', params=2)"


def test_status_messages():
    assert set(of.STATUS_MESSAGES) == {0, 1, 2, 3}
    assert "max_steps" in of.STATUS_MESSAGES[1]
    assert "underflow" in of.STATUS_MESSAGES[2]
    assert "non-finite" in of.STATUS_MESSAGES[3]


def test_numpy_floating_point_errors_raise_in_tests():
    """conftest.py turns NumPy floating-point warnings into errors for every test (the library
    silences them locally where it handles non-finite values itself)."""
    with pytest.raises(FloatingPointError):
        np.array([1e308]) * 10
    with pytest.raises(FloatingPointError):
        np.array([0.0]) / 0.0
    # ... and the reference integrator, which meets inf/NaN on purpose, still works
    sol = of.reference.solve(of.Linear([[1000.0]]), [1.0], [0.0, 10.0], method="rk4", dt=0.1,
                             on_failure="ignore")
    assert sol.status[0] == 3


@pytest.mark.cuda
def test_cuda_solve_matches_cpu():
    """On a machine with a GPU: device='cuda' gives the CPU answer (to rounding)."""
    f = of.Lorenz()
    y0 = np.random.default_rng(0).standard_normal((64, 3)) + 5
    cpu = of.solve(f, y0, [0.0, 0.5], method="rk4", dt=0.01)
    gpu = of.solve(f, y0, [0.0, 0.5], method="rk4", dt=0.01, device="cuda")
    np.testing.assert_allclose(gpu.ys, cpu.ys, rtol=1e-12)
