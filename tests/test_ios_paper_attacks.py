"""The IOS paper's attacks as its authors' code crafts them (Wu, Chen, Ling, IEEE TSP 2023;
github.com/Zhaoxian-Wu/IOS, ByrdLab/attack.py), against literal ports of that code: one Python
loop over recipients, as the code runs (`D_alie`, `D_gaussian`'s centre, `D_isolation_weight`)."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import scipy.stats
import torch

from p2probust.attacks import ALIE, Isolation, alie_z
from p2probust.gossip import AggregateAndMix
from p2probust.aggregators import CoordinateWiseMedian
from p2probust.testing.attacks import make_attack_context

#: recipient 1 hears Byzantine 0 and honest 2, 3 (7 nodes, 1 Byzantine)
SEVEN = nx.Graph([(0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (5, 2), (5, 6)])
VALUES = [50.0, 1.0, 2.0, 6.0, 7.0, 8.0, 9.0]


def _ctx(G, byz, x, **kw):
    mask = torch.zeros(G.number_of_nodes(), dtype=torch.bool)
    mask[list(byz)] = True
    return make_attack_context(G, mask, x, **kw)


def test_wu_alie_by_hand():
    ctx = _ctx(SEVEN, [0], torch.tensor(VALUES, dtype=torch.float64).unsqueeze(1))
    # recipient 1: N = 3 neighbours, b = 1 Byzantine; s = ⌊4/2⌋ − 1 = 1, z = Φ⁻¹(2/3) = 0.4307273;
    # honest neighbours {2, 6} (itself excluded): mean 4, unbiased std √8
    z = 0.4307272992954576
    assert float(alie_z(torch.tensor([3]), torch.tensor([1]), formula="wu")[0]) == pytest.approx(z, abs=1e-12)
    msg = ALIE(z="wu", reference="neighbours", sign=1).craft(ctx).item()
    assert msg == pytest.approx(4.0 + z * math.sqrt(8.0), abs=1e-12)
    # before: the closest settings took the recipient into the statistics (mean 3, std √7) and z = 0
    assert ALIE(counts="local", sign=1).craft(ctx).item() == pytest.approx(3.0, abs=1e-12)


def _code_alie(G, byz, x):
    """ByrdLab/attack.py ``D_alie`` (scale=None) and its scale table, per honest recipient."""
    out = {}
    for node in sorted(set(G) - set(byz)):
        nbrs = sorted(G[node])
        honest = [j for j in nbrs if j not in byz]
        b = len(nbrs) - len(honest)
        if b == 0:
            continue
        s = math.floor((len(nbrs) + 1) / 2) - b
        scale = scipy.stats.norm.ppf((len(nbrs) - s) / len(nbrs))
        mu, std = x[honest].mean(0), x[honest].std(0)
        out[node] = mu + scale * std
    return out


def _code_isolation_w(G, byz, x):
    """ByrdLab/attack.py ``D_isolation_weight``: the message that makes the MH-weighted sum of the
    recipient's honest neighbours, itself and its Byzantine neighbours equal its own model."""
    deg = dict(G.degree())
    out = {}
    for node in sorted(set(G) - set(byz)):
        w = {j: 1 / max(deg[node] + 1, deg[j] + 1) for j in G[node]}
        w[node] = 1 - sum(w.values())
        honest_and_self = [j for j in G[node] if j not in byz] + [node]
        byz_w = sum(w[j] for j in G[node] if j in byz)
        if byz_w == 0:
            continue
        s = sum(w[j] * x[j] for j in honest_and_self)
        out[node] = (x[node] - s) / byz_w
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_alie_and_isolation_match_the_authors_code_on_the_ios_graph(seed):
    G = nx.read_edgelist("topologies/ios_er12.edgelist", nodetype=int)
    G = nx.relabel_nodes(G, {v: v for v in G})
    G = nx.convert_node_labels_to_integers(G, ordering="sorted")
    byz = [6, 7]
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rule = AggregateAndMix(CoordinateWiseMedian())  # a rule that weighs its neighbourhood equally
    ctx = _ctx(G, byz, x, rule=rule)
    alie = ALIE(z="wu", reference="neighbours", sign=1).craft(ctx)
    iso = Isolation(weights="table").craft(ctx)
    want_alie, want_iso = _code_alie(G, byz, x), _code_isolation_w(G, byz, x)
    assert sorted(set(ctx.recipients.tolist())) == sorted(want_alie)
    for e, r in enumerate(ctx.recipients.tolist()):
        torch.testing.assert_close(alie[e], want_alie[r], atol=1e-12, rtol=0)
        torch.testing.assert_close(iso[e], want_iso[r], atol=1e-12, rtol=0)
    # and the default weights ("rule": uniform for aggregate-and-mix) are not the code's
    assert not torch.allclose(Isolation().craft(ctx), iso)


def test_alie_rejects_an_unknown_reference_and_z():
    with pytest.raises(ValueError, match="reference = 'self' must be one of: recipient, global, sender, neighbours"):
        ALIE(reference="self")
    with pytest.raises(ValueError, match="z = 'ios' must be one of: paper, variant, wu"):
        ALIE(z="ios")


def test_wu_alie_passes_the_attack_conformance_check():
    from p2probust.testing import check_attack

    check_attack(ALIE(z="wu", reference="neighbours", sign=1))
