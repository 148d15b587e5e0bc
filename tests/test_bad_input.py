"""Bad input gets a clear ValueError / TypeError whose message names the argument -- never a
crash, a hang or silent garbage (DESIGN.md, "Bad input"). Checked for odefast.solve and for
the NumPy reference, which share the argument checking."""
from __future__ import annotations

import re

import numpy as np
import odefast as of
import pytest

SOLVERS = [pytest.param(of.solve, id="core"), pytest.param(of.reference.solve, id="reference")]
LORENZ_Y0 = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0]])
T = np.array([0.0, 0.5, 1.0])


def names(arg):
    """A regex matching an error message that names ``arg`` (messages read 'arg: ...')."""
    return rf"(^|\W){re.escape(arg)}(\W|$)"


def raises(exc, arg):
    return pytest.raises(exc, match=names(arg))


# ---------------------------------------------------------------------------------------------
# y0
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("y0", [np.ones((2, 2, 3)), np.ones((2, 4)), np.ones(4), np.ones((0, 3)),
                                np.ones((2, 0)), np.float64(1.0), [[1.0, 2.0], [3.0]]],
                         ids=["3-D", "D mismatch", "1-D D mismatch", "B=0", "D=0", "scalar",
                              "ragged"])
def test_y0_bad_shape(solve, y0):
    with raises(ValueError, "y0"):
        solve(of.Lorenz(), y0, T)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("y0,exc", [
    (np.ones((2, 3), dtype=complex), TypeError),
    (np.array([["a", "b", "c"]]), TypeError),
    ("1.0", TypeError),
    (np.ones((2, 3), dtype=bool), TypeError),
    (np.array([[1.0, None, 2.0]], dtype=object), TypeError),
    (None, TypeError),
], ids=["complex", "strings", "str", "bool", "object", "None"])
def test_y0_bad_dtype(solve, y0, exc):
    with raises(exc, "y0"):
        solve(of.Lorenz(), y0, T)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_y0_non_finite(solve, bad):
    y0 = LORENZ_Y0.copy()
    y0[1, 2] = bad
    with raises(ValueError, "y0"):
        solve(of.Lorenz(), y0, T)
    with raises(ValueError, "y0"):
        solve(of.Lorenz(), y0.astype(np.float32), T)


def test_integer_and_float16_y0_are_accepted_as_float64():
    sol = of.solve(of.Lorenz(), np.array([[1, 1, 1]]), T)
    assert sol.ys.dtype == np.float64
    sol16 = of.solve(of.Lorenz(), np.array([[1, 1, 1]], dtype=np.float16), T)
    assert sol16.ys.dtype == np.float64
    assert np.array_equal(sol.ys, sol16.ys)


