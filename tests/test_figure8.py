"""The figure-eight example (``python -m odefast figure8``, odefast/_figure8.py) and
examples/harmonic_oscillator.py: the Hessian of orbit non-closure, its symmetries, the refinement
of closed orbits and the closed form for linear oscillators."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import odefast as of
from odefast import _figure8 as F8
from odefast.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
KW = dict(method="dopri5", rtol=1e-10, atol=1e-10)          # workload W5
# W5 eigenvalues of the symmetrised 12 x 12 Hessian from jax/diffrax (dopri5 and Tsit5 at
# rtol = atol = 1e-10). The first four depend on the solver: on the published orbit the miss
# |d| ~ 1e-7 lifts the rotation and time-shift eigenvalues to O(|grad L|).
PEER_EIGENVALUES = [0, 0, 1.9e-6, 3.2e-6, 5.95e-4, 9.1e-3, 11.105, 17.794, 80.034, 80.034,
                    2625.75, 10533.63]


@pytest.fixture(scope="module")
def published():
    """(f, z, L, grad, H) at the published figure-eight, T fixed, W5 settings."""
    f, z = F8.dynamics(), F8.figure_eight()
    return (f, z) + F8.derivatives(f, z, KW, wrt_T=False)


def _number(pattern, text):
    return float(re.search(pattern, text).group(1))


def test_cli_quick_run(capsys, tmp_path):
    png = tmp_path / "figure8.png"
    assert main(["figure8", "--quick", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    fixed, free = re.findall(r"(\d+) near-null eigenvalues\. Share.*?: (.*)", out)
    assert fixed[0] == "4" and free[0] == "5"
    for shares, symmetries in ((fixed[1], F8.SYMMETRIES[:3]), (free[1], F8.SYMMETRIES)):
        share = {name: float(v) for name, v in (item.rsplit(" ", 1) for item in shares.split(", "))}
        assert all(share[name] > 0.99 for name in symmetries), shares
        assert share["boost"] < 0.01
    assert _number(r"L\(s0\) = (\S+),", out) < 1e-12
    first = out.split("2. Refinement")[1].split("converged: L = ")[1]
    assert float(first.split()[0]) <= 1e-12
    assert "figure-eight: T|E|^1.5 = 9.2376" in out
    assert png.exists() or "pip install odefast[plot]" in out


def test_spectrum_matches_peer(published):
    L, H = published[2], published[4]
    assert L < 1e-14
    assert np.abs(H - H.T).max() < 1e-8 * np.abs(H).max()
    lam = np.linalg.eigvalsh((H + H.T) / 2)
    peer = np.array(PEER_EIGENVALUES)
    assert np.all(np.abs(lam[:4]) < 1e-5)
    np.testing.assert_allclose(lam[4:6], peer[4:6], rtol=0.03)
    np.testing.assert_allclose(lam[6:], peer[6:], rtol=1e-4)


def test_symmetries_in_the_spectrum(published):
    f, z, _, g, H = published
    sp = F8.spectrum(f, z, H, g)
    assert sp.near_null.sum() == 4
    assert [sp.best_match(k)[0] for k in range(4)] == ["translation", "translation", "time shift",
                                                      "rotation"]
    for name in F8.SYMMETRIES[:3]:
        assert sp.in_null_space[name] > 0.99
    assert sp.in_null_space["scaling"] < 0.01 and sp.in_null_space["boost"] < 0.01
    boost = F8.generators(f, z)["boost"][:12]                  # exact eigenvectors, 2 T^2
    np.testing.assert_allclose(H @ boost, 2 * z[-1] ** 2 * boost, atol=1e-6 * np.abs(H).max())


def test_time_derivatives_match_finite_differences():
    """The T column of the 13 x 13 Hessian (from ∂φ_T/∂T = f(φ_T)) against central differences
    of the exact gradients (g.y0, g.t[-1]) in T."""
    f, z = F8.dynamics(), F8.figure_eight()
    _, _, H = F8.derivatives(f, z, KW)
    h = 1e-5

    def grad(T):
        g = of.value_and_grad(f, z[:-1], np.array([0.0, T]), of.losses.Closure(), **KW)[1]
        return np.append(g.y0, g.t[-1])

    fd = (grad(z[-1] + h) - grad(z[-1] - h)) / (2 * h)
    np.testing.assert_allclose(H[:, -1], fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    np.testing.assert_allclose(H[-1, :], H[:, -1])


def test_gauss_newton_matrix_is_the_hessian_on_a_closed_orbit():
    f, z = F8.dynamics(), F8.figure_eight()
    _, _, H = F8.derivatives(f, z, KW)
    _, _, K = F8.derivatives(f, z, KW, gauss_newton=True)
    np.testing.assert_allclose(K, K.T, atol=1e-9 * np.abs(K).max())
    np.testing.assert_allclose(K, H, atol=1e-5)                 # differ by O(|d|) ~ 1e-7 x |∇²φ|


def test_distance_modulo_symmetries_ignores_the_symmetries():
    f, z = F8.dynamics(), F8.figure_eight()
    c, s = np.cos(0.3), np.sin(0.3)
    R = np.array([[c, -s], [s, c]])
    s1 = of.solve(f, z[:-1], np.array([0.0, 1.234]), **KW).ys[-1]      # a time shift
    lam = 1.1
    x = s1[:6].reshape(3, 2)[[2, 0, 1]] @ R.T * lam + [0.2, -0.1]           # relabel, rotate, ...
    v = s1[6:].reshape(3, 2)[[2, 0, 1]] @ R.T / np.sqrt(lam)
    moved = np.concatenate([x.ravel(), v.ravel(), [z[-1] * lam ** 1.5]])
    assert F8.distance_modulo_symmetries(f, moved, z, KW) < 1e-6
    assert F8.invariants(f, moved, KW)["T|E|^1.5"] == pytest.approx(9.2376812, rel=1e-7)


def test_refinement_and_soft_directions_find_two_orbits():
    """From the published orbit perturbed by 1e-3 (seed 0) Levenberg-Marquardt closes an orbit
    to L <= 1e-12 that is not the figure-eight modulo symmetries but a non-choreographic eight
    (orbit B). Steps of 0.01 and 0.03 along the two softest directions lead back to the
    figure-eight or to orbit B, and to nothing else."""
    f, z = F8.dynamics(), F8.figure_eight()
    start = z + 1e-3 * np.random.default_rng(0).standard_normal(13)
    orbit_b = F8.refine(f, start, KW)
    eight = F8.refine(f, z, KW)
    for r in (orbit_b, eight):
        assert r.converged and r.history[-1][1] < 1e-12
    assert F8.distance_modulo_symmetries(f, orbit_b.z, eight.z, KW) > 1e-2
    pairs_b, pairs_8 = (F8.invariants(f, r.z, KW)["pair distances"] for r in (orbit_b, eight))
    assert pairs_8[-1] - pairs_8[0] < 1e-4 < pairs_b[-1] - pairs_b[0]
    _, _, H = F8.derivatives(f, eight.z, KW)
    soft = F8.soft_directions(f, eight.z, H, 2)
    assert 5e-4 < soft[0][0] < 7e-4 and 8e-3 < soft[1][0] < 1e-2
    reached = set()
    for _, u in soft:
        for step in (0.01, -0.01, 0.03, -0.03):
            r = F8.refine(f, eight.z + step * u, KW)
            assert r.converged
            d = [F8.distance_modulo_symmetries(f, r.z, known.z, KW) for known in (eight, orbit_b)]
            assert min(d) < 1e-4
            reached.add(int(np.argmin(d)))
    assert reached == {0, 1}


def _run_example(name):
    env = dict(os.environ)                         # the child imports the odefast imported here
    pkg_parent = str(Path(of.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_harmonic_oscillator_example_matches_closed_form():
    out = _run_example("harmonic_oscillator.py")
    assert _number(r"max \|odefast - closed form\| = (\S+)", out) < 1e-8
    assert "closing oscillators (omega T in 2 pi Z): [1.0, 2.0]" in out


def test_figure8_example_finds_the_symmetries():
    out = _run_example("figure8.py")
    shares = dict(re.findall(r"^(translation x|translation y|rotation|time shift|boost x) .* (\S+)$",
                             out, flags=re.M))
    assert all(float(shares[k]) > 0.99 for k in ("translation x", "translation y", "rotation",
                                                  "time shift"))
    assert float(shares["boost x"]) < 0.01
