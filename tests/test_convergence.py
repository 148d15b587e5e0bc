"""Convergence order of every method, measured against exact solutions.

* Fixed-step methods (compiled core): global error at t = 1 under dt halving; the slope of
  log(error) against log(dt) is the order, within 0.2.
* Adaptive methods: the compiled core cannot be forced to take fixed steps, so the order of
  their tableaus (propagated solution b and embedded solution b - b_err) is measured with a
  tiny fixed-step RK loop over the NumPy coefficients; the compiled adaptive solver is checked
  for what the user asks of it: the achieved error tracks rtol and decreases with it.
"""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from odefast._tableaus import TABLEAUS
from problems import (
    ADAPTIVE_METHODS,
    FIXED_METHODS,
    ORDER,
    exponential_decay,
    harmonic_oscillator,
    linear_exact,
    random_linear,
    spiral_3x3,
)

Y0 = np.array([1.0, -0.5, 0.3])

# step counts per unit time: in the asymptotic range and well above rounding
FIXED_N = {"euler": (128, 256, 512, 1024), "midpoint": (32, 64, 128, 256),
           "heun": (32, 64, 128, 256), "rk4": (16, 32, 64, 128)}
TABLEAU_N = {"bosh3": (16, 32, 64, 128), "dopri5": (16, 32, 64, 128),
             "tsit5": (32, 64, 128, 256), "dopri8": (4, 6, 8, 12)}
EMBEDDED_N = {"bosh3": (16, 32, 64, 128), "dopri5": (16, 32, 64, 128),
              "tsit5": (16, 32, 64, 128)}


def slope(ns, errs, T=1.0):
    h = T / np.asarray(ns, dtype=np.float64)
    return float(np.polyfit(np.log(h), np.log(errs), 1)[0])


def exact_problem(kind):
    """(dynamics, y0, exact(t_end) at t = [0, 1])."""
    if kind == "spiral":
        A = spiral_3x3()
        return of.Linear(A), Y0, linear_exact(A, None, Y0, [0.0, 1.0])[-1]
    if kind == "affine":
        A, b = random_linear(4, seed=3)
        y0 = np.array([0.5, -1.0, 0.25, 2.0])
        return of.Linear(A, b), y0, linear_exact(A, b, y0, [0.0, 1.0])[-1]
    if kind == "oscillator":
        f, exact = harmonic_oscillator(omega=3.0)
        y0 = np.array([1.0, 0.5])
        return f, y0, exact(y0, [0.0, 1.0])[-1]
    if kind == "decay":
        f, exact = exponential_decay(rate=2.0)
        y0 = np.array([1.5])
        return f, y0, exact(y0, [0.0, 1.0])[-1]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ("spiral", "affine", "oscillator", "decay"))
@pytest.mark.parametrize("method", FIXED_METHODS)
def test_fixed_step_order(method, kind):
    f, y0, exact = exact_problem(kind)
    ns = FIXED_N[method]
    errs = [np.max(np.abs(of.solve(f, y0, [0.0, 1.0], method=method, dt=1.0 / n).ys[-1] - exact))
            for n in ns]
    assert np.all(np.diff(errs) < 0), errs
    p = slope(ns, errs)
    assert abs(p - ORDER[method]) < 0.2, f"{method} on {kind}: observed order {p:.3f}"


