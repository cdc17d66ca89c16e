r"""FABA, the fast aggregation against Byzantine attacks of Xia et al."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator
from ._safe import as_long, centred_gram, ranks, readable, weighted_select

_OWN = ("trim", "keep")


@register_aggregator("faba", "FABA: f times discard the input farthest from the current mean, average the rest (own=keep: IOS code)")
class FABA(AbstractAggregator):
    r"""FABA: ``f`` times, discard the input farthest from the mean of the remaining ones.

    .. math:: U_0 = \{1..m\},\quad \bar x_U = \frac{1}{|U|}\sum_{j\in U} x_j,\quad
              U_{t+1} = U_t \setminus \{\arg\max_{j\in U_t} \|x_j - \bar x_{U_t}\|\},\qquad
              \mathrm{FABA}(x) = \bar x_{U_f}.

    Ties go to the lowest slot; unreadable (NaN/inf) inputs are discarded first and never averaged.
    ``own="trim"`` (default, the paper's server rule): the node's own model (slot 0 in
    aggregate-and-mix) is one input among ``m``. ``own="keep"``: Wu, Chen and Ling's decentralized
    use (ByrdLab/IOS ``D_faba``): FABA runs over the neighbours (slots ``1..m-1``) only, and its
    result is averaged with the own model with the weight of one input,
    ``(agg * (k - f) + own) / (k - f + 1)`` — the mean of :math:`U_f \cup \{0\}`. The IOS table's
    FABA row is this form.

    Hand-batched: with the centred float64 Gram matrix :math:`G` (one batched product) and
    uniform weights :math:`a` on :math:`U`, :math:`\|x_j - \bar x_U\|^2 = G_{jj} - 2(Ga)_j +
    a^\top G a`, so each of the ``f`` rounds costs :math:`O(m^2)` per node whatever ``d``.
    Requires ``2f < m`` (``2f < m - 1`` with ``own="keep"``).

    Shapes: ``x [..., m, d], mask [..., m], f [...] -> [..., d]``.

    Reference: Q. Xia, Z. Tao, Z. Hao, Q. Li, "FABA: an algorithm for fast aggregation against
    Byzantine attacks in distributed neural networks", IJCAI 2019; Z. Wu, T. Chen, Q. Ling,
    IEEE TSP 71 (2023), code ByrdLab/IOS (``faba``, ``D_faba``).
    """

    def __init__(self, own: str = "trim"):
        if own not in _OWN:
            raise ValueError(f"faba own = {own!r} must be one of: {', '.join(_OWN)}")
        self.own = own
        self.anchored = own == "keep"

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        ok = readable(x, mask)
        g = centred_gram(x, ok)
        diag = torch.diagonal(g, dim1=-2, dim2=-1)
        ok = ok & torch.isfinite(diag)
        g = torch.where(ok.unsqueeze(-1) & ok.unsqueeze(-2), g, g.new_zeros(()))
        diag = torch.diagonal(g, dim1=-2, dim2=-1)
        own = torch.arange(x.shape[-2], device=x.device) == 0
        alive = mask & ~own if self.own == "keep" else mask.clone()
        inf = torch.tensor(float("inf"), dtype=torch.float64, device=x.device)
        for t in range(int(f.max()) if f.numel() else 0):
            a = (alive & ok).to(torch.float64)
            a = a / a.sum(-1, keepdim=True).clamp_min(1)
            ga = (g @ a.unsqueeze(-1)).squeeze(-1)
            dist = diag - 2 * ga + (a * ga).sum(-1, keepdim=True)
            dist = torch.where(ok & ~torch.isnan(dist), dist, inf)  # unreadable: discarded first
            drop = (ranks(torch.where(alive, -dist, inf)) == 0) & alive & (t < f).unsqueeze(-1)
            alive = alive & ~drop
        if self.own == "keep":
            alive = alive | (own & mask)
        return weighted_select(x, alive & ok)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 2) // 2).clamp_min(0) if self.own == "keep" else (m - 1) // 2

    def __repr__(self) -> str:
        return "FABA()" if self.own == "trim" else f"FABA(own={self.own!r})"
