"""End-to-end behaviour of simulate(): learning under attack, reproducibility, the server correspondence."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

import p2probust as pr
from p2probust.config import RunConfig

SMALL = {"train.rounds": 30, "eval_every": 10}


def test_default_run_learns_under_attack_and_mean_fails():
    """The README's headline: trimmed-mean gossip beats the default attack, the plain mean does not."""
    robust = pr.simulate()
    assert robust.summary["status"] == "completed"
    assert robust.final("accuracy") > 0.85
    assert robust.final("node_acc_min") > 0.85
    broken = pr.simulate(rule=pr.Mean())
    assert broken.final("node_acc_mean") < 0.5
    assert broken.final("node_acc_mean") < robust.final("node_acc_mean") - 0.3


def test_same_seed_same_metrics_bit_for_bit(tmp_path):
    cfg = RunConfig().replace(**SMALL, **{"attack.name": "gaussian"})
    pr.simulate(cfg, out=tmp_path / "a")
    pr.simulate(cfg, out=tmp_path / "b")
    a, b = (tmp_path / x / "metrics.csv" for x in "ab")
    strip = lambda p: [",".join(line.split(",")[:-1]) for line in p.read_text().splitlines()]  # noqa: E731
    assert strip(a) == strip(b)  # every column but wall-clock seconds
    other = pr.simulate(cfg.replace(seed=1))
    assert other.history[-1]["consensus_distance"] != pr.simulate(cfg).history[-1]["consensus_distance"]


def test_changing_the_attack_does_not_change_graph_placement_or_data():
    a = pr.simulate(RunConfig().replace(**{"train.rounds": 2, "attack.name": "gaussian"}))
    b = pr.simulate(RunConfig().replace(**{"train.rounds": 2, "attack.name": "sign-flip"}))
    assert nx.utils.graphs_equal(a.graph, b.graph)
    assert torch.equal(a.is_byzantine, b.is_byzantine)
    assert a.config["byzantine"]["nodes"] == b.config["byzantine"]["nodes"]


