"""The IOS paper's ER(12, 0.7) one-class setting (experiments/ios_er12.toml) as the authors' code builds it."""

from __future__ import annotations

import random
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from p2probust.config import load_config
from p2probust.data.setup import build_partition, build_task
from p2probust.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def test_edge_list_is_the_authors_seed_300_graph():
    rng = random.Random(300)  # github.com/Zhaoxian-Wu/IOS, ByrdLab/graph.py: ErdosRenyi(12, 2, 0.7, seed=300)
    while True:
        g = nx.fast_gnp_random_graph(12, 0.7, seed=rng)
        if nx.is_connected(g):
            break
    byzantine = rng.sample(list(g.nodes()), 2)
    shipped = load_topology(ROOT / "topologies" / "ios_er12.edgelist")
    assert sorted(map(sorted, shipped.edges())) == sorted(map(sorted, g.edges()))
    cfg = load_config(ROOT / "experiments" / "ios_er12.toml")
    assert sorted(byzantine) == list(cfg.byzantine.nodes) == [6, 7]


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_experiment_data_one_class_per_honest_node(monkeypatch):
    import torch

    monkeypatch.chdir(ROOT)  # the TOML's paths are relative to the repository root
    cfg = load_config(ROOT / "experiments" / "ios_er12.toml")
    task = build_task(cfg)
    assert (task.dataset.x_train.shape[0], task.dataset.x_test.shape[0]) == (8000, 2000)
    assert float(task.dataset.x_train.min()) == -1.0 and float(task.dataset.x_train.max()) == 1.0
    honest = torch.ones(12, dtype=torch.bool)
    honest[[6, 7]] = False
    parts, table, lengths = build_partition(cfg, task, honest)
    assert lengths[6] == lengths[7] == 0
    y = task.dataset.y_train.numpy()
    classes = [np.unique(y[p]).tolist() for p in parts]
    assert classes == [[c] for c in range(10)]  # honest nodes 0..5, 8..11 hold classes 0..9 in order
    assert lengths[8] == (y == 6).sum() and lengths[11] == (y == 9).sum()
