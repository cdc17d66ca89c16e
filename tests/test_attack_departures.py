"""Issue 16, attack departures: each attack against hand-computed values or a transcription of the
authors' code (ByzFL's LineMaximize, Karimireddy et al.'s MimicVariantAttacker, networkx's Fiedler
vector on the weighted honest graph as in Gaucher et al.'s code)."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from p2probust.aggregators import CoordinateWiseMedian, TrimmedMean
from p2probust.attacks import (
    ALIE,
    IPM,
    Dissensus,
    GaussianNoise,
    Mimic,
    OptimalALIE,
    OptimalIPM,
    SampleDuplication,
    SignFlip,
    SpectralHeterogeneity,
    alie_z,
    fiedler_vector,
    gossip_target,
    line_maximize,
)
from p2probust.gossip import AggregateAndMix, Gossip
from p2probust.testing.attacks import make_attack_context
from p2probust.topology import NeighbourTable


def ctx_of(G, byz, values, **kw):
    x = torch.tensor(values, dtype=torch.float64)
    x = x.unsqueeze(1) if x.dim() == 1 else x
    mask = torch.zeros(G.number_of_nodes(), dtype=torch.bool)
    mask[list(byz)] = True
    return make_attack_context(G, mask, x, **kw)


# --- ALIE -------------------------------------------------------------------------------------

#: recipient 1 hears Byzantine 0 and honest 2, 3; 7 nodes in all, 1 Byzantine
SEVEN = nx.Graph([(0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (5, 2), (5, 6)])
VALUES = [50.0, 1.0, 2.0, 6.0, 7.0, 8.0, 9.0]  # recipient 1 aggregates {1, 2, 6}: mean 3, unbiased std √7


def test_alie_uses_the_unbiased_std_and_the_papers_global_n_f():
    ctx = ctx_of(SEVEN, [0], VALUES)
    assert ctx.recipients.tolist() == [1]
    # n = 7, f = 1: s = ⌊7/2 + 1⌋ − 1 = 3, z = Φ⁻¹(4/7) = 0.18001237 ; σ = √((4 + 1 + 9)/2) = √7
    assert ALIE().craft(ctx).item() == pytest.approx(3.0 - 0.18001236979270496 * math.sqrt(7.0), abs=1e-12)
    assert ALIE().craft(ctx).item() == pytest.approx(2.523732036613107, abs=1e-12)


def test_alie_local_counts_give_z_zero_at_an_even_count_and_plus_sign_follows_wu_et_al():
    ctx = ctx_of(SEVEN, [0], VALUES)
    # locally: n = 4 (itself and 3 neighbours), f = 1: s = 2, Φ⁻¹(2/4) = 0, the honest mean itself
    assert ALIE(counts="local").craft(ctx).item() == pytest.approx(3.0, abs=1e-12)
    assert ALIE(counts="local", sign=1).craft(ctx).item() == pytest.approx(3.0, abs=1e-12)
    assert ALIE(z=1.0, sign=1).craft(ctx).item() == pytest.approx(3.0 + math.sqrt(7.0), abs=1e-12)
    with pytest.raises(ValueError, match="sign = 2 must be -1 or 1"):
        ALIE(sign=2)
    with pytest.raises(ValueError, match="counts = 'node' must be one of: global, local"):
        ALIE(counts="node")


def test_alie_z_of_the_issue_setting():
    # ER(12), 2 Byzantine: s = 5, z = Φ⁻¹(7/12) = 0.2104 (the recipient-local count gave 0 before)
    assert float(alie_z(torch.tensor([12]), torch.tensor([2]))[0]) == pytest.approx(0.21042839424792484, abs=1e-9)


# --- duplicate ----------------------------------------------------------------------------------


def test_duplicate_copies_a_random_honest_neighbour_of_each_recipient_each_round():
    G = nx.complete_bipartite_graph(2, 6)  # Byzantine 0, 1 on one side; every honest node hears both
    G.add_edges_from([(2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 2)])  # honest ring 2..7
    x = torch.arange(8, dtype=torch.float64).unsqueeze(1) * 10
    byz = torch.tensor([True, True] + [False] * 6)
    counts = torch.zeros(8, 8)
    for seed in range(300):
        ctx = make_attack_context(G, byz, x, seed=seed)
        copied = (SampleDuplication().craft(ctx).squeeze(1) / 10).long()
        for r in ctx.recipients.unique().tolist():
            got = copied[ctx.recipients == r]
            assert got.unique().numel() == 1  # one draw per recipient, shared by its Byzantine edges
            assert int(got[0]) in {2 + (r - 2 + 1) % 6, 2 + (r - 2 - 1) % 6}  # an honest ring neighbour
            counts[r, int(got[0])] += 1
    # 300 draws between two neighbours: each side within 150 ± 45 (|z| < 5.2)
    assert torch.all((counts.sum(1)[2:] == 300)) and torch.all(counts[counts > 0] > 105)
    ctx = make_attack_context(G, byz, x, seed=0)
    assert SampleDuplication(mode="fixed").craft(ctx).flatten().tolist() == [20.0] * ctx.num_edges
    assert SampleDuplication(mode="fixed", node=5).craft(ctx).flatten().tolist() == [50.0] * ctx.num_edges
    with pytest.raises(ValueError, match="needs mode = 'fixed'"):
        SampleDuplication(node=3)


# --- Gaussian -----------------------------------------------------------------------------------


def test_gaussian_centres():
    def ctx():  # a fresh context: the attack stream seeded with 0
        return ctx_of(SEVEN, [0], [[50.0, 0.0], [1.0, 1.0], [2.0, 4.0], [6.0, 1.0], [0, 0], [0, 0], [0, 0]])

    noise = torch.randn((1, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    neighbours = torch.tensor([[4.0, 2.5]], dtype=torch.float64)  # mean of nodes 2 and 3, recipient 1 excluded
    assert torch.allclose(GaussianNoise(sigma=0.5, centre="neighbours").craft(ctx()), neighbours + 0.5 * noise)
    assert torch.allclose(GaussianNoise(sigma=0.5, centre="zero").craft(ctx()), 0.5 * noise)
    with_self = torch.tensor([[3.0, 2.0]], dtype=torch.float64)  # mean of nodes 1, 2, 3
    assert torch.allclose(GaussianNoise(sigma=0.5).craft(ctx()), with_self + 0.5 * noise)
    assert GaussianNoise(centre="zero").knowledge == "local" and GaussianNoise(centre="neighbours").knowledge == "omniscient"


# --- the line search: a transcription of ByzFL's LineMaximize --------------------------------------


def byzfl_line_maximize(scape, evals=16, start=0.0, delta=1.0, ratio=0.8):
    """LPD-EPFL/byzfl, byzfl/attacks/attack_optimizers.py, LineMaximize.__call__ (scalar)."""
    best_x = start
    best_y = scape(best_x)
    evals -= 1
    while evals > 0:
        prop_x = best_x + delta
        prop_y = scape(prop_x)
        evals -= 1
        if prop_y > best_y:
            best_y, best_x = prop_y, prop_x
            delta *= 2
        else:
            delta *= ratio
            break
    while evals > 0:
        if prop_x < best_x:
            prop_x += delta
        else:
            x = prop_x - delta
            while x < 0:
                x = (x + prop_x) / 2
            prop_x = x
        prop_y = scape(prop_x)
        evals -= 1
        if prop_y > best_y:
            best_y, best_x = prop_y, prop_x
        delta *= ratio
    return best_x


def test_batched_line_maximize_equals_byzfl_on_many_functions():
    peaks = [0.0, 0.3, 1.0, 2.7, 5.0, 10.0, 37.0, 100.0, 1e4]
    fns = [lambda x, a=a: -(x - a) ** 2 for a in peaks] + [lambda x: min(x, 3.0), lambda x: math.sin(x)]

    def batched(x):
        return torch.tensor([fn(float(v)) for fn, v in zip(fns, x.tolist())], dtype=torch.float64)

    for evals in (1, 2, 5, 16, 20):
        got, _ = line_maximize(batched, len(fns), evals=evals)
        assert got.tolist() == [byzfl_line_maximize(fn, evals=evals) for fn in fns], evals
    # 16 evaluations from 0 find a peak at 2.7 to within the contracted step
    assert abs(byzfl_line_maximize(fns[3]) - 2.7) < 0.3


@pytest.mark.parametrize("rule", [AggregateAndMix(TrimmedMean(), 1.0), AggregateAndMix(CoordinateWiseMedian(), 0.5),
                                  Gossip(1.0, weighted=True)], ids=repr)
def test_optimal_alie_and_ipm_equal_byzfl_run_per_recipient(rule):
    G = nx.random_regular_graph(6, 16, seed=4)
    byz = torch.zeros(16, dtype=torch.bool)
    byz[[1, 7, 13]] = True
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 1.0
    ctx = make_attack_context(G, byz, x, rule=rule)
    mean, std = ctx.recipient_honest_stats()
    for attack, family in [(OptimalALIE(), lambda g: mean - g * std), (OptimalIPM(), lambda g: -g * mean)]:
        _, factor, _ = attack.search(ctx)
        for e in range(ctx.num_edges):
            def scape(g, e=e):  # the rule's error at this recipient when every Byzantine edge sends m(g)
                out = ctx.evaluate_rule(family(g))[e]
                return float((out - mean[e]).norm())
            assert float(factor[e]) == pytest.approx(byzfl_line_maximize(scape), abs=1e-12)


def test_optimal_alie_reports_its_factor_per_round():
    import p2probust as pr

    res = pr.simulate(pr.RunConfig().replace(**{
        "data.task": "least-squares", "train.rounds": 3, "eval_every": 3, "attack.name": "alie-opt",
        "topology.name": "complete", "topology.nodes": 10, "byzantine.count": 2,
    }))
    rows = res.history
    assert rows[0]["attack_factor"] is None
    assert all(r["attack_factor"] is not None and r["attack_factor"] >= 0 for r in rows[1:])


# --- spectral -----------------------------------------------------------------------------------


def weighted_two_cliques():
    G = nx.barbell_graph(5, 0)  # honest cliques 0..4 and 5..9, bridge 4 - 5
    G.add_edges_from([(10, 0), (10, 9), (11, 2), (11, 7)])  # Byzantine 10, 11 touch both sides
    byz = torch.zeros(12, dtype=torch.bool)
    byz[[10, 11]] = True
    return G, byz


def test_fiedler_vector_of_the_weighted_honest_graph_matches_networkx():
    G, byz = weighted_two_cliques()
    table = NeighbourTable.from_graph(G, weights="metropolis", dtype=torch.float64)
    u = fiedler_vector(table.idx, table.mask, byz, table.weights)
    H = G.subgraph(range(10)).copy()
    for a, b in H.edges:
        slot = int((table.idx[a] == b).nonzero()[0])
        H.edges[a, b]["weight"] = float(table.weights[a, slot])
    ref = torch.tensor(nx.fiedler_vector(H, weight="weight", method="lobpcg", tol=1e-12, seed=0), dtype=torch.float64)
    ref = ref * torch.sign(ref @ u[:10])  # an eigenvector's sign is arbitrary (the attack does not depend on it)
    assert torch.allclose(u[:10], ref, atol=1e-6) and u[10] == u[11] == 0
    assert not torch.allclose(u, fiedler_vector(table.idx, table.mask, byz), atol=1e-3)  # the weights matter
    assert float(u.norm()) == pytest.approx(1.0)


def test_spectral_message_and_its_line_search():
    G, byz = weighted_two_cliques()
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rule = AggregateAndMix(TrimmedMean(), 0.5)
    ctx = make_attack_context(G, byz, x, rule=rule)
    attack = SpectralHeterogeneity(factor=2.0)
    u = attack.fiedler(ctx)
    split = sum(u[j] * x[j] for j in range(10))  # Σ_j u_j θ_j over honest nodes
    expected = torch.stack([x[i] + 2.0 * u[i] * split for i in ctx.recipients.tolist()])
    assert torch.allclose(attack.craft(ctx), expected)
    # the line search: per recipient, ByzFL/Gaucher's line_maximize of ‖R_i(θ_i + c·dir) − gossip target‖
    searched = SpectralHeterogeneity()
    msgs = searched.craft(ctx)
    direction, target = searched.direction(ctx), gossip_target(ctx, "table")
    own = x[ctx.recipients]
    for e in range(ctx.num_edges):
        def scape(c, e=e):
            return float((ctx.evaluate_rule(own + c * direction)[e] - target[e]).norm())
        c = byzfl_line_maximize(scape)
        assert torch.allclose(msgs[e], own[e] + c * direction[e], atol=1e-12)
    assert searched.report()["attack_factor"] is not None


def test_spectral_sends_the_own_model_while_honest_models_agree():
    G, byz = weighted_two_cliques()
    ctx = make_attack_context(G, byz, torch.ones(12, 3, dtype=torch.float64))  # Σ u_j θ_j = 0 (u ⟂ 1)
    assert torch.allclose(SpectralHeterogeneity(factor=5.0).craft(ctx), torch.ones(ctx.num_edges, 3, dtype=torch.float64))


def test_dissensus_line_search_is_never_weaker_than_a_fixed_epsilon_of_the_search_path():
    G, byz = weighted_two_cliques()
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ctx = make_attack_context(G, byz, x, rule=Gossip(0.5, weighted=True))
    target = gossip_target(ctx, "rule")
    searched = Dissensus(search=True)
    err = (ctx.evaluate_rule(searched.craft(ctx)) - target).norm(dim=1)
    # ε = 0 (start of the search) and ε = 1 (its first step) are both evaluated: the result beats them
    for eps in (0.0, 1.0):
        fixed = (ctx.evaluate_rule(Dissensus(epsilon=eps).craft(ctx)) - target).norm(dim=1)
        assert torch.all(err >= fixed - 1e-12)
    # weighted gossip is linear in the message: the error grows without bound, so the search expands
    assert searched.report()["attack_factor"] > 100


# --- mimic: a transcription of MimicVariantAttacker ----------------------------------------------


def reference_mimic(rounds, warmup):
    """epfml/byzantine-robust-noniid-optimizer, codes/attacks/mimic.py, MimicVariantAttacker
    (argmax=True), on float64 copies of the honest vectors of each round; returns the targets."""
    mu = z = None
    targets, target = [], None
    for t, good in enumerate(rounds):
        avg = sum(good) / len(good)
        if t == 0:
            mu = avg
            z = torch.randn(good[0].numel(), generator=torch.Generator().manual_seed(0)).double()
            cumu = sum(((g - mu) @ z) * (g - mu) for g in good)
            z = cumu / cumu.norm()
        elif t < warmup:
            mu = t / (1 + t) * mu + avg / (1 + t)
            cumu = sum(((g - mu) @ z) * (g - mu) for g in good)
            z = t / (1 + t) * z + cumu / cumu.norm() / (1 + t)
            z = z / z.norm()
        if t < warmup:
            target = max(range(len(good)), key=lambda i: (float(good[i] @ z), -i))
        targets.append(target)
    return targets


@pytest.mark.parametrize("warmup", [1, 3])
def test_mimic_follows_the_authors_warmup_then_stays_fixed(warmup):
    G = nx.complete_graph(8)
    byz = torch.zeros(8, dtype=torch.bool)
    byz[[0, 1]] = True
    gen = torch.Generator().manual_seed(5)
    attack = Mimic(warmup=warmup)
    got, rounds = [], []
    for r in range(6):
        x = torch.randn(8, 4, generator=gen, dtype=torch.float64) * (1 + r)
        ctx = make_attack_context(G, byz, x, round=r)
        out = attack.craft(ctx)
        assert torch.equal(attack.craft(ctx), out)  # a second call in the same round changes nothing
        got.append(int((x == out[0]).all(1).nonzero()[0]) - 2)  # position among the honest nodes 2..7
        rounds.append(list(x[2:]))
    assert got == reference_mimic(rounds, warmup)
    assert len(set(got[warmup - 1:])) == 1  # fixed after the warm-up


def test_mimic_stateless_heuristics_are_kept():
    G = nx.path_graph(4)
    ctx = ctx_of(G, [0], [[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [-3.0, 0.2]])
    assert torch.equal(Mimic(heuristic="direction").craft(ctx), torch.tensor([[-3.0, 0.2]], dtype=torch.float64))
    assert Mimic(heuristic="farthest").target(ctx) == 3
    with pytest.raises(ValueError, match="warmup = 0 must be an integer >= 1"):
        Mimic(warmup=0)


# --- models vs gradients: the complete-graph, α = 1 server correspondence -------------------------


def test_model_attacks_as_server_gradients_on_the_complete_graph():
    """Honest nodes share θ and send θ − γ g_j; a model message m is the server gradient (θ − m)/γ."""
    gen = torch.Generator().manual_seed(7)
    theta, gamma = torch.randn(3, generator=gen, dtype=torch.float64), 0.1
    g = torch.randn(6, 3, generator=gen, dtype=torch.float64)  # honest gradients of nodes 2..7
    x = torch.cat([torch.zeros(2, 3, dtype=torch.float64), theta - gamma * g])
    byz = torch.tensor([True, True] + [False] * 6)
    ctx = make_attack_context(nx.complete_graph(8), byz, x)

    def as_gradient(m):
        return (theta - m) / gamma

    z = float(alie_z(torch.tensor([8]), torch.tensor([2]))[0])
    assert torch.allclose(as_gradient(ALIE().craft(ctx)), g.mean(0) + z * g.std(0))  # gradient ALIE, sign flipped
    c = 4.0  # sign flip and IPM are NOT the server's −c ḡ: a (1 + c) θ / γ term remains
    assert torch.allclose(as_gradient(SignFlip(scale=c).craft(ctx)), (1 + c) * theta / gamma - c * g.mean(0))
    assert torch.allclose(as_gradient(IPM(epsilon=c).craft(ctx)), (1 + c) * theta / gamma - c * g.mean(0))
    copied = as_gradient(SampleDuplication().craft(ctx))  # duplication copies a gradient exactly
    assert all(any(torch.allclose(row, gj) for gj in g) for row in copied)
