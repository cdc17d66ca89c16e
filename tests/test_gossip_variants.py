"""Gossip rules against plain loops of the authors' code: BRIDGE (-K, -B), CS_he/GTS (paper vs
code), ClippedGossip's released-code radius, SCC (ByrdLab/IOS), and hand-computed ties."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch

from p2probust.gossip import GTS, SCC, BridgeScreening, ClippedGossip, CSHe, CSPlus, make_rule
from p2probust.gossip._weighted import byzantine_weight
from p2probust.topology.table import NeighbourTable

T = torch.float64


def _clip(v: torch.Tensor, tau: float) -> torch.Tensor:
    n = float(v.norm())
    return v * (tau / n) if n > tau else v


def _code_robust_gossip(own, msgs, w, self_w, b, eta, rule):
    """Gaucher et al.'s ``cs_he`` / ``gts`` (robust_gossip.py) for one node, in a loop."""
    grads = torch.cat([torch.zeros(1, own.numel(), dtype=T), own - msgs])  # pivot first, difference 0
    weights = torch.cat([torch.tensor([self_w], dtype=T), w])
    dist = grads.norm(dim=1)
    order = torch.argsort(dist, stable=True)
    sw, sd, sg = weights[order], dist[order], grads[order]
    cum = torch.cumsum(sw, 0)
    target = cum[-1] - b
    idx = int(torch.searchsorted(cum, target))
    if rule == "cs_he":
        if idx == 0:
            tau = 0.0
        elif b == 0 or idx >= len(grads):
            tau = math.inf
        else:
            tau = float(((sw[:idx] * sd[:idx] ** 2).sum() / b).sqrt())
        agg = sum(weights[j] * _clip(grads[j], tau) for j in range(len(grads)))
    else:
        rest = float(cum[idx] - target) if cum[idx] > target else 0.0
        agg = (sw[:idx, None] * sg[:idx]).sum(0) + sg[idx] * rest
    return own - eta * agg


def test_ties_by_hand_paper_vs_code():
    own, msgs = torch.zeros(1, dtype=T), torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=T)
    mask, w, f = torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=T), torch.tensor(1)
    # unit weights, f = 1: cumulative weights 1, 2, 3, 4 hit W - b = 3 exactly
    paper = CSHe(eta=0.1)(own, msgs, mask, w, f).item()  # tau^2 = (1 + 4 + 9) / 1
    code = CSHe(eta=0.1, variant="code")(own, msgs, mask, w, f).item()  # tau^2 = (1 + 4) / 1
    assert paper == pytest.approx(0.1 * (1 + 2 + 3 + math.sqrt(14)))
    assert code == pytest.approx(0.1 * (1 + 2 + 2 * math.sqrt(5)))
    assert GTS(eta=0.1)(own, msgs, mask, w, f).item() == pytest.approx(0.6)  # keeps 1, 2, 3
    assert GTS(eta=0.1, variant="code")(own, msgs, mask, w, f).item() == pytest.approx(0.3)  # keeps 1, 2


@pytest.mark.parametrize("rule", ["cs_he", "gts"])
def test_code_variant_matches_the_authors_functions(rule):
    g = torch.Generator().manual_seed(21)
    cls = CSHe if rule == "cs_he" else GTS
    for case in range(30):
        k, d = 6, 3
        own, msgs = torch.randn(d, generator=g, dtype=T), torch.randn(k, d, generator=g, dtype=T)
        msgs[-1] += 8
        w = torch.rand(k, generator=g, dtype=T) / k if case % 2 else torch.ones(k, dtype=T)
        self_w = max(0.0, 1 - float(w.sum()))
        f = torch.tensor(1 + case % 2)
        b = float(f) * float(w.max())  # the code's byz_weights = weights[-1] * f
        ours = cls(eta=0.3, variant="code", byzantine_weight="max")(own, msgs, torch.ones(k, dtype=torch.bool), w, f)
        ref = _code_robust_gossip(own, msgs, w, self_w, b, 0.3, rule)
        torch.testing.assert_close(ours, ref)


def test_byzantine_weight_sum_vs_max():
    w = torch.tensor([0.1, 0.3, 0.2, 0.0], dtype=T)
    mask = torch.tensor([True, True, True, False])
    assert byzantine_weight(w, mask, torch.tensor(2)).item() == pytest.approx(0.5)
    assert byzantine_weight(w, mask, torch.tensor(2), "max").item() == pytest.approx(0.6)
    with pytest.raises(ValueError, match="byzantine_weight"):
        CSPlus(byzantine_weight="mean")


