"""Input checking shared by the compiled path and the NumPy reference: every error names the
argument and what was expected."""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from . import _core

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name: str, default=np.float64) -> np.ndarray:
    """A float32/float64 array; integers and Python numbers become ``default``."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected a real-valued array, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists etc.
        raise ValueError(f"{name}: could not be converted to an array ({e}); pass a NumPy "
                         "array or equal-length nested lists") from None
    if arr.dtype in FLOAT_DTYPES:
        return arr
    if arr.dtype.kind in "iu" or arr.dtype == np.float16:
        return arr.astype(default)
    if arr.dtype.kind == "b":
        raise TypeError(f"{name}: expected real numbers, got booleans")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name}: complex values are not supported; expected float32 or float64")
    if arr.dtype.kind == "f":  # longdouble
        return arr.astype(np.float64)
    raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")


# Up to this many values a Python loop over floats beats NumPy's per-call overhead (a small
# solve checks y0 and t on every call).
_SMALL = 32


def first_non_finite(arr: np.ndarray) -> Optional[tuple]:
    """Index of the first inf or NaN of arr, or None when every value is finite."""
    if arr.size <= _SMALL:
        if all(map(math.isfinite, arr.ravel().tolist())):
            return None
    else:
        # one pass without a temporary: 0.3 us for an MLP's 4.5k weights against 2 us in NumPy
        first = _core.first_non_finite(arr)
        if first == -1 or (first == -2 and np.isfinite(arr).all()):
            return None
    return tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])


def check_finite(arr: np.ndarray, name: str) -> None:
    bad = first_non_finite(arr)
    if bad is not None:
        raise ValueError(f"{name}: contains non-finite values (inf or NaN), first at index {bad}")


def check_positive(value, name: str) -> float:
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a finite value > 0, got {value!r}")
    return v


def check_max_steps(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"max_steps: expected a positive integer or None, got {value!r}")
    if value < 1:
        raise ValueError(f"max_steps: expected >= 1, got {value}")
    return int(value)


def check_times(t, dtype) -> np.ndarray:
    t = as_float_array(t, "t")
    if t.ndim != 1:
        raise ValueError(f"t: expected a 1-D array of output times, got shape {t.shape}")
    if t.shape[0] < 1:
        raise ValueError("t: expected at least one time (t[0] is the initial time)")
    check_finite(t, "t")
    t = cast_checked(t, dtype, "t", copy=True)
    n = t.shape[0]
    if n > 1:
        if n <= _SMALL:  # the common few output times: floats, not arrays
            v = t.tolist()
            up = v[1] > v[0]
            monotone = all((b > a) == up and b != a for a, b in zip(v, v[1:]))
        else:
            d = t[1:] - t[:-1]
            up = bool(d[0] > 0)
            monotone = bool((d > 0).all() or (d < 0).all())
        if not monotone:
            d = t[1:] - t[:-1]
            i = int(np.argmax((d <= 0) if up else (d >= 0))) if d[0] != 0 else 0
            raise ValueError(f"t: must be strictly increasing or strictly decreasing (no repeats); "
                             f"violated at t[{i}]={t[i]!r}, t[{i + 1}]={t[i + 1]!r} (sort t and "
                             "drop repeated times)")
    return t


def cast_checked(arr: np.ndarray, dtype, name: str, copy: bool = False) -> np.ndarray:
    """arr (finite) in the solve's dtype; finite float64 values past float32's range would
    become inf there, and get a ValueError naming the argument instead."""
    if arr.dtype == dtype:
        return arr.copy() if copy else arr
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    bad = first_non_finite(out)
    if bad is not None:
        raise ValueError(f"{name}: the value at index {bad} overflows the solve's dtype {out.dtype} "
                         f"(|value| > {np.finfo(out.dtype).max:.3g}); rescale it or solve in "
                         "float64")
    return out