# ---------------------------------------------------------------------------------------------
# t
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("t", [
    [0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [1.0, 0.5, 0.7], [0.0, 0.0], [1.0, 1.0],
    np.zeros((2, 2)), [], np.float64(1.0),
], ids=["unsorted", "repeated", "decreasing-unsorted", "zero-span", "repeat2", "2-D", "empty",
        "scalar"])
def test_t_bad_values_or_shape(solve, t):
    with raises(ValueError, "t"):
        solve(of.Lorenz(), LORENZ_Y0, t)


def test_t_repeated_after_cast_to_float32():
    """Distinct float64 times that coincide in the solve dtype (float32) are repeats."""
    y0 = LORENZ_Y0.astype(np.float32)
    with raises(ValueError, "t"):
        of.solve(of.Lorenz(), y0, [1.0, 1.0 + 1e-9, 2.0])

@pytest.mark.parametrize("solve", SOLVERS)
def test_float64_values_past_float32_range_are_named(solve):
    """Finite float64 t or params that overflow the float32 solve would become inf silently."""
    y0 = LORENZ_Y0.astype(np.float32)
    with pytest.raises(ValueError, match=names("t") + ".*overflows"):
        solve(of.Lorenz(), y0, [0.0, 1e39])
    with pytest.raises(ValueError, match=names("params") + ".*overflows"):
        solve(of.Lorenz(), y0, T, params=np.array([10.0, 1e39, 8.0 / 3.0]))


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("t", [[0.0, 1.0, 1.0], [1.0, 0.5, 0.7], [0.0, -1.0, -0.5],
                               np.r_[np.linspace(0, 1, 40), 0.5], np.r_[np.linspace(1, 0, 40), 0.5]],
                         ids=["repeat", "down-up", "down-up2", "long up-down", "long down-up"])
def test_t_not_monotone_short_and_long(solve, t):
    """The few-times (Python floats) and many-times (NumPy) checks agree."""
    with pytest.raises(ValueError, match=names("t") + ".*strictly"):
        solve(of.Lorenz(), LORENZ_Y0, t)



@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_t_non_finite(solve, bad):
    with raises(ValueError, "t"):
        solve(of.Lorenz(), LORENZ_Y0, [0.0, 0.5, bad])


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("t", [np.array([0.0, 1.0], dtype=complex), ["0", "1"], "01",
                               np.array([False, True]), None],
                         ids=["complex", "strings", "str", "bool", "None"])
def test_t_bad_dtype(solve, t):
    with raises(TypeError, "t"):
        solve(of.Lorenz(), LORENZ_Y0, t)


# ---------------------------------------------------------------------------------------------
# params
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("where", [0, 1023, 1024, 1500, 2999], ids=lambda w: f"at {w}")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_large_arrays_non_finite_named_with_first_index(solve, dtype, where, bad):
    """Arrays past the few-value fast path are scanned in C++ in blocks of 1024 values (a block
    boundary at 1024); the message gives the first bad index, also for a strided params view
    (checked in NumPy)."""
    y0 = np.ones((1000, 3), dtype)
    y0.flat[where] = bad
    y0.flat[2999 if where < 2999 else 0] = np.nan  # a later (or earlier) bad value too
    first = min(where, 0 if where == 2999 else where)
    idx = tuple(int(i) for i in np.unravel_index(first, y0.shape))
    with pytest.raises(ValueError, match=re.escape(f"y0: contains non-finite values (inf or NaN), "
                                                   f"first at index {idx}")):
        solve(of.Lorenz(), y0, T)
    params = np.tile(np.array([10.0, 0.0, 28.0, 0.0, 8 / 3, 0.0], dtype), (1000, 1))
    params[where // 3, 2 * (where % 3)] = bad
    with raises(ValueError, "params") as e:
        solve(of.Lorenz(), np.ones((1000, 3), dtype), T, params=params[:, ::2])
    assert f"first at index ({where // 3}, {where % 3})" in str(e.value)


def test_first_non_finite_scans_any_float_array():
    core = of._core
    for dtype in (np.float32, np.float64):
        x = np.arange(5000, dtype=dtype)
        assert core.first_non_finite(x) == -1
        for i in (0, 1, 1023, 1024, 4999):
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[i] = bad
                y[min(i + 7, 4999)] = np.nan
                assert core.first_non_finite(y) == i
                assert core.first_non_finite(y.reshape(50, 100)) == i
        assert core.first_non_finite(np.full(3, np.finfo(dtype).max, dtype)) == -1
        assert core.first_non_finite(x[::2]) == -2          # strided: left to NumPy
    assert core.first_non_finite(np.ones(10, dtype=np.int64)) == -2
    assert core.first_non_finite(np.ones(0)) == -1


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("params", [np.ones(2), np.ones(4), np.ones((3, 3)), np.ones((2, 4)),
                                    np.ones((1, 3)), np.ones((2, 3, 1)), np.float64(10.0)],
                         ids=["P-1", "P+1", "B+1", "(B,P+1)", "(1,P) for B=2", "3-D", "scalar"])
def test_params_bad_shape(solve, params):
    with raises(ValueError, "params"):
        solve(of.Lorenz(), LORENZ_Y0, T, params=params)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("params,exc", [
    (np.ones(3, dtype=complex), TypeError), (["a", "b", "c"], TypeError),
    (np.ones(3, dtype=bool), TypeError), (np.array([10.0, np.nan, 1.0]), ValueError),
    (np.array([[10.0, 28.0, 1.0], [10.0, np.inf, 1.0]]), ValueError)],
    ids=["complex", "strings", "bool", "nan", "inf per-trajectory"])
def test_params_bad_dtype_or_non_finite(solve, params, exc):
    with raises(exc, "params"):
        solve(of.Lorenz(), LORENZ_Y0, T, params=params)


def test_params_setter_validates():
    f = of.Lorenz()
    with raises(ValueError, "params"):
        f.params = np.ones(4)
    with raises(ValueError, "params"):
        f.params = np.array([1.0, np.nan, 1.0])
    with raises(TypeError, "params"):
        f.params = np.ones(3, dtype=complex)
    f.params = [10.0, 20.0, 3.0]
    assert np.array_equal(f.params, [10.0, 20.0, 3.0])


# ---------------------------------------------------------------------------------------------
# method, tolerances, dt, max_steps, device, on_failure, f
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("method", ["rk45", "DOPRI5", "", "dop853"])
def test_unknown_method(solve, method):
    with pytest.raises(ValueError, match=names("method")) as e:
        solve(of.Lorenz(), LORENZ_Y0, T, method=method)
    for m in of.METHODS:       # the message lists what is supported
        assert m in str(e.value)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("method", [None, 5, ["dopri5"]])
def test_method_not_a_string(solve, method):
    with raises(TypeError, "method"):
        solve(of.Lorenz(), LORENZ_Y0, T, method=method)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("arg", ["rtol", "atol"])
@pytest.mark.parametrize("value,exc", [(0.0, ValueError), (-1e-6, ValueError),
                                       (np.nan, ValueError), (np.inf, ValueError),
                                       ("1e-6", TypeError), (True, TypeError), (None, TypeError),
                                       (np.array([1e-6, 1e-6]), TypeError)])
def test_bad_tolerances(solve, arg, value, exc):
    with raises(exc, arg):
        solve(of.Lorenz(), LORENZ_Y0, T, **{arg: value})


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_fixed_step_method_needs_dt(solve, method):
    with pytest.raises(ValueError, match=names("dt")) as e:
        solve(of.Lorenz(), LORENZ_Y0, T, method=method)
    assert method in str(e.value)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
@pytest.mark.parametrize("dt,exc", [(0.0, ValueError), (-0.1, ValueError), (np.nan, ValueError),
                                    (np.inf, ValueError), ("0.1", TypeError), (True, TypeError)])
def test_bad_dt(solve, method, dt, exc):
    with raises(exc, "dt"):
        solve(of.Lorenz(), LORENZ_Y0, T, method=method, dt=dt)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("max_steps,exc", [(0, ValueError), (-5, ValueError), (1.5, TypeError),
                                           ("10", TypeError), (True, TypeError)])
def test_bad_max_steps(solve, max_steps, exc):
    with raises(exc, "max_steps"):
        solve(of.Lorenz(), LORENZ_Y0, T, max_steps=max_steps)


def test_max_steps_accepts_numpy_integers():
    sol = of.solve(of.Lorenz(), LORENZ_Y0, T, max_steps=np.int64(1000))
    assert sol.success


@pytest.mark.parametrize("device", ["tpu", "CPU", "gpu", None, 0])
def test_unknown_device(device):
    with raises(ValueError, "device"):
        of.solve(of.Lorenz(), LORENZ_Y0, T, device=device)


def test_cuda_device_without_gpu():
    if of.backends()["cuda"]:
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ValueError, match=names("device")) as e:
        of.solve(of.Lorenz(), LORENZ_Y0, T, device="cuda")
    assert "cpu" in str(e.value)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("on_failure", ["error", None, True, "Warn"])
def test_bad_on_failure(solve, on_failure):
    with raises(ValueError, "on_failure"):
        solve(of.Lorenz(), LORENZ_Y0, T, on_failure=on_failure)


@pytest.mark.parametrize("solve", SOLVERS)
@pytest.mark.parametrize("f", [lambda t, y, p: y, np.eye(3), "lorenz", None, of.Lorenz],
                         ids=["callable", "array", "string", "None", "class"])
def test_f_not_a_dynamics(solve, f):
    with raises(TypeError, "f"):
        solve(f, LORENZ_Y0, T)


def test_python_dynamics_wrong_output_shape():
    f = of.PythonDynamics(lambda t, y, p: y[:, :1])
    with raises(ValueError, "fn"):
        of.solve(f, np.ones((2, 3)), T)


@pytest.mark.parametrize("fn", [None, 3, "f"])
def test_python_dynamics_needs_callable(fn):
    with raises(TypeError, "fn"):
        of.PythonDynamics(fn)


def test_python_dynamics_vjp_must_be_callable():
    with raises(TypeError, "vjp"):
        of.PythonDynamics(lambda t, y, p: y, vjp=3)


def test_python_dynamics_params_validated():
    with raises(ValueError, "params"):
        of.PythonDynamics(lambda t, y, p: y, params=np.ones((2, 2)))
    with raises(ValueError, "params"):
        of.PythonDynamics(lambda t, y, p: y, params=[1.0, np.nan])


# ---------------------------------------------------------------------------------------------
# dynamics constructors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers,exc", [
    ([3], ValueError), ([], ValueError), ([3, 0, 3], ValueError), ([3, -2, 3], ValueError),
    ([3, 4, 2], ValueError), ([3, 4.5, 3], ValueError), ([3, True, 3], ValueError),
    ([3] * 18, ValueError), ("3,4,3", TypeError), (3, TypeError), (None, TypeError),
], ids=["one width", "empty", "zero width", "negative", "out != in", "float width", "bool width",
        "too deep", "string", "int", "None"])
