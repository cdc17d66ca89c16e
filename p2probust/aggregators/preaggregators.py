r"""Mixing pre-aggregators: nearest-neighbour mixing (NNM) and bucketing.

Both map a masked set of ``m`` vectors to a masked set of the same capacity, written so that the
same code serves one node (``[m, d]``) and all nodes (``[n, m, d]``); :meth:`batched` is the
call itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_preaggregator
from .base import AbstractPreAggregator
from ._safe import as_long, ranks, readable, sq_dists, zero_unless


@register_preaggregator("nnm", "nearest-neighbour mixing: each vector → mean of its m−f nearest (itself included)")
class NNM(AbstractPreAggregator):
    r"""Nearest-neighbour mixing.

    .. math:: y_i = \frac{1}{m-f} \sum_{j \in \mathcal N_i} x_j,

    where :math:`\mathcal N_i` holds the :math:`m - f` inputs nearest to :math:`x_i` in Euclidean
    distance, :math:`x_i` itself included (ties broken by slot order). Padding stays padding.

    Shapes: ``x [..., m, d], mask [..., m], f [...] -> ([..., m, d], [..., m])``.

    An unreadable (NaN/inf) input is infinitely far from every other one: it is never among an
    honest vector's nearest when at most ``f`` inputs are unreadable; its own output row is NaN
    (and stays unreadable for the aggregator that follows).

    Reference: Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan,
    "Fixing by mixing: a recipe for optimal Byzantine ML under heterogeneity", AISTATS 2023.

    Examples
    --------
    >>> from p2probust.aggregators import chain, NNM, CoordinateWiseMedian
    >>> rule = chain(NNM(), CoordinateWiseMedian())
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    in_hull = True

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        ok = readable(x, mask)
        d2 = sq_dists(x, ok)
        eye = torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
        d2 = torch.where(eye, d2.new_full((), -1.0), d2)  # itself always first
        d2 = torch.where(mask.unsqueeze(-2), d2, d2.new_tensor(float("inf")))
        keep_n = (mask.sum(-1) - as_long(f)).clamp_min(1)
        sel = ranks(d2) < keep_n.unsqueeze(-1).unsqueeze(-1)  # [..., m (row i), m (neighbour j)]
        sel = sel & mask.unsqueeze(-2)
        bad = (sel & ~ok.unsqueeze(-2)).any(-1)  # rows that mixed in an unreadable vector
        w = sel.to(x.dtype) / sel.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
        y = w @ zero_unless(x, ok)
        y = torch.where(bad.unsqueeze(-1), x.new_tensor(float("nan")), y)
        return torch.where(mask.unsqueeze(-1), y, x), mask

    batched = __call__


@register_preaggregator("bucketing", "random buckets of s vectors, each replaced by its mean (seeded)")
class Bucketing(AbstractPreAggregator):
    r"""Bucketing: shuffle the inputs, cut them into buckets of ``s``, average each bucket.

    .. math:: y_b = \frac{1}{|B_b|}\sum_{j \in B_b} x_{\pi(j)},\qquad
              B_b = \{bs, \dots, \min(bs+s, m) - 1\},\ b = 0..\lceil m/s\rceil - 1,

    with :math:`\pi` a uniformly random permutation of the ``m`` real inputs. The output has
    :math:`\lceil m/s\rceil` real slots (the first ones), the rest is padding.

    Randomness: each call draws one key vector ``u ~ U[0,1)^{m_cap}`` from the rule's
    ``torch.Generator``; a node's permutation orders its real slots by key, so it is uniform over
    the node's real inputs. In a batched call all nodes share the key draw (their permutations of
    slot positions coincide, their neighbours differ). :meth:`reseeded` returns a copy whose
    generator restarts from ``seed``, so results are reproducible.

    Shapes: ``x [..., m, d], mask [..., m], f [...] -> ([..., m, d], [..., m])``.

    Reference: S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
    datasets via bucketing", ICLR 2022.
    """

    randomized = True
    in_hull = True

    def __init__(self, s: int = 2, *, seed: int = 0, generator: torch.Generator | None = None):
        if int(s) != s or s < 1:
            raise ValueError(f"bucket size s = {s} must be an integer >= 1")
        self.s = int(s)
        self.seed = int(seed)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(self.seed)

    def output_count(self, m: Tensor) -> Tensor:
        return (m + self.s - 1) // self.s

    def reseeded(self) -> "Bucketing":
        """A copy with a fresh generator seeded with ``seed``."""
        return Bucketing(self.s, seed=self.seed)

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        m = x.shape[-2]
        keys = torch.rand(m, generator=self.generator, dtype=torch.float64, device=self.generator.device).to(x.device)
        keys = torch.where(mask, keys, torch.tensor(2.0, dtype=torch.float64, device=x.device))  # padding last
        bucket = ranks(keys) // self.s  # [..., m]
        member = (bucket.unsqueeze(-2) == torch.arange(m, device=x.device).unsqueeze(-1)) & mask.unsqueeze(-2)  # [..., b, j]
        ok = readable(x, mask)
        w = member.to(x.dtype) / member.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
        y = w @ zero_unless(x, ok)
        bad = (member & ~ok.unsqueeze(-2)).any(-1)
        y = torch.where(bad.unsqueeze(-1), x.new_tensor(float("nan")), y)
        out_mask = member.any(-1)
        return torch.where(out_mask.unsqueeze(-1), y, x.new_zeros(())), out_mask

    batched = __call__

    def __repr__(self) -> str:
        return f"Bucketing(s={self.s}, seed={self.seed})"
