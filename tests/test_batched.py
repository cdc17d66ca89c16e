"""Batched seeds (issue 12): the runs of one configuration that differ only by seed, run as one
simulation on the disjoint union of their graphs, write run folders whose metrics.csv is byte for
byte each separate run's; what cannot be batched runs separately, and sweeps say which."""

from __future__ import annotations

import filecmp
import json
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import p2probust as pr
from p2probust import registry
from p2probust.batched import batch_blocker, replica_safe, simulate_seeds
from p2probust.cli import main
from p2probust.config import RunConfig
from p2probust.gossip.registry import make_rule
from p2probust.rng import ReplicaGenerators, torch_stream
from p2probust.sweep import plan_sweep, read_index, run_sweep

FAST = {"train.rounds": 6, "eval_every": 2}


def _identical(tmp_path: Path, seeds=(0, 1), **over) -> list:
    """Batched and separate runs of ``seeds``: every metrics.csv byte-identical; the results."""
    base = RunConfig().replace(**{**FAST, **over})
    cfgs = [base.replace(seed=s) for s in seeds]
    results = simulate_seeds(cfgs, [tmp_path / f"batched{s}" for s in seeds])
    for s, cfg, res in zip(seeds, cfgs, results):
        single = pr.simulate(cfg, out=tmp_path / f"single{s}")
        assert filecmp.cmp(tmp_path / f"batched{s}" / "metrics.csv", tmp_path / f"single{s}" / "metrics.csv",
                           shallow=False), f"seed {s}: metrics.csv differs"
        assert repr(res.history) == repr(single.history)  # repr: NaN rows compare equal
        assert torch.equal(res.params, single.params)
        assert res.summary["status"] == single.summary["status"]
        assert res.summary["rounds_done"] == single.summary["rounds_done"]
        assert res.summary["simulated_s"] == single.summary["simulated_s"]
        for name in ("config.json", "summary.json", "params.pt", "timing.csv"):
            assert (tmp_path / f"batched{s}" / name).is_file()
        assert filecmp.cmp(tmp_path / f"batched{s}" / "config.json", tmp_path / f"single{s}" / "config.json", shallow=False)
        summary = json.loads((tmp_path / f"batched{s}" / "summary.json").read_text())
        assert summary["final"] == json.loads((tmp_path / f"single{s}" / "summary.json").read_text())["final"]
    return results


@pytest.mark.parametrize("over", [
    {},  # the default setting: 16-node torus, digits, trimmed mean, sign flip, random placement
    {"topology.name": "random-regular", "topology.nodes": 12, "topology.degree": 4},
    {"train.momentum": 0.9, "topology.nodes": 9},
    {"data.partition": "dirichlet", "data.dirichlet_alpha": 0.3, "topology.nodes": 9},
    {"train.sampling": "epoch", "train.batch_size": 50, "topology.nodes": 9},  # per-replica epoch state and shuffles
    {"train.order": "gossip-then-step", "train.local_steps": 2, "topology.nodes": 9},
    pytest.param({"data.task": "digits-mlp", "rule.tolerance": 1}, marks=pytest.mark.slow),
    {"data.task": "least-squares"},  # dist_to_opt, loss_gap: per-replica optimum
    {"jit": "on"},  # the compiled rank-mean kernel over the joined table
], ids=["default", "random-regular", "momentum", "dirichlet", "epoch", "gossip-then-step", "mlp-declared-f",
        "least-squares", "jit"])
def test_batched_metrics_are_byte_identical_to_separate_runs(tmp_path, over):
    _identical(tmp_path, seeds=(0, 1, 2) if not over else (0, 1), **over)


@pytest.mark.parametrize("rule,attack", [
    ("median", "alie"), ("mean", "ipm"), ("geomed", "gaussian"), ("nnm+trimmed-mean", "label-flip"),
    ("mh-gossip", "silent"), ("gossip", "honest"), ("trimmed-mean", "dissensus"),
    pytest.param("trimmed-mean", "spectral", marks=pytest.mark.slow),
    pytest.param("trimmed-mean", "alie-opt", marks=pytest.mark.slow),
])
def test_every_replica_safe_rule_and_attack_is_verified(tmp_path, rule, attack):
    _identical(tmp_path, seeds=(0, 1), **{"rule.name": rule, "attack.name": attack, "topology.nodes": 9,
                                          "train.rounds": 4})


def test_random_graphs_of_different_widths_batch_separately_with_identical_metrics(tmp_path):
    over = {"topology.name": "erdos-renyi", "topology.nodes": 12, "topology.p": 0.5, "rule.name": "mean"}
    widths = {pr.build.place(RunConfig().replace(**over, seed=s))[0].number_of_nodes() for s in range(4)}
    assert widths == {12}
    degrees = {max(d for _, d in pr.build.place(RunConfig().replace(**over, seed=s))[0].degree()) for s in range(4)}
    assert len(degrees) > 1  # the seeds' tables have different widths: more than one batch
    _identical(tmp_path, seeds=(0, 1, 2, 3), **over)


def test_a_diverged_replica_stops_where_its_separate_run_stops(tmp_path):
    # seed 0 diverges at round 30, seed 2 completes (measured with simulate)
    over = {"train.rounds": 32, "eval_every": 8, "rule.name": "mean", "topology.name": "random-regular",
            "topology.nodes": 12, "topology.degree": 3, "byzantine.count": 1, "attack.params": {"scale": 100.0}}
    res = _identical(tmp_path, seeds=(0, 2), **over)
    assert [r.summary["status"] for r in res] == ["diverged", "completed"]
    assert res[0].summary["diverged_round"] == res[0].summary["rounds_done"] == 30