def test_mlp_bad_layers(layers, exc):
    with raises(exc, "layers"):
        of.MLP(layers)


@pytest.mark.parametrize("activation", ["gelu", "Tanh", "", None, 1])
def test_mlp_unknown_activation(activation):
    with pytest.raises(ValueError, match=names("activation")) as e:
        of.MLP([2, 4, 2], activation=activation)
    for a in ("tanh", "relu", "softplus", "sigmoid", "identity"):
        assert a in str(e.value)
    with raises(ValueError, "activation"):
        of.MLP.from_weights([np.ones((2, 2))], [np.ones(2)], activation=activation)


@pytest.mark.parametrize("dtype", ["float16", "int32", np.complex128, "bogus"])
def test_mlp_bad_dtype(dtype):
    with raises(TypeError, "dtype"):
        of.MLP([2, 4, 2], dtype=dtype)


@pytest.mark.parametrize("weights,biases,arg,exc", [
    ([np.ones((4, 2)), np.ones((2, 4))], [np.ones(4)], "weights", ValueError),
    ([], [], "weights", ValueError),
    ([np.ones((4, 2)), np.ones((2, 3))], [np.ones(4), np.ones(2)], "weights[1]", ValueError),
    ([np.ones((4, 2)), np.ones((2, 4))], [np.ones(3), np.ones(2)], "biases[0]", ValueError),
    ([np.ones((4, 2)), np.ones((2, 4))], [np.ones(4), np.ones((2, 1))], "biases[1]", ValueError),
    ([np.ones((4, 3)), np.ones((2, 4))], [np.ones(4), np.ones(2)], "weights[0]", ValueError),
    ([np.ones(4), np.ones((2, 4))], [np.ones(4), np.ones(2)], "weights[0]", ValueError),
    ([np.ones((4, 2)), np.full((2, 4), np.nan)], [np.ones(4), np.ones(2)], "weights[1]", ValueError),
    ([np.ones((4, 2)), np.ones((2, 4))], [np.ones(4), np.array([1.0, np.inf])], "biases[1]",
     ValueError),
    ([np.ones((4, 2), dtype=complex), np.ones((2, 4))], [np.ones(4), np.ones(2)], "weights[0]",
     TypeError),
    (np.ones((2, 2)), [np.ones(2)], "weights", TypeError),
], ids=["count", "empty", "inner mismatch", "bias shape", "bias 2-D", "input != D",
        "1-D weight", "nan weight", "inf bias", "complex", "not a list"])
