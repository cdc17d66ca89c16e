"""Attacks in real runs: what breaks plain gossip, what trimmed-mean gossip withstands."""

from __future__ import annotations

import logging

import networkx as nx
import pytest
import torch

import p2probust as pr
from p2probust.attacks import Dissensus, GaussianNoise, NoAttack, SignFlip, SpectralHeterogeneity


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)  # placement reports warn about exposed nodes on the ring
    yield
    logging.disable(logging.NOTSET)


def consensus(attack, rule, *, graph=None, rounds=20, **cfg):
    base = {"data.task": "least-squares", "train.rounds": rounds, "eval_every": rounds, "rule.name": rule, "train.lr": 0.05}
    res = pr.simulate(pr.RunConfig().replace(**base, **cfg), graph=graph, attack=attack)
    return [v for _, v in res.metric("consensus_distance")]


RING = {"byzantine.count": 1, "byzantine.placement": "list", "byzantine.nodes": [0]}


@pytest.fixture(scope="module")
def ring_baseline():
    ring = nx.cycle_graph(12)
    return {rule: consensus(NoAttack(), rule, graph=ring, **RING)[-1] for rule in ("mh-gossip", "trimmed-mean")}


@pytest.mark.parametrize("attack", [SignFlip(), GaussianNoise()], ids=repr)
def test_sign_flip_and_gaussian_break_plain_gossip_on_a_ring_but_not_trimmed_mean(attack, ring_baseline):
    ring = nx.cycle_graph(12)
    plain = consensus(attack, "mh-gossip", graph=ring, **RING)
    assert plain[-1] > 3 * ring_baseline["mh-gossip"]  # consensus broken
    assert plain[-1] > 100 * plain[0]  # the consensus distance grew from agreement
    robust = consensus(attack, "trimmed-mean", graph=ring, **RING)
    assert robust[-1] < 2 * ring_baseline["trimmed-mean"]
    assert robust[-1] < plain[-1] / 10


@pytest.mark.parametrize("rule, factor", [("mh-gossip", 100.0), ("trimmed-mean", 1.3)])
def test_dissensus_drives_two_cliques_apart(rule, factor):
    """Every honest node of a dumbbell gets one attached Byzantine neighbour (the papers' setting)."""
    cfg = {"topology.name": "two-cliques", "topology.nodes": 10, "byzantine.placement": "attach", "byzantine.count": 1}
    quiet = consensus(NoAttack(), rule, **cfg)[-1]
    attacked = consensus(Dissensus(), rule, **cfg)
    assert attacked[-1] > factor * quiet
    assert attacked[-1] > attacked[0]


def test_spectral_attack_separates_the_cliques_under_trimmed_mean():
    cfg = {"topology.name": "two-cliques", "topology.nodes": 10, "byzantine.placement": "attach", "byzantine.count": 1}
    quiet = consensus(NoAttack(), "trimmed-mean", **cfg)[-1]
    assert consensus(SpectralHeterogeneity(), "trimmed-mean", **cfg)[-1] > 3 * quiet


def test_attach_placement_in_simulate_adds_byzantine_vertices():
    res = pr.simulate(pr.RunConfig().replace(**{
        "data.task": "least-squares", "train.rounds": 2, "topology.name": "ring", "topology.nodes": 6,
        "byzantine.placement": "attach", "byzantine.count": 2,
    }))
    assert res.graph.number_of_nodes() == 18 and int(res.is_byzantine.sum()) == 12
    assert res.config["byzantine"]["neighbors_per_honest_node"] == {i: 2 for i in range(6)}
    assert res.summary["status"] == "completed"
    assert torch.isfinite(res.params[~res.is_byzantine]).all()


def test_attach_count_is_per_honest_node_and_may_exceed_the_graph_size():
    res = pr.simulate(pr.RunConfig().replace(**{
        "data.task": "least-squares", "train.rounds": 1, "topology.name": "ring", "topology.nodes": 3,
        "byzantine.placement": "attach", "byzantine.count": 4, "rule.name": "mh-gossip",
    }))
    assert res.graph.number_of_nodes() == 15 and int(res.is_byzantine.sum()) == 12
