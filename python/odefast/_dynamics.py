"""Dynamics: the vector fields dy/dt = f(t, y; params) that odefast integrates.

Each class holds its flat parameter vector ``.params`` (1-D NumPy array) in the order the C++
core and the NumPy reference both use, plus the static configuration the core needs
(``_spec()``). The NumPy evaluation of every vector field lives in ``odefast.reference``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ._validate import as_float_array, check_finite

ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid", "identity")


class Dynamics:
    """Base class of every vector field dy/dt = f(t, y; params).

    ``params`` is a flat 1-D float32 or float64 array of shape (P,); a solve runs in the dtype of
    its y0 and converts the parameters to it. Subclasses: MLP, Linear, Lorenz, NBody,
    PythonDynamics."""

    kind: str = ""

    def __init__(self, params: np.ndarray):
        self._params = params

    @property
    def params(self) -> np.ndarray:
        """The flat parameter vector (a copy-free view; shape (P,))."""
        return self._params

    @params.setter
    def params(self, value) -> None:
        value = as_float_array(value, "params")
        if value.shape != self._params.shape:
            raise ValueError(f"params: expected shape {self._params.shape}, got {value.shape} "
                             "(the parameter count is fixed by the dynamics; build a new one to "
                             "change it)")
        check_finite(value, "params")
        self._params = value

    @property
    def n_params(self) -> int:
        """P, the number of parameters."""
        return int(self._params.shape[0])

    def state_dim(self) -> Optional[int]:
        """State dimension D the dynamics requires (None: any)."""
        raise NotImplementedError

    def _spec(self) -> dict:
        """Static configuration for the C++ core (everything but the parameters)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={self.n_params}, dtype={self._params.dtype})"


