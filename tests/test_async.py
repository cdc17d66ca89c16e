"""Asynchronous gossip and the synchronous special cases, end to end through simulate()."""

from __future__ import annotations

import math

import pytest
import torch

import p2probust as pr
from p2probust.config import RunConfig

FAST = {"train.rounds": 8, "eval_every": 4}


def _rows(res, drop=("online",)):
    return [{k: v for k, v in r.items() if k not in drop} for r in res.history]


@pytest.mark.parametrize("extra", [{"attack.name": "gaussian"}, {"attack.name": "label-flip", "train.momentum": 0.5}])
def test_async_all_awake_zero_latency_equals_sync(extra):
    cfg = RunConfig().replace(**FAST, **extra, **{"engine.latency": 0.0})
    sync = pr.simulate(cfg)
    asyn = pr.simulate(cfg.replace(**{"engine.mode": "async"}))
    assert torch.equal(sync.params, asyn.params)
    assert _rows(sync) == _rows(asyn)
    assert "online" in asyn.history[0] and "online" not in sync.history[0]


def test_general_sync_path_equals_the_plain_round():
    """The kernel path for churn / drops / dynamics, with nothing happening, gives the same numbers."""
    cfg = RunConfig().replace(**FAST, **{"attack.name": "gaussian"})
    plain = pr.simulate(cfg)
    idle = pr.simulate(cfg.replace(**{"engine.churn": {"outages": [[0, 1e9, 2e9]]}}))
    assert torch.equal(plain.params, idle.params)
    assert _rows(plain) == _rows(idle, drop=("online", "offline_distance"))


# local steps for 4 rounds on extreme (label-sorted) shards make the models disagree; then the
# learning rate drops to ~0 and only gossip acts
SPREAD_THEN_GOSSIP = {"byzantine.count": 0, "rule.name": "mh-gossip", "data.partition": "extreme", "eval_every": 1000,
                      "train.lr_schedule": "step", "train.lr_step": 4, "train.lr_decay": 1e-9}


def test_drops_plain_gossip_still_reaches_consensus():
    cfg = RunConfig().replace(**SPREAD_THEN_GOSSIP, **{"train.rounds": 40, "engine.drop": 0.3})
    for mode in ("sync", "async"):
        res = pr.simulate(cfg.replace(**{"engine.mode": mode}))
        cds = [v for _, v in res.metric("consensus_distance")]
        assert cds[-1] < 0.02 * cds[4], mode
        assert res.history[-1]["messages"] == 64  # sent, dropped or not


def test_async_random_latency_poisson_clock_time_column():
    cfg = RunConfig().replace(**{"train.rounds": 6, "eval_every": 3, "engine.mode": "async", "engine.tick": 0.005,
                                 "engine.clock": "poisson:rate=60", "engine.latency": "lognormal:mean=0.02,sigma=0.5",
                                 "engine.bandwidth": "1MB/s", "engine.stragglers": "0.25x4", "engine.compute_time": "exponential:mean=0.01"})
    res = pr.simulate(cfg)
    times = [r["time"] for r in res.history]
    assert [r["round"] for r in res.history] == list(range(7))
    assert all(b > a for a, b in zip(times, times[1:]))
    assert res.final("accuracy") > 0.3 and math.isfinite(res.final("consensus_distance"))
    again = pr.simulate(cfg)
    assert times == [r["time"] for r in again.history] and torch.equal(res.params, again.params)


def test_async_duration_stops_by_simulated_time_and_wait_clock():
    res = pr.simulate(RunConfig().replace(**{"engine.mode": "async", "engine.duration": "0.1s", "train.rounds": 10_000,
                                             "engine.clock": "wait:k=2,timeout=0.05",
                                             "engine.latency": "uniform:low=0.001,high=0.02"}))
    assert res.history[-1]["time"] == pytest.approx(0.1) and res.history[-1]["accuracy"] is not None
    assert 3 <= res.summary["rounds_done"] < 10
    sync = pr.simulate(RunConfig().replace(**{"engine.duration": "0.1s", "train.rounds": 10_000}))
    assert sync.summary["rounds_done"] == 6 and sync.history[-1]["accuracy"] is not None  # 6 × 0.015 s


def test_time_varying_topologies():
    base = RunConfig().replace(**SPREAD_THEN_GOSSIP, **{"train.rounds": 12})
    rr = pr.simulate(base.replace(**{"engine.dynamics": "random-regular:degree=3"}))
    ep = pr.simulate(base.replace(**{"engine.dynamics": "epidemic:s=2"}))
    epa = pr.simulate(base.replace(**{"engine.dynamics": "epidemic:s=2", "engine.mode": "async"}))
    for res in (rr, ep, epa):
        cds = [v for _, v in res.metric("consensus_distance")]
        assert cds[-1] < 0.5 * cds[4]
    assert rr.history[-1]["messages"] == 48 and ep.history[-1]["messages"] == 32
    with pytest.raises(ValueError, match="needs mode sync"):
        pr.simulate(base.replace(**{"engine.dynamics": "random-regular:degree=3", "engine.mode": "async"}))


def test_timing_attacks():
    base = RunConfig().replace(**{"train.rounds": 6, "eval_every": 3})
    plain = pr.simulate(base)
    delayed = pr.simulate(base.replace(**{"engine.timing_attack": "delay:seconds=1"}))
    assert delayed.history[-1]["time"] == pytest.approx(6 * 1.015)  # the sync round waits for it
    flood = pr.simulate(base.replace(**{"engine.timing_attack": "flood:copies=5"}))
    assert flood.history[-1]["messages"] > plain.history[-1]["messages"]
    assert torch.equal(flood.params, plain.params)  # one slot per sender: only the latest copy counts
    fa = pr.simulate(base.replace(**{"engine.timing_attack": "flood:copies=5", "engine.mode": "async",
                                     "engine.latency": 0.0}))
    aa = pr.simulate(base.replace(**{"engine.mode": "async", "engine.latency": 0.0}))
    assert torch.equal(fa.params, aa.params) and fa.history[-1]["messages"] > aa.history[-1]["messages"]
    replay = pr.simulate(base.replace(**{"engine.timing_attack": "replay:lag=0.03", "engine.mode": "async"}))
    assert replay.final("accuracy") > 0.5 and not torch.equal(replay.params, aa.params)
