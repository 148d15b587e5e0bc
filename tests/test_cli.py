"""The command line end to end with tiny settings: ``train`` (loss falls, files written, --resume
continues exactly), ``bench``, ``demo`` (``figure8`` is tests/test_figure8.py)."""
from __future__ import annotations

import re
import sys

import numpy as np
import odefast as of
import pytest
from odefast import _train
from odefast.__main__ import main

TINY = ["--hidden", "16", "--batch", "8", "--eval-every", "20", "--no-plot"]


def _train_run(out, *extra):
    return main(["train", "--out", str(out), *TINY, *extra])


def test_train_loss_falls_and_files_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train_run(out, "--iterations", "60") == 0
    text = capsys.readouterr().out
    with np.load(out / "model.npz") as z:
        loss, evals = z["loss_history"], z["eval_loss"]
        assert int(z["iteration"]) == 60 and loss.shape == (60,)
        assert list(z["eval_iteration"]) == [0, 20, 40, 60]
        assert z["adam_m"].shape == z["adam_v"].shape == (82,) and int(z["adam_step"]) == 60
    assert np.all(np.isfinite(loss))
    assert loss[-10:].mean() < 0.5 * loss[:10].mean()
    assert evals[-1] < 0.3 * evals[0]          # the whole spiral, from y(0) = (2, 0)
    model = of.MLP.load(out / "model.npz")     # the checkpoint is an ordinary saved MLP
    assert model.layers == [2, 16, 2] and model.activation == "tanh"
    assert "final loss: minibatch MSE" in text and "whole trajectory" in text
    assert re.search(r"forward [\d,]+ f .* backward [\d,]+ vector-Jacobian products", text)
    assert "trained 60 iterations (1..60)" in text


def test_resume_continues_exactly(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train_run(straight, "--iterations", "30") == 0
    assert _train_run(resumed, "--iterations", "18") == 0
    capsys.readouterr()
    # the resumed run takes its settings (batch, hidden, ...) from the checkpoint
    assert main(["train", "--out", str(resumed), "--resume", "--iterations", "12", "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert "resuming" in text and "at iteration 18" in text and "(19..30)" in text
    with np.load(straight / "model.npz") as a, np.load(resumed / "model.npz") as b:
        assert int(b["iteration"]) == 30 and list(b["resumed_at"]) == [18]
        for key in ("W0", "b0", "W1", "b1", "adam_m", "adam_v", "adam_step", "loss_history",
                    "counters"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_train_errors_say_what_to_do(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    out = tmp_path / "run"
    assert _train_run(out, "--iterations", "2") == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--hidden", "32"]) == 2
    assert "drop --hidden" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--method", "rk45"]) == 2
    assert "supported: " in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--hidden", "a,b"]) == 2
    assert "--hidden" in capsys.readouterr().err


def test_train_fixed_step_method(tmp_path, capsys):
    out = tmp_path / "rk4"
    assert _train_run(out, "--iterations", "3", "--method", "rk4", "--hidden", "8", "8") == 0
    assert "dt 0.02503" in capsys.readouterr().out   # one step per observation interval
    assert of.MLP.load(out / "model.npz").layers == [2, 8, 8, 2]


def test_train_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)   # import fails: plain progress lines
    assert _train_run(tmp_path / "run", "--iterations", "10") == 0
    assert re.search(r"train 10/10 +loss \S+ +\d+ it/s", capsys.readouterr().err)


def test_train_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--hidden", "8", "--batch", "4",
                 "--iterations", "5"]) == 0
    assert "plots: " in capsys.readouterr().out
    for name in ("spiral.png", "loss.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_train_without_matplotlib_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_train, "can_plot", lambda: False)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--hidden", "8", "--batch", "4",
                 "--iterations", "2"]) == 0
    text = capsys.readouterr().out
    assert 'pip install "odefast[plot]"' in text
    assert not (out / "spiral.png").exists()


def test_spiral_data():
    t, ys = _train.spiral()
    assert t.shape == (1000,) and ys.shape == (1000, 2) and t[-1] == 25.0
    np.testing.assert_array_equal(ys[0], [2.0, 0.0])
    r = np.hypot(ys[:, 0], ys[:, 1])
    assert r[-1] < 0.6 * r[0]                      # spirals inwards
    assert np.ptp(np.unwrap(np.arctan2(ys[:, 1], ys[:, 0]))) > 6 * np.pi   # several turns


def test_adam_matches_the_formula():
    opt = _train.Adam(2)
    theta = np.array([1.0, -1.0])
    g = np.array([0.5, -2.0])
    new = opt.update(theta, g, lr=0.1)
    # first step: m_hat = g, v_hat = g**2, so the step is lr * sign(g) (up to eps)
    np.testing.assert_allclose(new, theta - 0.1 * np.sign(g), rtol=1e-7)
    assert opt.step == 1


def test_bench_prints_the_table(capsys):
    assert main(["bench", "--repeats", "1", "--ref-batch", "4"]) == 0
    out = capsys.readouterr().out
    for w in ("W1", "W2", "W3", "W4", "W5"):
        assert re.search(rf"^{w} ", out, re.M), w
    diffs = [float(m) for m in re.findall(r"x\s+(\S+e[-+]\d+)\s+\d+$", out, re.M)]
    assert len(diffs) == 6 and max(diffs) < 1e-6
    assert "max eig 10533.6" in out


def test_demo_still_runs(capsys):
    assert main(["demo", "--batch", "50", "--mlp-batch", "4", "--repeats", "1"]) == 0
    assert "speed-up" in capsys.readouterr().out


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "figure8", "bench", "demo"):
        assert cmd in out