class Lorenz(Dynamics):
    """Lorenz system: dx = sigma (y - x), dy = x (rho - z) - y, dz = x y - beta z.

    State (x, y, z): D = 3. ``params`` = (sigma, rho, beta), float64 of shape (3,); pass
    ``params`` of shape (B, 3) to ``solve`` for an ensemble with per-trajectory parameters.
    """

    kind = "lorenz"

    def __init__(self, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
        p = as_float_array([sigma, rho, beta], "sigma/rho/beta", default=np.float64)
        check_finite(p, "sigma/rho/beta")
        super().__init__(p)

    def state_dim(self) -> int:
        return 3

    def _spec(self) -> dict:
        return {"kind": "lorenz", "dim": 3}

    def __repr__(self) -> str:
        s, r, b = self.params
        return f"Lorenz(sigma={s:g}, rho={r:g}, beta={b:g})"


class Linear(Dynamics):
    """Linear system f(t, y) = A y + b, y of shape (D,) per trajectory.

    A: (D, D), b: (D,) or None (zeros); float32 or float64 (integers become float64).
    ``params`` = A (row-major, D*D values), then b (D values): shape (D*D + D,)."""

    kind = "linear"

    def __init__(self, A, b=None):
        A = as_float_array(A, "A", default=np.float64)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
            raise ValueError(f"A: expected a square (D, D) matrix, got shape {A.shape}")
        D = A.shape[0]
        if b is None:
            b = np.zeros(D, dtype=A.dtype)
        b = as_float_array(b, "b", default=np.float64).astype(A.dtype, copy=False)
        if b.shape != (D,):
            raise ValueError(f"b: expected shape ({D},), got {b.shape}")
        check_finite(A, "A")
        check_finite(b, "b")
        self.dim = D
        super().__init__(np.concatenate([A.ravel(), b]))

    @property
    def A(self) -> np.ndarray:
        """The (D, D) matrix (a view into params)."""
        return self.params[: self.dim * self.dim].reshape(self.dim, self.dim)

    @property
    def b(self) -> np.ndarray:
        """The (D,) offset (a view into params)."""
        return self.params[self.dim * self.dim:]

    def state_dim(self) -> int:
        return self.dim

    def _spec(self) -> dict:
        return {"kind": "linear", "dim": self.dim}

    def __repr__(self) -> str:
        if self.dim <= 4:
            return (f"Linear(D={self.dim}, A={_short(self.A)}, b={_short(self.b)}, "
                    f"dtype={self.params.dtype})")
        return f"Linear(D={self.dim}, dtype={self.params.dtype})"


class NBody(Dynamics):
    """Newtonian gravity of n point masses in ``dim`` (2 or 3) dimensions.

    State = all positions (n*dim), then all velocities (n*dim); ``params`` = the masses (n,).
    Acceleration a_i = sum_{j != i} G m_j (x_j - x_i) / (|x_j - x_i|^2 + softening^2)^(3/2).
    """

    kind = "nbody"

    def __init__(self, masses, dim: int = 2, G: float = 1.0, softening: float = 0.0):
        m = as_float_array(masses, "masses", default=np.float64)
        if m.ndim != 1 or m.shape[0] < 1:
            raise ValueError(f"masses: expected a 1-D array of n >= 1 masses, got shape {m.shape}")
        check_finite(m, "masses")
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim not in (1, 2, 3):
            raise ValueError(f"dim: expected 1, 2 or 3 spatial dimensions, got {dim!r}")
        for name, v in (("G", G), ("softening", softening)):
            if not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
        if softening < 0:
            raise ValueError(f"softening: expected >= 0, got {softening}")
        self.n_bodies = int(m.shape[0])
        self.dim = int(dim)
        self.G = float(G)
        self.softening = float(softening)
        super().__init__(m)

    def state_dim(self) -> int:
        return 2 * self.n_bodies * self.dim

    def _spec(self) -> dict:
        return {"kind": "nbody", "dim": self.state_dim(), "n_bodies": self.n_bodies,
                "space_dim": self.dim, "G": self.G, "softening": self.softening}

    def energy(self, y) -> np.ndarray:
        """Total energy (kinetic + potential) of states y (..., 2*n*dim), with softening."""
        y = np.asarray(y, dtype=np.float64)
        n, d = self.n_bodies, self.dim
        x = y[..., : n * d].reshape(y.shape[:-1] + (n, d))
        v = y[..., n * d:].reshape(y.shape[:-1] + (n, d))
        m = self.params.astype(np.float64)
        kinetic = 0.5 * np.sum(m[:, None] * v * v, axis=(-2, -1))
        potential = np.zeros(y.shape[:-1])
        for i in range(n):
            for j in range(i + 1, n):
                r = np.sqrt(np.sum((x[..., i, :] - x[..., j, :]) ** 2, axis=-1) + self.softening ** 2)
                potential -= self.G * m[i] * m[j] / r
        return kinetic + potential

    def __repr__(self) -> str:
        masses = f", masses={_short(self.params)}" if self.n_bodies <= 8 else ""
        return (f"NBody(n={self.n_bodies}{masses}, dim={self.dim}, G={self.G:g}, "
                f"softening={self.softening:g})")


class MLP(Dynamics):
    """Multi-layer perceptron vector field f(t, y) = W_n act(... act(W_1 [y; t] + b_1)) + b_n.

    ``layers`` lists the widths from the state dimension D to D, e.g. ``[2, 64, 64, 2]``.
    With ``time_dependent=True`` t is one extra input after the state (W_1 has D + 1 columns,
    its last column multiplies t). ``params`` = W_1 (row-major, (out, in)), b_1, W_2, b_2, ...
    Initialisation: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from ``numpy.random.default_rng(seed)``.

    activation: 'tanh', 'relu', 'softplus', 'sigmoid' or 'identity', applied after every hidden
    layer (the output layer is linear). dtype: 'float64' or 'float32', the dtype of ``params``
    (shape (P,)); a solve runs in y0's dtype. ``MLP.from_weights`` builds one from existing
    weights, ``save`` / ``load`` write and read ``.npz`` files.
    """

    kind = "mlp"

    def __init__(self, layers: Sequence[int], activation: str = "tanh", seed: int = 0,
                 dtype="float64", time_dependent: bool = False):
        sizes = _check_layers(layers)
        _check_activation(activation)
        dt = _check_dtype(dtype)
        rng = np.random.default_rng(seed)
        in_sizes = [sizes[0] + (1 if time_dependent else 0)] + sizes[1:-1]
        weights, biases = [], []
        for fan_in, fan_out in zip(in_sizes, sizes[1:]):
            bound = 1.0 / np.sqrt(fan_in)
            weights.append(rng.uniform(-bound, bound, size=(fan_out, fan_in)))
            biases.append(rng.uniform(-bound, bound, size=fan_out))
        self._configure(sizes, activation, bool(time_dependent))
        super().__init__(_flatten(weights, biases).astype(dt))

    @classmethod
    def from_weights(cls, weights, biases, activation: str = "tanh", time_dependent: bool = False) -> "MLP":
        """Build an MLP from weight matrices ``weights[i]`` of shape (out, in) and biases (out,)."""
        if not isinstance(weights, (list, tuple)) or not isinstance(biases, (list, tuple)):
            raise TypeError(f"weights, biases: expected lists of arrays (weights[i] of shape "
                            f"(out, in), biases[i] of shape (out,)), got {type(weights).__name__} "
                            f"and {type(biases).__name__}")
        if len(weights) != len(biases) or len(weights) == 0:
            raise ValueError(f"weights, biases: expected equally many (>= 1), got {len(weights)} and {len(biases)}")
        _check_activation(activation)
        Ws = [as_float_array(w, f"weights[{i}]", default=np.float64) for i, w in enumerate(weights)]
        bs = [as_float_array(b, f"biases[{i}]", default=np.float64) for i, b in enumerate(biases)]
        dtype = np.result_type(*Ws, *bs)
        extra = 1 if time_dependent else 0
        for i, (W, b) in enumerate(zip(Ws, bs)):
            if W.ndim != 2:
                raise ValueError(f"weights[{i}]: expected a 2-D (out, in) matrix, got shape {W.shape}")
            if b.shape != (W.shape[0],):
                raise ValueError(f"biases[{i}]: expected shape ({W.shape[0]},), got {b.shape}")
            if i > 0 and W.shape[1] != Ws[i - 1].shape[0]:
                raise ValueError(f"weights[{i}]: expected {Ws[i - 1].shape[0]} input columns, got {W.shape[1]}")
            check_finite(W, f"weights[{i}]")
            check_finite(b, f"biases[{i}]")
        D = Ws[-1].shape[0]
        if Ws[0].shape[1] != D + extra:
            raise ValueError(f"weights[0]: expected {D + extra} input columns (state dimension {D}"
                             f"{' + time' if extra else ''}), got {Ws[0].shape[1]}")
        sizes = [D] + [W.shape[0] for W in Ws]
        obj = cls.__new__(cls)
        obj._configure(sizes, activation, bool(time_dependent))
        Dynamics.__init__(obj, _flatten(Ws, bs).astype(dtype))
        return obj

    def _configure(self, sizes, activation, time_dependent):
        self.layers = list(sizes)
        self.activation = activation
        self.time_dependent = time_dependent
        self._in_sizes = [sizes[0] + (1 if time_dependent else 0)] + list(sizes[1:-1])

    @property
    def weights(self) -> list:
        """Weight matrices (views into params), each (out, in)."""
        return [W for W, _ in self._split(self.params)]

    @property
    def biases(self) -> list:
        """Bias vectors (views into params), each (out,)."""
        return [b for _, b in self._split(self.params)]

    def _split(self, p):
        """[(W_i, b_i)] views of a flat params array of shape (..., P)."""
        out, off = [], 0
        for fan_in, fan_out in zip(self._in_sizes, self.layers[1:]):
            W = p[..., off: off + fan_out * fan_in].reshape(p.shape[:-1] + (fan_out, fan_in))
            off += fan_out * fan_in
            b = p[..., off: off + fan_out]
            off += fan_out
            out.append((W, b))
        return out

    def state_dim(self) -> int:
        return self.layers[0]

    def _spec(self) -> dict:
        return {"kind": "mlp", "dim": self.layers[0],
                "layers": [self._in_sizes[0]] + self.layers[1:],
                "activation": self.activation, "time_input": self.time_dependent}

    def save(self, path, **extra) -> None:
        """Save to a ``.npz`` file: the weights ``W0, W1, ...`` ((out, in) each), the biases
        ``b0, b1, ...``, the activation and the time flag; ``MLP.load(path)`` reads it back.

        ``extra``: more arrays to store in the same file (e.g. an optimizer's state, as
        ``python -m odefast train`` does); ``MLP.load`` ignores them, ``numpy.load`` reads them.
        NumPy appends ``.npz`` to a path without it."""
        arrays = {f"W{i}": W for i, W in enumerate(self.weights)}
        arrays.update({f"b{i}": b for i, b in enumerate(self.biases)})
        arrays.update(activation=self.activation, time_dependent=self.time_dependent,
                      n_layers=len(self.weights))
        clash = sorted(set(extra) & set(arrays))
        if clash:
            raise ValueError(f"extra: the names {clash} are used by the model itself; rename them")
        np.savez(path, **arrays, **extra)

    @classmethod
    def load(cls, path) -> "MLP":
        """Read an MLP written by :meth:`save` (dtype as saved; other arrays in the file are
        ignored)."""
        try:
            z = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"path: no saved model at {str(path)!r} "
                                    "(write one with MLP.save(path))") from None
        with z:
            missing = [k for k in ("n_layers", "activation", "time_dependent") if k not in z.files]
            if missing:
                raise ValueError(f"path: {str(path)!r} is not a model written by MLP.save "
                                 f"(missing {', '.join(missing)})")
            n = int(z["n_layers"])
            return cls.from_weights([z[f"W{i}"] for i in range(n)], [z[f"b{i}"] for i in range(n)],
                                    activation=str(z["activation"]),
                                    time_dependent=bool(z["time_dependent"]))

    def __repr__(self) -> str:
        t = ", time_dependent=True" if self.time_dependent else ""
        return (f"MLP(layers={self.layers}, activation={self.activation!r}{t}, "
                f"params={self.n_params}, dtype={self.params.dtype})")


