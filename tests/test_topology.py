"""Tests of p2probust.topology: builders, custom files, validation, neighbour table, spectra."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from p2probust import registry
from p2probust.topology import (
    NeighbourTable,
    TopologyError,
    algebraic_connectivity,
    build_topology,
    complete_graph,
    erdos_renyi_graph,
    is_topology_path,
    laplacian_max_eigenvalue,
    load_topology,
    random_regular_graph,
    ring_graph,
    small_world_graph,
    spectral_gap,
    torus_graph,
    validate_graph,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "topologies"
BUILTIN = ["ring", "torus", "random-regular", "erdos-renyi", "small-world", "complete"]


def labelled_0_to_n(G: nx.Graph, n: int) -> bool:
    return sorted(G.nodes()) == list(range(n))


# --- builders ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("n", [16, 36])
def test_builtin_builders_connected_and_labelled(name, n):
    G = build_topology(name, n, seed=3, degree=4, p=0.4, k=4, beta=0.2)
    assert isinstance(G, nx.Graph) and not G.is_directed()
    assert labelled_0_to_n(G, n)
    assert nx.is_connected(G)
    assert nx.number_of_selfloops(G) == 0
    validate_graph(G)


@pytest.mark.parametrize(
    "builder, n, degree",
    [(ring_graph, 10, 2), (torus_graph, 16, 4), (torus_graph, 64, 4), (torus_graph, 24, 4), (complete_graph, 7, 6)],
)
def test_deterministic_builders_degrees(builder, n, degree):
    G = builder(n)
    assert labelled_0_to_n(G, n)
    assert {d for _, d in G.degree()} == {degree}


@pytest.mark.parametrize("degree", [3, 4, 6])
def test_random_regular_degrees_and_seed(degree):
    G = random_regular_graph(20, degree, seed=5)
    assert {d for _, d in G.degree()} == {degree} and nx.is_connected(G)
    assert nx.utils.graphs_equal(G, random_regular_graph(20, degree, seed=5))
    H = random_regular_graph(20, degree, seed=np.random.default_rng(5))
    assert {d for _, d in H.degree()} == {degree} and labelled_0_to_n(H, 20)


def test_small_world_edge_count():
    G = small_world_graph(30, k=6, beta=0.3, seed=1)
    assert G.number_of_edges() == 30 * 3 and nx.is_connected(G)


def test_torus_shape_and_rows():
    G = torus_graph(16)
    assert nx.is_isomorphic(G, nx.grid_2d_graph(4, 4, periodic=True))
    G = torus_graph(24, rows=3)
    assert nx.is_isomorphic(G, nx.grid_2d_graph(3, 8, periodic=True))
    with pytest.raises(TopologyError, match="rows = 5"):
        torus_graph(24, rows=5)


def test_torus_error_names_nearest_sizes():
    with pytest.raises(TopologyError) as err:
        torus_graph(17)
    msg = str(err.value)
    assert "17" in msg and "nearest valid sizes: 16, 18" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: ring_graph(2), ["n >= 3", "n = 2"]),
        (lambda: random_regular_graph(7, 3), ["even", "7", "3"]),
        (lambda: random_regular_graph(5, 5), ["degree", "5"]),
        (lambda: erdos_renyi_graph(10, 1.5), ["p", "1.5"]),
        (lambda: small_world_graph(10, k=12), ["k", "12"]),
        (lambda: complete_graph(1), ["n = 1"]),
    ],
)
def test_builder_errors_are_one_line(call, words):
    with pytest.raises(TopologyError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg


def test_erdos_renyi_resampling_limit():
    with pytest.raises(TopologyError) as err:
        erdos_renyi_graph(50, 0.01, seed=0, max_tries=5)
    msg = str(err.value)
    for word in ["n = 50", "p = 0.01", "max_tries = 5", "ln(n)/n"]:
        assert word in msg


def test_seed_reproducible_and_generator_accepted():
    a = erdos_renyi_graph(30, 0.3, seed=11)
    b = erdos_renyi_graph(30, 0.3, seed=11)
    assert nx.utils.graphs_equal(a, b)
    c = erdos_renyi_graph(30, 0.3, seed=np.random.default_rng(11))
    assert labelled_0_to_n(c, 30) and nx.is_connected(c)


def test_builders_registered():
    for name in BUILTIN:
        assert name in registry.topologies
        assert registry.topologies.get(name).description


# --- custom topologies ------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("ring", False), ("random-regular", False), ("graph.json", True), ("x.py", True),
    ("dir/graph", True), ("edges.CSV", True), ("g.graphml", True), ("g.edgelist", True),
])
def test_is_topology_path(value, expected):
    assert is_topology_path(value) is expected


@pytest.mark.parametrize("name", ["two_cliques.py", "barbell.py"])
@pytest.mark.parametrize("n", [8, 13])
def test_example_python_topologies(name, n):
    G = load_topology(EXAMPLES / name, n, seed=0)
    assert labelled_0_to_n(G, n) and nx.is_connected(G)
    validate_graph(G)
    assert nx.utils.graphs_equal(G, build_topology(str(EXAMPLES / name), n, seed=0, degree=4, p=0.1))


def test_two_cliques_has_one_bridge():
    G = load_topology(EXAMPLES / "two_cliques.py", 10)
    assert list(nx.bridges(G)) == [(4, 5)]


def test_example_json_topology():
    G = load_topology(EXAMPLES / "ring_of_cliques.json")
    assert labelled_0_to_n(G, 16) and nx.is_connected(G)
    assert nx.is_isomorphic(G, nx.ring_of_cliques(4, 4))
    assert load_topology(EXAMPLES / "ring_of_cliques.json", 16).number_of_nodes() == 16
    with pytest.raises(TopologyError, match="16 nodes but n = 20"):
        load_topology(EXAMPLES / "ring_of_cliques.json", 20)


def test_python_topology_needs_n():
    with pytest.raises(TopologyError, match="give the number of nodes n"):
        load_topology(EXAMPLES / "two_cliques.py")


@pytest.mark.parametrize("suffix, sep", [(".txt", " "), (".edgelist", "\t"), (".edges", " "), (".csv", ",")])
def test_edge_list_string_labels_normalized(tmp_path, suffix, sep):
    path = tmp_path / f"g{suffix}"
    lines = ["# a path c - a - b - d", f"a{sep}b", f"c{sep}a  # comment", "", f"b{sep}d"]
    path.write_text("\n".join(lines) + "\n")
    G = load_topology(path)
    # sorted labels: a -> 0, b -> 1, c -> 2, d -> 3
    assert sorted(G.edges()) == [(0, 1), (0, 2), (1, 3)]


def test_edge_list_integer_strings_sort_numerically(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("source,target\n10,2\n2,1\n")
    G = load_topology(path)
    # 1 -> 0, 2 -> 1, 10 -> 2
    assert sorted(G.edges()) == [(0, 1), (1, 2)]


def test_graphml_and_node_link_roundtrip(tmp_path):
    H = nx.relabel_nodes(nx.petersen_graph(), {i: f"node{i:02d}" for i in range(10)})
    nx.write_graphml(H, tmp_path / "p.graphml")
    G = load_topology(tmp_path / "p.graphml", 10)
    assert labelled_0_to_n(G, 10) and nx.is_isomorphic(G, nx.petersen_graph())
    assert sorted(G.edges()) == sorted(tuple(sorted(e)) for e in nx.petersen_graph().edges())

    data = {"nodes": [{"id": s} for s in ["z", "x", "y"]], "links": [{"source": "x", "target": "y"}, {"source": "y", "target": "z"}]}
    (tmp_path / "g.json").write_text(json.dumps(data))
    G = load_topology(tmp_path / "g.json")
    assert sorted(G.edges()) == [(0, 1), (1, 2)]


def test_unsortable_labels_use_insertion_order(tmp_path):
    data = {"nodes": [{"id": "b"}, {"id": 1}, {"id": "a"}], "edges": [{"source": "b", "target": 1}, {"source": 1, "target": "a"}]}
    (tmp_path / "g.json").write_text(json.dumps(data))
    G = load_topology(tmp_path / "g.json")
    assert sorted(G.edges()) == [(0, 1), (1, 2)]


def test_python_file_written_by_test(tmp_path):
    (tmp_path / "star.py").write_text(
        "import networkx as nx\n\ndef build(n, *, seed):\n    return nx.relabel_nodes(nx.star_graph(n - 1), lambda i: i + 100)\n"
    )
    G = load_topology(tmp_path / "star.py", 6, seed=1)
    assert labelled_0_to_n(G, 6) and G.degree(0) == 5


def test_custom_file_errors(tmp_path):
    with pytest.raises(TopologyError, match="does not exist"):
        load_topology(tmp_path / "missing.json")
    (tmp_path / "nobuild.py").write_text("x = 1\n")
    with pytest.raises(TopologyError, match="must define build"):
        load_topology(tmp_path / "nobuild.py", 5)
    (tmp_path / "bad.py").write_text("def build(n, *, seed):\n    return [1, 2]\n")
    with pytest.raises(TopologyError, match="expected a networkx.Graph"):
        load_topology(tmp_path / "bad.py", 5)
    with pytest.raises(TopologyError, match="unknown suffix"):
        load_topology(tmp_path / "g.gml")


def test_build_topology_filters_params_and_rejects_unknown_names():
    G = build_topology("ring", 8, seed=0, degree=4, p=0.3, k=4, beta=0.1)
    assert {d for _, d in G.degree()} == {2}
    G = build_topology("random-regular", 10, seed=0, degree=3, p=0.3, k=4)
    assert {d for _, d in G.degree()} == {3}
    with pytest.raises(ValueError, match="unknown topology 'hypercube'"):
        build_topology("hypercube", 8)


# --- validate_graph ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "G, byz, match",
    [
        (nx.Graph(), None, "no nodes"),
        (nx.empty_graph(3), None, "no edges"),
        (nx.Graph([(0, 1), (1, 1)]), None, "self-loop at node 1"),
        (nx.Graph([(0, 1), (1, 5)]), None, "labelled 0..2"),
        (nx.path_graph(5), [False, False, True, False, False], "2 components"),
        (nx.star_graph(3), [True, False, False, False], "honest node 1 has only Byzantine neighbours"),
        (nx.Graph([(0, 1), (1, 2), (3, 3)]).copy(), None, "self-loop at node 3"),
        (nx.path_graph(3), [True, True, True], "all 3 nodes are Byzantine"),
        (nx.DiGraph([(0, 1)]), None, "undirected"),
    ],
)
def test_validate_graph_errors(G, byz, match):
    mask = None if byz is None else torch.tensor(byz)
    with pytest.raises(TopologyError, match=match) as err:
        validate_graph(G, mask)
    assert "\n" not in str(err.value)


def test_validate_graph_isolated_honest_node():
    G = nx.path_graph(3)
    G.add_node(3)
    with pytest.raises(TopologyError, match="honest node 3 has no neighbours"):
        validate_graph(G)


def test_validate_graph_accepts_good_graphs():
    validate_graph(nx.path_graph(5), torch.tensor([True, False, False, False, False]))
    validate_graph(ring_graph(8), np.zeros(8, dtype=bool))


# --- NeighbourTable ----------------------------------------------------------------------------

GRAPHS = {
    "ring": lambda: ring_graph(9),
    "star": lambda: nx.star_graph(6),
    "barbell": lambda: nx.barbell_graph(4, 3),
    "erdos-renyi": lambda: erdos_renyi_graph(25, 0.2, seed=2),
    "torus": lambda: torus_graph(16),
}


@pytest.fixture(params=sorted(GRAPHS))
def graph(request):
    return GRAPHS[request.param]()


def test_table_shapes_mask_and_padding(graph):
    t = NeighbourTable.from_graph(graph)
    n = graph.number_of_nodes()
    degs = torch.tensor([graph.degree(i) for i in range(n)])
    assert t.n == n and t.k == int(degs.max())
    assert t.idx.dtype == torch.long and t.mask.dtype == torch.bool and t.degree.dtype == torch.long
    assert t.weights.dtype == torch.float32 and t.self_weight.shape == (n,)
    assert torch.equal(t.mask.sum(1), degs) and torch.equal(t.degree, degs)
    rows = torch.arange(n).unsqueeze(1).expand(n, t.k)
    assert torch.equal(t.idx[~t.mask], rows[~t.mask])  # padding points at self
    assert torch.all(t.weights[~t.mask] == 0)
    for i in range(n):
        assert t.idx[i, : graph.degree(i)].tolist() == sorted(graph.neighbors(i))
    assert t.mask[:, 0].all() or n == 0  # real slots come first


def test_table_metropolis_weights(graph):
    t = NeighbourTable.from_graph(graph, dtype=torch.float64)
    W = t.dense_weights()
    assert torch.allclose(W, W.T, atol=0, rtol=0)
    assert torch.allclose(W.sum(1), torch.ones(t.n, dtype=torch.float64))
    assert torch.all(W >= 0)
    for i, j in graph.edges():
        assert W[i, j] == pytest.approx(1 / (1 + max(graph.degree(i), graph.degree(j))))


def test_table_uniform_weights(graph):
    t = NeighbourTable.from_graph(graph, weights="uniform")
    assert torch.equal(t.weights, t.mask.float())
    assert torch.allclose(t.self_weight, 1 - t.degree.float())


def test_star_padded_rows():
    t = NeighbourTable.from_graph(nx.star_graph(4))
    assert t.k == 4
    assert t.idx[0].tolist() == [1, 2, 3, 4]
    assert t.idx[3].tolist() == [0, 3, 3, 3] and t.mask[3].tolist() == [True, False, False, False]
    assert t.weights[3].tolist() == pytest.approx([0.2, 0, 0, 0])
    assert t.self_weight[3].item() == pytest.approx(0.8) and t.self_weight[0].item() == pytest.approx(0.2)


def test_byzantine_counts_match_brute_force(graph):
    t = NeighbourTable.from_graph(graph)
    byz = torch.zeros(t.n, dtype=torch.bool)
    byz[torch.randperm(t.n, generator=torch.Generator().manual_seed(0))[: t.n // 3]] = True
    brute = [sum(bool(byz[j]) for j in graph.neighbors(i)) for i in range(t.n)]
    assert t.byzantine_counts(byz).tolist() == brute
    slots = t.byzantine_slots(byz)
    assert slots.shape == (t.n, t.k) and not slots[~t.mask].any()


def test_table_errors():
    with pytest.raises(TopologyError, match="unknown weights 'max'"):
        NeighbourTable.from_graph(ring_graph(5), weights="max")
    with pytest.raises(TopologyError, match="labelled"):
        NeighbourTable.from_graph(nx.Graph([("a", "b")]))
    t = NeighbourTable.from_graph(ring_graph(5))
    with pytest.raises(TopologyError, match="shape"):
        t.byzantine_counts(torch.zeros(4, dtype=torch.bool))


def test_table_of_a_large_regular_graph():
    G = nx.circulant_graph(10_000, [1, 2, 3, 17, 101])  # 10-regular
    t = NeighbourTable.from_graph(G)
    assert t.k == 10 and bool(t.mask.all())
    assert t.idx[0].tolist() == sorted(G.neighbors(0))


# --- spectral ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [6, 10, 40])
def test_ring_laplacian_max_eigenvalue(n):
    t = NeighbourTable.from_graph(ring_graph(n), weights="uniform")
    assert laplacian_max_eigenvalue(t) == pytest.approx(4.0)


def test_spectral_values_known_graphs():
    n = 12
    # complete graph with MH weights averages in one step: gap 1
    assert spectral_gap(NeighbourTable.from_graph(complete_graph(n))) == pytest.approx(1.0)
    # ring with MH weights 1/3: eigenvalues (1 + 2 cos(2 pi j / n)) / 3
    expected = 1 - max(abs((1 + 2 * math.cos(2 * math.pi * j / n)) / 3) for j in range(1, n))
    assert spectral_gap(NeighbourTable.from_graph(ring_graph(n))) == pytest.approx(expected)
    assert algebraic_connectivity(ring_graph(n)) == pytest.approx(2 - 2 * math.cos(2 * math.pi / n))
    assert algebraic_connectivity(complete_graph(n)) == pytest.approx(n)
    assert algebraic_connectivity(nx.disjoint_union(ring_graph(4), ring_graph(4))) == pytest.approx(0, abs=1e-9)


def test_spectral_sparse_path_matches_dense(monkeypatch):
    from p2probust.topology import spectral

    G = erdos_renyi_graph(60, 0.15, seed=4)
    t = NeighbourTable.from_graph(G, dtype=torch.float64)
    dense = (spectral.spectral_gap(t), spectral.laplacian_max_eigenvalue(t), spectral.algebraic_connectivity(G))
    monkeypatch.setattr(spectral, "DENSE_LIMIT", 10)
    sparse = (spectral.spectral_gap(t), spectral.laplacian_max_eigenvalue(t), spectral.algebraic_connectivity(G))
    assert sparse == pytest.approx(dense, rel=1e-6)
