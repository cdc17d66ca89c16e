"""Smoke run of benchmarks/bench_rules.py at a tiny size (the full run is a benchmark, not a test)."""

from __future__ import annotations

import sys

import pytest

def test_bench_rules_smoke(capsys, monkeypatch, load_script):
    bench = load_script("benchmarks/bench_rules.py")
    names = bench.all_rules()
    assert names[0] == "mean" and "cs-plus" in names and "nnm+trimmed-mean" in names
    monkeypatch.setattr(sys, "argv", ["bench_rules.py", "--n", "6", "--k", "5", "--d", "4,7", "--repeats", "1"])
    bench.main()
    out = capsys.readouterr().out
    assert "| mean | " in out and "| ios | " in out and "| trimmed-mean [jit] | " in out
    assert out.count("\n| ") == len(names) + len(bench.JIT_ROWS) + 1


@pytest.mark.slow
def test_bench_rules_full_size(capsys, monkeypatch, load_script):
    monkeypatch.setattr(sys, "argv", ["bench_rules.py", "--d", "650", "--repeats", "1"])
    load_script("benchmarks/bench_rules.py").main()
    assert "| mean | " in capsys.readouterr().out
