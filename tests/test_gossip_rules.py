"""Hand-computed values of the decentralized gossip rules."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from p2probust.aggregators import ToleranceError
from p2probust.gossip import GTS, IOS, BridgeScreening, ClippedGossip, CSHe, CSPlus, make_rule
from p2probust.topology.spectral import laplacian_max_eigenvalue
from p2probust.topology.table import NeighbourTable

T = torch.float64
OWN = torch.zeros(1, dtype=T)
MSGS = torch.tensor([[1.0], [2.0], [10.0]], dtype=T)
MASK = torch.ones(3, dtype=torch.bool)
F1 = torch.tensor(1)


def test_clipped_gossip_adaptive_and_fixed():
    w = torch.full((3,), 0.25, dtype=T)  # self weight 0.25
    # delta = 0.25; closest up to weight 0.75: self, 1, 2 -> tau^2 = (0.25 + 1) / 0.25 = 5
    out = ClippedGossip(tau="adaptive")(OWN, MSGS, MASK, w, F1)
    torch.testing.assert_close(out, torch.tensor([0.25 * (3 + math.sqrt(5))], dtype=T))
    torch.testing.assert_close(ClippedGossip(tau=1.0)(OWN, MSGS, MASK, w, F1), torch.tensor([0.75], dtype=T))
    # no Byzantine weight: no clipping, plain Metropolis gossip
    torch.testing.assert_close(ClippedGossip()(OWN, MSGS, MASK, w, torch.tensor(0)), torch.tensor([3.25], dtype=T))


def test_clipped_gossip_oracle_uses_true_byzantine_neighbours():
    G = nx.path_graph(3)  # 0 - 1 - 2, node 2 Byzantine
    table = NeighbourTable.from_graph(G, dtype=T)
    byz = torch.tensor([False, False, True])
    rule = ClippedGossip(tau="oracle").bind(table, byz)
    params = torch.tensor([[0.0], [1.0], [100.0]], dtype=T)
    inbox = params[table.idx]
    f = table.byzantine_counts(byz)
    out = rule.batched(params, inbox, table.mask, table.weights, f)
    # node 1: W = 1/3 to each; delta = 1/3, honest spread (1/3)*1 -> tau = 1
    torch.testing.assert_close(out[1], torch.tensor([1.0 + (-1.0 + 1.0) / 3], dtype=T))
    honest = rule.batched(params[:2], inbox[:2], table.mask[:2], table.weights[:2], f[:2])
    torch.testing.assert_close(honest, out[:2])
    with pytest.raises(ValueError, match="batched"):
        rule(params[1], inbox[1], table.mask[1], table.weights[1], f[1])


def test_cs_plus_cs_he_gts_by_hand():
    msgs = torch.tensor([[1.0], [10.0], [2.0]], dtype=T)
    w = torch.tensor([0.4, 0.2, 0.3], dtype=T)  # b = 0.4, the largest weight
    # GTS keeps weight W - b = 0.5 from the closest: 0.4 at distance 1, 0.1 of the one at 2
    torch.testing.assert_close(GTS(eta=1.0)(OWN, msgs, MASK, w, F1), torch.tensor([0.6], dtype=T))
    # CS+: 2b = 0.8 leaves 0.1 < 0.4: no neighbour below the threshold, tau = 0
    torch.testing.assert_close(CSPlus(eta=1.0)(OWN, msgs, MASK, w, F1), torch.tensor([0.0], dtype=T))
    # CS_he: closest up to 0.5 is {1}: tau^2 = 0.4 * 1 / 0.4 -> tau = 1, sum 0.4 + 0.2 + 0.3
    torch.testing.assert_close(CSHe(eta=1.0)(OWN, msgs, MASK, w, F1), torch.tensor([0.9], dtype=T))
    # unit weights, b = 1: CS+ threshold = the smallest distance (1), every clipped difference is 1
    ones = torch.ones(3, dtype=T)
    torch.testing.assert_close(CSPlus(eta=0.1)(OWN, MSGS, MASK, ones, F1), torch.tensor([0.3], dtype=T))


def test_robust_gossip_step_size_binds_to_laplacian():
    table = NeighbourTable.from_graph(nx.cycle_graph(6), weights="uniform", dtype=T)
    rule = CSPlus().bind(table, torch.zeros(6, dtype=torch.bool))
    assert rule.eta == pytest.approx(1 / laplacian_max_eigenvalue(table)) == pytest.approx(0.25)
    assert "eta=0.25" in repr(rule)


def test_ios_by_hand():
    w = torch.full((3,), 0.25, dtype=T)
    # centre (0+1+2+10)/4 = 3.25: 10 is farthest; then (0+1+2)/3
    torch.testing.assert_close(IOS()(OWN, MSGS, MASK, w, F1), torch.tensor([1.0], dtype=T))
    # second removal: centre 1, farthest is 2 (the node itself is never removed)
    torch.testing.assert_close(IOS()(OWN, MSGS, MASK, w, torch.tensor(2)), torch.tensor([0.5], dtype=T))


def test_bridge_variants_screen_including_self():
    w = torch.full((3,), 0.25, dtype=T)
    assert BridgeScreening("M")(OWN, MSGS, MASK, w, F1).item() == 1.5  # median of 0, 1, 2, 10
    assert BridgeScreening("T")(OWN, MSGS, MASK, w, F1).item() == 1.5  # mean of 1, 2
    assert repr(make_rule("bridge-k")) == "BRIDGE-K(alpha=1)"
    with pytest.raises(ValueError, match="variant"):
        BridgeScreening("X")


def test_tolerance_checks():
    degree = torch.tensor([3, 2])
    with pytest.raises(ToleranceError, match="node 1"):
        IOS().check_tolerance(degree, torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="tau"):
        ClippedGossip(tau="sometimes")
    with pytest.raises(ValueError, match="eta"):
        GTS(eta=-1.0)
