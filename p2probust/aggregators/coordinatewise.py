"""Coordinate-wise aggregators: mean, median (CWMed), trimmed mean (CWTM).

Each works independently on every coordinate of the ``m`` input vectors. Order statistics use the
pruned sorting network of :mod:`p2probust.aggregators.sorting`; the same code serves one node
(``[m, d]``) and all nodes at once (``[n, m, d]``), so :meth:`batched` is hand-batched and exact.

Worked example (Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024, ch. 4): with d = 2,
n = 5, f = 1 and inputs (2,5), (3,6), (2,4), (1,5), (12,0): mean = (4, 4), CWMed = (2, 5),
CWTM = (7/3, 14/3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator, masked_mean
from .sorting import select_ranks, sort_masked


@register_aggregator("mean", "plain average of all inputs (no robustness)")
class Mean(AbstractAggregator):
    r"""Arithmetic mean :math:`\frac1m \sum_j x_j`; ignores ``f``.

    The one rule allowed to let a malformed (NaN/inf) input through: it has no robustness.
    """

    robust = False

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        return masked_mean(x, mask)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return m  # any f: the mean does not use it


@register_aggregator("median", "coordinate-wise median (CWMed); even count averages the middle two")
class CoordinateWiseMedian(AbstractAggregator):
    r"""Coordinate-wise median: :math:`[\mathrm{CWMed}(x)]_c = \mathrm{median}(x_{1c},\dots,x_{mc})`.

    With an even number of inputs it averages the two middle values. Ignores ``f``; tolerates
    any ``f < m/2``.

    Reference: D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-robust distributed
    learning: towards optimal statistical rates", ICML 2018.
    """

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        s = sort_masked(x, mask)
        m = mask.sum(-1, keepdim=True)
        ranks = torch.arange(x.shape[-2])
        keep = (ranks == (m - 1) // 2) | (ranks == m // 2)
        return select_ranks(s, keep) / keep.sum(-1, keepdim=True).to(x.dtype)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2


@register_aggregator("trimmed-mean", "coordinate-wise trimmed mean (CWTM): drop the f largest and f smallest")
class TrimmedMean(AbstractAggregator):
    r"""Coordinate-wise trimmed mean.

    .. math:: [\mathrm{CWTM}_f(x)]_c = \frac{1}{m - 2f} \sum_{r=f+1}^{m-f} x_{(r)c}

    where :math:`x_{(1)c} \le \dots \le x_{(m)c}` are the sorted values of coordinate c.
    Requires ``2f < m``.

    Reference: D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, ICML 2018.
    """

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        s = sort_masked(x, mask)
        m = mask.sum(-1, keepdim=True)
        f = torch.as_tensor(f).unsqueeze(-1)
        ranks = torch.arange(x.shape[-2])
        keep = (ranks >= f) & (ranks < m - f)
        return select_ranks(s, keep) / (m - 2 * f).clamp_min(1).to(x.dtype)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2
