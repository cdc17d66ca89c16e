r"""Distance-based selection: Krum, Multi-Krum and Bulyan.

All three score the inputs from the batched matrix of pairwise squared distances
(:func:`~p2probust.aggregators._safe.sq_dists`, one Gram matrix ``[..., m, m]`` per node), so the
cost in ``d`` is one batched matrix product; selections are ranks with ties broken by slot order.
Unreadable (NaN/inf) inputs are at infinite distance from everything and get an infinite score.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator
from ._safe import as_long, ranks, readable, sq_dists, weighted_select
from .coordinatewise import mean_around_median

_INF = float("inf")


def krum_scores(d2: Tensor, alive: Tensor, f: Tensor) -> Tensor:
    r"""Krum scores :math:`s_i = \sum_{j \in \mathcal N_i} \|x_i - x_j\|^2` over the
    :math:`|A| - f - 2` nearest others in the alive set ``A`` (at least 1).

    ``d2 [..., m, m], alive [..., m], f [...] -> [..., m]``; dead slots score ``+inf``.
    """
    inf = d2.new_tensor(_INF)
    m = d2.shape[-1]
    eye = torch.eye(m, dtype=torch.bool, device=d2.device)
    others = torch.where(eye | ~alive.unsqueeze(-2), inf, d2)
    q = (alive.sum(-1) - f - 2).clamp_min(1)
    near = ranks(others) < q.unsqueeze(-1).unsqueeze(-1)
    score = torch.where(near, others, d2.new_zeros(())).sum(-1)
    return torch.where(alive, score, inf)


@register_aggregator("krum", "Krum: the input with the least sum of squared distances to its m−f−2 nearest")
class Krum(AbstractAggregator):
    r"""Krum: the input with the smallest score

    .. math:: s_i = \sum_{j \in \mathcal N_i} \|x_i - x_j\|^2,

    :math:`\mathcal N_i` the :math:`m - f - 2` inputs nearest to :math:`x_i` (excluding itself).
    Ties go to the lowest slot index. Requires :math:`m > 2f + 2`.

    Shapes: ``x [..., m, d], mask [..., m], f [...] -> [..., d]``.

    Reference: P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
    adversaries: Byzantine tolerant gradient descent", NeurIPS 2017.
    """

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        score = krum_scores(sq_dists(x, readable(x, mask)), mask, as_long(f))
        return weighted_select(x, ranks(score) == 0)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 3) // 2).clamp_min(0)


@register_aggregator("multi-krum", "Multi-Krum: mean of the q inputs with the best Krum scores (q = m − f by default)")
class MultiKrum(AbstractAggregator):
    r"""Multi-Krum: the mean of the ``q`` inputs with the smallest Krum scores.

    .. math:: \mathrm{MK}(x) = \frac1q \sum_{i \in \mathcal S_q} x_i,

    :math:`\mathcal S_q` the ``q`` best-scored inputs (ties → lowest index); ``q = None`` means
    :math:`q = m - f`. Requires :math:`m > 2f + 2`.

    Reference: P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, NeurIPS 2017; El Mhamdi,
    Guerraoui, Rouault, "The hidden vulnerability of distributed learning in Byzantium", ICML 2018.
    """

    def __init__(self, q: int | None = None):
        if q is not None and (int(q) != q or q < 1):
            raise ValueError(f"multi-krum q = {q!r} must be None (m − f) or an integer >= 1")
        self.q = None if q is None else int(q)

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        score = krum_scores(sq_dists(x, readable(x, mask)), mask, f)
        m = mask.sum(-1)
        q = (m - f) if self.q is None else m.clamp_max(self.q)
        return weighted_select(x, ranks(score) < q.clamp_min(1).unsqueeze(-1))

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 3) // 2).clamp_min(0)

    def __repr__(self) -> str:
        return f"MultiKrum(q={self.q})"


@register_aggregator("bulyan", "Bulyan: m−2f inputs chosen by repeated Krum, then mean around the median of 2f trimmed")
class Bulyan(AbstractAggregator):
    r"""Bulyan: select :math:`\theta = m - 2f` inputs by repeated Krum, then per coordinate average
    the :math:`\beta = \theta - 2f` selected values closest to their median.

    .. math:: \mathcal S = \mathrm{Krum}^{(\theta)}(x),\qquad
              [\mathrm{Bulyan}(x)]_c = \frac1\beta \sum_{j \in \mathcal C_c(\mathcal S)} x_{jc}.

    Each Krum round scores the remaining set ``A`` on its :math:`\max(|A| - f - 2, 1)` nearest
    others and moves the winner into :math:`\mathcal S`; equal scores (mutual nearest neighbours,
    common once few remain) go to the smaller total distance to ``A``, then the lower slot, so the
    selection does not depend on slot order. Requires :math:`m \ge 4f + 3`.

    Reference: E. M. El Mhamdi, R. Guerraoui, S. Rouault, "The hidden vulnerability of
    distributed learning in Byzantium", ICML 2018.
    """

    coordinatewise = True

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        d2 = sq_dists(x, readable(x, mask))
        m = mask.sum(-1)
        theta = (m - 2 * f).clamp_min(1)
        alive, chosen = mask.clone(), torch.zeros_like(mask)
        rounds = int(theta.max()) if theta.numel() else 0
        zero = d2.new_zeros(())
        for t in range(rounds):
            # ties (mutual nearest neighbours once few remain) → smaller total distance, then slot
            spread = torch.where(alive.unsqueeze(-2) & alive.unsqueeze(-1), d2, zero).sum(-1)
            win = (ranks(krum_scores(d2, alive, f), spread) == 0) & (t < theta).unsqueeze(-1)
            chosen, alive = chosen | win, alive & ~win
        return mean_around_median(x, chosen, (theta - (theta - 2 * f).clamp_min(1)))

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 3) // 4).clamp_min(0)
