"""The core's tanh against NumPy in extended precision.

tanh is the MLP's hot activation and the core has its own approximation of it (math.hpp, one
division, no branch); its error bound is documented there and checked here, through a 1-1-1
MLP whose field is exactly tanh(y) (weights 1, biases 0: every other operation is exact).
"""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from odefast import _core

# documented maximum errors in units in the last place (math.hpp)
MAX_ULP = {np.float32: 2.6, np.float64: 2.5}
SATURATES_FROM = {np.float32: 9.0, np.float64: 19.5}


def core_tanh(x):
    dtype = x.dtype
    one, zero = np.ones((1, 1), dtype), np.zeros(1, dtype)
    f = of.MLP.from_weights([one, one], [zero, zero], activation="tanh")
    y = np.ascontiguousarray(x.reshape(-1, 1))
    out = _core.field(f._spec(), dtype.name, np.zeros(len(x), dtype), y, f.params.astype(dtype))
    return out[:, 0]


def ulp_error(got, x):
    """|got - tanh(x)| in units in the last place of tanh(x) in got's precision."""
    exact = np.tanh(x.astype(np.longdouble))
    _, e = np.frexp(exact)
    info = np.finfo(got.dtype)
    ulp = np.ldexp(np.longdouble(1), np.maximum(e - info.nmant - 1, info.minexp - info.nmant))
    return np.abs(got.astype(np.longdouble) - exact) / ulp


def sample(dtype, n=400_000, seed=0):
    """Positive values spread evenly over the bit patterns up to past saturation (dense near
    0, where the relative accuracy is hardest to keep), plus uniform ones in [0, 10]."""
    itype = np.uint32 if dtype == np.float32 else np.uint64
    top = np.array(SATURATES_FROM[dtype] + 1, dtype).view(itype)
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, int(top), size=n, dtype=itype, endpoint=True)
    return np.concatenate([bits.view(dtype), rng.uniform(0, 10, n).astype(dtype)])


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_tanh_within_documented_ulps(dtype):
    x = sample(dtype)
    err = ulp_error(core_tanh(x), x)
    assert float(err.max()) <= MAX_ULP[dtype], f"max {float(err.max()):.3f} ulp at x = {x[err.argmax()]!r}"


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_tanh_odd_saturating_and_special_values(dtype):
    x = sample(dtype, n=20_000, seed=1)
    assert np.array_equal(core_tanh(-x), -core_tanh(x))  # odd, bit for bit
    big = np.array([SATURATES_FROM[dtype], 30.0, 1e30, np.finfo(dtype).max, np.inf], dtype)
    assert np.all(core_tanh(big) == 1) and np.all(core_tanh(-big) == -1)
    tiny = np.array([0.0, np.finfo(dtype).smallest_subnormal, np.finfo(dtype).tiny, 1e-20], dtype)
    assert np.array_equal(core_tanh(tiny), tiny)  # tanh(x) rounds to x
    assert np.isnan(core_tanh(np.array([np.nan], dtype))[0])
