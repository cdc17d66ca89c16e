"""Attack messages on small hand-checked inputs equal the papers' formulas; conformance of every attack."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx
import numpy as np
import pytest
import torch
from scipy.stats import norm

from p2probust import registry
from p2probust.attacks import (
    ALIE,
    IPM,
    AbstractAttack,
    Dissensus,
    GaussianNoise,
    HugeValue,
    Isolation,
    NonFinite,
    OptimalALIE,
    OptimalIPM,
    SampleDuplication,
    SignFlip,
    SpectralHeterogeneity,
    ZeroVector,
    alie_z,
)
from p2probust.gossip import AggregateAndMix, Gossip
from p2probust.aggregators import CoordinateWiseMedian, Mean, TrimmedMean
from p2probust.testing import check_attack
from p2probust.testing.attacks import make_attack_context


def path_ctx(values, byz=(0,), **kw):
    """Path 0 - 1 - 2 - ...; one coordinate per node unless ``values`` rows are vectors."""
    x = torch.tensor(values, dtype=torch.float64)
    x = x.unsqueeze(1) if x.dim() == 1 else x
    n = x.shape[0]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[list(byz)] = True
    return make_attack_context(nx.path_graph(n), mask, x, **kw)


# --- conformance ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.attacks.names())
def test_every_registered_attack_passes_check_attack(name):
    check_attack(registry.attacks.create(name))


@pytest.mark.parametrize(
    "attack",
    [SignFlip(reference="sender"), GaussianNoise(reference="sender"), ALIE(reference="sender"), IPM(reference="global"),
     ALIE(z="variant", reference="global"), OptimalIPM(reference="sender"), NonFinite("-inf"), Dissensus(weights="table")],
    ids=repr,
)
def test_variants_pass_check_attack(attack):
    check_attack(attack, simulate_round=False)


def test_check_attack_catches_a_local_attack_that_reads_everything():
    class Cheat(AbstractAttack):
        knowledge = "local"

        def craft(self, ctx):
            return ctx.honest_mean().expand(ctx.num_edges, -1).clone()

    with pytest.raises(AssertionError, match="knowledge='local'"):
        check_attack(Cheat(), simulate_round=False)


def test_check_attack_catches_bad_shape_dtype_mutation_and_nondeterminism():
    class Short(AbstractAttack):
        def craft(self, ctx):
            return ctx.params[ctx.senders][:-1]

    class Float32(AbstractAttack):
        def craft(self, ctx):
            return ctx.params[ctx.senders].float()

    class Mutates(AbstractAttack):
        def craft(self, ctx):
            ctx.params[0] += 1
            return ctx.params[ctx.senders]

    class Unseeded(AbstractAttack):
        def craft(self, ctx):
            return torch.randn(ctx.num_edges, ctx.dim, dtype=ctx.params.dtype)

    for attack, msg in [(Short(), "shape"), (Float32(), "dtype"), (Mutates(), "in place"), (Unseeded(), "deterministic")]:
        with pytest.raises(AssertionError, match=msg):
            check_attack(attack, simulate_round=False)


def test_knowledge_follows_reference():
    assert SignFlip(reference="sender").knowledge == "local"
    assert SignFlip().knowledge == ALIE().knowledge == "omniscient"
    assert HugeValue.knowledge == "local" and Dissensus.knowledge == "omniscient"


# --- hand-checked formulas ---------------------------------------------------------------------


def test_sign_flip_reflections():
    ctx = path_ctx([9.0, 1.0, 3.0])  # Byzantine 0 → recipient 1, whose honest view is {1, 3}
    assert ctx.recipients.tolist() == [1]
    assert SignFlip(scale=1).craft(ctx).item() == -2.0
    assert SignFlip().craft(ctx).item() == -8.0  # scaled: -4 × 2
    assert SignFlip(scale=1, reference="global").craft(ctx).item() == -2.0
    assert SignFlip(scale=1, reference="sender").craft(ctx).item() == -1.0  # node 0 only hears node 1


def test_gaussian_is_mean_plus_seeded_noise():
    ctx = path_ctx([[9.0, 9.0], [1.0, 2.0], [3.0, 4.0]])
    noise = torch.randn((1, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.tensor([[2.0, 3.0]], dtype=torch.float64) + 0.5 * noise
    assert torch.allclose(GaussianNoise(sigma=0.5).craft(ctx), expected)


def test_alie_formula_both_variants_and_fixed_z():
    ctx = path_ctx([9.0, 1.0, 3.0])  # n = 3 nodes, f = 1 (globally and at recipient 1)
    mean, std = 2.0, math.sqrt(2.0)  # unbiased std of {1, 3}
    s = math.floor(3 / 2 + 1) - 1
    z_paper = norm.ppf((3 - s) / 3)
    z_variant = norm.ppf((3 - 1 - s) / (3 - 1))
    assert ALIE().craft(ctx).item() == pytest.approx(mean - z_paper * std)
    assert ALIE(z="variant").craft(ctx).item() == pytest.approx(mean - z_variant * std)
    assert ALIE(z=1.5).craft(ctx).item() == pytest.approx(mean - 1.5 * std)


def test_alie_z_matches_scipy():
    n, f = torch.tensor([10, 25, 50, 100]), torch.tensor([2, 5, 24, 20])
    s = torch.floor(n / 2 + 1) - f
    for formula, cdf in [("paper", (n - s) / n), ("variant", (n - f - s) / (n - f))]:
        assert torch.allclose(alie_z(n, f, formula), torch.tensor(norm.ppf(cdf.numpy()), dtype=torch.float64))
    with pytest.raises(ValueError, match="must be one of"):
        ALIE(z="median")


def test_ipm_is_minus_epsilon_times_mean():
    ctx = path_ctx([9.0, 1.0, 3.0])
    assert IPM().craft(ctx).item() == pytest.approx(-0.2)
    assert IPM(epsilon=100).craft(ctx).item() == pytest.approx(-200.0)


def test_duplicate_fixed_copies_one_honest_node():
    ctx = path_ctx([[9.0], [1.0], [3.0], [5.0]], byz=(0, 2))
    assert SampleDuplication(mode="fixed").craft(ctx).flatten().tolist() == [1.0] * ctx.num_edges
    assert SampleDuplication(mode="fixed", node=3).craft(ctx).flatten().tolist() == [5.0] * ctx.num_edges
    with pytest.raises(ValueError, match="honest node"):
        SampleDuplication(mode="fixed", node=2).craft(ctx)


def test_dissensus_and_isolation_formula():
    # recipient 1: own 1, honest neighbour 2 holds 3; MH weights 1/3 on both slots
    ctx = path_ctx([9.0, 1.0, 3.0])
    assert Dissensus().craft(ctx).item() == pytest.approx(1.0 - 1.5 * 2.0)
    assert Isolation().craft(ctx).item() == pytest.approx(1.0 - 2.0)


def test_isolation_freezes_weighted_gossip_and_dissensus_reverses_it():
    G = nx.random_regular_graph(4, 16, seed=1)
    byz = torch.zeros(16, dtype=torch.bool)
    byz[[0, 5]] = True
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for weighted in (True, False):
        rule = Gossip(0.5, weighted=weighted)
        ctx = make_attack_context(G, byz, x, rule=rule)
        own = x[ctx.recipients]
        assert torch.allclose(ctx.evaluate_rule(Isolation().craft(ctx)), own)
        honest_step = ctx.evaluate_rule(own) - own  # Byzantine slots sending θ_i contribute nothing
        moved = ctx.evaluate_rule(Dissensus().craft(ctx)) - own
        assert torch.allclose(moved, -0.5 * honest_step)  # (1 - ε) × the honest step


def test_spectral_fiedler_vector_splits_the_two_cliques():
    G = nx.barbell_graph(5, 0)  # cliques 0..4 and 5..9, bridge 4 - 5
    G.add_edges_from([(10, 0), (10, 9)])  # one Byzantine node touching both sides
    byz = torch.zeros(11, dtype=torch.bool)
    byz[10] = True
    attack = SpectralHeterogeneity()
    ctx = make_attack_context(G, byz, torch.zeros(11, 4, dtype=torch.float64))
    ctx = dataclasses.replace(ctx, wiring_cache={})
    u = attack.fiedler(ctx)
    assert u[10] == 0 and float(u.norm()) == pytest.approx(1.0) and torch.sign(u[:5]).unique().numel() == 1
    assert torch.all(u[:5] * u[5:10] < 0)  # the two cliques have opposite signs
    assert attack.fiedler(ctx) is u  # kept in the wiring's cache
    uncached = dataclasses.replace(ctx, wiring_cache=None)
    assert attack.fiedler(uncached) is not u and torch.equal(attack.fiedler(uncached), u)  # no cache: computed afresh


def test_malformed_values():
    ctx = path_ctx([[9.0, 9.0], [1.0, 2.0], [3.0, 4.0]])
    assert torch.all(HugeValue().craft(ctx) == 1e30)
    assert torch.all(torch.isnan(NonFinite().craft(ctx)))
    assert torch.all(NonFinite("inf").craft(ctx) == math.inf)
    assert torch.all(NonFinite(float("-inf")).craft(ctx) == -math.inf)
    assert torch.all(ZeroVector().craft(ctx) == 0)
    with pytest.raises(ValueError, match="must be finite"):
        HugeValue(math.inf)
    with pytest.raises(ValueError, match="non-finite"):
        NonFinite(1.0)


def test_malformed_float32_stays_huge():
    ctx = path_ctx([9.0, 1.0, 3.0])
    ctx32 = make_attack_context(nx.path_graph(3), ctx.is_byzantine, ctx.params.float())
    assert HugeValue().craft(ctx32).dtype == torch.float32 and torch.isfinite(HugeValue().craft(ctx32)).all()


# --- line search ---------------------------------------------------------------------------------


RULES = [
    AggregateAndMix(TrimmedMean(), 1.0),
    AggregateAndMix(CoordinateWiseMedian(), 0.5),
    AggregateAndMix(Mean(), 1.0),
    Gossip(1.0, weighted=True),
]


@pytest.mark.parametrize("rule", RULES, ids=repr)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_line_search_is_never_weaker_than_the_first_two_factors_it_tries(rule, seed):
    G = nx.random_regular_graph(6, 20, seed=seed)
    byz = torch.zeros(20, dtype=torch.bool)
    byz[[1, 7, 13]] = True
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 1.0
    ctx = make_attack_context(G, byz, x, rule=rule)
    honest_mean = ctx.recipient_honest_stats()[0]

    def error(msgs):
        return (ctx.evaluate_rule(msgs) - honest_mean).norm(dim=1)

    for opt, fixed in [(OptimalALIE(), lambda z: ALIE(z=z)), (OptimalIPM(), lambda e: IPM(epsilon=e)),
                       (OptimalIPM(start=2.0), lambda e: IPM(epsilon=e + 2.0))]:
        for factor in (0.0, 1.0):  # the search evaluates `start` first, then `start + delta`
            assert torch.all(error(opt.craft(ctx)) >= error(fixed(factor).craft(ctx)) - 1e-12), opt
    _, factor, err = OptimalIPM().search(ctx)
    assert torch.allclose(err, error(OptimalIPM().craft(ctx)))


def test_line_search_picks_one_factor_per_recipient_and_beats_plain_alie_on_trimmed_mean():
    G = nx.complete_graph(11)
    byz = torch.zeros(11, dtype=torch.bool)
    byz[[0, 1, 2]] = True
    x = torch.randn(11, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ctx = make_attack_context(G, byz, x, rule=AggregateAndMix(TrimmedMean(), 1.0))
    _, factor, err = OptimalALIE().search(ctx)
    for r in ctx.recipients.unique():
        assert factor[ctx.recipients == r].unique().numel() == 1
    fixed = (ctx.evaluate_rule(ALIE().craft(ctx)) - ctx.recipient_honest_stats()[0]).norm(dim=1)
    assert torch.all(err > fixed)


def test_evaluate_rule_needs_a_rule():
    ctx = path_ctx([9.0, 1.0, 3.0])
    ctx = type(ctx)(**{**ctx.__dict__, "rule": None})
    with pytest.raises(ValueError, match="ctx.rule"):
        ctx.evaluate_rule(ctx.params[ctx.senders])


@pytest.mark.parametrize("bad", [{"evals": 0}, {"ratio": 1.0}, {"delta": math.nan}, {"start": -1.0},
                                 {"target": "server"}, {"reference": "x"}])
def test_line_search_rejects_bad_parameters(bad):
    with pytest.raises(ValueError, match="must be"):
        OptimalALIE(**bad)


def test_cli_lists_attacks_with_knowledge_and_parameters():
    from click.testing import CliRunner

    from p2probust.cli import main

    out = CliRunner().invoke(main, ["list", "attacks"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    for name in registry.attacks.names():
        i = next(k for k, line in enumerate(lines) if line.split()[:1] == [name])
        assert "knowledge:" in lines[i + 1] and "params:" in lines[i + 1]
    assert "knowledge: local; params: value=1e+30" in out.output
    assert "epsilon=1.5" in out.output and "z='paper'" in out.output


def test_attack_benchmark_smoke(capsys, load_script):
    bench = load_script("benchmarks/bench_attacks.py")
    bench.main(["--n", "40", "--d", "8", "--degree", "4", "--repeats", "1"])
    table = capsys.readouterr().out
    assert table.count("\n|") == 2 + 1 + len(registry.attacks.names())


def test_recipient_stats_equal_a_plain_loop():
    G = nx.random_regular_graph(4, 14, seed=2)
    byz = torch.zeros(14, dtype=torch.bool)
    byz[[3, 8]] = True
    x = torch.randn(14, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ctx = make_attack_context(G, byz, x)
    mean, std = ctx.recipient_honest_stats()
    for e, i in enumerate(ctx.recipients.tolist()):
        rows = x[[i] + [j for j in G.neighbors(i) if not byz[j]]]
        assert torch.allclose(mean[e], rows.mean(0)) and torch.allclose(std[e], rows.std(0, correction=1))
    for e, b in enumerate(ctx.senders.tolist()):
        rows = x[[j for j in G.neighbors(b) if not byz[j]]]
        assert torch.allclose(ctx.sender_honest_stats()[0][e], rows.mean(0))


def test_label_flip_honest_and_stale_send_the_senders_own_model():
    ctx = path_ctx([9.0, 1.0, 3.0])
    for name in ("label-flip", "honest", "none", "stale"):
        assert registry.attacks.create(name).craft(ctx).item() == 9.0
    assert registry.attacks.get("none").factory is registry.attacks.get("honest").factory


def test_recipient_honest_mean_matches_a_loop_on_an_irregular_graph():
    """The sparse-product mean equals, per edge, the mean of the recipient and its honest neighbours."""
    import networkx as nx

    from p2probust.testing.attacks import make_attack_context

    G = nx.barbell_graph(5, 2)  # degrees 4, 5 and 2: padded table rows
    is_byz = torch.zeros(G.number_of_nodes(), dtype=torch.bool)
    is_byz[[0, 6]] = True
    params = torch.randn(G.number_of_nodes(), 7, dtype=torch.float64)
    ctx = make_attack_context(G, is_byz, params, include_byzantine_recipients=True)
    got = ctx.recipient_honest_mean()
    for e, i in enumerate(ctx.recipients.tolist()):
        group = [i] + [j for j in G.neighbors(i) if not is_byz[j]]
        assert torch.allclose(got[e], params[group].mean(0), atol=1e-12)
    assert torch.allclose(got, ctx.recipient_honest_stats()[0], atol=1e-12)


def test_recipient_honest_mean_from_the_graph_cache_has_the_same_bits():
    """Every node's honest members, kept in the graph cache (the asynchronous kernel's), give the
    bits of the per-call table, for any set of edges, and are built once."""
    from p2probust.testing.attacks import make_attack_context

    G = nx.random_regular_graph(6, 60, seed=3)
    is_byz = torch.zeros(60, dtype=torch.bool)
    is_byz[[4, 17, 33]] = True
    g = torch.Generator().manual_seed(0)
    params = torch.randn(60, 300, generator=g)
    full = make_attack_context(G, is_byz, params)
    cache = {}
    for keep in (slice(None), slice(0, 5), slice(3, 12)):  # other edges each call, one graph
        ctx = dataclasses.replace(full, senders=full.senders[keep], recipients=full.recipients[keep], slots=full.slots[keep])
        want = ctx.recipient_honest_mean(scale=-4.0)
        got = dataclasses.replace(ctx, graph_cache=cache).recipient_honest_mean(scale=-4.0)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert cache["honest_members"]["members"].shape == (60, 7)
    assert cache["honest_members"]["count"][4] == 1 + sum(not is_byz[j] for j in G.neighbors(4))
    row = int(full.recipients[0])
    mask = full.mask.clone()
    mask[row, 0] = False  # a slot of the first recipient empties: its row is listed as dirty
    ctx = dataclasses.replace(full, mask=mask)
    cache["dirty"] = torch.tensor([row])
    want = ctx.recipient_honest_mean()
    got = dataclasses.replace(ctx, graph_cache=cache).recipient_honest_mean()
    assert torch.equal(got.view(torch.int32), want.view(torch.int32)) and "dirty" not in cache
    assert cache["honest_members"]["count"][row] == ctx.honest_slots[row].sum() + 1


def test_inbox_buffer_lists_the_nodes_whose_senders_changed():
    from p2probust.engine.inflight import Deliveries
    from p2probust.network_state import InboxBuffer

    idx = torch.tensor([[1, 2], [0, 2], [0, 1]])
    buf = InboxBuffer(idx, 3, torch.float32)

    def one(*columns):  # delivered messages: dst, slot, src, sent_at, handle
        return Deliveries(*map(np.array, columns))

    assert buf.take_changed().tolist() == [0, 1, 2]  # at first: every node
    buf.deliver(one([0, 1], [0, 1], [1, 2], [0.0, 0.0], [0, 1]))
    assert buf.take_changed().tolist() == [0, 1] and buf.take_changed().tolist() == []
    buf.deliver(one([0], [0], [1], [1.0], [2]))  # the same slot again, the same sender
    assert buf.take_changed().tolist() == []
    buf.deliver(one([2], [1], [1], [1.0], [-1]))  # a slot's first message
    assert buf.take_changed().tolist() == [2]
    buf.deliver(one([2], [1], [0], [2.0], [3]))  # another sender in that slot (epidemic)
    assert buf.take_changed().tolist() == [2]
