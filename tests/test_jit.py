"""The compiled rank-mean kernel (p2probust.jit) against the torch reference: same bits."""

from __future__ import annotations

import os
import subprocess
import sys

import networkx as nx
import pytest
import torch

import p2probust as pr
from p2probust.aggregators import CoordinateWiseMedian, TrimmedMean
from p2probust.config import ConfigError, RunConfig
from p2probust.jit import rank_mean as jit_rank_mean
from p2probust.jit import split_rows


def _inboxes(a, n, k, d, dtype, seed, *, padding=True, crafted=0, nonfinite=True):
    """Random ``rows [a, 1 + k]`` (own row first) into ``params [n, d]`` and ``crafted [E, d]``,
    and the ``[a, 1 + k, d]`` inbox tensor the torch path sees."""
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(n, d, generator=g, dtype=dtype)
    params[torch.rand(n, d, generator=g) < 0.02] = 0.0  # ties (and signed zeros below)
    params[torch.rand(n, d, generator=g) < 0.01] = -0.0
    if nonfinite:
        for value in (float("nan"), float("inf"), -float("inf")):
            params[torch.rand(n, d, generator=g) < 0.01] = value
    rows = torch.randint(0, n, (a, k + 1), generator=g)
    present = torch.ones(a, k + 1, dtype=torch.bool)
    if padding:
        present[:, 1:] = torch.rand(a, k, generator=g) < 0.8
        rows = torch.where(present, rows, -1)
    extra = torch.randn(crafted, d, generator=g, dtype=dtype) * 100
    if crafted:
        slots = torch.nonzero(present[:, 1:])[:crafted]
        rows[slots[:, 0], slots[:, 1] + 1] = -2 - torch.arange(slots.shape[0])
    gathered = torch.where((rows >= 0).unsqueeze(-1), params[rows.clamp_min(0)], 0.0)
    byz = rows <= -2
    gathered[byz] = extra[-2 - rows[byz]]
    return params, extra, rows, present, gathered


@pytest.mark.parametrize("m", [2, 3, 5, 11, 33, 70])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trimmed_mean_same_bits_as_torch(m, dtype):
    params, extra, rows, present, x = _inboxes(300, 40, m - 1, 37, dtype, seed=m, crafted=50)
    agg = TrimmedMean()
    f = torch.minimum(torch.randint(0, m, (300,)), agg.max_tolerance(present.sum(1)))
    want = agg.batched(x, present, f)
    got = jit_rank_mean.rank_mean(params, extra, rows, agg.kept_ranks(present, f))
    assert got.dtype == dtype
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
    table = jit_rank_mean.rank_mean(params, extra, rows, agg.kept_ranks(present, f), table=True)  # any m
    assert torch.equal(torch.nan_to_num(table), torch.nan_to_num(want)) and torch.equal(table.isnan(), want.isnan())


@pytest.mark.parametrize("m", [3, 11, 40, 129])
def test_median_same_bits_as_torch(m):
    params, extra, rows, present, x = _inboxes(200, 30, m - 1, 19, torch.float32, seed=7 * m, crafted=20)
    agg = CoordinateWiseMedian()
    f = torch.zeros(200, dtype=torch.long)
    want = agg.batched(x, present, f)
    got = jit_rank_mean.rank_mean(params, extra, rows, agg.kept_ranks(present, f))
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))


def test_hand_computed_trimmed_mean():
    """Guerraoui et al. (2024), ch. 4: inputs (2,5), (3,6), (2,4), (1,5), (12,0), f = 1 → CWTM (7/3, 14/3)."""
    params = torch.tensor([[2.0, 5.0], [3.0, 6.0], [2.0, 4.0], [1.0, 5.0], [12.0, 0.0]])
    rows = torch.tensor([[0, 1, 2, 3, 4]])
    keep = TrimmedMean().kept_ranks(torch.ones(1, 5, dtype=torch.bool), torch.tensor([1]))
    got = jit_rank_mean.rank_mean(params, None, rows, keep)
    assert torch.allclose(got, torch.tensor([[7 / 3, 14 / 3]]))


