r"""The empirical robustness coefficient :math:`\kappa` of an aggregator.

An aggregator :math:`F` is :math:`(f, \kappa)`-robust when, for every set of ``m`` vectors and
every subset :math:`G` of :math:`m - f` of them,

.. math:: \|F(x_1, \dots, x_m) - \bar x_G\|^2 \le \kappa \cdot \frac{1}{|G|}\sum_{i \in G}\|x_i - \bar x_G\|^2,
          \qquad \bar x_G = \frac{1}{|G|}\sum_{i\in G} x_i .

:func:`empirical_kappa` measures the largest ratio on given vectors, over all subsets ``G``
(exhaustive while :math:`\binom{m}{f}` is at most ``max_subsets``, else a seeded sample of
subsets that always includes the first :math:`m - f` vectors), batched over trials.
:func:`kappa_table` runs it on random honest vectors with adversarial ones of a few kinds, for the
``p2probust kappa`` command. Known upper bounds, as the robust-ML tutorial states them (Guerraoui,
Gupta, Pinot, *Robust Machine Learning*, Springer 2024, ch. 4; proved in Allouah et al., AISTATS
2023, Prop. 2, and Allouah et al., "Robust distributed learning: tight error bounds and breakdown
point under data heterogeneity", NeurIPS 2023), with :math:`r = f/(m-2f)`:
CWTM :math:`6r(1+r)`; CWMed and GeoMed :math:`4(1+r)^2`; Krum :math:`6(1+r)^2`
(:data:`KAPPA_BOUNDS`).

Reference: Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by
mixing: a recipe for optimal Byzantine ML under heterogeneity", AISTATS 2023.
"""

from __future__ import annotations

import math
from itertools import combinations, islice

import torch
from torch import Tensor

from .aggregators.base import AbstractAggregator

__all__ = ["KAPPA_BOUNDS", "KAPPA_BOUND_SOURCE", "SCENARIOS", "empirical_kappa", "kappa_bound", "kappa_table", "make_inputs"]

#: adversarial inputs used by :func:`kappa_table`
SCENARIOS = ("outliers", "alie", "shift")


def _subsets(m: int, f: int, max_subsets: int, seed: int) -> Tensor:
    """Keep masks ``[T, m]`` of subsets of size ``m - f``: all, or a seeded sample."""
    total = math.comb(m, f)
    if total <= max_subsets:
        idx = list(combinations(range(m), m - f))
    else:
        g = torch.Generator().manual_seed(seed)
        keys = torch.rand(max_subsets - 1, m, generator=g)
        picks = keys.argsort(-1)[:, : m - f].sort(-1).values.tolist()
        idx = [tuple(range(m - f))] + [tuple(p) for p in islice(picks, max_subsets - 1)]
    keep = torch.zeros(len(idx), m, dtype=torch.bool)
    for t, s in enumerate(idx):
        keep[t, list(s)] = True
    return keep


def empirical_kappa(agg: AbstractAggregator, x: Tensor, f: int, *, max_subsets: int = 5000, seed: int = 0) -> Tensor:
    r"""Largest :math:`\|F(x) - \bar x_G\|^2 / \big(\frac1{|G|}\sum_{i\in G}\|x_i - \bar x_G\|^2\big)`
    over subsets ``G`` of size ``m - f``.

    Parameters
    ----------
    agg : AbstractAggregator
        The rule (any aggregator or chain), called with tolerance ``f``.
    x : Tensor [m, d] or [trials, m, d]
        Input vectors (honest and adversarial); computed in float64.
    f : int
        Tolerance, ``0 <= f < m``.
    max_subsets : int
        Exhaustive search up to this many subsets, else this many sampled subsets.
    seed : int
        Seed of the subset sample (and of randomized rules' generators: they are used as given).

    Returns
    -------
    Tensor [] or [trials]
        The empirical :math:`\kappa` (``inf`` if some ``G`` has zero spread and ``F`` misses its mean).
    """
    single = x.dim() == 2
    x = (x.unsqueeze(0) if single else x).to(torch.float64)
    trials, m, _ = x.shape
    if not (isinstance(f, int) and 0 <= f < m):
        raise ValueError(f"f = {f!r} must be an integer with 0 <= f < m = {m}")
    mask = torch.ones(trials, m, dtype=torch.bool)
    out = agg.batched(x, mask, torch.full((trials,), f, dtype=torch.long))  # [trials, d]
    keep = _subsets(m, f, max_subsets, seed).to(torch.float64)  # [T, m]
    k = m - f
    means = keep @ x / k  # [trials, T, d]
    sq = (x * x).sum(-1)  # [trials, m]
    spread = (sq @ keep.T) / k - (means * means).sum(-1)  # [trials, T]
    spread = spread.clamp_min(0)
    err = ((out.unsqueeze(1) - means) ** 2).sum(-1)
    ratio = torch.where(spread > 0, err / spread.clamp_min(1e-300),
                        torch.where(err > 1e-24, torch.tensor(float("inf"), dtype=torch.float64), torch.zeros((), dtype=torch.float64)))
    kappa = ratio.amax(-1)
    return kappa[0] if single else kappa