def test_replica_generators_draw_per_replica_blocks():
    gens = ReplicaGenerators([torch_stream(s, "batches") for s in (3, 4)], [0, 5, 9])
    nodes = torch.tensor([0, 2, 4, 5, 8])
    assert [(r, (p.start, p.stop)) for r, p in gens.split(nodes)] == [(0, (0, 3)), (1, (3, 5))]
    assert gens.split(torch.tensor([6, 6, 7])) == [(1, slice(0, 3))]  # repeats: edges of one recipient
    with pytest.raises(ValueError, match="ascending"):
        gens.split(torch.tensor([5, 0]))


def test_unverified_components_and_engines_are_not_batched():
    base = RunConfig()
    assert batch_blocker(base) is None
    assert "engine.mode" in batch_blocker(base.replace(**{"engine.mode": "async"}))
    assert "churn" in batch_blocker(base.replace(**{"engine.churn": "up=50,down=5"}))
    assert "timing" in batch_blocker(base.replace(**{"engine.latency": "exponential:mean=0.01"}))
    assert "privacy" in batch_blocker(base.replace(**{"privacy.clip": 1.0}))
    assert "replica_safe" in batch_blocker(base.replace(**{"rule.name": "clipped-gossip"}))
    assert "replica_safe" in batch_blocker(base.replace(**{"attack.name": "mimic"}))
    assert "server" in batch_blocker(base.replace(**{"topology.name": "server"}))
    assert "dropout" in batch_blocker(base.replace(**{"data.task": "mnist-dropout-cnn"}))
    assert replica_safe(make_rule("nnm+trimmed-mean")) and not replica_safe(make_rule("bucketing+trimmed-mean"))
    assert replica_safe(registry.attacks.get("none").factory)


def test_simulate_seeds_refuses_configs_that_differ_in_more_than_seed():
    cfgs = [RunConfig().replace(seed=0), RunConfig().replace(seed=1, **{"train.lr": 0.1})]
    with pytest.raises(ValueError, match="differ only by seed; seed 1 differs"):
        simulate_seeds(cfgs)
    with pytest.raises(ValueError, match="cannot be batched: engine.mode = 'async'"):
        simulate_seeds([RunConfig().replace(seed=s, **{"engine.mode": "async"}) for s in (0, 1)])
    with pytest.raises(ValueError, match="one out per config"):
        simulate_seeds([RunConfig()], outs=[])


GRID = """
seeds = 3
[train]
rounds = 4
[topology]
nodes = 9
[byzantine]
count = 1
[grid]
"rule.name" = ["trimmed-mean", "clipped-gossip"]
"""


def test_sweep_batches_seeds_and_its_index_equals_an_unbatched_sweep(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    plan = plan_sweep(grid, tmp_path / "b")
    assert sorted(len(job) for job in plan.jobs) == [1, 1, 1, 3]  # clipped-gossip runs separately
    lines = "\n".join(plan.lines())
    assert "batched seeds: 3 runs as 1 batched simulation(s)" in lines
    assert "runs separately: 1 point(s): rule 'clipped-gossip' is not marked replica_safe" in lines
    assert run_sweep(grid, tmp_path / "b", workers=1) == {"completed": 6}
    assert run_sweep(grid, tmp_path / "s", workers=1, batch=False) == {"completed": 6}
    keep = ["id", "status", "rule.name", "seed", "accuracy", "loss", "consensus_distance", "node_acc_min"]
    batched, single = (read_index(tmp_path / x).sort_values("id")[keep].reset_index(drop=True) for x in "bs")
    assert batched.equals(single)
    for run in read_index(tmp_path / "b")["id"]:
        assert filecmp.cmp(tmp_path / "b" / "runs" / run / "metrics.csv", tmp_path / "s" / "runs" / run / "metrics.csv",
                           shallow=False)
    with sqlite3.connect(tmp_path / "b" / "index.sqlite") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 6


def test_cli_no_batch_and_toml_batch_false_and_bad_batch_value(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 0 and "batched seeds: 3 runs as 1 batched simulation(s)" in res.output, res.output
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run", "--no-batch"])
    assert res.exit_code == 0 and "batched seeds: off" in res.output, res.output
    grid.write_text("batch = false\n" + GRID)
    assert all(len(job) == 1 for job in plan_sweep(grid, tmp_path / "o").jobs)
    grid.write_text('batch = "yes"\n' + GRID)
    res = runner.invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run"])
    assert res.exit_code == 2 and res.output.strip().splitlines() == ["Error: batch = 'yes' is invalid; expected true or false"], res.output


def test_a_batch_that_raises_is_rerun_one_run_at_a_time(tmp_path, monkeypatch):
    from p2probust.sweep import executors

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("p2probust.batched.simulate_seeds", broken)
    cfgs = [RunConfig().replace(seed=s, **{"train.rounds": 2}).to_dict() for s in (0, 1)]
    outcomes = executors.run_batch(cfgs, [str(tmp_path / "a"), str(tmp_path / "b")])
    assert [o["status"] for o in outcomes] == ["completed", "completed"]
    assert (tmp_path / "a" / "metrics.csv").is_file() and (tmp_path / "b" / "metrics.csv").is_file()
