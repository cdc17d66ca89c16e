"""Per-node recording (nodes.npz, graph.json): values agree with metrics.csv, the sample is bounded."""

from __future__ import annotations

import csv
import json

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner

import p2probust as pr
from p2probust.cli import main
from p2probust.config import ConfigError, RunConfig, from_dict
from p2probust.node_recorder import load_nodes, parse_record_spec, sample_nodes


def _metrics(path):
    with open(path / "metrics.csv", newline="") as fh:
        return {int(r["round"]): r for r in csv.DictReader(fh)}


def test_recorded_distances_average_to_the_consensus_distance(tmp_path):
    cfg = RunConfig().replace(**{"train.rounds": 12, "eval_every": 10, "record.every": 5})
    res = pr.simulate(cfg, out=tmp_path)
    rec = load_nodes(tmp_path)
    assert rec["round"].tolist() == [0, 5, 10, 12]  # multiples of 5 and the last round
    assert rec["nodes"].tolist() == list(range(16)) and int(rec["n"]) == 16
    assert rec["distance"].shape == rec["accuracy"].shape == rec["online"].shape == (4, 16)
    assert rec["byzantine"].tolist() == res.is_byzantine.tolist()
    rows, honest = _metrics(tmp_path), ~rec["byzantine"]
    for t, rnd in enumerate(rec["round"]):
        cd = float(rows[rnd]["consensus_distance"])
        assert rec["distance"][t, honest].mean() == pytest.approx(cd, rel=1e-5, abs=1e-9)
        if rows[rnd]["node_acc_mean"]:  # evaluation rounds: per-node accuracies as in metrics.csv
            acc = rec["accuracy"][t, honest]
            assert acc.mean() == pytest.approx(float(rows[rnd]["node_acc_mean"]), rel=1e-6)
            assert acc.min() == pytest.approx(float(rows[rnd]["node_acc_min"]), rel=1e-6)
            assert np.isfinite(rec["loss"][t]).all()
        else:
            assert np.isnan(rec["accuracy"][t]).all() and np.isnan(rec["loss"][t]).all()
    assert rec["online"].all()
    graph = json.loads((tmp_path / "graph.json").read_text())
    assert graph["grid"] == [4, 4] and graph["byzantine"] == np.flatnonzero(rec["byzantine"]).tolist()
    assert nx.utils.graphs_equal(nx.Graph(graph["edges"]), nx.Graph(res.graph.edges()))


def test_per_node_loss_is_the_node_models_test_loss(tmp_path):
    cfg = RunConfig().replace(**{"train.rounds": 3, "eval_every": 3, "record.every": 3, "data.task": "least-squares"})
    res = pr.simulate(cfg, out=tmp_path)
    rec = load_nodes(tmp_path)
    from p2probust import registry

    task = registry.tasks.create("least-squares")
    x, y = task.dataset.x_test, task.dataset.y_test
    theta = res.params[3]  # linear regression without bias: weight [dim]
    expected = 0.5 * ((x @ theta - y) ** 2).mean()
    assert rec["loss"][-1, 3] == pytest.approx(float(expected), rel=1e-5)
    assert np.isnan(rec["accuracy"]).all()  # regression: no accuracy


def test_churn_marks_offline_nodes(tmp_path):
    cfg = RunConfig().replace(**{"byzantine.count": 0, "rule.name": "mh-gossip", "train.rounds": 20, "eval_every": 100,
                                 "record.every": 1, "engine.churn": {"outages": [[5, 0.04, 0.2]]}})
    pr.simulate(cfg, out=tmp_path)
    rec = load_nodes(tmp_path)
    off = ~rec["online"]
    assert off[:, 5].any() and not off[:, np.arange(16) != 5].any()
    rows = _metrics(tmp_path)
    for t in np.flatnonzero(off[:, 5]):  # the mean is over online honest nodes, as in metrics.csv
        cd = float(rows[int(rec["round"][t])]["consensus_distance"])
        assert rec["distance"][t, rec["online"][t]].mean() == pytest.approx(cd, rel=1e-5)


def test_sample_beyond_max_nodes_is_seeded_and_keeps_byzantine_nodes():
    byz = np.zeros(50, dtype=bool)
    byz[[3, 40]] = True
    a, b = sample_nodes(byz, 10, seed=1), sample_nodes(byz, 10, seed=1)
    assert a.tolist() == b.tolist() and len(a) == 10 and {3, 40} <= set(a.tolist())
    assert (np.diff(a) > 0).all()
    assert sample_nodes(byz, 10, seed=2).tolist() != a.tolist()
    assert sample_nodes(byz, 50, seed=1).tolist() == list(range(50))


def test_bounded_recording_in_a_run(tmp_path):
    cfg = RunConfig().replace(**{"train.rounds": 4, "record.every": 2, "record.max_nodes": 5, "byzantine.count": 2})
    res = pr.simulate(cfg, out=tmp_path)
    rec = load_nodes(tmp_path)
    assert rec["distance"].shape == (3, 5)
    assert set(np.flatnonzero(res.is_byzantine.numpy())) <= set(rec["nodes"].tolist())


def test_record_config_from_toml_table_and_errors():
    cfg = from_dict({"record": {"every": 5, "max_nodes": 200}})
    assert (cfg.record.every, cfg.record.max_nodes) == (5, 200)
    assert RunConfig().record.every == 0  # off by default
    with pytest.raises(ConfigError, match="record.every = -1"):
        from_dict({"record": {"every": -1}})
    with pytest.raises(ConfigError, match="unknown key 'often'"):
        from_dict({"record": {"often": 1}})
    assert parse_record_spec("every=5,max_nodes=20") == {"record.every": 5, "record.max_nodes": 20}
    assert parse_record_spec("7") == {"record.every": 7}
    with pytest.raises(ValueError, match="'often' is unknown"):
        parse_record_spec("often=3")


def test_cli_record_nodes_flag(tmp_path):
    runner = CliRunner()
    out = tmp_path / "r"
    res = runner.invoke(main, ["run", "--rounds", "5", "--record-nodes", "every=5", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert load_nodes(out)["round"].tolist() == [0, 5]
    bad = runner.invoke(main, ["run", "--rounds", "5", "--record-nodes", "every=x", "--out", str(tmp_path / "b"), "-q"])
    assert bad.exit_code == 2 and "every='x' must be an integer" in bad.output
    missing = runner.invoke(main, ["animate", str(tmp_path / "b")])
    assert missing.exit_code == 2


def test_progress_bar_shows_latest_accuracy_and_consensus_distance(monkeypatch):
    import p2probust.simulation as sim

    shown = []

    class Bar:
        def __init__(self, *args, **kwargs):
            pass

        def set_postfix(self, values, refresh=True):
            shown.append(dict(values))

        def update(self, k):
            pass

        def close(self):
            pass

    monkeypatch.setattr(sim, "tqdm", Bar)
    res = pr.simulate(RunConfig().replace(**{"train.rounds": 6, "eval_every": 5}), progress=True)
    assert len(shown) == 7  # round 0 and every round
    rows = res.history
    assert shown[-1] == {"acc": f"{rows[-1]['accuracy']:.4g}", "cd": f"{rows[-1]['consensus_distance']:.4g}"}
    assert shown[4]["acc"] == f"{rows[0]['accuracy']:.4g}"  # between evaluations: the latest accuracy stays
    assert shown[4]["cd"] == f"{rows[4]['consensus_distance']:.4g}"