class PythonDynamics(Dynamics):
    """A vector field written in NumPy: the slow path (integrated by the NumPy reference).

    ``fn(t, y, params) -> dy`` with y, dy of shape (B, D), t of shape (B,) (rows may be at
    different times) and params of shape (P,) or (B, P). ``vjp(t, y, params, a)`` returns
    (a·∂f/∂y, a·∂f/∂params, a·∂f/∂t) for gradients, shaped (B, D), (B, P) and (B,).
    params: None or a 1-D array (P,) (float64 unless given as float32). The arrays passed to
    fn have the solve's dtype (y0's). Second derivatives (hvp, hessian) need a built-in dynamics.
    """

    kind = "python"

    def __init__(self, fn: Callable, vjp: Optional[Callable] = None, params=None):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable fn(t, y, params) -> dy, got {type(fn).__name__}")
        if vjp is not None and not callable(vjp):
            raise TypeError(f"vjp: expected a callable or None, got {type(vjp).__name__}")
        self.fn = fn
        self.vjp = vjp
        p = np.zeros(0) if params is None else as_float_array(params, "params", default=np.float64)
        if p.ndim != 1:
            raise ValueError(f"params: expected a 1-D array, got shape {p.shape}")
        check_finite(p, "params")
        super().__init__(p)

    def state_dim(self) -> None:
        return None

    def _spec(self) -> dict:
        raise TypeError("PythonDynamics runs in the NumPy reference, not the compiled core; "
                        "call odefast.solve / vjp / value_and_grad, which route it there")

    def __repr__(self) -> str:
        return f"PythonDynamics(fn={getattr(self.fn, '__name__', self.fn)!r}, params={self.n_params})"