#: rule name → κ bound as a function of r = f / (m − 2f) (tutorial, ch. 4; see the module notes)
KAPPA_BOUNDS = {
    "trimmed-mean": lambda r: 6 * r * (1 + r),
    "median": lambda r: 4 * (1 + r) ** 2,
    "geomed": lambda r: 4 * (1 + r) ** 2,
    "krum": lambda r: 6 * (1 + r) ** 2,
}
KAPPA_BOUND_SOURCE = "Guerraoui, Gupta, Pinot, Robust Machine Learning (2024), ch. 4; Allouah et al., AISTATS 2023"


def kappa_bound(name: str, m: int, f: int) -> float | None:
    """The known upper bound of :math:`\\kappa` with ``m`` inputs and ``f`` tolerated, for the
    rules of :data:`KAPPA_BOUNDS` (else None, also when ``2f >= m``)."""
    if m - 2 * f <= 0 or name not in KAPPA_BOUNDS:
        return None
    return KAPPA_BOUNDS[name](f / (m - 2 * f))


def make_inputs(scenario: str, trials: int, m: int, f: int, d: int, *, seed: int = 0) -> Tensor:
    """Random honest vectors ``N(0, I)`` in the first ``m - f`` rows and ``f`` adversarial rows.

    ``outliers``: far points (norm 100, random directions); ``alie``: all at the honest mean plus
    1.5 honest standard deviations per coordinate (Baruch et al., NeurIPS 2019); ``shift``: all at
    the honest mean plus 3 along the first axis. Returns ``[trials, m, d]`` float64.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r} must be one of: {', '.join(SCENARIOS)}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(trials, m, d, generator=g, dtype=torch.float64)
    honest = x[:, : m - f]
    if f == 0:
        return x
    if scenario == "outliers":
        v = torch.randn(trials, f, d, generator=g, dtype=torch.float64)
        bad = 100 * v / v.norm(dim=-1, keepdim=True)
    elif scenario == "alie":
        bad = (honest.mean(1) + 1.5 * honest.std(1)).unsqueeze(1).expand(trials, f, d)
    else:
        shift = torch.zeros(d, dtype=torch.float64)
        shift[0] = 3.0
        bad = (honest.mean(1) + shift).unsqueeze(1).expand(trials, f, d)
    return torch.cat([honest, bad], 1)


def kappa_table(agg: AbstractAggregator, name: str, *, m: int, f: int, d: int = 10, trials: int = 20,
                seed: int = 0, max_subsets: int = 5000) -> list[dict]:
    """One row per scenario: mean and max of the empirical :math:`\\kappa` over ``trials``."""
    for label, value, low in (("--n", m, 1), ("--d", d, 1), ("--trials", trials, 1)):
        if value < low:
            raise ValueError(f"{label} = {value} must be >= {low}")
    if not 0 <= f < m:
        raise ValueError(f"--f = {f} must satisfy 0 <= f < n = {m}")
    allowed = int(agg.max_tolerance(torch.tensor(m)))
    if f > allowed:
        raise ValueError(f"rule {name!r} tolerates at most f = {allowed} among n = {m} inputs, got --f {f}")
    rows = []
    for s, scenario in enumerate(SCENARIOS):
        x = make_inputs(scenario, trials, m, f, d, seed=seed + s)
        k = empirical_kappa(agg, x, f, max_subsets=max_subsets, seed=seed)
        rows.append({"scenario": scenario, "mean": float(k.mean()), "max": float(k.max()),
                     "bound": kappa_bound(name, m, f)})
    return rows
