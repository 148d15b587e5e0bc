"""Dual-number NumPy arrays: forward-mode derivatives of the reference's NumPy code as written.

A ``Dual`` is a pair of same-shaped arrays (value, tangent) standing for value + ε·tangent with
ε² = 0. Every operation propagates the tangent by the chain rule,

    u(x + ε dx) = u(x) + ε u'(x) dx,      b(x + ε dx, y + ε dy) = b(x, y) + ε (∂b/∂x dx + ∂b/∂y dy),

so running a NumPy function on Duals returns its value and its Jacobian-vector product. Run on
a vector field, that gives the jvp (∂f/∂y) dy + (∂f/∂p) dp; run on a vector field's vjp
(t, y, p, a) -> aᵀ∂f/∂(y, p), it gives the tangent of the vjp,

    d/dε [(a + ε da)ᵀ ∂f/∂(y, p)(y + ε dy, p + ε dp)] = daᵀ ∂f/∂(y, p) + aᵀ ∂²f/∂(y, p)² [dy, dp],

the second-order product the second-order adjoints need, without a hand-written second
derivative of any dynamics. Only what the built-in vector fields and their vjps use is
supported (NumPy ufuncs through ``__array_ufunc__``, a few array functions through
``__array_function__``); anything else raises TypeError instead of silently dropping the
tangent. Non-differentiable points take one-sided derivatives consistent with the reference's
first derivatives: d max(x, y) = dx where x > y (so relu'(0) = 0), d|x| = sign(x) dx.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin


class Dual(NDArrayOperatorsMixin):
    """value + ε tangent (same shape, same dtype)."""

    __slots__ = ("value", "tangent")

    def __init__(self, value, tangent=0):
        self.value = np.asarray(value)
        tangent = np.asarray(tangent, dtype=self.value.dtype)
        if tangent.shape != self.value.shape:  # a constant's zero, or a broadcast operand
            tangent = np.ascontiguousarray(np.broadcast_to(tangent, self.value.shape))
        self.tangent = tangent

    # array attributes the vector fields use
    shape = property(lambda self: self.value.shape)
    ndim = property(lambda self: self.value.ndim)
    dtype = property(lambda self: self.value.dtype)
    size = property(lambda self: self.value.size)
    T = property(lambda self: Dual(self.value.T, self.tangent.T))

    def __len__(self):
        return len(self.value)

    def __getitem__(self, key):
        return Dual(self.value[key], self.tangent[key])

    def __setitem__(self, key, x):
        self.value[key] = value_of(x)
        self.tangent[key] = tangent_of(x)

    def reshape(self, *shape):
        return Dual(self.value.reshape(*shape), self.tangent.reshape(*shape))

    def astype(self, dtype, copy=True):
        return Dual(self.value.astype(dtype, copy=copy), self.tangent.astype(dtype, copy=copy))

    def copy(self):
        return Dual(self.value.copy(), self.tangent.copy())

    def __repr__(self) -> str:
        return f"Dual(value={self.value!r}, tangent={self.tangent!r})"

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or "out" in kwargs:
            raise TypeError(f"Dual: numpy.{ufunc.__name__}.{method} (or out=) is not supported")
        x = [value_of(u) for u in inputs]
        r = ufunc(*x, **kwargs)
        if ufunc in _VALUE_ONLY:
            return r
        dx = [tangent_of(u) for u in inputs]
        if ufunc.nin == 1 and ufunc in _UNARY:
            return Dual(r, _UNARY[ufunc](x[0], r) * dx[0])
        if ufunc.nin == 2 and ufunc in _BINARY:
            return Dual(r, _BINARY[ufunc](x[0], x[1], r, dx[0], dx[1]))
        raise TypeError(f"Dual: no derivative rule for numpy.{ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        if func not in _FUNCTIONS:
            raise TypeError(f"Dual: numpy.{func.__name__} is not supported on dual numbers")
        return _FUNCTIONS[func](*args, **kwargs)


def value_of(x):
    return x.value if isinstance(x, Dual) else x


def tangent_of(x):
    """The tangent of x; 0 for a constant (broadcasts to any shape)."""
    return x.tangent if isinstance(x, Dual) else 0


# u'(x) as a function of (x, u(x))
_UNARY = {
    np.negative: lambda x, r: -1,
    np.positive: lambda x, r: 1,
    np.tanh: lambda x, r: 1 - r * r,
    np.exp: lambda x, r: r,
    np.log: lambda x, r: 1 / x,
    np.log1p: lambda x, r: 1 / (1 + x),
    np.sqrt: lambda x, r: 0.5 / r,
    np.square: lambda x, r: 2 * x,
    np.absolute: lambda x, r: np.sign(x),
    np.sin: lambda x, r: np.cos(x),
    np.cos: lambda x, r: -np.sin(x),
}


def _power(x, y, r, dx, dy):
    if not np.isscalar(dy) or dy != 0:
        raise TypeError("Dual: numpy.power with a dual exponent is not supported")
    return y * x ** (y - 1) * dx


def _matmul(x, y, r, dx, dy):
    terms = [dx @ y if isinstance(dx, np.ndarray) else None,
             x @ dy if isinstance(dy, np.ndarray) else None]
    return _sum_terms(terms, r)


# d b(x, y) as a function of (x, y, b(x, y), dx, dy)
_BINARY = {
    np.add: lambda x, y, r, dx, dy: dx + dy,
    np.subtract: lambda x, y, r, dx, dy: dx - dy,
    np.multiply: lambda x, y, r, dx, dy: dx * y + x * dy,
    np.true_divide: lambda x, y, r, dx, dy: (dx - r * dy) / y,
    np.maximum: lambda x, y, r, dx, dy: np.where(x > y, dx, dy),
    np.minimum: lambda x, y, r, dx, dy: np.where(x < y, dx, dy),
    np.power: _power,
    np.matmul: _matmul,
}

_VALUE_ONLY = {np.greater, np.greater_equal, np.less, np.less_equal, np.equal, np.not_equal,
               np.isfinite, np.isnan, np.isinf, np.sign, np.logical_and, np.logical_or,
               np.logical_not}


def _sum_terms(terms, like):
    terms = [d for d in terms if d is not None]
    if not terms:
        return np.zeros_like(like)
    # a lone term is returned as is: einsum("bii->bi", x) stays a writable view of x's tangent
    return terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])


def _multilinear(func):
    """d func(x1, ..., xn) = sum_k func(x1, .., dxk, .., xn) for a func linear in each operand."""
    def apply(*operands, **kwargs):
        x = [value_of(u) for u in operands]
        r = func(*x, **kwargs)
        terms = [func(*x[:k], u.tangent, *x[k + 1:], **kwargs)
                 for k, u in enumerate(operands) if isinstance(u, Dual)]
        return Dual(r, _sum_terms(terms, r))
    return apply


def _einsum(subscripts, *operands, **kwargs):
    return _multilinear(lambda *ops, **kw: np.einsum(subscripts, *ops, **kw))(*operands, **kwargs)


def _joined(func):
    """concatenate / stack: the same function of the values and of the tangents."""
    def apply(arrays, *args, **kwargs):
        x = [value_of(u) for u in arrays]
        dx = [u.tangent if isinstance(u, Dual) else np.zeros_like(u) for u in arrays]
        return Dual(func(x, *args, **kwargs), func(dx, *args, **kwargs))
    return apply


def _where(cond, x, y):
    cond = value_of(cond)
    return Dual(np.where(cond, value_of(x), value_of(y)),
                np.where(cond, tangent_of(x), tangent_of(y)))


def _constant(func):
    """ones_like and friends: a function of the value's shape and dtype only."""
    return lambda x, *args, **kwargs: func(value_of(x), *args, **kwargs)


_FUNCTIONS = {
    np.einsum: _einsum,
    np.tensordot: _multilinear(np.tensordot),
    np.sum: _multilinear(np.sum),
    np.mean: _multilinear(np.mean),
    np.broadcast_to: _multilinear(np.broadcast_to),
    np.reshape: _multilinear(np.reshape),
    np.transpose: _multilinear(np.transpose),
    np.moveaxis: _multilinear(np.moveaxis),
    np.concatenate: _joined(np.concatenate),
    np.stack: _joined(np.stack),
    np.where: _where,
    np.ones_like: _constant(np.ones_like),
    np.zeros_like: _constant(np.zeros_like),
    np.full_like: _constant(np.full_like),
    np.shape: _constant(np.shape),
    np.ndim: _constant(np.ndim),
}
