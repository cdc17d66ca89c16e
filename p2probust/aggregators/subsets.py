r"""Subset-selection aggregators: minimum-diameter averaging (MDA) and smallest maximum
eigenvalue averaging (SMEA).

Both average the subset :math:`S` of :math:`m - f` inputs that minimizes a spread score, found
by exhaustive search over the :math:`\binom{m}{f}` removal sets. The search is batched: real
slots are first compacted to the front of each node's row, the removal sets of each size ``r``
are enumerated once over slot positions (lexicographic order), and every node scores the sets
that are valid for it (``r = f_i`` and every removed position ``< m_i``) from its
``[m, m]`` distance or Gram matrix, so ``d`` only enters through one batched matrix product.
Ties go to the first set in enumeration order. Unreadable (NaN/inf) inputs make any subset that
holds them score ``+inf``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from itertools import combinations
from typing import Callable

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator
from ._safe import as_long, centred_gram, ranks, readable, sq_dists, weighted_select

_CHUNK_VALUES = 1 << 21  # removal sets scored at once: about this many float64 Gram entries


def _chunk(rows: int, m: int) -> int:
    """Removal sets per batch: 64 to 1024, bounded by :data:`_CHUNK_VALUES` entries ``rows * T * m * m``."""
    return max(64, min(1024, _CHUNK_VALUES // max(1, rows * m * m)))


@lru_cache(maxsize=None)
def keep_sets(m: int, r: int, device: torch.device = torch.device("cpu")) -> tuple[Tensor, Tensor]:
    """All removal sets of size ``r`` of ``range(m)``: (keep masks ``[T, m]``, largest removed ``[T]``)."""
    combos = list(combinations(range(m), r))
    keep = torch.ones(len(combos), m, dtype=torch.bool, device="cpu")
    last = torch.full((len(combos),), -1, dtype=torch.long, device="cpu")
    for t, c in enumerate(combos):
        if c:
            keep[t, list(c)] = False
            last[t] = c[-1]
    return keep.to(device), last.to(device)


def _compact(mask: Tensor) -> Tensor:
    """Permutation putting real slots first (stable): ``[..., m] -> [..., m]`` long."""
    return torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)


def _gather2(a: Tensor, perm: Tensor) -> Tensor:
    """``a[..., perm, :][..., :, perm]`` for ``a [..., m, m]``."""
    m = a.shape[-1]
    a = torch.gather(a, -2, perm.unsqueeze(-1).expand(*perm.shape, m))
    return torch.gather(a, -1, perm.unsqueeze(-2).expand(*perm.shape[:-1], m, m))


def best_subset(score: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], mask: Tensor, f: Tensor,
                active: Tensor) -> Tensor:
    """Keep mask (compact positions) of the best subset of ``m_i - f_i`` real slots per node.

    ``score(keep [T, m], real [..., m]) -> ([..., T], [..., T])`` gives each candidate keep mask a
    primary score and a tie-breaking one (both minimized, so that ties do not depend on slot
    order); ``active [...]`` marks the nodes that need the search (others get all real slots).
    """
    m_cap = mask.shape[-1]
    m = mask.sum(-1)
    pos = torch.arange(m_cap, device=mask.device)
    real = pos < m.unsqueeze(-1)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=mask.device)
    best = torch.full(m.shape, float("inf"), dtype=torch.float64, device=mask.device)
    best2 = best.clone()
    best_keep = real.clone()
    chunk = _chunk(int(m.numel()), m_cap)
    for r in sorted(set(as_long(f)[active].reshape(-1).tolist())):
        keep_all, last_all = keep_sets(m_cap, int(r), mask.device)
        for start in range(0, keep_all.shape[0], chunk):
            keep, last = keep_all[start:start + chunk], last_all[start:start + chunk]
            valid = (f == r).unsqueeze(-1) & (last < m.unsqueeze(-1)) & active.unsqueeze(-1)  # [..., T]
            s1, s2 = (torch.where(valid & ~torch.isnan(v), v.to(torch.float64), inf) for v in score(keep, real))
            arg = ranks(s1, s2).argmin(-1)  # rank 0: least s1, then least s2, then first
            val, val2 = s1.gather(-1, arg.unsqueeze(-1)).squeeze(-1), s2.gather(-1, arg.unsqueeze(-1)).squeeze(-1)
            better = (val < best) | ((val == best) & (val2 < best2))
            chosen = keep[arg] & real
            best = torch.where(better, val, best)
            best2 = torch.where(better, val2, best2)
            best_keep = torch.where(better.unsqueeze(-1), chosen, best_keep)
    return best_keep


def _uncompact(keep: Tensor, perm: Tensor) -> Tensor:
    """Map a keep mask in compact positions back to slots."""
    return torch.zeros_like(keep).scatter(-1, perm, keep)


@register_aggregator("mda", "minimum-diameter averaging: mean of the m−f inputs with the smallest diameter")
class MDA(AbstractAggregator):
    r"""Minimum-diameter averaging.

    .. math:: S^\star = \arg\min_{|S| = m-f} \max_{i,j \in S} \|x_i - x_j\|,\qquad
              \mathrm{MDA}(x) = \frac{1}{m-f}\sum_{i\in S^\star} x_i.

    Exhaustive over :math:`\binom{m}{f}` subsets (batched, see the module notes). Many subsets
    share the diameter (it is set by one pair); ties go to the least sum of squared distances
    within the subset.

    Reference: E. M. El Mhamdi, R. Guerraoui, S. Rouault, "The hidden vulnerability of
    distributed learning in Byzantium", ICML 2018; Rousseeuw, "Multivariate estimation with high
    breakdown point", 1985.
    """

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        perm = _compact(mask)
        d2 = _gather2(sq_dists(x, readable(x, mask)), perm)

        def diameter(keep: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
            k = keep & real.unsqueeze(-2)  # [..., T, m]
            pair = k.unsqueeze(-1) & k.unsqueeze(-2)
            within = torch.where(pair, d2.unsqueeze(-3), d2.new_tensor(-1.0))
            return within.amax((-1, -2)), within.clamp_min(0).sum((-1, -2))

        keep = best_subset(diameter, mask, f, torch.ones(f.shape, dtype=torch.bool, device=f.device))
        return weighted_select(x, _uncompact(keep, perm))

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2


@register_aggregator("smea", "smallest maximum eigenvalue averaging: mean of the m−f inputs of least top covariance eigenvalue")
class SMEA(AbstractAggregator):
    r"""Smallest maximum eigenvalue averaging.

    .. math:: S^\star = \arg\min_{|S| = m-f} \lambda_{\max}\Big(\frac{1}{|S|}\sum_{i\in S}
              (x_i - \bar x_S)(x_i - \bar x_S)^\top\Big),\qquad \mathrm{SMEA}(x) = \bar x_{S^\star}.

    **Exact (default, the paper's argmin).** The nonzero eigenvalues of the :math:`d\times d`
    covariance of :math:`S` are those of the :math:`m \times m` matrix :math:`P_S G P_S / |S|`,
    with :math:`G` the float64 Gram matrix of the inputs centred at their coordinate-wise median and
    :math:`P_S = \mathrm{diag}(s) - s s^\top/|S|`; the search enumerates all :math:`\binom{m}{f}`
    subsets, batched over nodes and subsets. It is exact whenever :math:`\binom{m}{f} \le`
    ``max_subsets`` (default 20,000: every ``m <= 16``, e.g. ``C(15, 7) = 6435`` in about 0.1 s
    for one node on one core; ``C(17, 8) = 24310`` is beyond).

    **Greedy (approximation).** ``search="greedy"``, or a node beyond ``max_subsets`` (then a
    ``RuntimeWarning`` says so, once per rule object): ``f`` times, remove the input whose removal
    gives the smallest :math:`\lambda_{\max}` of the remaining set (unreadable inputs first; ties →
    lowest slot). Exact for ``f = 1``, not in general: with ``d = 1``, ``f = 5`` and
    ``x = [5, −6, 6, 8, −8, 6, 3, 2, −7, 25, −8, 13, 11, 28]`` greedy gives 1.0 (:math:`\lambda` 314),
    the exact argmin 16/3 (:math:`\lambda` 244).

    Parameters
    ----------
    max_subsets : int
        Largest :math:`\binom{m}{f}` searched exactly (per node).
    search : {"exact", "greedy"}
        ``"exact"``: the argmin up to ``max_subsets``, greedy with a warning beyond;
        ``"greedy"``: always greedy (fast, approximate).

    Reference: Y. Allouah, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "On the privacy-
    robustness-utility trilemma in distributed learning", ICML 2023.
    """

    def __init__(self, max_subsets: int = 20000, search: str = "exact"):
        if int(max_subsets) != max_subsets or max_subsets < 1:
            raise ValueError(f"smea max_subsets = {max_subsets!r} must be an integer >= 1")
        if search not in ("exact", "greedy"):
            raise ValueError(f"smea search = {search!r} must be 'exact' or 'greedy'")
        self.max_subsets, self.search = int(max_subsets), search
        self._warned = False

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        ok = readable(x, mask)
        g = centred_gram(x, ok)  # the covariance is translation invariant; centring keeps precision
        ok = ok & torch.isfinite(torch.diagonal(g, dim1=-2, dim2=-1))
        g = torch.where(ok.unsqueeze(-1) & ok.unsqueeze(-2), g, g.new_zeros(()))
        perm = _compact(mask)
        g = _gather2(g, perm)
        bad = torch.gather(mask & ~ok, -1, perm)  # compact positions
        m = mask.sum(-1)
        exact = (_combs(m, f) <= self.max_subsets) & (self.search == "exact")
        if self.search == "exact" and not bool(exact.all()) and not self._warned:
            self._warned = True
            warnings.warn(f"{self!r}: C(m, f) > max_subsets = {self.max_subsets} at some node "
                          f"(m = {int(m.max())}, f = {int(f.max())}); using the greedy approximation there",
                          RuntimeWarning, stacklevel=2)

        def top_eig(keep: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
            k = keep & real.unsqueeze(-2)  # [..., T, m]
            lam = _lambda_max(g.unsqueeze(-3), k)
            lam = torch.where((k & bad.unsqueeze(-2)).any(-1), lam.new_tensor(float("inf")), lam)
            return lam, torch.zeros_like(lam)

        keep = best_subset(top_eig, mask, f, exact) if bool(exact.any()) else None
        if not bool(exact.all()):
            greedy = self._greedy(g, bad, m, f)
            keep = greedy if keep is None else torch.where(exact.unsqueeze(-1), keep, greedy)
        return weighted_select(x, _uncompact(keep, perm))

    @staticmethod
    def _greedy(g: Tensor, bad: Tensor, m: Tensor, f: Tensor) -> Tensor:
        m_cap = g.shape[-1]
        keep = torch.arange(m_cap, device=g.device) < m.unsqueeze(-1)
        eye = torch.eye(m_cap, dtype=torch.bool, device=g.device)
        for step in range(int(f.max())):
            cand = keep.unsqueeze(-2) & ~eye  # [..., j (removed), m]
            lam = _lambda_max(g.unsqueeze(-3), cand)
            lam = torch.where(bad & keep, lam.new_tensor(-1.0), lam)
            lam = torch.where(keep, lam, lam.new_tensor(float("inf")))
            lam = torch.where(torch.isnan(lam), lam.new_tensor(float("inf")), lam)
            drop = torch.nn.functional.one_hot(lam.argmin(-1), m_cap).bool() & (step < f).unsqueeze(-1)
            keep = keep & ~drop
        return keep

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2

    def __repr__(self) -> str:
        return f"SMEA(max_subsets={self.max_subsets}, search={self.search!r})"


def _combs(m: Tensor, f: Tensor) -> Tensor:
    """Elementwise binomial C(m, f) as float64 (exact for the small values that matter)."""
    m64, f64 = m.to(torch.float64), f.to(torch.float64)
    return torch.exp(torch.lgamma(m64 + 1) - torch.lgamma(f64 + 1) - torch.lgamma(m64 - f64 + 1)).round()


def _lambda_max(g: Tensor, keep: Tensor) -> Tensor:
    """Top eigenvalue of the covariance of the kept rows, from the Gram matrix: ``[..., m, m], [..., m] -> [...]``."""
    s = keep.to(g.dtype)
    k = s.sum(-1, keepdim=True).clamp_min(1)
    p = torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2) / k.unsqueeze(-1)
    c = p @ g @ p / k.unsqueeze(-1)
    return torch.linalg.eigvalsh(c)[..., -1]

