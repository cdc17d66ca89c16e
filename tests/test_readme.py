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
