r"""Plain gossip and aggregate-and-mix.

* :class:`Gossip` — the (weighted) Laplacian step
  :math:`\theta_i \leftarrow \theta_i + \alpha \sum_{j \in N(i)} w_{ij} (\theta_j - \theta_i)`,
  with unit weights (``weights="uniform"``, the plain form
  :math:`\theta_i - \alpha\sum_j(\theta_i-\theta_j)`, stable for :math:`\alpha < 2/\lambda_{max}(L)`)
  or Metropolis–Hastings weights :math:`w_{ij} = 1/(1+\max(d_i,d_j))` (doubly stochastic, so the
  average of the models is preserved without attack). Not robust.
* :class:`AggregateAndMix` — :math:`\theta_i \leftarrow (1-\alpha)\,\theta_i +
  \alpha\,\mathrm{Agg}(\{\theta_i\} \cup \mathrm{inbox}_i)` with any aggregator or chain.

Server correspondence: on the complete graph with :math:`\alpha = 1`, every honest node computes
:math:`\mathrm{Agg}` over all ``n`` models — exactly the aggregation a parameter server performs in
robust D-SGD (El-Mhamdi et al., "Collaborative learning in the jungle", NeurIPS 2021; Guerraoui,
Gupta, Pinot, *Robust Machine Learning*, 2024). If all honest nodes start equal, they stay equal
and follow the server-based robust SGD trajectory (tests/test_gossip.py checks this).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..aggregators.base import AbstractAggregator, ToleranceError
from .base import AbstractGossipRule


class Gossip(AbstractGossipRule):
    r"""Weighted gossip :math:`\theta_i + \alpha \sum_j w_{ij} (\theta_j - \theta_i)` (not robust)."""

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    robust = False

    def __init__(self, alpha: float = 1.0, *, weighted: bool = True):
        _check_alpha(alpha)
        self.alpha = float(alpha)
        self.weighted = weighted

    def __call__(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        w = weights if self.weighted else torch.ones_like(weights)
        w = torch.where(mask, w, torch.zeros((), dtype=w.dtype)).to(own.dtype)
        diff = torch.where(mask.unsqueeze(-1), inbox - own.unsqueeze(-2), torch.zeros((), dtype=own.dtype))
        return own + self.alpha * (w.unsqueeze(-1) * diff).sum(-2)

    batched = __call__

    def __repr__(self) -> str:
        return f"Gossip(alpha={self.alpha:g}, weights={'metropolis' if self.weighted else 'uniform'})"


class AggregateAndMix(AbstractGossipRule):
    r""":math:`\theta_i \leftarrow (1-\alpha)\theta_i + \alpha\,\mathrm{Agg}_f(\{\theta_i\}\cup\mathrm{inbox}_i)`."""

    def __init__(self, aggregator: AbstractAggregator, alpha: float = 1.0):
        _check_alpha(alpha)
        self.aggregator = aggregator
        self.alpha = float(alpha)
        self.robust = aggregator.robust

    @staticmethod
    def _with_self(own: Tensor, inbox: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([own.unsqueeze(-2), inbox], dim=-2)
        m = torch.cat([torch.ones_like(mask[..., :1]), mask], dim=-1)
        return x, m

    def __call__(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        x, m = self._with_self(own, inbox, mask)
        return (1 - self.alpha) * own + self.alpha * self.aggregator(x, m, f)

    def batched(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        x, m = self._with_self(own, inbox, mask)
        return (1 - self.alpha) * own + self.alpha * self.aggregator.batched(x, m, f)

    def check_tolerance(self, degree: Tensor, f: Tensor) -> None:
        try:
            self.aggregator.check_tolerance(degree + 1, f)
        except ToleranceError as err:
            # re-word in terms of a node's neighbourhood (own model + degree neighbours)
            bad = (f > self.aggregator.max_tolerance(degree + 1)) | (f < 0)
            i = int(torch.nonzero(bad)[0])
            raise ToleranceError(
                f"node {i} has {int(degree[i])} neighbours (+ itself) and tolerance f = {int(f[i])}; "
                f"{self.aggregator!r} allows f <= {int(self.aggregator.max_tolerance(degree[i] + 1))} there"
            ) from err

    def __repr__(self) -> str:
        return f"AggregateAndMix({self.aggregator!r}, alpha={self.alpha:g})"


def _check_alpha(alpha: float) -> None:
    if not (0 < alpha <= 1):
        raise ValueError(f"gossip rate alpha = {alpha} must be in (0, 1]")