def test_nan_and_padding_sort_last():
    """NaN reads as +inf and padding as +inf: a median over (1, NaN, 3, pad) is the median of (1, 3, +inf)."""
    params = torch.tensor([[1.0], [float("nan")], [3.0]])
    rows = torch.tensor([[0, 1, 2, -1]])
    keep = CoordinateWiseMedian().kept_ranks(torch.tensor([[True, True, True, False]]), torch.tensor([0]))
    assert jit_rank_mean.rank_mean(params, None, rows, keep).item() == 3.0


def test_rows_out_of_bounds_are_rejected():
    params = torch.zeros(4, 3)
    keep = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(IndexError, match="rows must lie in"):
        jit_rank_mean.rank_mean(params, None, torch.tensor([[0, 1, 4]]), keep)
    with pytest.raises(IndexError, match="rows must lie in"):
        jit_rank_mean.rank_mean(params, torch.zeros(1, 3), torch.tensor([[0, 1, -3]]), keep)
    with pytest.raises(ValueError, match="wires"):
        jit_rank_mean.rank_mean(params, None, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool))


def test_split_rows_covers_every_row_once():
    seen = torch.zeros(1000, dtype=torch.long)

    def mark(s, e):
        seen[s:e] += 1

    split_rows(1000, mark, min_rows=10)
    assert torch.equal(seen, torch.ones_like(seen))


@pytest.mark.parametrize("rule", ["trimmed-mean", "median"])
def test_simulation_with_and_without_jit_is_bit_identical(rule, monkeypatch):
    """A whole run (attack, Byzantine slots, irregular degrees) gives the same metrics with the kernel."""
    calls = []
    kernel = jit_rank_mean.rank_mean
    monkeypatch.setattr(jit_rank_mean, "rank_mean", lambda *args, **kwargs: calls.append(1) or kernel(*args, **kwargs))
    graph = nx.random_regular_graph(4, 30, seed=1)
    graph.add_edges_from([(0, 7), (0, 9), (3, 11)])  # padding in the neighbour table
    cfg = RunConfig().replace(**{"topology.nodes": 30, "byzantine.count": 4, "train.rounds": 6, "eval_every": 3,
                                 "rule.name": rule, "rule.alpha": 0.7, "attack.name": "sign-flip"})
    on = pr.simulate(cfg.replace(jit="on"), graph=graph)
    assert len(calls) == 6  # one fused call per round
    off = pr.simulate(cfg.replace(jit="off"), graph=graph)
    assert len(calls) == 6
    strip = on.history
    assert strip == off.history
    assert torch.equal(on.params, off.params)


def test_jit_value_is_validated():
    with pytest.raises(ConfigError, match="jit"):
        RunConfig(jit="fast")


