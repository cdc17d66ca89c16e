"""`p2probust reproduce ios` (issue 11, result 1): the grid files carry the authors' settings, the
table cells are computed as documented (the smoke run of the whole pipeline is
tests/test_reproduce.py::test_smoke_pipeline[ios], marked slow)."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from p2probust.reproduce import REPRODUCTIONS
from p2probust.reproduce import ios
from p2probust.reproduce.base import PAPERS_DIR
from p2probust.sweep import load_grid

REPO = PAPERS_DIR.parents[1]
#: what each grid file must set, read from ByrdLab/attack.py (see the comments in the files)
ATTACK = {
    "none": ("none", {}),
    "gaussian": ("gaussian", {"sigma": 30.0, "centre": "neighbours"}),
    "sign_flip": ("sign-flip", {"scale": 1.0, "reference": "recipient"}),
    "isolation": ("isolation", {"weights": "table"}),
    "duplicate": ("duplicate", {"mode": "random"}),
    "alie": ("alie", {"z": "wu", "reference": "neighbours", "sign": 1}),
}
RULE_PARAMS = {"mh-gossip": {}, "krum": {}, "scc": {}, "ios": {}, "median": {"even": "lower"},
               "geomed": {"start": "mean", "max_iter": 80, "tol": 1e-5}, "trimmed-mean": {"own": "keep"},
               "centered-clipping": {"tau": 0.3}, "faba": {"own": "keep"}}


@pytest.mark.parametrize("stem", list(ATTACK))
def test_each_grid_is_the_codes_attack_and_rules(stem):
    points = load_grid(PAPERS_DIR / "ios" / f"{stem}.toml").points()
    assert {p.config.rule.name: dict(p.config.rule.params) for p in points} == RULE_PARAMS
    name, params = ATTACK[stem]
    cfg = points[0].config
    assert (cfg.attack.name, dict(cfg.attack.params)) == (name, params)
    assert (cfg.train.init_scale, cfg.train.weight_decay, cfg.data.split_among, cfg.rule.tolerance) == (6.0, 0.01, "honest", "oracle")
    if stem == "none":  # the code runs the honest subgraph: no Byzantine node at all
        assert (cfg.byzantine.count, cfg.topology.name) == (0, "topologies/ios_er12_honest.edgelist")
    else:
        assert (cfg.byzantine.nodes, cfg.topology.name) == ((6, 7), "topologies/ios_er12.edgelist")


def test_honest_edgelist_is_the_relabelled_honest_subgraph():
    G = nx.read_edgelist(REPO / "topologies/ios_er12.edgelist", nodetype=int)
    H = nx.read_edgelist(REPO / "topologies/ios_er12_honest.edgelist", nodetype=int)
    honest = [v for v in sorted(G) if v not in (6, 7)]
    want = nx.relabel_nodes(G.subgraph(honest), {v: i for i, v in enumerate(honest)})
    assert sorted(H) == list(range(10)) and nx.utils.edges_equal(sorted(H.edges()), sorted(want.edges()))
    assert H.number_of_edges() == 47 - G.degree(6) - G.degree(7) + 1  # edge 6-7 counted twice


def test_points_take_the_size_and_absolute_paths():
    cfg = {"rounds": 7, "eval_every": 7, "rules": ["ios", "median"]}
    pts = ios.points(cfg, [0, 3])
    assert len(pts) == 6 * 2 * 2 and {s for s, _ in pts} == set(ios.ATTACKS)
    for _, p in pts:
        c = p.config
        assert c.train.rounds == 7 and c.eval_every == 7 and c.seed in (0, 3) and c.rule.name in ("ios", "median")
        assert Path(c.topology.name).is_absolute() and Path(c.topology.name).is_file()
        assert Path(c.data.data_dir).is_absolute()
    assert len({p.run_id for _, p in pts}) == len(pts)


def test_cells_by_hand():
    assert ios.cell([89.0], 91.61) == "89.00 / 91.61 / -2.61"
    assert ios.cell([88.0, 90.0], 91.0) == "89 ± 1 / 91.00 / -2.00"
    assert ios.cell([float("nan")], 91.0) == "— / 91.00 / —"
    assert ios.cell([80.0, float("nan")], 90.0) == "80.00 ± 0 / 90.00 / -10.00" or ios.cell([80.0, float("nan")], 90.0).endswith("/ 90.00 / -10.00")


def test_tables_compare_with_the_paper_and_the_records_at_the_same_length():
    res = {a: {r: [50.0] for r in ios.RULES} for a in ios.ATTACKS}
    text = "\n".join(ios.tables(res, {"rounds": 5000, "rules": list(ios.RULES)}, [0]))
    assert "| IOS | 50.00 / 91.70 / -41.70 | 50.00 / 91.60 / -41.60 |" in text
    assert "| CC (τ = 0.3) | 50.00 / 91.30 / -41.30 |" in text  # the authors' record at 5,000 iterations
    assert "same length" not in "\n".join(ios.tables(res, {"rounds": 300, "rules": ["ios"]}, [0]))


def test_published_table_is_whole_and_registered():
    assert set(ios.PUBLISHED) == set(ios.RULES) == set(ios.RECORDED[2000]) == set(ios.RECORDED[5000])
    assert all(len(v) == len(ios.ATTACKS) and all(0 < x < 100 for x in v) for v in ios.PUBLISHED.values())
    assert ios.PUBLISHED["ios"][2] == 91.61 and ios.PUBLISHED["krum"][5] == 63.79
    assert "ios" in REPRODUCTIONS and REPRODUCTIONS["ios"].default_seeds == 1
    sizes = REPRODUCTIONS["ios"].settings("smoke")["reproduce"], REPRODUCTIONS["ios"].settings("full")["reproduce"]
    assert sizes[0]["rounds"] < 10 and sizes[1]["rounds"] == 2000 and set(sizes[1]["rules"]) == set(ios.RULES)
    assert ios.RECORDED[2000]["scc"][0] == 24.23


def test_code_centred_clipping_matches_the_authors_loop():
    """ios_checks.CodeCenteredClipping against a literal port of ByrdLab/IOS D_centered_clipping
    (memory 0 at the start, clipping over the node and its neighbours, divided by k_i + 1),
    three iterations on a small graph, called as the simulator calls it (honest rows only)."""
    import torch

    from p2probust.reproduce.ios_checks import CodeCenteredClipping
    from p2probust.topology import NeighbourTable

    G = nx.Graph([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (3, 4)])
    table = NeighbourTable.from_graph(G, dtype=torch.float64)
    is_byz = torch.zeros(5, dtype=torch.bool)
    rule = CodeCenteredClipping(tau=0.3).bind(table, is_byz)
    nodes = torch.arange(5)
    gen = torch.Generator().manual_seed(0)
    memory = torch.zeros(5, 3, dtype=torch.float64)
    for _ in range(3):
        x = 2 * torch.randn(5, 3, generator=gen, dtype=torch.float64)
        want = torch.empty_like(memory)
        for node in range(5):  # the authors' loop
            diff = torch.zeros(3, dtype=torch.float64)
            for j in list(G[node]) + [node]:
                norm = (x[j] - memory[node]).norm()
                diff += 0.3 * (x[j] - memory[node]) / norm if norm > 0.3 else x[j] - memory[node]
            want[node] = memory[node] + diff / (G.degree(node) + 1)
        memory = want
        got = rule.for_nodes(nodes).batched(x, x[table.idx], table.mask, table.weights, torch.zeros(5, dtype=torch.long))
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
