"""Coordinate-wise aggregators: mean, median (CWMed), trimmed mean (CWTM), mean around median.

Each works independently on every coordinate of the ``m`` input vectors. Order statistics use the
pruned sorting network of :mod:`p2probust.aggregators.sorting`; the same code serves one node
(``[m, d]``) and all nodes at once (``[n, m, d]``), so :meth:`batched` is hand-batched and exact.

Worked example (Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024, ch. 4): with d = 2,
n = 5, f = 1 and inputs (2,5), (3,6), (2,4), (1,5), (12,0): mean = (4, 4), CWMed = (2, 5),
CWTM = (7/3, 14/3).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator, masked_mean
from .sorting import select_ranks, sort_masked, sorted_wires, sorted_wires_into_workspace, sum_ranks, sum_ranks_into


@register_aggregator("mean", "plain average of all inputs (no robustness)")
class Mean(AbstractAggregator):
    r"""Arithmetic mean :math:`\frac1m \sum_j x_j`; ignores ``f``.

    The one rule allowed to let a malformed (NaN/inf) input through: it has no robustness.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    robust = False

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        return masked_mean(x, mask)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return m  # any f: the mean does not use it


class RankMean(AbstractAggregator):
    r"""Mean of a contiguous range of order statistics, per coordinate:
    :math:`\frac{1}{|K|}\sum_{q\in K} x_{(q)c}` with the kept ranks ``K`` of :meth:`kept_ranks`.

    The same code serves one node (``[m, d]``) and all nodes at once (``[n, m, d]``), so
    :meth:`batched` is hand-batched and exact; the simulator may also run it as one compiled,
    gather-fused kernel (:mod:`p2probust.jit.rank_mean`), with the same bits.
    """

    coordinatewise = True

    @abstractmethod
    def kept_ranks(self, mask: Tensor, f: Tensor) -> Tensor:
        """``[..., m]`` bool over ranks (rank 0 = smallest) for inputs ``mask [..., m]``, tolerance ``f [...]``."""

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        return self._rank_mean(x, mask, f, sorted_wires, sum_ranks)

    def batched(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        """Hand-batched: the same arithmetic with an allocation-free sorting network."""
        return self._rank_mean(x, mask, f, sorted_wires_into_workspace, sum_ranks_into)

    def _rank_mean(self, x: Tensor, mask: Tensor, f: Tensor, sort, total) -> Tensor:
        keep = self.kept_ranks(mask, f)
        return total(sort(x, mask), keep) / keep.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)


_EVEN = ("mean", "lower")
_OWN = ("trim", "keep")


@register_aggregator("median", "coordinate-wise median (CWMed); even count averages the middle two (even=lower: the lower one)")
class CoordinateWiseMedian(RankMean):
    r"""Coordinate-wise median: :math:`[\mathrm{CWMed}(x)]_c = \mathrm{median}(x_{1c},\dots,x_{mc})`.

    With an even number of inputs it averages the two middle values (``even="mean"``, the
    default: the median of the tutorial and of Yin et al.); ``even="lower"`` takes the lower
    middle value, as ``torch.median`` does and hence the decentralized papers' code that calls it
    (ByrdLab/IOS ``median``, used by Wu et al.'s CooMed). Ignores ``f``; tolerates any ``f < m/2``.

    Reference: D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-robust distributed
    learning: towards optimal statistical rates", ICML 2018; Z. Wu, T. Chen, Q. Ling, IEEE TSP 71
    (2023), code ByrdLab/IOS.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, even: str = "mean"):
        if even not in _EVEN:
            raise ValueError(f"median even = {even!r} must be one of: {', '.join(_EVEN)}")
        self.even = even

    def kept_ranks(self, mask: Tensor, f: Tensor) -> Tensor:
        """``[..., m]`` bool: the middle rank, or the middle two (the lower one) for an even count."""
        m = mask.sum(-1, keepdim=True)
        ranks = torch.arange(mask.shape[-1])
        lower = ranks == (m - 1) // 2
        return lower if self.even == "lower" else lower | (ranks == m // 2)

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2

    def __repr__(self) -> str:
        return "CoordinateWiseMedian()" if self.even == "mean" else f"CoordinateWiseMedian(even={self.even!r})"


class TrimmedMean(RankMean):
    r"""Coordinate-wise trimmed mean.

    .. math:: [\mathrm{CWTM}_f(x)]_c = \frac{1}{m - 2f} \sum_{r=f+1}^{m-f} x_{(r)c}

    where :math:`x_{(1)c} \le \dots \le x_{(m)c}` are the sorted values of coordinate c.
    Requires ``2f < m``. As a gossip rule the node's own model is one of the ``m`` inputs and is
    trimmed like the others (the tutorial's and BRIDGE-T's form); the IOS code's form, which trims
    the neighbours only, is :class:`NeighbourTrimmedMean` (``trimmed-mean`` with ``own=keep``).

    Reference: D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, ICML 2018.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def kept_ranks(self, mask: Tensor, f: Tensor) -> Tensor:
        """``[..., m]`` bool: ranks ``f .. m - f - 1`` of each row's ``m`` real inputs."""
        m = mask.sum(-1, keepdim=True)
        f = torch.as_tensor(f).unsqueeze(-1)
        ranks = torch.arange(mask.shape[-1])
        return (ranks >= f) & (ranks < m - f)

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2


