"""Docs in the code: docstrings on the public API, the compiled module's type stub, py.typed."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import odefast as of

PKG = Path(of.__file__).resolve().parent


def _public_objects():
    for mod, names in ((of, of.__all__), (of.losses, of.losses.__all__),
                       (of.reference, of.reference.__all__)):
        for name in names:
            obj = getattr(mod, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{mod.__name__}.{name}", obj


def test_public_api_has_docstrings():
    missing = []
    for qual, obj in _public_objects():
        if not inspect.getdoc(obj):
            missing.append(qual)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                fn = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if inspect.isfunction(fn) and not inspect.getdoc(getattr(obj, attr, fn)) \
                        and not inspect.getdoc(fn):
                    missing.append(f"{qual}.{attr}")
    assert not missing, f"public names without a docstring: {missing}"


def test_core_stub_matches_the_compiled_module():
    stub = ast.parse((PKG / "_core.pyi").read_text())
    declared = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    runtime = {n for n in dir(of._core) if not n.startswith("_")}
    assert declared == runtime
    tape = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Tape")
    assert {n.name for n in tape.body if isinstance(n, ast.FunctionDef)} == \
        {n for n in dir(of._core.Tape) if not n.startswith("_")}


def test_py_typed_marker():
    assert (PKG / "py.typed").is_file()


def test_reprs_show_what_results_hold():
    f = of.Linear(np.array([[0.0, 1.0], [-1.0, 0.0]]))
    y0, t = np.array([[1.0, 0.0], [0.0, 1.0]]), np.linspace(0.0, 1.0, 3)
    assert repr(f) == "Linear(D=2, A=[[0, 1], [-1, 0]], b=[0, 0], dtype=float64)"
    sol = of.solve(f, y0, t)
    assert "ys.shape=(3, 2, 2)" in repr(sol) and "failed=0/2" in repr(sol)
    _, g = of.value_and_grad(f, y0, t, of.losses.Closure())
    assert "params.shape=(6,)" in repr(g)
    hv = of.hvp(f, y0, t, of.losses.Closure(), v_y0=np.ones((2, 2)))
    assert "y0.shape=(2, 2)" in repr(hv)
    assert repr(of.losses.MSE(np.zeros((3, 2, 2)))) == "MSE(targets.shape=(3, 2, 2), weighted=False)"