def test_cli_rejects_bad_jit(tmp_path):
    out = subprocess.run([sys.executable, "-m", "p2probust.cli", "run", "--jit", "fast", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "fast" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_omp_wait_policy_default_respects_the_user(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, p2probust; print(os.environ['OMP_WAIT_POLICY'])"],
                         capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.3, 1 / 3])
def test_aggregate_and_mix_same_bits_as_torch(alpha):
    """With ``alpha`` the kernel is the whole aggregate-and-mix step, (1 − α)·own + α·CWTM."""
    params, extra, rows, present, x = _inboxes(300, 40, 10, 29, torch.float32, seed=3, crafted=40, nonfinite=False)
    agg = TrimmedMean()
    f = torch.minimum(torch.randint(0, 4, (300,)), agg.max_tolerance(present.sum(1)))
    rule = pr.AggregateAndMix(agg, alpha=alpha)
    w = torch.ones(300, 10)
    want = rule.batched(x[:, 0], x[:, 1:], present[:, 1:], w, f)
    got = jit_rank_mean.rank_mean(params, extra, rows, agg.kept_ranks(present, f), alpha=alpha)
    assert torch.equal(got, want)


def test_async_run_with_and_without_jit_is_bit_identical(monkeypatch):
    """The asynchronous kernels' mix (inboxes of stale messages) uses the compiled kernel too."""
    calls = []
    kernel = jit_rank_mean.rank_mean
    monkeypatch.setattr(jit_rank_mean, "rank_mean", lambda *args, **kwargs: calls.append(1) or kernel(*args, **kwargs))
    graph = nx.random_regular_graph(4, 24, seed=2)
    cfg = RunConfig().replace(**{"topology.nodes": 24, "byzantine.count": 3, "train.rounds": 4, "eval_every": 2,
                                 "engine.mode": "async", "engine.latency": "lognormal:mean=0.005,sigma=0.5",
                                 "attack.name": "gaussian", "rule.alpha": 0.6})
    on = pr.simulate(cfg.replace(jit="on"), graph=graph)
    assert calls
    off = pr.simulate(cfg.replace(jit="off"), graph=graph)
    assert torch.equal(on.params, off.params)


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_split_rows_works_in_a_forked_child():
    """A process forked after the pool exists (a sweep worker) gets its own pool, not a dead one."""
    import multiprocessing as mp

    split_rows(1000, lambda s, e: None, min_rows=10)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_split_in_child).get(timeout=30) == 1000


def _split_in_child() -> int:
    seen = []
    split_rows(1000, lambda s, e: seen.append(e - s), min_rows=10)
    return sum(seen)


