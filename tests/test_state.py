"""The explicit-state core (issue 15): Wiring (one per graph, the tolerance policy), the frozen
SimState advanced by step functions that never mutate their input, and the one mix path."""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest
import torch

import p2probust as pr
from p2probust.aggregators.coordinatewise import TrimmedMean
from p2probust.engine import RoundPlan
from p2probust.gossip.mixing import AggregateAndMix
from p2probust.state import SimState, build
from p2probust.step import Inbox, mix_rows, sync_round
from p2probust.topology import NeighbourTable
from p2probust.wiring import Wiring, configured_tolerance, tolerance_cap


def _path_wiring(oracle=True, f=None):
    """Path 0 - 1 - 2 - 3, node 3 Byzantine, trimmed mean (max_tolerance(m) = (m - 1) // 2)."""
    table = NeighbourTable.from_graph(nx.path_graph(4))
    byz = torch.tensor([False, False, False, True])
    rule = AggregateAndMix(TrimmedMean(), alpha=1.0).bind(table, byz)
    f = configured_tolerance("oracle" if f is None else str(f), table, byz, rule)
    return Wiring.of_table(table, byz, f, torch.arange(3), oracle=oracle, cap=tolerance_cap(rule)), rule


def test_configured_tolerance_is_the_oracle_count_and_caps_byzantine_actors():
    wiring, rule = _path_wiring()
    assert wiring.f.tolist() == [0, 0, 1, 0]  # node 2 has one Byzantine neighbour; node 3's own cap: (2 - 1) // 2 = 0
    table = NeighbourTable.from_graph(nx.path_graph(4))
    with pytest.raises(Exception, match="f = 1"):  # node 0 has one input besides its own: f = 1 is impossible
        configured_tolerance("1", table, torch.zeros(4, dtype=torch.bool), rule)


def test_tolerance_is_capped_when_messages_are_missing_and_counts_dynamic_senders():
    wiring, _ = _path_wiring()
    nodes = torch.tensor([2, 2])
    present = torch.tensor([[True, True], [False, True]])  # node 2's slots: from 1 and from 3
    # all present: f = 1 (m = 3 allows 1); slot from 1 missing: m = 2 allows 0
    assert wiring.tolerance(nodes, present).tolist() == [1, 0]
    senders = torch.tensor([[3, 3], [1, 1]])  # a dynamic inbox: the oracle counts present Byzantine senders
    assert wiring.tolerance(nodes, torch.tensor([[True, True], [True, True]]), senders).tolist() == [1, 0]
    configured = dataclasses.replace(wiring, oracle=False)
    assert configured.tolerance(nodes, torch.tensor([[True, True]] * 2), senders).tolist() == [1, 1]


def test_wiring_from_edges_matches_hand_built_table():
    wiring, _ = _path_wiring()
    src, dst = np.array([1, 3, 0, 2, 3]), np.array([0, 0, 1, 1, 2])
    w = wiring.from_edges(src, dst, torch.float64)
    assert w.idx.tolist() == [[1, 3], [0, 2], [3, 2], [3, 3]]
    assert w.mask.tolist() == [[True, True], [True, True], [True, False], [False, False]]
    assert torch.allclose(w.weights, torch.tensor([[1 / 3, 1 / 3], [1 / 3, 1 / 3], [0.5, 0.0], [0.0, 0.0]], dtype=torch.float64))
    assert w.f.tolist() == [1, 0, 1, 0]  # oracle: this graph's Byzantine counts
    assert [a.tolist() for a in w.edges()] == [src.tolist(), dst.tolist()]
    assert w.cache is not wiring.cache and not w.cache
    with pytest.raises(ValueError, match="sorted by recipient"):
        wiring.from_edges(np.array([0, 1]), np.array([1, 0]))


