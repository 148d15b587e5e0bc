"""Device arrays for ``device="cuda"``: zero-copy solves.

A CuPy array or a PyTorch CUDA tensor (anything exposing ``__cuda_array_interface__`` from one
of those two libraries) given as ``y0`` -- and optionally ``params`` and ``t`` -- is read by the
kernels in place, and ``sol.ys`` comes back as an array of the same library on the same GPU:
the states never cross the PCIe bus. Status and counters (one number per trajectory) are
NumPy arrays, as always. Every other argument is checked exactly as for NumPy input; device
arrays are checked for dtype, shape, contiguity and (with the array's own library)
finiteness.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _core
from ._dynamics import Dynamics
from ._problem import finish, prepare
from ._validate import FLOAT_DTYPES, check_finite


def is_device_array(x) -> bool:
    """True for CUDA device arrays (PyTorch CPU tensors and NumPy arrays are not)."""
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # a library may raise something other than AttributeError for CPU data
        return False


@dataclasses.dataclass
class DeviceArray:
    obj: object
    library: str           # "torch" or "cupy"
    device_index: int
    address: int
    shape: tuple
    dtype: np.dtype


def describe(x, name: str) -> DeviceArray:
    """Checks a device array (dtype, contiguity, library) and reads its interface."""
    library = type(x).__module__.split(".")[0]
    if library not in ("torch", "cupy"):
        raise TypeError(f"{name}: device arrays from CuPy or PyTorch are supported, got "
                        f"{type(x).__module__}.{type(x).__name__}")
    cai = x.__cuda_array_interface__
    shape = tuple(int(n) for n in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 device array, got {dtype}")
    strides = cai.get("strides")
    if strides is not None:
        want, step = [], dtype.itemsize
        for n in reversed(shape):
            want.append(step)
            step *= n
        if any(n > 1 and s != w for n, s, w in zip(shape, tuple(strides), reversed(want))):
            raise ValueError(f"{name}: expected a C-contiguous device array (strides {tuple(strides)}); "
                             "use .contiguous() (PyTorch) or cupy.ascontiguousarray")
    if cai.get("mask") is not None:
        raise ValueError(f"{name}: masked device arrays are not supported")
    if library == "torch":
        index = x.device.index
        if index is None:
            import torch
            index = torch.cuda.current_device()
    else:
        index = int(x.device.id)
    return DeviceArray(x, library, int(index), int(cai["data"][0]), shape, dtype)


def _all_finite(a: DeviceArray) -> bool:
    if a.library == "torch":
        import torch
        return bool(torch.isfinite(a.obj).all())
    import cupy
    return bool(cupy.isfinite(a.obj).all())


def _to_host(a: DeviceArray) -> np.ndarray:
    if a.library == "torch":
        return a.obj.detach().cpu().numpy()
    return a.obj.get()


def _empty_like(a: DeviceArray, shape, dtype):
    if a.library == "torch":
        import torch
        return torch.empty(shape, dtype=torch.float32 if dtype == np.float32 else torch.float64,
                           device=a.obj.device)
    import cupy
    with cupy.cuda.Device(a.device_index):
        return cupy.empty(shape, dtype=dtype)


def _synchronize(a: DeviceArray):
    """The library's queued work on the inputs is done before the kernels read them."""
    if a.library == "torch":
        import torch
        torch.cuda.synchronize(a.device_index)
    else:
        import cupy
        cupy.cuda.Device(a.device_index).synchronize()


def solve_device_arrays(f, y0, t, method, rtol, atol, dt, max_steps, params, on_failure):
    """odefast.solve for a device-array y0 (see the module docstring)."""
    if not isinstance(f, Dynamics):
        prepare(f, np.zeros(1), [0.0, 1.0])  # raises prepare's TypeError naming f
    y = describe(y0, "y0")
    if len(y.shape) not in (1, 2) or 0 in y.shape:
        raise ValueError(f"y0: expected shape (B, D) or (D,) with B, D >= 1, got {y.shape}")
    squeeze = len(y.shape) == 1
    B, D = (1, y.shape[0]) if squeeze else y.shape
    arrays = {"y0": y}
    t_host = t
    if is_device_array(t):
        arrays["t"] = describe(t, "t")
        t_host = _to_host(arrays["t"])
    # Everything but the device arrays' contents is checked by prepare(), on a one-trajectory
    # stand-in of y0 (and of (B, P) parameters).
    p_dev = None
    p_host = params
    if params is not None and is_device_array(params):
        p_dev = arrays["params"] = describe(params, "params")
        P = f.n_params
        if p_dev.shape not in ((P,), (B, P)):
            raise ValueError(f"params: expected shape ({P},) or ({B}, {P}), got {p_dev.shape}")
        if p_dev.dtype != y.dtype:
            raise TypeError(f"params: a {p_dev.dtype} device array for a {y.dtype} y0; the dtypes of "
                            "device arrays must match (no copies on the device)")
        p_host = np.zeros(p_dev.shape[-1:] if len(p_dev.shape) == 1 else (1, P), dtype=y.dtype)
    elif params is not None and np.ndim(params) == 2:
        p_host = np.asarray(params)
        if p_host.shape[0] != B:
            raise ValueError(f"params: expected shape ({f.n_params},) or ({B}, {f.n_params}), "
                             f"got {p_host.shape}")
        p_full = p_host
        p_host = p_host[:1]
    pb = prepare(f, np.zeros((1, D), dtype=y.dtype), t_host, method, rtol, atol, dt, max_steps, p_host)
    if p_dev is None and pb.params.ndim == 2:
        p_full = np.ascontiguousarray(np.asarray(p_full, dtype=pb.dtype))
        check_finite(p_full, "params")
    indices = {a.device_index for a in arrays.values()}
    if len(indices) > 1:
        raise ValueError(f"y0, t, params: device arrays on different GPUs {sorted(indices)}")
    for name, a in arrays.items():
        if name != "t" and not _all_finite(a):
            raise ValueError(f"{name}: contains non-finite values (inf or NaN)")
    per_trajectory = (p_dev is not None and len(p_dev.shape) == 2) or (p_dev is None and pb.params.ndim == 2)
    if p_dev is not None:
        params_buf = (p_dev.address, True)
    else:
        host_params = p_full if pb.params.ndim == 2 else pb.params
        params_buf = (host_params.ctypes.data, False)
    N = pb.t.shape[0]
    ys = _empty_like(y, (N, B, D), pb.dtype)
    ys_addr = describe(ys, "ys").address
    _synchronize(y)
    nfev, steps, rejected, status = _core.gpu_solve_buffers(
        pb.f._spec(), pb.dtype_name, pb.method, B, N, f.n_params, per_trajectory,
        (y.address, True), (pb.t.ctypes.data, False), params_buf, (ys_addr, True),
        pb.rtol, pb.atol, pb.dt, pb.max_steps, device_index=y.device_index)
    pb = dataclasses.replace(pb, squeeze=squeeze)
    return finish(pb, ys, nfev, steps, rejected, status, on_failure=on_failure)