def test_first_compilation_is_announced_once(tmp_path):
    """A fresh cache folder: the first use says it compiles (one stderr line); the next process loads silently."""
    code = ("import torch; from p2probust.jit import rank_mean as R; "
            "R.rank_mean(torch.randn(5, 3), None, torch.tensor([[0, 1, 2, 3]]), torch.ones(1, 4, dtype=torch.bool))")
    env = {**os.environ, "P2PROBUST_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert first.stderr.count("compiling the rank-mean kernel for 4 inputs") == 1
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert again.stderr == ""


def test_mix_inboxes_same_bits_as_the_rule():
    """Given inboxes (the asynchronous path), the kernel equals ``rule.batched`` on them."""
    g = torch.Generator().manual_seed(5)
    params = torch.randn(20, 13, generator=g)
    nodes = torch.tensor([3, 0, 7, 19])
    inbox = torch.randn(4, 6, 13, generator=g)
    inbox[0, 2, 5] = float("nan")
    mask = torch.rand(4, 6, generator=g) < 0.8
    rule = pr.AggregateAndMix(TrimmedMean(), alpha=0.4)
    f = torch.tensor([1, 0, 2, 1])
    want = rule.batched(params[nodes], inbox, mask, torch.ones(4, 6), f)
    assert torch.equal(jit_rank_mean.mix_inboxes(rule, params, nodes, inbox, mask, f), want)


_KERNEL_CALL = ("import torch; from p2probust.jit import rank_mean as R; "
                "out = R.rank_mean(torch.tensor([[3.0], [1.0], [2.0]]), None, torch.tensor([[0, 1, 2]]), "
                "torch.tensor([[False, True, False]])); print(float(out[0, 0]))")


def test_a_planted_kernel_file_is_not_executed(tmp_path):
    """A file planted at the kernel's cache path is replaced by the generated source, never imported."""
    import hashlib

    from p2probust.jit.rank_mean import kernel_source

    folder = tmp_path / "kernels"
    folder.mkdir(mode=0o700)
    digest = hashlib.sha256(kernel_source(3).encode()).hexdigest()[:12]
    marker = tmp_path / "planted-code-ran"
    (folder / f"rank_mean_m3_{digest}.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\ndef rank_mean(*args):\n    pass\n")
    env = {**os.environ, "P2PROBUST_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _KERNEL_CALL], capture_output=True, text=True, env=env, check=True)
    assert not marker.exists()
    assert out.stdout.strip() == "2.0"  # the median of (3, 1, 2), from the real kernel
    assert (folder / f"rank_mean_m3_{digest}.py").read_text() == kernel_source(3)


def test_cache_folder_is_private_and_a_shared_one_is_refused(tmp_path):
    env = {**os.environ, "P2PROBUST_CACHE": str(tmp_path / "own")}
    subprocess.run([sys.executable, "-c", _KERNEL_CALL], capture_output=True, text=True, env=env, check=True)
    assert (tmp_path / "own" / "kernels").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    (shared / "kernels").mkdir(parents=True)
    (shared / "kernels").chmod(0o777)  # anyone could plant code here
    env = {**os.environ, "P2PROBUST_CACHE": str(shared)}
    out = subprocess.run([sys.executable, "-W", "always", "-c", _KERNEL_CALL], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "2.0"  # compiled in memory instead
    assert "others can write to it" in out.stderr and "compiling in memory" in out.stderr
    assert list((shared / "kernels").iterdir()) == []  # nothing written to, or imported from, the shared folder


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("rule", [TrimmedMean(), CoordinateWiseMedian(), CoordinateWiseMedian(even="lower")])
def test_wide_kernel_same_bits_as_torch_over_several_tiles(rule, alpha):
    """More than 32 inputs (table-driven network), d spanning three tiles, ties, ±0, NaN, ±inf,
    padding and crafted rows: the aggregate-and-mix step equals the torch path's bits."""
    params, extra, rows, present, x = _inboxes(23, 90, 47, 150, torch.float32, seed=11, crafted=60)
    f = torch.minimum(torch.randint(0, 15, (23,), generator=torch.Generator().manual_seed(1)),
                      rule.max_tolerance(present.sum(1)))
    want = pr.AggregateAndMix(rule, alpha=alpha).batched(x[:, 0], x[:, 1:], present[:, 1:], torch.ones(23, 47), f)
    got = jit_rank_mean.rank_mean(params, extra, rows, rule.kept_ranks(present, f), alpha=alpha)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))


def test_wide_kernel_matches_an_independent_sort():
    """Against numpy's sort (not the sorting network): trimmed mean of 200 inputs with f = 30."""
    import numpy as np

    g = torch.Generator().manual_seed(4)
    params = torch.randn(200, 70, generator=g, dtype=torch.float64)
    keep = TrimmedMean().kept_ranks(torch.ones(1, 200, dtype=torch.bool), torch.tensor([30]))
    got = jit_rank_mean.rank_mean(params, None, torch.arange(200).unsqueeze(0), keep)
    want = np.sort(params.numpy(), axis=0)[30:170].mean(0)
    assert np.allclose(got[0].numpy(), want, rtol=0, atol=1e-12)


def test_auto_uses_a_kernel_that_is_already_compiled(tmp_path, monkeypatch):
    """A small call takes the compiled kernel in jit = "auto" once the kernel for its m has run in
    this process or sits in numba's disk cache (an asynchronous run's small batches): same bits,
    0.1 ms instead of 2 ms; before that, it stays on the torch path (no compilation for it)."""
    monkeypatch.setenv("P2PROBUST_CACHE", str(tmp_path))
    monkeypatch.setattr(jit_rank_mean, "_compiled", {})
    jit_rank_mean._kernel.cache_clear()
    try:
        assert not jit_rank_mean.worth_compiling(4, 5, 8)  # small and never compiled in this cache
        g = torch.Generator().manual_seed(0)
        params, rows = torch.randn(10, 8, generator=g), torch.randint(0, 10, (4, 5), generator=g)
        jit_rank_mean.rank_mean(params, None, rows, torch.ones(4, 5, dtype=torch.bool))
        assert jit_rank_mean.worth_compiling(4, 5, 8)  # it has run here
        monkeypatch.setattr(jit_rank_mean, "_compiled", {})  # as a new process: the disk cache has it
        assert jit_rank_mean.worth_compiling(4, 5, 8)
        assert not jit_rank_mean.worth_compiling(4, 6, 8)
    finally:
        jit_rank_mean._kernel.cache_clear()
