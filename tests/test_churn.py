"""Churn end to end: an offline node falls behind and catches up; metrics count online honest nodes."""

from __future__ import annotations

import p2probust as pr
from p2probust.config import RunConfig


def test_offline_node_falls_behind_then_catches_up():
    # rounds last 0.015 s; node 5 is offline from round ~3 to round ~40, then back for 40 rounds
    cfg = RunConfig().replace(**{"byzantine.count": 0, "rule.name": "mh-gossip", "train.rounds": 80, "eval_every": 1000,
                                 "engine.churn": {"outages": [[5, 0.04, 0.6]]}})
    res = pr.simulate(cfg)
    rows = res.history
    during = [r for r in rows if 0.1 < r["time"] <= 0.6]
    assert all(r["online"] == 15 for r in during)
    lag = [r["offline_distance"] for r in during]
    assert lag[-1] > 5 * lag[0]  # it falls behind while the others learn
    assert all(r["offline_distance"] > 3 * r["consensus_distance"] for r in during[5:])
    after = [r for r in rows if r["time"] > 0.6 + 0.015]  # rounds that started after its return
    assert after[0]["online"] == 16 and after[0]["offline_distance"] is None
    assert after[0]["consensus_distance"] > 2 * during[-1]["consensus_distance"]  # the straggler is counted again
    assert after[-1]["consensus_distance"] < 0.3 * after[0]["consensus_distance"]  # ... and catches up


def test_on_off_churn_async_records_online_count():
    cfg = RunConfig().replace(**{"train.rounds": 10, "eval_every": 5, "engine.mode": "async",
                                 "engine.churn": "up=0.1,down=0.05", "engine.latency": "uniform:low=0.001,high=0.01"})
    res = pr.simulate(cfg)
    online = [r["online"] for r in res.history]
    assert min(online) < 14 and max(online) <= 14  # 14 honest nodes, some offline at times
    assert res.summary["rounds_done"] == 10
