"""Shared pytest configuration for the odefast test-suite.

* NumPy floating-point errors (overflow, invalid, divide-by-zero, underflow) raise
  FloatingPointError in every test (the library's own code silences them locally with
  ``np.errstate`` where non-finite values are expected and handled).
* ``@pytest.mark.cuda`` tests are skipped, with a reason, where ``odefast.backends()['cuda']``
  is False.
* ``tests/`` is put on ``sys.path`` so that test modules can ``import problems``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import odefast


@pytest.fixture(autouse=True)
def _numpy_fp_errors_raise():
    old = np.seterr(all="raise")
    try:
        yield
    finally:
        np.seterr(**old)


@pytest.fixture(autouse=True)
def _restore_num_threads():
    """No test may leak a changed thread count into the next one."""
    n = odefast.get_num_threads()
    try:
        yield
    finally:
        if odefast.get_num_threads() != n:
            odefast.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    if odefast.backends()["cuda"]:
        return
    info = odefast.build_info()
    why = ("CUDA not compiled into this build of odefast" if not info["cuda_compiled"]
           else "no CUDA GPU visible")
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {why} (odefast.backends()['cuda'] is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
