"""Documented variants of the decentralized papers' code (issue 16) and FABA (issue 11),
checked against plain re-computations of the authors' code (ByrdLab/IOS) on small cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from p2probust import registry
from p2probust.aggregators import FABA, CoordinateWiseMedian, GeometricMedian, NeighbourTrimmedMean, TrimmedMean
from p2probust.gossip import make_rule

T = torch.float64


def _faba_loop(x: torch.Tensor, f: int) -> torch.Tensor:
    """ByrdLab/IOS ``faba``: f times drop the row farthest from the current mean (argmax: first)."""
    remain = x
    for _ in range(f):
        dist = (remain - remain.mean(0)).norm(dim=1)
        j = int(dist.argmax())
        remain = torch.cat([remain[:j], remain[j + 1:]])
    return remain.mean(0)


def test_faba_by_hand():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [-4.0]], dtype=T)
    # mean 1.8: 10 is farthest (8.2); then mean of 0,1,2,-4 = -0.25: -4 farthest; mean of 0, 1, 2 = 1
    assert FABA()(x, torch.ones(5, dtype=torch.bool), torch.tensor(2)).item() == 1.0
    assert FABA()(x, torch.ones(5, dtype=torch.bool), torch.tensor(0)).item() == 1.8


def test_faba_matches_the_reference_loop_batched():
    g = torch.Generator().manual_seed(11)
    n, m, d = 12, 9, 4
    x = torch.randn(n, m, d, generator=g, dtype=T)
    x[:, -3:] += 5 * torch.randn(n, 3, d, generator=g, dtype=T)
    f = torch.randint(0, 4, (n,), generator=g)
    out = FABA().batched(x, torch.ones(n, m, dtype=torch.bool), f)
    ref = torch.stack([_faba_loop(x[i], int(f[i])) for i in range(n)])
    torch.testing.assert_close(out, ref)
    # own=keep: ByrdLab/IOS D_faba over the neighbours, then (agg (k - f) + own) / (k - f + 1)
    keep = FABA(own="keep").batched(x, torch.ones(n, m, dtype=torch.bool), f)
    k = m - 1
    ref = torch.stack([(_faba_loop(x[i, 1:], int(f[i])) * (k - int(f[i])) + x[i, 0]) / (k - int(f[i]) + 1)
                       for i in range(n)])
    torch.testing.assert_close(keep, ref)


def test_neighbour_trimmed_mean_matches_the_ios_code():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(8, 3, generator=g, dtype=T)  # slot 0 = own model, 7 neighbours
    for f in (1, 2, 3):
        k = 7
        tm = torch.from_numpy(stats.trim_mean(x[1:].numpy(), f / k, axis=0))
        ref = (tm * (k - 2 * f) + x[0]) / (k - 2 * f + 1)
        got = NeighbourTrimmedMean()(x, torch.ones(8, dtype=torch.bool), torch.tensor(f))
        torch.testing.assert_close(got, ref)
    assert isinstance(registry.aggregators.create("trimmed-mean", own="keep"), NeighbourTrimmedMean)
    assert type(registry.aggregators.create("trimmed-mean")) is TrimmedMean
    with pytest.raises(ValueError, match="own"):
        registry.aggregators.create("trimmed-mean", own="x")


def test_median_lower_middle_is_torch_median():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(6, 5, generator=g, dtype=T)
    mask = torch.ones(6, dtype=torch.bool)
    assert torch.equal(CoordinateWiseMedian(even="lower")(x, mask, torch.tensor(1)), x.median(0).values)
    assert torch.equal(CoordinateWiseMedian()(x, mask, torch.tensor(1)), torch.from_numpy(np.median(x.numpy(), 0)))
    # through the rule's name and the simulator's fused path (kept ranks only)
    rule = make_rule("median", even="lower")
    assert rule.aggregator.kept_ranks(torch.ones(1, 6, dtype=torch.bool), torch.tensor([1])).sum() == 1


def test_geomed_start_at_the_mean_reaches_the_same_minimiser():
    g = torch.Generator().manual_seed(14)
    x = torch.randn(7, 3, generator=g, dtype=T)
    mask = torch.ones(7, dtype=torch.bool)
    a = GeometricMedian()(x, mask, torch.tensor(0))
    b = GeometricMedian(start="mean")(x, mask, torch.tensor(0))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # with one iteration the start shows: the mean start moves from the mean
    one = GeometricMedian(start="mean", max_iter=1)(x, mask, torch.tensor(0))
    w = 1 / (x - x.mean(0)).norm(dim=1)
    torch.testing.assert_close(one, (w[:, None] * x).sum(0) / w.sum())
    with pytest.raises(ValueError, match="start"):
        GeometricMedian(start="zero")