def test_run_folder_contents(tmp_path):
    res = pr.simulate(RunConfig().replace(**SMALL), out=tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.csv", "summary.json"} <= files
    import json

    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["version"] == pr.__version__
    assert "TrimmedMean" in cfg["rule"]["repr"] and cfg["rule"]["tolerance_used"].startswith("oracle")
    assert len(cfg["byzantine"]["nodes"]) == 2
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 31  # header, round 0, 30 rounds
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["round"] == 30 and summary["status"] == "completed"
    assert res.summary["simpy_events"] <= 30 + 3  # one event per round, not per node


def test_interrupted_run_keeps_its_rows(tmp_path):
    """A run that dies mid-way has every finished round on disk and says so in summary.json."""

    class Exploding(pr.SignFlip):
        def craft(self, ctx):
            if ctx.round == 5:
                raise KeyboardInterrupt
            return super().craft(ctx)

    with pytest.raises(KeyboardInterrupt):
        pr.simulate(RunConfig().replace(**SMALL), attack=Exploding(), out=tmp_path / "r")
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 6  # header, rounds 0..5
    import json

    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "interrupted"


def test_plain_gossip_without_attack_reaches_consensus_on_heterogeneous_data():
    """No attack, extreme label skew: local steps pull nodes apart, MH gossip keeps them close;
    with a decaying step size the disagreement shrinks over the run."""
    cfg = RunConfig().replace(**{"byzantine.count": 0, "train.rounds": 60, "rule.name": "mh-gossip",
                                 "data.partition": "extreme", "train.lr_schedule": "inv-sqrt"})
    res = pr.simulate(cfg)
    cds = [v for _, v in res.metric("consensus_distance")]
    assert cds[0] == 0.0  # one common initial model
    assert max(cds[50:]) < 0.5 * max(cds[1:10])
    assert res.final("accuracy") > 0.8


def test_mh_gossip_preserves_average_of_distinct_models():
    """Directly on the kernels: random models, MH weights, 50 steps → same mean, consensus shrinks."""
    from p2probust.metrics import consensus_distance
    from p2probust.topology import NeighbourTable

    G = nx.random_regular_graph(4, 20, seed=1)
    table = NeighbourTable.from_graph(G)
    params = torch.randn(20, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    rule = pr.Gossip(alpha=1.0, weighted=True)
    honest = torch.ones(20, dtype=torch.bool)
    mean0, cd0 = params.mean(0), consensus_distance(params, honest)
    for _ in range(50):
        params = rule.batched(params, params[table.idx], table.mask, table.weights.double(), torch.zeros(20, dtype=torch.long))
    assert torch.allclose(params.mean(0), mean0, atol=1e-12)
    assert consensus_distance(params, honest) < 1e-3 * cd0


def test_complete_graph_alpha_one_is_server_robust_dsgd():
    """With α = 1 on the complete graph every honest node computes the server's aggregate of all n
    models, so honest nodes stay identical (consensus distance 0) and follow server-side robust SGD."""
    cfg = RunConfig().replace(**{
        "topology.name": "complete", "topology.nodes": 10, "byzantine.count": 2, "rule.name": "median",
        "rule.alpha": 1.0, "train.rounds": 15, "attack.params": {"reference": "global"},
    })
    res = pr.simulate(cfg)
    honest = ~res.is_byzantine
    assert max(v for _, v in res.metric("consensus_distance")) < 1e-12
    assert res.final("accuracy") > 0.6
    # identical honest rows: every honest node aggregated the same n models, i.e. computed the one
    # aggregate a parameter server would have computed from the same messages
    h = res.params[honest]
    assert torch.equal(h, h[:1].expand_as(h))


def test_least_squares_reports_distance_to_optimum():
    cfg = RunConfig().replace(**{
        "data.task": "least-squares", "rule.name": "trimmed-mean", "train.rounds": 60, "train.lr": 0.1,
        "attack.name": "gaussian",
    })
    res = pr.simulate(cfg)
    dist = [v for _, v in res.metric("dist_to_opt")]
    gap = [v for _, v in res.metric("loss_gap")]
    assert dist[-1] < 0.05 * dist[0]
    assert gap[-1] < 0.05 * gap[0] and min(gap) > -1e-6  # L(θ̄) ≥ L* up to rounding
    assert "accuracy" not in res.history[-1]


def test_label_flip_byzantine_nodes_train_on_flipped_labels():
    cfg = RunConfig().replace(**{"attack.name": "label-flip", "train.rounds": 20})
    res = pr.simulate(cfg)
    byz = res.params[res.is_byzantine]
    init = pr.simulate(cfg.replace(**{"train.rounds": 1})).params[res.is_byzantine]
    assert not torch.equal(byz, init)  # they follow the protocol and update
    assert res.final("accuracy") > 0.7


def test_python_api_accepts_objects():
    G = nx.cycle_graph(["a", "b", "c", "d", "e", "f", "g", "h"])
    res = pr.simulate(RunConfig().replace(**{"train.rounds": 3, "byzantine.count": 1}), graph=G,
                      rule=pr.chain(pr.CoordinateWiseMedian()), attack=pr.GaussianNoise(sigma=2.0))
    assert res.params.shape[0] == 8
    assert sorted(res.graph.nodes) == list(range(8))
    assert "CoordinateWiseMedian" in res.config["rule"]["repr"]


def test_declared_tolerance_too_large_is_an_error():
    cfg = RunConfig().replace(**{"rule.tolerance": 3, "train.rounds": 1})  # torus: 4 neighbours + self = 5
    with pytest.raises(ValueError, match="tolerance f = 3"):
        pr.simulate(cfg)


def test_momentum_and_local_steps_and_schedules_run():
    cfg = RunConfig().replace(**{"train.rounds": 10, "train.momentum": 0.9, "train.local_steps": 2,
                                 "train.lr_schedule": "inv-sqrt"})
    res = pr.simulate(cfg)
    lrs = [r["lr"] for r in res.history[1:]]
    assert lrs[0] == pytest.approx(0.5) and lrs[3] == pytest.approx(0.25)
    assert res.history[-1]["time"] == pytest.approx(10 * (2 * 0.01 + 0.005))


def test_large_run_evaluation_uses_a_seeded_sample_of_nodes_and_test_points():
    """node_acc_* on eval_nodes honest nodes and eval_points test points, checked by hand (argmax of
    each sampled node's logits on the sampled points)."""
    from p2probust.metrics import evaluation_sample

    cfg = pr.RunConfig().replace(**{"eval_nodes": 5, "eval_points": 50, "train.rounds": 3, "eval_every": 3})
    res = pr.simulate(cfg)
    from p2probust import registry

    ds = registry.tasks.create("digits").dataset
    honest = ~res.is_byzantine
    points, rows = evaluation_sample(cfg, honest, ds.x_test.shape[0])
    assert points.numel() == 50 and int(rows.sum()) == 5 and not bool((rows & res.is_byzantine).any())
    again = evaluation_sample(cfg, honest, ds.x_test.shape[0])
    assert torch.equal(points, again[0]) and torch.equal(rows, again[1])  # seeded
    x, y = ds.x_test[points], ds.y_test[points]
    theta = res.params[rows]  # LogisticRegression(64, 10): weight [10, 64] then bias [10]
    logits = x @ theta[:, :640].view(-1, 10, 64).transpose(1, 2) + theta[:, 640:].unsqueeze(1)  # [nodes, points, 10]
    acc = (logits.argmax(-1) == y).double().mean(1)
    final = res.summary["final"]
    assert final["node_acc_mean"] == pytest.approx(float(acc.mean())) and final["node_acc_min"] == pytest.approx(float(acc.min()))
    full = pr.simulate(cfg.replace(eval_nodes=0, eval_points=0))
    assert full.summary["final"]["accuracy"] == final["accuracy"]  # the averaged model always uses every test point


@pytest.mark.parametrize("task", ["digits", "digits-mlp"])
def test_local_step_in_blocks_of_nodes_gives_the_same_bits(task, monkeypatch):
    """Large runs compute the local step over blocks of nodes (bounded batch memory); the batches are
    drawn before the blocks, so the run is the same bit for bit whatever the block size."""
    import p2probust.local as local

    cfg = pr.RunConfig().replace(**{"data.task": task, "train.rounds": 3, "train.momentum": 0.9})
    whole = pr.simulate(cfg)
    monkeypatch.setattr(local, "BATCH_BYTES", 3 * 32 * 64 * 4)  # blocks of 3 nodes
    blocks = pr.simulate(cfg)
    assert torch.equal(whole.params, blocks.params) and whole.history == blocks.history


def test_server_topology_runs_from_its_config():
    """Regression: ``simulate`` checked the server's rule through an undefined name (NameError)."""
    res = pr.simulate(pr.RunConfig(), topology="server", rounds=2)
    assert res.summary["status"] == "completed" and res.summary["rounds_done"] == 2
