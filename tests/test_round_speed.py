"""The parts that make a round fast (issue 15): phase timers, the one-pass consensus distance, the
in-place local step."""

from __future__ import annotations

import math

import pytest
import torch

import p2probust as pr
from p2probust import profiling
from p2probust.jit import available
from p2probust.jit import moments
from p2probust.local import LocalTrainer
from p2probust.metrics import _consensus_distance_torch, consensus_distance
from p2probust.models import LogisticRegression


# --- phase timers ------------------------------------------------------------------------------
def test_spans_are_exclusive_with_a_hand_driven_clock():
    ticks = iter([0.0, 1.0, 3.0, 4.0, 10.0, 10.5])  # enter a, enter b, exit b, exit a, enter c, exit c
    timer = profiling.PhaseTimes(clock=lambda: next(ticks))
    timer.enter("a")
    timer.enter("b")
    timer.exit()
    timer.exit()
    timer.enter("c")
    timer.exit()
    assert dict(timer.seconds) == {"b": 2.0, "a": 2.0, "c": 0.5}  # a: 4 − 0 minus b's 2
    assert dict(timer.calls) == {"a": 1, "b": 1, "c": 1}
    assert timer.share(5.0) == {"b": 0.4, "a": 0.4, "c": 0.1, "other": pytest.approx(0.1)}


def test_nothing_is_timed_outside_a_block_and_blocks_do_not_nest():
    calls = []
    f = profiling.timed("x")(lambda v: calls.append(v) or v + 1)
    assert f(1) == 2 and profiling._active is None
    with profiling.phase_times() as t:
        assert f(2) == 3
        with pytest.raises(RuntimeError, match="do not nest"):
            with profiling.phase_times():
                pass
    assert t.calls == {"x": 1} and calls == [1, 2] and profiling._active is None


def test_a_run_reports_each_phase_once_per_round():
    cfg = pr.RunConfig().replace(**{"train.rounds": 6, "eval_every": 3, "train.local_steps": 2})
    with profiling.phase_times() as t:
        pr.simulate(cfg)
    assert t.calls["local step"] == 12  # 6 rounds × 2 local steps
    assert t.calls["attack"] == 6 and t.calls["gather + rule"] == 6
    assert t.calls["metrics"] == 7 and t.calls["record"] == 7  # rounds 0..6
    assert t.calls["evaluation"] == 3  # rounds 0, 3, 6
    assert all(v >= 0 for v in t.seconds.values())


# --- consensus distance -----------------------------------------------------------------------
needs_numba = pytest.mark.skipif(not available(), reason="numba not importable")


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_pass_consensus_distance_matches_the_reference(dtype):
    g = torch.Generator().manual_seed(3)
    params = (torch.randn(300, 97, generator=g) * 0.01 + torch.randn(97, generator=g) * 5).to(dtype)
    rows = torch.randperm(300, generator=g)[:250]
    ref = _consensus_distance_torch(params, rows)
    exact = float(((params[rows].double() - params[rows].double().mean(0)) ** 2).sum(1).mean())
    got = moments.consensus_distance(params, rows)
    assert got == pytest.approx(ref, rel=1e-12) and got == pytest.approx(exact, rel=1e-12)


@needs_numba
def test_one_pass_consensus_distance_is_zero_when_models_agree_and_flags_non_finite():
    params = torch.randn(1, 650, generator=torch.Generator().manual_seed(5)).expand(500, 650).clone()
    params[7] = 1e6  # not among the rows
    rows = torch.tensor([i for i in range(500) if i != 7])
    assert moments.consensus_distance(params, rows) == 0.0
    params[11, 3] = math.nan
    assert math.isnan(moments.consensus_distance(params, rows))
    params[11, 3] = math.inf
    assert not math.isfinite(moments.consensus_distance(params, rows))


@needs_numba
def test_one_pass_consensus_distance_does_not_depend_on_the_threads():
    params = torch.randn(600, 650, generator=torch.Generator().manual_seed(8))
    rows = torch.arange(0, 600, 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = moments.consensus_distance(params, rows)
        torch.set_num_threads(2)
        two = moments.consensus_distance(params, rows)
    finally:
        torch.set_num_threads(before)
    assert one == two


def test_consensus_distance_takes_the_compiled_pass_only_for_large_calls(monkeypatch):
    seen = []
    monkeypatch.setattr(moments, "consensus_distance", lambda p, r: seen.append(r.numel()) or 1.0)
    small = torch.randn(20, 650, generator=torch.Generator().manual_seed(1))
    honest = torch.ones(20, dtype=torch.bool)
    assert consensus_distance(small, honest) == _consensus_distance_torch(small, torch.arange(20)) and seen == []
    if available():
        big = torch.zeros(moments.MIN_VALUES // 650 + 1, 650)
        assert consensus_distance(big, torch.ones(big.shape[0], dtype=torch.bool)) == 1.0
        assert seen == [big.shape[0]]


# --- the local step ---------------------------------------------------------------
def _trainer():
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(40, 64, generator=g), torch.randint(0, 10, (40,), generator=g)
    return LocalTrainer(LogisticRegression(64, 10), x, y, torch.arange(40).view(4, 10), torch.full((4,), 10),
                        loss="cross_entropy", batch_size=8, num_classes=10, weight_decay=0.01)


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_in_place_local_step_has_the_same_bits_and_beta_zero_keeps_no_momentum(beta):
    tr = _trainer()
    g0 = torch.Generator().manual_seed(7)
    params, mom = torch.randn(4, 650, generator=g0), torch.randn(4, 650, generator=g0)
    nodes = torch.tensor([0, 2, 3])
    new_p, new_m = tr.step(params, mom, nodes, 0.1, beta, torch.Generator().manual_seed(1))
    p2, m2 = params.clone(), mom.clone()
    out_p, out_m = tr.step(p2, m2, nodes, 0.1, beta, torch.Generator().manual_seed(1), inplace=True)
    assert out_p is p2 and out_m is m2  # written into the inputs
    assert torch.equal(p2, new_p) and torch.equal(m2, new_m)
    assert torch.equal(p2[1], params[1])  # an idle node is untouched
    if beta == 0:
        assert new_m is mom and torch.equal(m2, mom)  # plain SGD: the momentum buffer is not written
    else:
        assert not torch.equal(new_m[nodes], mom[nodes])
