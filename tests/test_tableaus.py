"""Checks of the Butcher tableau data in odefast._tableaus (and its C++ mirror).

* structural invariants (shapes, strictly lower a, row sums == c, sum b == 1, ...)
* all rooted-tree order conditions up to each method's order (trees are
  generated, not hand-written: orders 1..9 have 1, 1, 2, 4, 9, 20, 48, 115,
  286 trees), and that the next order fails (the order is exact)
* the same for the embedded solutions b_hat = b - b_err (and b - b_err3)
* dense output: value at theta = 0 and 1, C1 continuity, order conditions
* fixed-step convergence in pure NumPy (observed orders within 0.2)
* bit-exact agreement with SciPy's RK23 / RK45 / DOP853 coefficients
* the generated C++ header is up to date and holds bit-identical values
"""

from __future__ import annotations

import functools
import importlib.util
import math
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from odefast._tableaus import METHODS, TABLEAUS, Tableau

ROOT = Path(__file__).resolve().parents[1]
EPS = np.finfo(np.float64).eps

# name: (stages, order, error_order, fsal, dense_order or None)
EXPECTED = {
    "euler": (1, 1, 0, False, None),
    "midpoint": (2, 2, 0, False, None),
    "heun": (2, 2, 0, False, None),
    "rk4": (4, 4, 0, False, None),
    "bosh3": (4, 3, 2, True, 3),
    "dopri5": (7, 5, 4, True, 4),
    "tsit5": (7, 5, 4, True, 4),
    "dopri8": (12, 8, 5, False, None),
}


def embedded_weights(t: Tableau):
    """(label, weights, order) for every embedded solution of a tableau."""
    out = []
    if t.adaptive:
        out.append(("b_hat", t.b - t.b_err, t.error_order))
    if t.b_err3 is not None:
        out.append(("b_hat3", t.b - t.b_err3, 3))
    return out


# ---------------------------------------------------------------------------
# Rooted trees and elementary weights
# ---------------------------------------------------------------------------
# A rooted tree is the tuple of its root's subtrees, kept sorted (canonical);
# the single vertex is ().


def _grow(tree):
    """All trees obtained by attaching one new leaf to some vertex of `tree`."""
    yield tuple(sorted(tree + ((),)))
    for i, child in enumerate(tree):
        for grown in _grow(child):
            yield tuple(sorted(tree[:i] + (grown,) + tree[i + 1:]))


@functools.lru_cache(maxsize=None)
def trees(order: int):
    if order == 1:
        return ((),)
    return tuple(sorted({g for t in trees(order - 1) for g in _grow(t)}))


def tree_order(tree) -> int:
    return 1 + sum(tree_order(c) for c in tree)


def tree_gamma(tree) -> int:
    g = tree_order(tree)
    for c in tree:
        g *= tree_gamma(c)
    return g


def elementary_weights(a: np.ndarray, tree) -> np.ndarray:
    """Phi_i(tree): the per-stage vector such that b @ Phi = 1/gamma is the order condition."""
    phi = np.ones(a.shape[0])
    for child in tree:
        phi = phi * (a @ elementary_weights(a, child))
    return phi


def condition_residuals(weights, a, order):
    """(residual, rounding scale) of every order condition for trees of the given order."""
    out = []
    abs_a = np.abs(a)
    for t in trees(order):
        phi = elementary_weights(a, t)
        res = float(weights @ phi - 1.0 / tree_gamma(t))
        scale = float(np.abs(weights) @ elementary_weights(abs_a, t) + 1.0 / tree_gamma(t))
        out.append((t, res, scale))
    return out


def assert_order(weights, a, p, what):
    """All conditions of order <= p hold (to rounding) and some condition of order p+1 fails."""
    for k in range(1, p + 1):
        for t, res, scale in condition_residuals(weights, a, k):
            assert abs(res) <= 16 * EPS * scale, f"{what}: order-{k} condition for tree {t}: {res:.3e}"
    worst = max(abs(res) for _, res, _ in condition_residuals(weights, a, p + 1))
    assert worst > 1e-8, f"{what}: unexpectedly also satisfies all order-{p + 1} conditions"


