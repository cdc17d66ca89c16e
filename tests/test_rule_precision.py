"""Rule departures of issue 16: GeoMed at data points against scipy, distances near consensus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from p2probust.aggregators import NNM, GeometricMedian, Krum, MultiKrum
from p2probust.aggregators._safe import sq_dists

T = torch.float64


def _scipy_geomed(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Independent minimiser of sum_j ||z - x_j|| (Nelder–Mead, then Powell polish)."""
    obj = lambda z: float(np.linalg.norm(x - z, axis=1).sum())  # noqa: E731
    best = None
    for z0 in (x.mean(0), np.median(x, 0), *x):
        r = minimize(obj, z0, method="Nelder-Mead", options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 20000})
        if best is None or r.fun < best.fun:
            best = r
    return best.x, best.fun


def test_geomed_leaves_an_input_point_for_the_fermat_point():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=T)
    mask = torch.ones(3, dtype=torch.bool)
    fermat = (3 - math.sqrt(3)) / 6
    for start in ("median", "mean"):  # the coordinate-wise median (0, 0) is an input point
        z = GeometricMedian(start=start)(x, mask, torch.tensor(0))
        torch.testing.assert_close(z, torch.tensor([fermat, fermat], dtype=T), atol=1e-6, rtol=0)


def test_geomed_stops_at_an_input_point_that_is_the_median():
    # tutorial example: the unit vectors from A = (2, 5) to the others sum to norm 0.953 <= 1
    x = torch.tensor([[2.0, 5], [3, 6], [2, 4], [1, 5], [12, 0]], dtype=T)
    assert GeometricMedian()(x, torch.ones(5, dtype=torch.bool), torch.tensor(1)).tolist() == [2.0, 5.0]


def test_geomed_matches_scipy_on_random_cases_batched():
    rng = np.random.default_rng(16)
    cases, starts_at_input = [], 0
    for c in range(40):
        m, d = int(rng.integers(3, 8)), int(rng.integers(1, 4))
        x = rng.normal(size=(m, d))
        if c % 2 == 0:  # lattice points: the coordinate-wise median is often an input point
            x = rng.integers(-2, 3, size=(m, d)).astype(float)
        cases.append(x)
    m_cap, d_cap = 7, 3
    xb = torch.zeros(len(cases), m_cap, d_cap, dtype=T)
    mask = torch.zeros(len(cases), m_cap, dtype=torch.bool)
    for i, x in enumerate(cases):  # pad the dimension with zeros (does not change the median)
        xb[i, : len(x), : x.shape[1]] = torch.from_numpy(x)
        mask[i, : len(x)] = True
    rule = GeometricMedian()
    z = rule.batched(xb, mask, torch.zeros(len(cases), dtype=torch.long))
    for i, x in enumerate(cases):
        med = np.median(x, 0) if len(x) % 2 else None
        starts_at_input += med is not None and bool((np.abs(x - med).sum(1) == 0).any())
        ref, ref_obj = _scipy_geomed(x)
        ours = z[i, : x.shape[1]].numpy()
        ours_obj = float(np.linalg.norm(x - ours, axis=1).sum())
        assert ours_obj <= ref_obj + 1e-9, (i, ours, ref)
        if not np.allclose(x, x[0]):
            # the objective is strictly convex unless the points are collinear: compare points too
            assert np.linalg.norm(ours - ref) < 1e-4 or ours_obj <= ref_obj + 1e-12, (i, ours, ref)
        one = rule(xb[i], mask[i], torch.tensor(0))
        torch.testing.assert_close(one, z[i])  # batched == one node
    assert starts_at_input >= 5  # the hard case is well represented


@pytest.mark.parametrize("rule", [Krum(), MultiKrum(), NNM()])
def test_distance_rules_are_exact_near_consensus(rule):
    g = torch.Generator().manual_seed(8)
    wrong = 0
    for case in range(20):
        base = 1e8 * torch.randn(1, 6, generator=g, dtype=T)  # ||x|| / spread = 1e8
        x = base + torch.randn(7, 6, generator=g, dtype=T)
        x[5:] += 4 * torch.randn(2, 6, generator=g, dtype=T)
        mask = torch.ones(7, dtype=torch.bool)
        direct = ((x.unsqueeze(1) - x.unsqueeze(0)) ** 2).sum(-1)
        got = sq_dists(x, mask)
        torch.testing.assert_close(got, direct, rtol=1e-6, atol=1e-6)
        if isinstance(rule, NNM):
            y, _ = rule(x, mask, torch.tensor(2))
            ref, _ = rule(x - base, mask, torch.tensor(2))  # same rule on translated inputs
            wrong += not torch.allclose(y - base, ref, atol=1e-6, rtol=0)
        else:
            wrong += not torch.allclose(rule(x, mask, torch.tensor(2)) - base, rule(x - base, mask, torch.tensor(2)),
                                        atol=1e-6, rtol=0)
    assert wrong == 0
