"""Test settings: deterministic algorithms on, every generator seeded per test, slow tests opt-in
with --runslow."""

from __future__ import annotations

import importlib.util
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded(request):
    """Seed the global generators of ``random``, numpy and torch per test (from the test's id), so
    that no test can draw from an unseeded generator: a failure is reproducible, never one in three."""
    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    yield


@pytest.fixture(autouse=True)
def _deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def load_script():
    """``load(path)``: a script of the repository (``path`` relative to its root, e.g.
    ``"benchmarks/bench_rules.py"``) imported as a module named after the file."""

    def load(path: str):
        spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def with_and_without(monkeypatch):
    """``with_and_without(module, run) -> (fast, slow)``: ``run()`` with the compiled pass of
    ``module`` (a ``p2probust.jit`` module with ``_KERNEL`` and ``MIN_VALUES``) forced on (fails
    unless the kernel was called), then with it unavailable, as after a failed check (fails if it
    was called): the torch path."""

    def compare(module, run):
        calls = []
        kernel = module._KERNEL.get()
        assert kernel is not None, f"{module.__name__}: no kernel here"
        monkeypatch.setattr(module._KERNEL, "_kernel", [lambda *a: (calls.append(1), kernel(*a))[1]])
        monkeypatch.setattr(module, "MIN_VALUES", 0)
        fast = run()
        assert calls, f"{module.__name__}'s kernel never ran"
        ran = len(calls)
        monkeypatch.setattr(module._KERNEL, "_kernel", [None])
        monkeypatch.setattr(module, "MIN_VALUES", 1 << 62)
        slow = run()
        assert len(calls) == ran, f"{module.__name__}'s kernel ran on the torch side"
        return fast, slow

    return compare
