"""The coefficients compiled into the C++ core (exported by ``odefast._core.tableau``) are the
NumPy ones (odefast._tableaus, the single source of truth), bit for bit."""
from __future__ import annotations

import numpy as np
import odefast as of
import pytest
from odefast import _core
from odefast._tableaus import METHODS, TABLEAUS


def bits(x):
    """float64 bit patterns (so that equality is exact, and -0.0 / 0.0 are told apart only
    where we ask for it)."""
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64)).view(np.uint64)


def same_values(cpp, ref):
    cpp = np.asarray(cpp, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert cpp.shape == ref.shape
    # exact equality; zeros may differ only in sign (both mean "no term")
    nz = ref != 0
    assert np.array_equal(bits(cpp[nz]), bits(ref[nz]))
    assert np.all(cpp[~nz] == 0)


def test_method_lists_agree():
    assert list(_core.methods()) == list(METHODS) == list(of.METHODS)
    assert set(METHODS) == set(TABLEAUS)


@pytest.mark.parametrize("name", METHODS)
def test_cpp_coefficients_equal_numpy(name):
    tab = TABLEAUS[name]
    cpp = _core.tableau(name)
    s = tab.stages
    assert cpp["name"] == name
    assert cpp["stages"] == s
    assert cpp["order"] == tab.order
    assert cpp["error_order"] == tab.error_order
    assert len(cpp["c"]) == s and len(cpp["b"]) == s and len(cpp["a"]) == s * s
    same_values(cpp["c"], tab.c)
    same_values(np.reshape(cpp["a"], (s, s)), tab.a)
    same_values(cpp["b"], tab.b)
    same_values(cpp["b_err"], tab.b_err)
    assert cpp["has_err3"] == (tab.b_err3 is not None)
    if tab.b_err3 is not None:
        same_values(cpp["b_err3"], tab.b_err3)
    else:
        assert np.all(np.asarray(cpp["b_err3"]) == 0)
    if tab.dense is None:
        assert cpp["dense_degree"] == 0
        assert np.all(np.asarray(cpp["dense"]) == 0)
    else:
        deg = tab.dense.shape[1]
        assert cpp["dense_degree"] == deg
        same_values(np.reshape(cpp["dense"], (s, deg)), tab.dense)


@pytest.mark.parametrize("name", METHODS)
def test_fsal_and_adaptivity_flags_agree(name):
    tab = TABLEAUS[name]
    cpp = _core.tableau(name)
    s = tab.stages
    a = np.reshape(cpp["a"], (s, s))
    derived = bool(cpp["c"][-1] == 1.0 and np.array_equal(a[-1], cpp["b"]))
    assert cpp["fsal"] == tab.fsal == derived
    assert _core.method_is_adaptive(name) == tab.adaptive == (tab.error_order > 0)
    expected_fsal = {"bosh3", "dopri5", "tsit5"}
    assert tab.fsal == (name in expected_fsal)


@pytest.mark.parametrize("name", METHODS)
def test_cpp_tableau_invariants(name):
    """Consistency of the exported data on its own: explicit (strictly lower a), row sums equal
    c, weights sum to one, error weights sum to zero, dense output hits y1 at theta = 1."""
    cpp = _core.tableau(name)
    s = cpp["stages"]
    a = np.reshape(cpp["a"], (s, s))
    c = np.asarray(cpp["c"])
    assert np.all(np.triu(a) == 0)
    np.testing.assert_allclose(a.sum(axis=1), c, rtol=0, atol=1e-14)
    assert abs(sum(cpp["b"]) - 1) < 1e-14
    if cpp["error_order"] > 0:
        assert abs(sum(cpp["b_err"])) < 1e-14
    if cpp["dense_degree"]:
        d = np.reshape(cpp["dense"], (s, cpp["dense_degree"]))
        np.testing.assert_allclose(d.sum(axis=1), cpp["b"], rtol=0, atol=1e-14)


def test_unknown_method_is_rejected_by_core():
    with pytest.raises((ValueError, RuntimeError), match="rk45"):
        _core.tableau("rk45")