def test_tree_counts():
    assert [len(trees(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


def test_gamma_known_values():
    leaf = ()
    assert tree_gamma(leaf) == 1
    assert tree_gamma((leaf,)) == 2
    assert tree_gamma((leaf, leaf)) == 3
    assert tree_gamma(((leaf,),)) == 6
    assert sorted(tree_gamma(t) for t in trees(4)) == [4, 8, 12, 24]


# ---------------------------------------------------------------------------
# Registry and structure
# ---------------------------------------------------------------------------


def test_registry():
    assert METHODS == ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")
    assert tuple(TABLEAUS) == METHODS
    for name, t in TABLEAUS.items():
        assert isinstance(t, Tableau)
        assert t.name == name


@pytest.mark.parametrize("name", METHODS)
def test_properties(name):
    t = TABLEAUS[name]
    stages, order, error_order, fsal, dense_order = EXPECTED[name]
    assert t.stages == stages
    assert t.order == order
    assert t.error_order == error_order
    assert t.adaptive == (error_order > 0)
    assert t.fsal == fsal
    assert (t.dense is not None) == (dense_order is not None)
    assert (t.b_err3 is not None) == (name == "dopri8")


@pytest.mark.parametrize("name", METHODS)
def test_structure(name):
    t = TABLEAUS[name]
    s = t.stages
    arrays = [t.c, t.a, t.b, t.b_err] + [x for x in (t.b_err3, t.dense) if x is not None]
    for arr in arrays:
        assert arr.dtype == np.float64
        assert not arr.flags.writeable
        assert np.all(np.isfinite(arr))
    assert t.c.shape == (s,) and t.a.shape == (s, s) and t.b.shape == (s,) and t.b_err.shape == (s,)
    assert t.c[0] == 0.0
    assert np.all(np.triu(t.a) == 0.0), "a must be strictly lower triangular"
    np.testing.assert_allclose(t.a.sum(axis=1), t.c, rtol=0, atol=1e-14)
    assert abs(math.fsum(t.b) - 1.0) <= 1e-14
    assert abs(math.fsum(t.b_err)) <= 1e-14
    if not t.adaptive:
        assert np.all(t.b_err == 0.0)
    else:
        assert np.any(t.b_err != 0.0)
    if t.b_err3 is not None:
        assert t.b_err3.shape == (s,)
        assert abs(math.fsum(t.b_err3)) <= 1e-14
    if t.fsal:
        # last stage = f(t0 + h, y1): c == 1, a[-1] == b bitwise, zero weight in b
        assert t.c[-1] == 1.0 and np.array_equal(t.a[-1], t.b) and t.b[-1] == 0.0


# ---------------------------------------------------------------------------
# Order conditions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHODS)
def test_order_conditions(name):
    t = TABLEAUS[name]
    assert_order(t.b, t.a, t.order, f"{name} b")


@pytest.mark.parametrize("name", [m for m in METHODS if TABLEAUS[m].adaptive])
def test_embedded_order_conditions(name):
    t = TABLEAUS[name]
    for label, w, p in embedded_weights(t):
        assert abs(math.fsum(w) - 1.0) <= 1e-14
        assert_order(w, t.a, p, f"{name} {label}")


def test_dopri8_error_estimators():
    t = TABLEAUS["dopri8"]
    # Both estimators vanish on stages 2..5 (index 1..4), like b.
    assert np.all(t.b[1:5] == 0.0) and np.all(t.b_err[1:5] == 0.0) and np.all(t.b_err3[1:5] == 0.0)
    # E3 = b - bhh with bhh supported on stages 1, 9, 12 only.
    bhh = t.b - t.b_err3
    assert set(np.flatnonzero(np.abs(bhh) > 1e-15)) == {0, 8, 11}


# ---------------------------------------------------------------------------
# Dense output
# ---------------------------------------------------------------------------

DENSE_METHODS = [m for m in METHODS if EXPECTED[m][4] is not None]
THETAS = (0.1, 0.25, 1 / 3, 0.5, 0.7, 0.9, 1.0)


def dense_weights(t: Tableau, theta: float) -> np.ndarray:
    powers = theta ** np.arange(1, t.dense.shape[1] + 1)
    return t.dense @ powers


@pytest.mark.parametrize("name", DENSE_METHODS)
def test_dense_endpoints(name):
    t = TABLEAUS[name]
    assert np.all(dense_weights(t, 0.0) == 0.0)
    tol = 2 * EPS * np.abs(t.dense).sum(axis=1) + 1e-16
    assert np.all(np.abs(dense_weights(t, 1.0) - t.b) <= tol), dense_weights(t, 1.0) - t.b
    # C1 continuity: d/dtheta at 0 is e_0 (k_1 = f(y0)); at 1 it is e_{s-1} (FSAL stage = f(y1)).
    deg = t.dense.shape[1]
    deriv1 = t.dense @ np.arange(1, deg + 1, dtype=float)
    e_last = np.zeros(t.stages)
    e_last[-1] = 1.0
    assert np.array_equal(t.dense[:, 0], np.eye(t.stages)[0])
    assert np.all(np.abs(deriv1 - e_last) <= 4 * tol)


@pytest.mark.parametrize("name", DENSE_METHODS)
def test_dense_order_conditions(name):
    t = TABLEAUS[name]
    q = EXPECTED[name][4]
    abs_a = np.abs(t.a)
    for theta in THETAS:
        bt = dense_weights(t, theta)
        bt_abs = np.abs(t.dense) @ (theta ** np.arange(1, t.dense.shape[1] + 1))
        for k in range(1, q + 1):
            for tree in trees(k):
                target = theta**k / tree_gamma(tree)
                res = bt @ elementary_weights(t.a, tree) - target
                scale = bt_abs @ elementary_weights(abs_a, tree) + target
                assert abs(res) <= 16 * EPS * scale, (name, theta, tree, res)
    # and the dense order is exactly q: some order q+1 condition fails inside the step
    bt = dense_weights(t, 0.5)
    worst = max(abs(bt @ elementary_weights(t.a, tr) - 0.5 ** (q + 1) / tree_gamma(tr)) for tr in trees(q + 1))
    assert worst > 1e-6


@pytest.mark.parametrize("name", DENSE_METHODS)
def test_dense_explicit_low_order_conditions(name):
    """The four conditions for order 3 written out (sum b_i(theta) ... )."""
    t = TABLEAUS[name]
    for theta in THETAS:
        bt = dense_weights(t, theta)
        assert bt.sum() == pytest.approx(theta, abs=1e-14)
        assert bt @ t.c == pytest.approx(theta**2 / 2, abs=1e-14)
        assert bt @ t.c**2 == pytest.approx(theta**3 / 3, abs=1e-14)
        assert bt @ (t.a @ t.c) == pytest.approx(theta**3 / 6, abs=1e-14)


def test_bosh3_dense_is_cubic_hermite():
    t = TABLEAUS["bosh3"]
    expected = np.array([[1, -4 / 3, 5 / 9], [0, 1, -2 / 3], [0, 4 / 3, -8 / 9], [0, -1, 1]])
    assert np.array_equal(t.dense, expected)


# ---------------------------------------------------------------------------
# Numerical convergence (fixed step, pure NumPy)
# ---------------------------------------------------------------------------
# y' = y - t^2 + 1, y(0) = 1/2, y(t) = (t + 1)^2 - exp(t)/2  (non-autonomous)
# y' = y cos t,     y(0) = 1,   y(t) = exp(sin t)          (as for dopri8 below)
# The error is the max over the step grid.  Step counts are chosen per method
# so that the errors lie in the asymptotic range (well above roundoff): the
# tuned 5th-order pairs reach their asymptotic slope only at fairly small h.


def _bf_rhs(t, y):
    return y - t * t + 1.0


def _bf_exact(t):
    return (t + 1.0) ** 2 - 0.5 * np.exp(t)


def _ycos_rhs(t, y):
    return y * np.cos(t)


def _ycos_exact(t):
    return np.exp(np.sin(t))


def integrate_max_error(t: Tableau, weights, rhs, exact, t_end, n):
    h = t_end / n
    y = float(exact(0.0))
    k = np.zeros(t.stages)
    err = 0.0
    for m in range(n):
        t0 = m * h
        for i in range(t.stages):
            k[i] = rhs(t0 + t.c[i] * h, y + h * (t.a[i, :i] @ k[:i]))
        y = y + h * (weights @ k)
        err = max(err, abs(y - exact((m + 1) * h)))
    return err


def observed_order(t, weights, rhs, exact, t_end, steps):
    steps = np.asarray(steps)
    errs = np.array([integrate_max_error(t, weights, rhs, exact, t_end, n) for n in steps])
    assert np.all(errs > 1e-13), f"errors too close to roundoff: {errs}"
    slope = np.polyfit(np.log(t_end / steps), np.log(errs), 1)[0]
    return slope, errs


# name -> (t_end, step counts) for b, and for the embedded solution(s)
CONVERGENCE = {
    "euler": (2.0, [256, 512, 1024]),
    "midpoint": (2.0, [64, 128, 256]),
    "heun": (2.0, [64, 128, 256]),
    "rk4": (2.0, [16, 32, 64]),
    "bosh3": (2.0, [32, 64, 128]),
    "dopri5": (2.0, [16, 32, 64]),
    "tsit5": (2.0, [24, 48, 96]),
    "dopri8": (4.0, [6, 12, 24]),
}
EMBEDDED_CONVERGENCE = {
    ("bosh3", "b_hat"): (2.0, [32, 64, 128]),
    ("dopri5", "b_hat"): (2.0, [16, 32, 64]),
    ("tsit5", "b_hat"): (2.0, [32, 64, 128]),
    ("dopri8", "b_hat"): (2.0, [16, 32, 64]),
    ("dopri8", "b_hat3"): (2.0, [64, 128, 256]),
}


@pytest.mark.parametrize("name", METHODS)
def test_convergence_order(name):
    t = TABLEAUS[name]
    t_end, steps = CONVERGENCE[name]
    slope, errs = observed_order(t, t.b, _bf_rhs, _bf_exact, t_end, steps)
    assert abs(slope - t.order) <= 0.2, (name, slope, errs)


@pytest.mark.parametrize("key", list(EMBEDDED_CONVERGENCE), ids=lambda k: f"{k[0]}-{k[1]}")
def test_embedded_convergence_order(key):
    name, label = key
    t = TABLEAUS[name]
    (w, p), = [(w, p) for lab, w, p in embedded_weights(t) if lab == label]
    t_end, steps = EMBEDDED_CONVERGENCE[key]
    slope, errs = observed_order(t, w, _bf_rhs, _bf_exact, t_end, steps)
    assert abs(slope - p) <= 0.2, (name, label, slope, errs)


def test_dopri8_eighth_order_on_ycos():
    """Step halving on y' = y cos t divides the error by about 2^8."""
    t = TABLEAUS["dopri8"]
    errs = np.array([integrate_max_error(t, t.b, _ycos_rhs, _ycos_exact, 2.0, n) for n in (3, 6, 12)])
    assert np.all(errs > 1e-13)
    ratios = np.log2(errs[:-1] / errs[1:])
    assert np.all(np.abs(ratios - 8.0) <= 0.3), ratios


@pytest.mark.parametrize("name", DENSE_METHODS)
def test_dense_local_convergence(name):
    """One step from the exact solution: the interpolation error is O(h^(q+1))."""
    t = TABLEAUS[name]
    q = EXPECTED[name][4]
    t0 = 0.5
    hs = np.array([0.2, 0.1, 0.05])
    errs = []
    for h in hs:
        y0 = float(_bf_exact(t0))
        k = np.zeros(t.stages)
        for i in range(t.stages):
            k[i] = _bf_rhs(t0 + t.c[i] * h, y0 + h * (t.a[i, :i] @ k[:i]))
        errs.append(
            max(abs(y0 + h * (dense_weights(t, th) @ k) - _bf_exact(t0 + th * h)) for th in (0.25, 0.5, 0.75))
        )
    errs = np.array(errs)
    assert np.all(errs > 1e-13)
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - (q + 1)) <= 0.2, (name, slope, errs)


# ---------------------------------------------------------------------------
# Cross-check against SciPy (bit-exact), when SciPy is installed
# ---------------------------------------------------------------------------


def test_matches_scipy_rk23_rk45():
    rk = pytest.importorskip("scipy.integrate._ivp.rk")
    for name, cls in (("bosh3", rk.RK23), ("dopri5", rk.RK45)):
        t = TABLEAUS[name]
        s = cls.n_stages  # SciPy's count excludes the FSAL evaluation
        assert t.stages == s + 1
        assert np.array_equal(t.c[:s], cls.C)
        assert np.array_equal(t.a[:s, : cls.A.shape[1]], cls.A)
        assert np.array_equal(t.b[:s], cls.B) and t.b[s] == 0.0
        assert np.array_equal(t.a[s, :s], cls.B)
        assert np.array_equal(t.b_err, -cls.E)  # SciPy's E is b_hat - b
        assert np.array_equal(t.dense, cls.P)


def test_matches_scipy_dop853():
    dc = pytest.importorskip("scipy.integrate._ivp.dop853_coefficients")
    t = TABLEAUS["dopri8"]
    s = dc.N_STAGES
    assert t.stages == s == 12
    assert np.array_equal(t.c, dc.C[:s])
    assert np.array_equal(t.a, dc.A[:s, :s])
    assert np.array_equal(t.b, dc.B)
    # SciPy's E5/E3 have one more entry, for f(t + h, y_new); it is zero.
    assert dc.E5.shape == dc.E3.shape == (s + 1,)
    assert dc.E5[s] == 0.0 and dc.E3[s] == 0.0
    assert np.array_equal(t.b_err, dc.E5[:s])
    # SciPy forms E3 by float subtraction; ours is the correctly rounded
    # difference, which may differ by one ulp.
    assert np.all(np.abs(t.b_err3 - dc.E3[:s]) <= np.spacing(np.abs(dc.E3[:s])))


# ---------------------------------------------------------------------------
# Tsit5 and DOP853's E3 against the high-precision published values
# ---------------------------------------------------------------------------
# The float64 tables must be the correctly rounded values of these (exact
# rational arithmetic on the printed decimals, rounded once).

_TSIT5_HP = {
    "c4": "0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604",
    "a": [
        ["0.161"],
        ["-0.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2",
         "0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569"],
        ["2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289",
         "-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366",
         "4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077"],
        ["5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791",
         "-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589",
         "7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753",
         "-0.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1"],
        ["5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748",
         "-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452",
         "8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986",
         "-0.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1",
         "-0.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1"],
    ],
    "b": [
        "0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1",
        "0.01",
        "0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509",
        "1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331",
        "-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677",
        "2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841",
        "0",
    ],
    "b_hat": [
        "0.9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1",
        "0.9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2",
        "0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813",
        "1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761",
        "-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702",
        "1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089",
        "1/66",
    ],
    # b_i(theta) = scale * theta^m * prod(theta - root) * (theta^2 + p theta + q if given)
    "interp": [
        ("-1.0530884977290216", 1, ["1.3299890189751412"], ("-1.4364028541716351", "0.7139816917074209")),
        ("0.1017", 2, [], ("-2.1966568338249754", "1.2949852507374631")),
        ("2.490627285651252793", 2, [], ("-2.38535645472061657", "1.57803468208092486")),
        ("-16.54810288924490272", 2, ["1.21712927295533244", "0.61620406037800089"], None),
        ("47.37952196281928122", 2, ["1.203071208372362603", "0.658047292653547382"], None),
        ("-34.87065786149660974", 2, ["1.2", "0.666666666666666667"], None),
        ("2.5", 2, ["1", "0.6"], None),
    ],
}


def _poly_mul(p, q):
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(q):
            out[i + j] += x * y
    return out


def test_tsit5_is_correctly_rounded_high_precision_source():
    t = TABLEAUS["tsit5"]
    F = Fraction
    c = [F(0), F("0.161"), F("0.327"), F("0.9"), F(_TSIT5_HP["c4"]), F(1), F(1)]
    b = [F(x) for x in _TSIT5_HP["b"]]
    b_hat = [F(x) for x in _TSIT5_HP["b_hat"]]
    a_rows = [[F(x) for x in row] for row in _TSIT5_HP["a"]] + [b[:6]]
    assert list(t.c) == [float(x) for x in c]
    for i, row in enumerate(a_rows, start=1):
        assert list(t.a[i, :i]) == [float(x) for x in row]
    assert list(t.b) == [float(x) for x in b]
    assert list(t.b_err) == [float(x - y) for x, y in zip(b, b_hat)]
    for i, (scale, m, roots, quad) in enumerate(_TSIT5_HP["interp"]):
        poly = [F(0)] * m + [F(scale)]  # coefficients in increasing powers of theta
        for r in roots:
            poly = _poly_mul(poly, [-F(r), F(1)])
        if quad is not None:
            poly = _poly_mul(poly, [F(quad[1]), F(quad[0]), F(1)])
        assert poly[0] == 0 and len(poly) == 5
        assert list(t.dense[i]) == [float(x) for x in poly[1:]], i


def test_dopri8_e3_is_correctly_rounded():
    t = TABLEAUS["dopri8"]
    F = Fraction
    b = {0: "5.42937341165687622380535766363e-2", 8: "3.1116436695781989440891606237e-1",
         11: "4.47106157277725905176885569043e-2"}
    bhh = {0: "0.244094488188976377952755905512", 8: "0.733846688281611857341361741547",
           11: "0.220588235294117647058823529412e-1"}
    for i in range(t.stages):
        if i in bhh:
            assert t.b[i] == float(F(b[i]))
            assert t.b_err3[i] == float(F(b[i]) - F(bhh[i])), i
        else:
            assert t.b_err3[i] == t.b[i], i


# ---------------------------------------------------------------------------
# C++ header
# ---------------------------------------------------------------------------

HEADER = ROOT / "cpp" / "include" / "odefast" / "tableaus.hpp"
GENERATOR = ROOT / "tools" / "gen_tableaus.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("_gen_tableaus_under_test", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    return mod


def test_header_is_up_to_date():
    if not GENERATOR.exists() or not HEADER.exists():
        pytest.skip("generator or header not present")
    gen = _load_generator()
    assert HEADER.read_text() == gen.render(gen.load_tableaus_module()), (
        "cpp/include/odefast/tableaus.hpp is stale: run python3 tools/gen_tableaus.py"
    )


_CPP_DUMP = r"""
#include <cstdio>
#include "odefast/tableaus.hpp"
using namespace odefast::tableaus;

template <int N> void vec(const char* what, const double (&v)[N]) {
  std::printf("%s", what);
  for (int i = 0; i < N; ++i) std::printf(" %a", v[i]);
  std::printf("\n");
}

template <class M> void dump() {
  std::printf("method %s %d %d %d %d %d %d\n", M::name, M::stages, M::order, M::error_order,
              M::dense_degree, int(M::has_err3), int(is_fsal<M>()));
  vec("c", M::c);
  for (int i = 0; i < M::stages; ++i) vec("a", M::a[i]);
  vec("b", M::b);
  vec("b_err", M::b_err);
  vec("b_err3", M::b_err3);
  for (int i = 0; i < M::stages; ++i) vec("dense", M::dense[i]);
}

int main() {
  dump<Euler>(); dump<Midpoint>(); dump<Heun>(); dump<RK4>();
  dump<Bosh3>(); dump<Dopri5>(); dump<Tsit5>(); dump<Dopri8>();
  return 0;
}
"""


def test_header_values_bit_identical(tmp_path):
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None or not HEADER.exists():
        pytest.skip("no C++ compiler or header")
    shim = tmp_path / "shim"
    shim.mkdir()
    # Used only if cpp/include/odefast/config.hpp does not exist.
    (shim / "config.hpp").write_text("#pragma once\n#define ODEFAST_HD\n")
    src = tmp_path / "dump.cpp"
    src.write_text(_CPP_DUMP)
    exe = tmp_path / "dump"
    subprocess.run(
        [cxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-I", str(ROOT / "cpp" / "include"),
         "-I", str(shim), str(src), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout

    records = {}
    current = None
    for line in out.splitlines():
        key, *vals = line.split()
        if key == "method":
            current = records.setdefault(vals[0], {"meta": [int(v) for v in vals[1:]]})
        else:
            current.setdefault(key, []).append([float.fromhex(v) for v in vals])

    assert list(records) == list(METHODS)
    for name, t in TABLEAUS.items():
        r = records[name]
        deg = 0 if t.dense is None else t.dense.shape[1]
        assert r["meta"] == [t.stages, t.order, t.error_order, deg, int(t.b_err3 is not None), int(t.fsal)]

        def same(x, y):
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            return x.shape == y.shape and np.array_equal(x.view(np.uint64), y.view(np.uint64))

        assert same(r["c"][0], t.c)
        assert same(r["a"], t.a)
        assert same(r["b"][0], t.b)
        assert same(r["b_err"][0], t.b_err)
        assert same(r["b_err3"][0], t.b_err3 if t.b_err3 is not None else np.zeros(t.stages))
        assert same(r["dense"], t.dense if t.dense is not None else np.zeros((t.stages, 1)))
