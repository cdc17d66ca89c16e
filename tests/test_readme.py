"""The README's Python examples run as written (with fewer rounds, so the suite stays quick)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = code.replace("rounds=50", "rounds=5")
    namespace: dict = {}
    if "pr." in code and "import p2probust as pr" not in code:
        exec("import p2probust as pr", namespace)  # blocks that continue an earlier example
    exec(compile(code, "README.md", "exec"), namespace)


def _check_results(namespace: dict) -> int:
    """Every Result an example made completed, with finite final metrics."""
    import math

    import p2probust as pr

    results = [v for v in namespace.values() if isinstance(v, pr.Result)]
    for res in results:
        assert res.summary["status"] == "completed", res.summary
        assert all(math.isfinite(v) for v in res.summary["final"].values() if isinstance(v, float))
    return len(results)


def test_readme_python_blocks_make_results_that_completed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = 0
    for code in BLOCKS:
        if "simulate(" not in code:
            continue
        namespace: dict = {}
        exec("import p2probust as pr", namespace)
        exec(compile(code.replace("rounds=50", "rounds=5"), "README.md", "exec"), namespace)
        made += _check_results(namespace)
    assert made >= 2


CONSOLE = re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S)
_FOUND = [(cmd, [ln for ln in out.splitlines() if ln.startswith(("round ", "results written"))])
          for block in CONSOLE
          for cmd, out in re.findall(r"^\$ (p2probust run[^\n#]*?)\s*(?:#[^\n]*)?\n((?:(?!\$ )[^\n]*\n)*)", block, flags=re.M)
          if "--dry-run" not in cmd]
RUNS = [(cmd, lines) for cmd, lines in _FOUND if lines]  # the commands the README shows the output of


def test_readme_console_runs_are_found():
    assert len(RUNS) >= 2


@pytest.mark.parametrize("cmd, expected", RUNS, ids=[c for c, _ in RUNS])
def test_readme_console_output_is_what_the_command_prints(cmd, expected, tmp_path):
    """The numbers the README shows for `p2probust run` are what this code prints."""
    import shlex
    import subprocess
    import sys

    args = shlex.split(cmd)[2:]
    out = subprocess.run([sys.executable, "-m", "p2probust.cli", "run", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected
