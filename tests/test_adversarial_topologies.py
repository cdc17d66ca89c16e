"""Adversarial graphs (dumbbell, two worlds, ring of cliques) and the attack-oriented placements."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from p2probust.topology import NeighbourTable, PlacementError, TopologyError, build_topology, place_byzantine
from p2probust.topology.adversarial import (
    attach_byzantine,
    ring_of_cliques_graph,
    two_cliques_graph,
    two_worlds_graph,
)
from p2probust.topology.placement import cut_placement, eigenvector_placement


def test_two_cliques_is_a_dumbbell():
    G = build_topology("two-cliques", 10, seed=0)
    assert G.number_of_nodes() == 10 and nx.is_connected(G)
    assert G.number_of_edges() == 2 * 10 + 1  # two K5 and the bridge
    assert nx.minimum_edge_cut(G) == {(4, 5)}
    odd = two_cliques_graph(9)
    assert sorted(d for _, d in odd.degree())[:2] == [3, 3] and odd.number_of_edges() == 6 + 10 + 1


@pytest.mark.parametrize("h", [1, 2, 5, 12, 25])
def test_two_worlds_has_h_cross_edges(h):
    G = two_worlds_graph(10, h=h)
    cross = [(u, v) for u, v in G.edges() if (u < 5) != (v < 5)]
    assert len(cross) == h and G.number_of_edges() == 20 + h
    assert nx.utils.graphs_equal(two_worlds_graph(10, h=1), two_cliques_graph(10))


def test_two_worlds_rejects_bad_h():
    with pytest.raises(TopologyError, match="h = 26"):
        two_worlds_graph(10, h=26)
    with pytest.raises(TopologyError, match="h = 0"):
        two_worlds_graph(10, h=0)


def test_ring_of_cliques():
    G = ring_of_cliques_graph(cliques=4, size=3)
    assert G.number_of_nodes() == 12 and G.number_of_edges() == 4 * 3 + 4
    assert sorted(G.nodes()) == list(range(12))
    assert nx.utils.graphs_equal(build_topology("ring-of-cliques", 12), ring_of_cliques_graph(cliques=3, size=4))
    with pytest.raises(TopologyError, match="cliques × size"):
        ring_of_cliques_graph(10)


def test_attach_byzantine_gives_every_honest_node_b_byzantine_neighbours():
    G = nx.cycle_graph(5)
    H, byz = attach_byzantine(G, 3)
    assert H.number_of_nodes() == 20 and byz.sum() == 15 and not byz[:5].any()
    counts = NeighbourTable.from_graph(H).byzantine_counts(byz)
    assert counts[:5].tolist() == [3] * 5
    assert all(H.degree(v) == 1 for v in range(5, 20))
    assert nx.utils.graphs_equal(H.subgraph(range(5)), G)
    assert attach_byzantine(G, 0)[1].sum() == 0
    with pytest.raises(TopologyError, match="attach b"):
        attach_byzantine(G, -1)


def test_attach_is_not_an_ordinary_placement():
    with pytest.raises(PlacementError, match="attach_byzantine"):
        place_byzantine(nx.cycle_graph(5), 1, "attach")


def test_eigenvector_placement_picks_the_hub():
    G = nx.star_graph(6)  # hub 0
    G.add_edge(1, 2)
    byz = place_byzantine(G, 2, "eigenvector")
    assert byz.dtype == torch.bool and byz.tolist()[:3] == [True, True, False]  # hub, then 1 (tie with 2: lowest id)
    assert torch.equal(eigenvector_placement(G, 2), byz)


def test_cut_placement_sits_on_the_bridge():
    byz = cut_placement(two_cliques_graph(10), 2)
    assert torch.nonzero(byz).flatten().tolist() == [4, 5]
    ring = ring_of_cliques_graph(cliques=2, size=5)
    assert place_byzantine(ring, 2, "cut").sum() == 2


def test_registered_names():
    from p2probust import registry

    assert {"two-cliques", "two-worlds", "ring-of-cliques"} <= set(registry.topologies.names())
    assert {"eigenvector", "cut", "attach"} <= set(registry.placements.names())