class NeighbourTrimmedMean(AbstractAggregator):
    r"""Trimmed mean of the neighbours, then averaged with the node's own model (slot 0).

    .. math:: [\mathrm{out}]_c = \frac{x_{0c} + \sum_{r=f+1}^{k-f} x^{N}_{(r)c}}{k - 2f + 1},

    :math:`x^N_{(r)c}` the sorted values of the :math:`k = m - 1` neighbour inputs (slots
    ``1..m-1``). This is Wu, Chen and Ling's decentralized trimmed mean as their code computes it
    (ByrdLab/IOS ``D_trimmed_mean``: ``(tm * (k - 2f) + own) / (k - 2f + 1)``): the own model is
    never trimmed. Requires ``2f < k``.

    Reference: Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization
    with robust aggregation rules", IEEE TSP 71 (2023); code ByrdLab/IOS.
    """

    coordinatewise = True
    anchored = True

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        nb, nb_mask = x[..., 1:, :], mask[..., 1:]
        keep = TrimmedMean().kept_ranks(nb_mask, f)
        total = sum_ranks(sorted_wires(nb, nb_mask), keep) + x[..., 0, :]
        return total / (keep.sum(-1, keepdim=True) + 1).to(x.dtype)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 2) // 2).clamp_min(0)


@register_aggregator("trimmed-mean", "coordinate-wise trimmed mean (CWTM): drop the f largest and f smallest (own=keep: IOS code's form)")
def trimmed_mean(own: str = "trim") -> AbstractAggregator:
    """``own="trim"``: :class:`TrimmedMean` over all inputs (default); ``own="keep"``:
    :class:`NeighbourTrimmedMean` (the neighbours trimmed, the own model kept, as the IOS code)."""
    if own not in _OWN:
        raise ValueError(f"trimmed-mean own = {own!r} must be one of: {', '.join(_OWN)}")
    return TrimmedMean() if own == "trim" else NeighbourTrimmedMean()


def mean_around_median(x: Tensor, mask: Tensor, drop: Tensor) -> Tensor:
    r"""Per coordinate, the mean of the :math:`m - \mathrm{drop}` values closest to the median.

    ``x [..., m, d], mask [..., m], drop [...] -> [..., d]``. The values closest to the median form
    a contiguous window of the sorted values, and that window minimizes the sum of distances to
    the median; the rule scans the ``drop + 1`` windows :math:`[a, a + m - \mathrm{drop})` of the
    sorting network's output and keeps, per coordinate, the one of least total distance (first
    such window on exact ties, which only occur between values equally far from the median).
    """
    s = sort_masked(x, mask)
    m = mask.sum(-1)
    drop = torch.as_tensor(drop).long()
    q = (m - drop).clamp_min(1)
    ranks = torch.arange(x.shape[-2])
    mid = (ranks == ((m - 1) // 2).unsqueeze(-1)) | (ranks == (m // 2).unsqueeze(-1))
    med = select_ranks(s, mid) / mid.sum(-1, keepdim=True).to(x.dtype)
    dist = (s - med.unsqueeze(-2)).abs()
    dist = torch.where(torch.isnan(dist), torch.tensor(float("inf"), dtype=x.dtype), dist)
    r = ranks.unsqueeze(-1)  # [m, 1]
    qq = q.unsqueeze(-1).unsqueeze(-1)  # [..., 1, 1]
    best_cost = torch.full_like(med, float("inf"))
    best_a = torch.zeros(med.shape, dtype=torch.long)
    d_max = int(drop.max()) if drop.numel() else 0
    for a in range(d_max + 1):
        window = (r >= a) & (r < a + qq)  # [..., m, 1]
        cost = torch.where(window, dist, torch.zeros((), dtype=x.dtype)).sum(-2)
        better = (cost < best_cost) & (torch.as_tensor(a) <= drop).unsqueeze(-1)
        best_cost = torch.where(better, cost, best_cost)
        best_a = torch.where(better, torch.as_tensor(a), best_a)
    keep = (r >= best_a.unsqueeze(-2)) & (r < best_a.unsqueeze(-2) + qq)
    out = torch.where(keep, s, torch.zeros((), dtype=x.dtype)).sum(-2) / q.unsqueeze(-1).to(x.dtype)
    # no window with finite cost (cannot happen with 2 drop < m): fall back to the median
    return torch.where(torch.isfinite(best_cost), out, med)


@register_aggregator("meamed", "mean around median: per coordinate, the mean of the m−f values closest to the median")
class MeaMed(AbstractAggregator):
    r"""Mean around median (MeaMed).

    .. math:: [\mathrm{MeaMed}_f(x)]_c = \frac{1}{m-f} \sum_{j \in \mathcal C_c} x_{jc},

    where :math:`\mathcal C_c` indexes the :math:`m - f` values of coordinate ``c`` closest to
    its median. Requires ``2f < m``.

    Reference: C. Xie, O. Koyejo, I. Gupta, "Generalized Byzantine-tolerant SGD",
    arXiv:1802.10116, 2018.
    """

    coordinatewise = True

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        return mean_around_median(x, mask, f)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2