def test_mlp_from_weights_mismatch(weights, biases, arg, exc):
    with raises(exc, arg):
        of.MLP.from_weights(weights, biases)


def test_mlp_from_weights_time_dependent_needs_extra_column():
    W = [np.ones((4, 2)), np.ones((2, 4))]
    b = [np.ones(4), np.ones(2)]
    with raises(ValueError, "weights[0]"):
        of.MLP.from_weights(W, b, time_dependent=True)
    of.MLP.from_weights([np.ones((4, 3)), np.ones((2, 4))], b, time_dependent=True)


@pytest.mark.parametrize("A,b,arg", [
    (np.ones((2, 3)), None, "A"), (np.ones(3), None, "A"), (np.ones((0, 0)), None, "A"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), None, "A"), (np.eye(2), np.ones(3), "b"),
    (np.eye(2), np.array([np.inf, 0.0]), "b"),
], ids=["non-square", "1-D", "empty", "nan A", "b shape", "inf b"])
def test_linear_bad_arguments(A, b, arg):
    with raises(ValueError, arg):
        of.Linear(A, b)


def test_linear_complex_matrix():
    with raises(TypeError, "A"):
        of.Linear(np.eye(2, dtype=complex))


@pytest.mark.parametrize("kwargs,arg", [
    ({"masses": np.ones((2, 2))}, "masses"), ({"masses": []}, "masses"),
    ({"masses": [1.0, np.nan]}, "masses"), ({"masses": [1.0, 1.0], "dim": 4}, "dim"),
    ({"masses": [1.0, 1.0], "dim": 2.0}, "dim"), ({"masses": [1.0, 1.0], "dim": 0}, "dim"),
    ({"masses": [1.0, 1.0], "softening": -0.1}, "softening"),
    ({"masses": [1.0, 1.0], "softening": np.nan}, "softening"),
    ({"masses": [1.0, 1.0], "G": np.inf}, "G"), ({"masses": [1.0, 1.0], "G": "1"}, "G"),
])
def test_nbody_bad_arguments(kwargs, arg):
    with raises(ValueError, arg):
        of.NBody(**kwargs)


@pytest.mark.parametrize("kwargs", [{"sigma": np.nan}, {"rho": np.inf}, {"beta": -np.inf}])
def test_lorenz_non_finite(kwargs):
    with pytest.raises(ValueError, match="sigma/rho/beta"):
        of.Lorenz(**kwargs)


@pytest.mark.parametrize("n,exc", [(0, ValueError), (-1, ValueError), (1.5, ValueError),
                                   (True, ValueError), ("2", ValueError), (None, ValueError)])
def test_set_num_threads_validation(n, exc):
    before = of.get_num_threads()
    with raises(exc, "n"):
        of.set_num_threads(n)
    assert of.get_num_threads() == before


def test_bad_input_leaves_arguments_untouched():
    y0 = LORENZ_Y0.copy()
    f = of.Lorenz()
    p = f.params.copy()
    with pytest.raises(ValueError):
        of.solve(f, y0, [0.0, 1.0, 0.5])
    assert np.array_equal(y0, LORENZ_Y0) and np.array_equal(f.params, p)