@pytest.mark.parametrize("jit", ["on", "off"])
def test_one_mix_path_gathered_and_stored_inboxes_give_the_rule_bits(jit):
    g = torch.Generator().manual_seed(0)
    n, k, d = 12, 4, 7
    params = torch.randn(n, d, generator=g)
    wiring, _ = _path_wiring()
    rule = AggregateAndMix(TrimmedMean(), alpha=0.5)
    sim = build_like(wiring, rule, jit)
    nodes = torch.tensor([0, 3, 5])
    idx = torch.randint(0, n, (3, k), generator=g)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True], [False, True, True, True]])
    rows, slots = torch.tensor([0, 2]), torch.tensor([1, 3])
    crafted = torch.randn(2, d, generator=g)
    f = torch.tensor([1, 1, 0])
    inbox = params[idx].index_put((rows, slots), crafted)
    want = rule.batched(params[nodes], inbox, mask, torch.full((3, k), 0.2), f)
    gathered = mix_rows(sim, params, nodes, Inbox(idx, rows, slots, crafted), mask, torch.full((3, k), 0.2), f)
    store = torch.cat([torch.zeros(1, d), inbox.reshape(-1, d)])  # a flat store, row 0 unused
    stored = mix_rows(sim, params, nodes, Inbox(store=store, slot_rows=1 + torch.arange(3 * k).view(3, k)), mask,
                      torch.full((3, k), 0.2), f, block_bytes=None)
    assert torch.equal(gathered, want) and torch.equal(stored, want)


def build_like(wiring, rule, jit):
    from p2probust.state import Simulation

    return Simulation(wiring, None, rule, None, 0, 0.0, torch.Generator(), torch.Generator(), 0, jit=jit)


def test_sync_round_returns_a_new_state_and_never_mutates_its_input():
    cfg = pr.RunConfig().replace(**{"topology.nodes": 20, "byzantine.count": 2, "train.momentum": 0.9,
                                    "attack.name": "alie"})
    sim, state = build(cfg)
    before = state.params.clone(), state.momentum.clone()
    plan = RoundPlan(round=0, start=0.0, end=1.5)
    nxt, sent = sync_round(sim, state, plan, 0.1)
    assert torch.equal(state.params, before[0]) and torch.equal(state.momentum, before[1])
    assert isinstance(nxt, SimState) and (nxt.round, nxt.time, nxt.rng) == (1, 1.5, None)
    assert not torch.equal(nxt.params, state.params) and not torch.equal(nxt.momentum, state.momentum)
    assert sent == int(sim.wiring.mask.sum())


def test_a_captured_state_replays_the_same_round():
    cfg = pr.RunConfig().replace(**{"topology.nodes": 16, "byzantine.count": 2, "attack.name": "gaussian"})
    sim, state = build(cfg)
    plan = RoundPlan(round=0, start=0.0, end=1.0)
    captured = sim.capture(state)
    first, _ = sync_round(sim, captured, plan, 0.1)
    second, _ = sync_round(sim, captured, plan, 0.1)  # the generators moved on: other draws
    assert not torch.equal(first.params, second.params)
    sim.restore(captured)
    again, _ = sync_round(sim, captured, plan, 0.1)
    assert torch.equal(first.params, again.params) and torch.equal(first.momentum, again.momentum)


def test_async_kernel_materialises_a_state_of_copies_with_the_engine_slot():
    from p2probust.async_kernel import AsyncKernel

    cfg = pr.RunConfig().replace(**{"topology.nodes": 12, "byzantine.count": 1})
    sim, state = build(cfg)
    initial = state.params.clone()
    ak = AsyncKernel(sim, state, sim.wiring.idx, dynamic=False, schedule=lambda r: 0.1, measure=None, eval_every=1,
                     rounds=1, duration=0.0, bar=None)
    ak.compute(np.array([0, 3]), np.array([0, 1]), round=2)
    snap = ak.state(now=0.25, engine={"opaque": 1})
    assert (snap.round, snap.time, snap.engine) == (2, 0.25, {"opaque": 1})
    assert torch.equal(snap.params, ak.params) and snap.params.data_ptr() != ak.params.data_ptr()
    assert not torch.equal(ak.params[0], initial[0]) and torch.equal(ak.params[1], initial[1])  # rows 0 and 3 stepped
    ak.params.index_copy_(0, torch.tensor([0]), torch.zeros(1, ak.params.shape[1]))  # the working tensor moves on
    assert not torch.equal(snap.params, ak.params)