def test_eta_on_the_honest_subgraph():
    G = nx.erdos_renyi_graph(12, 0.5, seed=300)
    table = NeighbourTable.from_graph(G, dtype=T)
    is_byz = torch.zeros(12, dtype=torch.bool)
    is_byz[[3, 7]] = True
    W = table.dense_weights().numpy()
    np.fill_diagonal(W, 0)
    lam = lambda A: np.linalg.eigvalsh(np.diag(A.sum(1)) - A)[-1]  # noqa: E731
    honest = np.flatnonzero(~is_byz.numpy())
    full, sub = CSPlus().bind(table, is_byz), CSPlus(eta_graph="honest").bind(table, is_byz)
    assert full.eta == pytest.approx(1 / lam(W))
    assert sub.eta == pytest.approx(1 / lam(W[np.ix_(honest, honest)]))
    assert sub.eta >= full.eta  # interlacing: the full graph's step is the safer one


def test_clipped_gossip_second_largest_radius_is_the_released_code():
    g = torch.Generator().manual_seed(22)
    own, msgs = torch.randn(4, generator=g, dtype=T), torch.randn(5, 4, generator=g, dtype=T)
    w = torch.rand(5, generator=g, dtype=T) / 5
    mask = torch.tensor([True, True, True, True, False])
    dist = sorted(float((m - own).norm()) for m in msgs[:4])
    tau = dist[-2]  # epfml SelfCenteredClipping, tau=None
    ref = own + sum(w[j] * _clip(msgs[j] - own, tau) for j in range(4))
    got = ClippedGossip(tau="second-largest")(own, msgs, mask, w, torch.tensor(3))
    torch.testing.assert_close(got, ref)
    one = ClippedGossip(tau="second-largest")(own, msgs[:1], mask[:1], w[:1], torch.tensor(0))
    torch.testing.assert_close(one, msgs[0] * w[0] + own * (1 - w[0]))  # one neighbour: no clipping


def test_scc_is_the_ios_code_with_mh_weights():
    G = nx.erdos_renyi_graph(10, 0.5, seed=5)
    table = NeighbourTable.from_graph(G, dtype=T)
    g = torch.Generator().manual_seed(23)
    x = torch.randn(10, 6, generator=g, dtype=T) * 0.5
    out = make_rule("scc").batched(x, x[table.idx], table.mask, table.weights, torch.zeros(10, dtype=torch.long))
    for i in range(10):  # D_self_centered_clipping, threshold_selection="parameter", threshold=0.3
        deg = G.degree
        ref = x[i] + sum(_clip(x[j] - x[i], 0.3) / (1 + max(deg[i], deg[j])) for j in G.neighbors(i))
        torch.testing.assert_close(out[i], ref)
    assert repr(SCC()) == "SCC(alpha=1, tau=0.3)"


def _bridge_k_loop(hood: list[torch.Tensor], b: int) -> int:
    """The authors' BRIDGE-K score: sum of the M - b - 2 (at least 1) smallest unsquared distances,
    self included; exact ties (all scores 0 once M - b - 2 <= 1), which the code breaks by list
    order, go to the least total distance (documented in p2probust.gossip.bridge)."""
    dists = [[float((o - x).norm()) for o in hood] for x in hood]
    keys = [(sum(sorted(row)[: max(1, len(hood) - b - 2)]), sum(row)) for row in dists]
    return keys.index(min(keys))


def test_bridge_k_and_b_match_the_authors_loops():
    g = torch.Generator().manual_seed(24)
    for case in range(10):
        k, d, b = 8, 3, 1 + case % 2
        own, msgs = torch.randn(d, generator=g, dtype=T), torch.randn(k, d, generator=g, dtype=T)
        msgs[:b] += 6
        mask, w, f = torch.ones(k, dtype=torch.bool), torch.ones(k, dtype=T), torch.tensor(b)
        hood = [own, *msgs]
        got_k = BridgeScreening("K")(own, msgs, mask, w, f)
        torch.testing.assert_close(got_k, hood[_bridge_k_loop(hood, b)])
        chosen, rest = [], list(hood)
        for _ in range(len(hood) - 2 * b):  # Krum selection of M - 2b, each winner leaves
            chosen.append(rest.pop(_bridge_k_loop(rest, b)))
        s = np.sort(torch.stack(chosen).numpy(), axis=0)[b:-b]
        got_b = BridgeScreening("B")(own, msgs, mask, w, f)
        torch.testing.assert_close(got_b, torch.from_numpy(s.mean(0)))
