"""Tests of p2probust.topology.placement: strategies, validation and the placement report."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from p2probust import registry
from p2probust.topology import PlacementError, place_byzantine, placement_report, ring_graph, torus_graph

STRATEGIES = ["random", "degree", "betweenness"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("count", [0, 1, 5, 15])
def test_strategies_return_count_nodes(strategy, count):
    G = torus_graph(16)
    byz = place_byzantine(G, count, strategy, seed=0)
    assert byz.dtype == torch.bool and byz.shape == (16,) and int(byz.sum()) == count


def test_strategies_registered():
    for name in STRATEGIES + ["list"]:
        assert name in registry.placements


def test_random_is_seeded_and_reproducible():
    G = ring_graph(50)
    a = place_byzantine(G, 10, seed=7)
    assert torch.equal(a, place_byzantine(G, 10, seed=7))
    assert torch.equal(a, place_byzantine(G, 10, seed=np.random.default_rng(7)))
    assert not torch.equal(a, place_byzantine(G, 10, seed=8))


def test_random_is_roughly_uniform():
    G = ring_graph(10)
    hits = sum(place_byzantine(G, 3, seed=s).long() for s in range(600))
    assert hits.min() > 120 and hits.max() < 240  # expectation 180 per node


def test_degree_picks_hub_and_breaks_ties_by_lowest_id():
    G = nx.star_graph(7)
    assert torch.nonzero(place_byzantine(G, 1, "degree")).flatten().tolist() == [0]
    assert torch.nonzero(place_byzantine(ring_graph(8), 3, "degree")).flatten().tolist() == [0, 1, 2]


def test_betweenness_picks_bridge():
    G = nx.barbell_graph(4, 1)  # node 4 is the middle of the path
    assert torch.nonzero(place_byzantine(G, 1, "betweenness")).flatten().tolist() == [4]


def test_list_placement():
    G = ring_graph(8)
    byz = place_byzantine(G, 2, "list", nodes=[5, 1])
    assert torch.nonzero(byz).flatten().tolist() == [1, 5]
    assert torch.equal(byz, place_byzantine(G, None, "list", nodes=[1, 5]))


@pytest.mark.parametrize(
    "count, nodes, match",
    [
        (2, [1, 8], "byzantine node 8 is not a node id in \\[0, 7\\]"),
        (2, [1, -1], "byzantine node -1"),
        (2, [3, 3], "byzantine node 3 is listed more than once"),
        (3, [1, 2], "byzantine count 3 does not match the 2 nodes listed"),
        (1, ["a"], "byzantine node 'a'"),
        (2, None, "needs nodes="),
    ],
)
def test_list_validation_errors(count, nodes, match):
    with pytest.raises(PlacementError, match=match) as err:
        place_byzantine(ring_graph(8), count, "list", nodes=nodes)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("count", [-1, 16, 20, 2.5, True])
def test_count_out_of_range(count):
    with pytest.raises(PlacementError, match="must be between 0 and n-1 = 15"):
        place_byzantine(torus_graph(16), count)


def test_count_message_example():
    with pytest.raises(PlacementError, match="^byzantine count 20 must be between 0 and n-1 = 15$"):
        place_byzantine(torus_graph(16), 20)


def test_unknown_strategy_and_stray_nodes():
    with pytest.raises(PlacementError, match="unknown placement 'closest'"):
        place_byzantine(ring_graph(8), 1, "closest")
    with pytest.raises(PlacementError, match="only used by placement 'list'"):
        place_byzantine(ring_graph(8), 1, "random", nodes=[1])


def test_placement_report_counts_and_at_risk():
    G = nx.path_graph(5)  # 0 - 1 - 2 - 3 - 4
    byz = torch.tensor([False, True, False, False, False])
    rep = placement_report(G, byz)
    assert rep.byzantine == [1]
    assert rep.byzantine_neighbors == {0: 1, 2: 1, 3: 0, 4: 0}
    assert rep.at_risk == [0, 2]  # 0: 1 of 1, 2: 1 of 2 neighbours are Byzantine
    lines = rep.lines()
    assert "byzantine neighbours per honest node: 0: 2 nodes, 1: 2 nodes" in lines
    assert lines[-1].startswith("warning") and "0, 2" in lines[-1]


def test_placement_report_no_risk_has_no_warning():
    G = torus_graph(16)
    byz = place_byzantine(G, 1, "list", nodes=[0])
    rep = placement_report(G, byz)
    assert rep.at_risk == []
    assert sum(rep.byzantine_neighbors.values()) == 4
    assert not any(line.startswith("warning") for line in rep.lines())
    assert "byzantine neighbours per honest node: 0: 11 nodes, 1: 4 nodes" in rep.lines()


def test_placement_report_matches_brute_force():
    G = nx.gnp_random_graph(30, 0.2, seed=1)
    byz = place_byzantine(G, 8, seed=2)
    rep = placement_report(G, byz)
    for i, b in rep.byzantine_neighbors.items():
        nbrs = list(G.neighbors(i))
        assert b == sum(bool(byz[j]) for j in nbrs)
        assert (i in rep.at_risk) == (bool(nbrs) and 2 * b >= len(nbrs))
