"""Hand-computed values of the aggregators and pre-aggregators, and their exact definitions."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest
import torch

from p2probust import registry
from p2probust.aggregators import (
    ARC, MDA, NNM, SMEA, Bucketing, Bulyan, CenteredClipping, CoordinateWiseMedian, GeometricMedian, Krum,
    MeaMed, Mean, MultiKrum, SelfCenteredClipping, StaticClipping, TrimmedMean, chain,
)
from p2probust.aggregators.clipping import arc_count
from p2probust.gossip import make_rule
from p2probust.gossip.registry import make_chain

T = torch.float64
# the robust-ML tutorial's worked example: d = 2, n = 5, f = 1
X = torch.tensor([[2.0, 5], [3, 6], [2, 4], [1, 5], [12, 0]], dtype=T)
M = torch.ones(5, dtype=torch.bool)
F1 = torch.tensor(1)


def test_tutorial_numbers():
    assert Mean()(X, M, F1).tolist() == [4.0, 4.0]
    assert CoordinateWiseMedian()(X, M, F1).tolist() == [2.0, 5.0]
    torch.testing.assert_close(TrimmedMean()(X, M, F1), torch.tensor([7 / 3, 14 / 3], dtype=T))


def test_krum_by_hand():
    # squared distances: A(2,5) has 1, 1 to C, D -> score 2; C and D score 3; B 7; E far
    assert Krum()(X, M, F1).tolist() == [2.0, 5.0]
    # Multi-Krum with q = m - f = 4 averages A, C, D, B
    assert MultiKrum()(X, M, F1).tolist() == [2.0, 5.0]
    torch.testing.assert_close(MultiKrum(q=2)(X, M, F1), torch.tensor([2.0, 4.5], dtype=T))


def test_krum_ties_go_to_lowest_index_and_scores_use_m_minus_f_minus_2():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=T)
    # f = 0: each scores its 2 nearest: 0 -> 1+4, 1 -> 1+1, 2 -> 1+1, 3 -> 1+4: tie 1 vs 2
    assert Krum()(x, torch.ones(4, dtype=torch.bool), torch.tensor(0)).item() == 1.0
    # with m - f - 1 = 3 neighbours slot 0 would tie too; with m - f - 2 = 2 it cannot win
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.05]], dtype=T)
    assert Krum()(x, torch.ones(5, dtype=torch.bool), torch.tensor(1)).item() == 0.1


def test_geometric_median_values():
    # tutorial: the sum of unit vectors from A to the others has norm 0.953 <= 1: the median is A
    torch.testing.assert_close(GeometricMedian(tol=1e-10, max_iter=2000)(X, M, F1), X[0], atol=1e-6, rtol=0)
    # in one dimension the geometric median is the median
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0], [12.0]], dtype=T)
    torch.testing.assert_close(GeometricMedian()(x, M, F1), torch.tensor([10.0], dtype=T), atol=1e-5, rtol=0)


def test_geometric_median_minimizes_sum_of_distances():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 4, generator=g, dtype=T)
    x[7:] += 50
    z = GeometricMedian(tol=1e-12, max_iter=5000)(x, torch.ones(9, dtype=torch.bool), torch.tensor(2))
    grad = ((z - x) / (z - x).norm(dim=1, keepdim=True)).sum(0)
    assert grad.norm() < 1e-4
    # the cap and tolerance are settable and matter
    one = GeometricMedian(max_iter=1)(x, torch.ones(9, dtype=torch.bool), torch.tensor(2))
    assert (one - z).norm() > 1e-6


def test_nnm_by_hand():
    y, mask = NNM()(X, M, F1)
    assert mask.all()
    for i in range(4):
        assert y[i].tolist() == [2.0, 5.0]  # four honest vectors are each other's 4 nearest
    torch.testing.assert_close(y[4], torch.tensor([19 / 4, 15 / 4], dtype=T))  # E with C, B, A


def test_arc_by_hand_and_integer_count():
    y, _ = ARC()(X, M, F1)  # k = floor(2*1*4/5) = 1: E clipped to the norm of B, sqrt(45)
    torch.testing.assert_close(y[4], torch.tensor([math.sqrt(45), 0.0], dtype=T))
    assert torch.equal(y[:4], X[:4])
    for m in range(1, 40):
        for f in range(m):
            assert arc_count(m, f) == math.floor(Fraction(2 * f * (m - f), m))


def test_static_and_self_centred_clipping():
    y, _ = StaticClipping(C=5.0)(X, M, F1)
    torch.testing.assert_close(y[4], torch.tensor([5.0, 0.0], dtype=T))
    assert torch.equal(y[2], X[2])  # norm sqrt(20) < 5 unchanged
    y, _ = SelfCenteredClipping(C=1.0)(X, M, F1)  # centre A = slot 0
    torch.testing.assert_close(y[1], X[0] + torch.tensor([1.0, 1.0], dtype=T) / math.sqrt(2))


def test_centred_clipping_with_explicit_state():
    cc = CenteredClipping(tau=1.0)
    v = torch.tensor([2.0, 5.0], dtype=T)
    out = cc(X, M, F1, centre=v)
    steps = X - v
    clipped = steps * torch.clamp(1.0 / steps.norm(dim=1, keepdim=True), max=1.0)
    clipped[0] = 0
    torch.testing.assert_close(out, v + clipped.sum(0) / 5)
    # default centre: slot 0
    torch.testing.assert_close(cc(X, M, F1), out)


def test_meamed_by_hand():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [100.0]], dtype=T)
    # median 2; the 3 values closest to it: 1, 2, 3
    assert MeaMed()(x, M, torch.tensor(2)).item() == 2.0
    x = torch.tensor([[0.0], [1.9], [2.0], [2.2], [100.0]], dtype=T)
    torch.testing.assert_close(MeaMed()(x, M, torch.tensor(2)), torch.tensor([6.1 / 3], dtype=T))


def _brute(x, f, score):
    m = x.shape[0]
    best = min(combinations(range(m), m - f), key=lambda s: (score(x[list(s)]), s))
    return x[list(best)].mean(0)


def test_mda_and_smea_match_brute_force():
    g = torch.Generator().manual_seed(3)
    for f in (1, 2, 3):
        x = torch.randn(8, 3, generator=g, dtype=T)
        x[:f] *= 6
        mask = torch.ones(8, dtype=torch.bool)
        diam = lambda s: max(float((a - b).norm()) for a in s for b in s)  # noqa: E731
        lam = lambda s: float(np.linalg.eigvalsh(np.cov(s.numpy().T, bias=True))[-1])  # noqa: E731
        torch.testing.assert_close(MDA()(x, mask, torch.tensor(f)), _brute(x, f, diam))
        torch.testing.assert_close(SMEA()(x, mask, torch.tensor(f)), _brute(x, f, lam))


def test_smea_greedy_approximation_is_exact_for_one_and_deterministic():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 3, generator=g, dtype=T)
    x[0] += 8
    mask = torch.ones(7, dtype=torch.bool)
    torch.testing.assert_close(SMEA(search="greedy")(x, mask, F1), SMEA()(x, mask, F1))
    a, b = SMEA(search="greedy")(x, mask, torch.tensor(2)), SMEA(search="greedy")(x, mask, torch.tensor(2))
    assert torch.equal(a, b)


def test_smea_is_exact_by_default_on_the_issue_example():
    # d = 1, m = 14, f = 5: greedy keeps a set of scatter 314 (mean 1.0); the argmin has 244 (16/3)
    x = torch.tensor([5, -6, 6, 8, -8, 6, 3, 2, -7, 25, -8, 13, 11, 28.0], dtype=T).unsqueeze(1)
    mask, f = torch.ones(14, dtype=torch.bool), torch.tensor(5)
    torch.testing.assert_close(SMEA()(x, mask, f), torch.tensor([16 / 3], dtype=T))
    assert SMEA(search="greedy")(x, mask, f).item() == 1.0
    with pytest.warns(RuntimeWarning, match="greedy approximation"):
        assert SMEA(max_subsets=1000)(x, mask, f).item() == 1.0  # C(14, 5) = 2002 > 1000
    with pytest.raises(ValueError, match="search"):
        SMEA(search="fast")


def test_bulyan_selects_then_trims():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, 4, generator=g, dtype=T)
    x[6] = 1e6
    out = Bulyan()(x, torch.ones(7, dtype=torch.bool), F1)
    assert out.abs().max() < 10


def test_bucketing_is_seeded_and_averages():
    x = torch.arange(12, dtype=T).reshape(6, 2)
    mask = torch.ones(6, dtype=torch.bool)
    y, out_mask = Bucketing(s=2, seed=7)(x, mask, F1)
    assert out_mask.tolist() == [True, True, True, False, False, False]
    torch.testing.assert_close(y[:3].mean(0), x.mean(0))
    y2, _ = Bucketing(s=2, seed=7)(x, mask, F1)
    assert torch.equal(y, y2)
    y3, _ = Bucketing(s=6, seed=0)(x, mask, F1)
    torch.testing.assert_close(y3[0], x.mean(0))
    assert chain(Bucketing(s=2), TrimmedMean()).max_tolerance(torch.tensor(6)) == 1  # 3 buckets


def test_chain_names_from_strings():
    rule = make_rule("nnm+trimmed-mean", alpha=0.5)
    assert repr(rule) == "AggregateAndMix(chain(NNM(), TrimmedMean()), alpha=0.5)"
    c = make_chain("bucketing+clip+krum", **{"bucketing.s": 3, "clip.C": 2.0})
    assert repr(c) == "chain(Bucketing(s=3, seed=0), StaticClipping(C=2), Krum())"
    with pytest.raises(ValueError, match="unknown pre-aggregator 'krum'"):
        make_rule("krum+median")
    with pytest.raises(ValueError, match="unknown aggregator 'nnm'"):
        make_rule("nnm+nnm")
    with pytest.raises(ValueError, match="names no part"):
        make_chain("nnm+median", **{"arc.x": 1})


def test_every_component_is_registered_with_a_description():
    names = set(registry.aggregators.names())
    assert {"mean", "median", "trimmed-mean", "geomed", "krum", "multi-krum", "mda", "meamed",
            "centered-clipping", "smea", "bulyan"} <= names
    assert {"nnm", "bucketing", "clip", "self-clip", "arc"} <= set(registry.preaggregators.names())
    assert all(e.description for e in registry.aggregators)


@pytest.mark.parametrize("bad", [
    lambda: StaticClipping(C=0), lambda: Bucketing(s=0), lambda: GeometricMedian(max_iter=0),
    lambda: GeometricMedian(tol=-1), lambda: MultiKrum(q=0), lambda: SMEA(max_subsets=0),
    lambda: CenteredClipping(tau=float("inf")),
])
def test_bad_parameters_are_one_line_value_errors(bad):
    with pytest.raises(ValueError) as err:
        bad()
    assert "\n" not in str(err.value)


def test_float32_precision_near_consensus():
    g = torch.Generator().manual_seed(6)
    x = (1000 + 1e-3 * torch.randn(9, 50, generator=g)).float()
    x[8] = 1000.5
    mask = torch.ones(9, dtype=torch.bool)
    for agg in (Krum(), MDA(), GeometricMedian(), NNM()):
        out = agg(x, mask, F1) if not isinstance(agg, NNM) else agg(x, mask, F1)[0][0]
        assert (out - 1000).abs().max() < 5e-3, agg
