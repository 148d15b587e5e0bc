"""The README's promises: its Python snippets run, and CI runs exactly its test command."""
import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _needs_missing_module(block: str) -> bool:
    """A snippet for an optional extra (``import torch``) runs only where the extra is installed."""
    for name in re.findall(r"^\s*(?:import|from)\s+(torch|matplotlib)\b", block, re.M):
        if importlib.util.find_spec(name) is None:
            return True
    return False


def test_python_snippets_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python snippets"
    ran = 0
    for i, block in enumerate(blocks):
        if _needs_missing_module(block):
            continue
        exec(compile(block, f"README.md[python block {i}]", "exec"), {})
        ran += 1
    assert ran >= 3
    out = capsys.readouterr().out
    assert "float32 (2, 256, 2)" in out
    if importlib.util.find_spec("torch") is not None:
        assert "torch.Size([5, 16, 2]) torch.Size([32, 2]) torch.Size([16, 2])" in out


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_cmd = [c.strip() for c in commands if "pytest" in c]
    assert len(test_cmd) == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0] in ci.splitlines()


def test_readme_main_job_is_train():
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert commands[0].strip() == "python -m pip install . && python -m odefast train"
