r"""IOS, the iterative outlier scissor of Wu, Chen and Ling.

Node ``i`` starts from its neighbourhood including itself, :math:`U = N(i) \cup \{i\}`, with the
mixing weights :math:`W_{ij}` (self weight :math:`W_{ii} = 1 - \sum_j W_{ij}`), and ``f`` times

.. math:: \bar x_U = \frac{\sum_{j \in U} W_{ij} x_j}{\sum_{j \in U} W_{ij}},\qquad
          U \leftarrow U \setminus \{\arg\max_{j \in U \setminus \{i\}} \|x_j - \bar x_U\|\},

(never removing itself; ties → lowest slot), then returns
:math:`\theta_i \leftarrow (1-\alpha)\theta_i + \alpha \bar x_U`.

Hand-batched: with :math:`y_j = x_j - x_i` and the Gram matrix :math:`G = YY^\top` (one batched
product), the centre is :math:`\bar y = a^\top Y` for weights ``a`` on ``U`` and
:math:`\|y_j - \bar y\|^2 = G_{jj} - 2(Ga)_j + a^\top G a`, so every iteration costs
:math:`O(k^2)` per node whatever ``d``. Malformed messages (and messages whose squared norm
overflows) are removed first; if more remain than ``f`` allows, they count as :math:`x_i`.

Reference: Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization
with robust aggregation rules", IEEE Transactions on Signal Processing 71 (2023).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..aggregators._safe import as_long, ranks, readable, zero_unless
from ..registry import register_rule
from .base import AbstractGossipRule
from ._weighted import check_neighbour_tolerance, real_weights


@register_rule("ios", "IOS: remove f times the neighbour farthest from the weighted centre, then average")
class IOS(AbstractGossipRule):
    r"""Iterative outlier scissor; see :mod:`p2probust.gossip.ios` for the rule as math.

    Shapes: ``own [..., d], inbox [..., k, d], mask [..., k], weights [..., k], f [...] -> [..., d]``.
    """

    def __init__(self, alpha: float = 1.0):
        if not (0 < alpha <= 1):
            raise ValueError(f"gossip rate alpha = {alpha} must be in (0, 1]")
        self.alpha = float(alpha)

    def __call__(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        ok = readable(inbox, mask)
        y = zero_unless(inbox - own.unsqueeze(-2), ok)  # [..., k, d]
        g = y @ y.transpose(-1, -2)  # [..., k, k]
        sq = torch.diagonal(g, dim1=-2, dim2=-1)
        ok = ok & torch.isfinite(sq)
        both = ok.unsqueeze(-1) & ok.unsqueeze(-2)
        g = torch.where(both, g, torch.zeros((), dtype=g.dtype)).to(torch.float64)
        y = zero_unless(y, ok)
        w = real_weights(weights, mask)
        self_w = (1.0 - w.sum(-1)).clamp_min(0)
        alive = mask.clone()
        inf = torch.tensor(float("inf"), dtype=torch.float64)
        rounds = int(f.max()) if f.numel() else 0
        for t in range(rounds):
            a = torch.where(alive, w, torch.zeros((), dtype=torch.float64))
            total = (a.sum(-1) + self_w).clamp_min(1e-300)
            a = a / total.unsqueeze(-1)  # centre ȳ = Σ a_j y_j (the node itself is y = 0)
            ga = (g @ a.unsqueeze(-1)).squeeze(-1)
            dist = (torch.diagonal(g, dim1=-2, dim2=-1) - 2 * ga + (a * ga).sum(-1, keepdim=True)).clamp_min(0)
            dist = torch.where(ok, dist, inf)  # unreadable: removed first
            key = torch.where(alive, -dist, inf)  # farthest first; dead slots last
            drop = (ranks(key) == 0) & alive & (t < f).unsqueeze(-1)
            alive = alive & ~drop
        a = torch.where(alive, w, torch.zeros((), dtype=torch.float64))
        a = (a / (a.sum(-1) + self_w).clamp_min(1e-300).unsqueeze(-1)).to(own.dtype)
        centre = own + (a.unsqueeze(-1) * y).sum(-2)
        return (1 - self.alpha) * own + self.alpha * centre

    batched = __call__

    def check_tolerance(self, degree: Tensor, f: Tensor) -> None:
        check_neighbour_tolerance(self, degree, f)