@pytest.mark.parametrize("method", FIXED_METHODS)
def test_fixed_step_order_backwards_and_float32(method):
    """The same order integrating from t = 1 back to t = 0, and in float32 where the error is
    still far above float32 rounding (euler / midpoint / heun at coarse steps)."""
    A = spiral_3x3()
    f = of.Linear(A)
    exact0 = linear_exact(A, None, Y0, [1.0, 0.0])[-1]
    ns = FIXED_N[method]
    errs = [np.max(np.abs(of.solve(f, Y0, [1.0, 0.0], method=method, dt=1.0 / n).ys[-1] - exact0))
            for n in ns]
    assert abs(slope(ns, errs) - ORDER[method]) < 0.2
    if method != "rk4":
        ns32 = tuple(n // 4 for n in ns)
        e32 = [np.max(np.abs(of.solve(f, Y0.astype(np.float32), [1.0, 0.0], method=method,
                                      dt=1.0 / n).ys[-1] - exact0)) for n in ns32]
        assert abs(slope(ns32, e32) - ORDER[method]) < 0.25


# The tableau-order checks run in extended precision (np.longdouble) on a damped rotation
# y' = [[-a, w], [-w, -a]] y, whose exact solution is known in closed form, so that errors far
# below float64 rounding can be measured and the fits stay in the asymptotic range.
LD = np.longdouble
_A_LD = np.array([[-LD("0.3"), LD(2)], [-LD(2), -LD("0.3")]], dtype=LD)
_Y0_LD = np.array([LD(1), LD("-0.5")], dtype=LD)


def _exact_ld(T):
    T = LD(T)
    c, s = np.cos(2 * T), np.sin(2 * T)
    return np.exp(-LD("0.3") * T) * (np.array([[c, s], [-s, c]], dtype=LD) @ _Y0_LD)


def rk_fixed(weights, tab, n, T=1.0):
    """n fixed steps of the explicit RK method (tab.a) with output weights, in long double."""
    a = tab.a.astype(LD)
    w = np.asarray(weights).astype(LD)
    h = LD(T) / n
    y = _Y0_LD.copy()
    for _ in range(n):
        k = []
        for i in range(tab.stages):
            yi = y + h * sum(a[i, j] * k[j] for j in range(i)) if i else y
            k.append(_A_LD @ yi)
        y = y + h * sum(w[i] * k[i] for i in range(tab.stages))
    return y


def _tableau_errors(weights, tab, ns):
    exact = _exact_ld(1.0)
    return [float(np.max(np.abs(rk_fixed(weights, tab, n) - exact))) for n in ns]


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_tableau_propagated_order(method):
    tab = TABLEAUS[method]
    ns = TABLEAU_N[method]
    errs = _tableau_errors(tab.b, tab, ns)
    # well above the floor set by the float64 coefficients themselves (~1e-16)
    assert min(errs) > 1e-15, errs
    p = slope(ns, errs)
    assert abs(p - tab.order) < 0.2, f"{method}: observed order {p:.3f}, nominal {tab.order}"


@pytest.mark.parametrize("method", ("bosh3", "dopri5", "tsit5"))
def test_adaptive_tableau_embedded_order(method):
    """The embedded solution b_hat = b - b_err has order error_order."""
    tab = TABLEAUS[method]
    ns = EMBEDDED_N[method]
    p = slope(ns, _tableau_errors(tab.b - tab.b_err, tab, ns))
    assert abs(p - tab.error_order) < 0.2, f"{method}: embedded order {p:.3f}"


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_local_error_estimate_order(method):
    """One step's error estimate h*sum(b_err_i k_i) shrinks like h^(error_order + 1)."""
    tab = TABLEAUS[method]
    A = spiral_3x3()
    hs = np.array([0.2, 0.1, 0.05, 0.025]) if method != "dopri8" else np.array([0.8, 0.4, 0.2, 0.1])
    ests = []
    for h in hs:
        k = []
        for i in range(tab.stages):
            yi = Y0 + h * sum(tab.a[i, j] * k[j] for j in range(i)) if i else Y0
            k.append(A @ yi)
        ests.append(np.max(np.abs(h * sum(tab.b_err[i] * k[i] for i in range(tab.stages)))))
    p = float(np.polyfit(np.log(hs), np.log(ests), 1)[0])
    assert abs(p - (tab.error_order + 1)) < 0.3, f"{method}: local estimate order {p:.3f}"


RTOLS = (1e-4, 1e-6, 1e-8, 1e-10)


@pytest.mark.parametrize("kind", ("spiral", "affine", "oscillator"))
@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_error_tracks_tolerance(method, kind):
    f, y0, exact = exact_problem(kind)
    scale = np.max(np.abs(exact))
    errs, nfev = [], []
    for rtol in RTOLS:
        sol = of.solve(f, y0, [0.0, 1.0], method=method, rtol=rtol, atol=rtol * 1e-2)
        assert sol.status[0] == 0
        err = np.max(np.abs(sol.ys[-1] - exact)) / scale
        # achieved error within a modest multiple of what was asked for
        assert err < 100 * rtol, f"{method}/{kind}: error {err:.2e} at rtol {rtol:.0e}"
        errs.append(err)
        nfev.append(int(sol.stats["nfev"][0]))
    # tighter tolerance: strictly more work, and at least 5x more accurate per 100x in rtol
    assert np.all(np.diff(nfev) > 0), nfev
    assert np.all(np.asarray(errs[1:]) < np.asarray(errs[:-1]) / 5), errs
    # work-precision: error ~ nfev^(-order), loosely: nfev includes fixed overheads (initial
    # step, first/last steps), which steepen the fitted slope when only a few steps are taken
    p = -float(np.polyfit(np.log(nfev), np.log(errs), 1)[0])
    assert ORDER[method] - 1.5 < p < ORDER[method] + 2.5, f"{method}/{kind}: work-precision slope {p:.2f}"


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_rtol_1e8_on_smooth_problem(method):
    """Error at rtol 1e-8 < 100 * 1e-8 (relative), over several periods of an oscillator with
    many output times."""
    f, exact = harmonic_oscillator(omega=2.0)
    y0 = np.array([[1.0, 0.0], [0.3, -0.7]])
    t = np.linspace(0.0, 10.0, 41)
    sol = of.solve(f, y0, t, method=method, rtol=1e-8, atol=1e-10)
    ref = exact(y0, t)
    err = np.max(np.abs(sol.ys - ref)) / np.max(np.abs(ref))
    assert err < 100 * 1e-8, f"{method}: {err:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize("method", FIXED_METHODS)
def test_fixed_step_order_sweep(method):
    """Many random linear systems: the observed order is always within 0.2 of nominal."""
    for seed in range(8):
        A, b = random_linear(5, seed=100 + seed)
        y0 = np.random.default_rng(seed).standard_normal(5)
        exact = linear_exact(A, b, y0, [0.0, 1.0])[-1]
        f = of.Linear(A, b)
        ns = FIXED_N[method]
        errs = [np.max(np.abs(of.solve(f, y0, [0.0, 1.0], method=method, dt=1.0 / n).ys[-1] - exact))
                for n in ns]
        p = slope(ns, errs)
        assert abs(p - ORDER[method]) < 0.2, f"seed {seed}: {p:.3f}"
