"""Attacks in real runs: what breaks plain gossip, what trimmed-mean gossip withstands."""

from __future__ import annotations

import logging

import networkx as nx
import pytest
import torch

import p2probust as pr
from p2probust.attacks import Dissensus, GaussianNoise, Honest, SignFlip, Silent, SpectralHeterogeneity, Stale


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
    """Consensus distance per round without attack: the Byzantine-labelled node follows the protocol."""
    ring = nx.cycle_graph(12)
    return {rule: consensus(Honest(), rule, graph=ring, **RING) for rule in ("mh-gossip", "trimmed-mean")}


def ratios(attacked, quiet):
    """Attacked / no-attack consensus distance at every round after the first (round 0 is 0 in both)."""
    assert attacked[0] == quiet[0] == 0.0  # one shared initial model
    return [a / q for a, q in zip(attacked[1:], quiet[1:])]


@pytest.mark.parametrize("attack", [SignFlip(), GaussianNoise()], ids=repr)
def test_sign_flip_and_gaussian_break_plain_gossip_on_a_ring_but_not_trimmed_mean(attack, ring_baseline):
    ring = nx.cycle_graph(12)
    plain = consensus(attack, "mh-gossip", graph=ring, **RING)
    assert min(ratios(plain, ring_baseline["mh-gossip"])) > 30  # broken at every round (50× to 2000× here)
    robust = consensus(attack, "trimmed-mean", graph=ring, **RING)
    assert max(ratios(robust, ring_baseline["trimmed-mean"])) < 10  # within 1.3× to 5× of no attack here
    assert robust[-1] < plain[-1] / 10


CLIQUES = {"topology.name": "two-cliques", "topology.nodes": 10, "byzantine.placement": "attach", "byzantine.count": 1}


def test_dissensus_drives_two_cliques_apart_under_plain_gossip_and_trimmed_mean_withstands_it():
    """Every honest node of a dumbbell gets one attached Byzantine neighbour (the papers' setting)."""
    r = ratios(consensus(Dissensus(), "mh-gossip", **CLIQUES), consensus(Honest(), "mh-gossip", **CLIQUES))
    assert min(r) > 10 and r[-1] > 1e5  # 15× after one round, 10⁶× after 20 here
    assert all(b > a for a, b in zip(r, r[1:]))  # the gap widens every round
    r = ratios(consensus(Dissensus(), "trimmed-mean", **CLIQUES), consensus(Honest(), "trimmed-mean", **CLIQUES))
    assert 0.5 < min(r) and max(r) < 2  # 0.75× to 1.6× of no attack here


def test_spectral_attack_separates_the_cliques_under_trimmed_mean():
    quiet = consensus(Honest(), "trimmed-mean", **CLIQUES)
    r = ratios(consensus(SpectralHeterogeneity(), "trimmed-mean", **CLIQUES), quiet)
    assert min(r) > 1.5 and r[-1] > 5  # 2× after one round, 7× after 20 here


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


# --- the no-attack baselines: honest, silent, stale -----------------------------------------------


def run(attack, **cfg):
    base = {"data.task": "least-squares", "train.rounds": 5, "eval_every": 5, "rule.name": "mh-gossip", "train.lr": 0.05}
    return pr.simulate(pr.RunConfig().replace(**{**base, **cfg}), graph=nx.cycle_graph(12), attack=attack)


def test_honest_byzantine_nodes_are_indistinguishable_from_honest_nodes():
    """With a rule that ignores f, a run whose Byzantine-labelled node follows the protocol is the
    run without Byzantine nodes, bit for bit, every node included."""
    attacked = run(Honest(), **RING)
    clean = run(Honest(), **{"byzantine.count": 0})
    assert torch.equal(attacked.params, clean.params)
    assert pr.registry.attacks.get("none").factory is Honest


def test_stale_byzantine_nodes_never_move_and_silent_ones_send_nothing():
    stale_a, stale_b = run(Stale(), **RING), run(Stale(), **RING, **{"train.lr": 0.1})
    assert torch.equal(stale_a.params[0], stale_b.params[0])  # the initial model, whatever the lr
    assert not torch.equal(stale_a.params[1], stale_b.params[1])
    assert not torch.equal(run(Honest(), **RING).params[0], stale_a.params[0])  # an honest-labelled one trains
    # 12-node ring: 24 messages per round, 2 of them from the Byzantine node
    assert [r["messages"] for r in run(Silent(), **RING).history[1:]] == [22] * 5
    assert [r["messages"] for r in run(Stale(), **RING).history[1:]] == [24] * 5


@pytest.mark.parametrize("attack, most", [(Silent(), 2), (Stale(), 3)], ids=repr)
def test_silent_hub_is_absent_from_every_inbox_in_async_mode(attack, most):
    """Wheel graph: Byzantine hub 0 next to every honest node of the rim (degree 3)."""
    from p2probust.testing.attacks import _InboxRecorder, _Pausing

    rule = _InboxRecorder(pr.make_rule("trimmed-mean", alpha=0.5))
    res = pr.simulate(pr.RunConfig().replace(**{
        "data.task": "least-squares", "train.rounds": 3, "eval_every": 3, "engine.mode": "async", **RING,
    }), graph=nx.wheel_graph(12), rule=rule, attack=_Pausing(attack, rule))
    assert res.summary["status"] == "completed" and rule.calls
    assert max(int(present.sum(1).max()) for _, _, present in rule.calls) == most