def _short(a: np.ndarray) -> str:
    """A small array as a nested list with %g numbers."""
    if a.ndim == 0:
        return f"{float(a):g}"
    return "[" + ", ".join(_short(x) for x in a) + "]"


def _flatten(weights, biases) -> np.ndarray:
    parts = []
    for W, b in zip(weights, biases):
        parts += [np.asarray(W).ravel(), np.asarray(b).ravel()]
    return np.concatenate(parts)


def _check_layers(layers) -> list:
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers: expected a sequence of layer widths like [2, 64, 64, 2], got {layers!r}")
    sizes = list(layers)
    if len(sizes) < 2 or len(sizes) > 17:
        raise ValueError(f"layers: expected 2 to 17 widths (input ... output), got {len(sizes)}")
    for w in sizes:
        if not isinstance(w, (int, np.integer)) or isinstance(w, bool) or w < 1:
            raise ValueError(f"layers: widths must be positive integers, got {layers!r}")
    sizes = [int(w) for w in sizes]
    if sizes[0] != sizes[-1]:
        raise ValueError(f"layers: the output width must equal the state dimension (first width), "
                         f"got {sizes}; e.g. [{sizes[0]}, 64, {sizes[0]}]")
    return sizes


def _check_activation(activation) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {activation!r}; supported: {', '.join(ACTIVATIONS)}")


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    return dt
