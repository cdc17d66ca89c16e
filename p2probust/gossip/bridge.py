r"""BRIDGE screening rules of Fang, Yang and Bajwa: -T, -M, -K, -B.

Each honest node screens its neighbourhood *including itself* (``M = deg + 1`` vectors) with a
robust aggregator and takes the result as its new model (a local gradient step follows in the
simulation's local step):

.. math:: \theta_i \leftarrow (1-\alpha)\theta_i + \alpha\,
          \mathrm{Screen}_b\big(\{\theta_i\} \cup \{\theta_j\}_{j \in N(i)}\big),

``b`` the tolerance at the node, and Screen, as in the authors' code (``screening_method.py``):

* **BRIDGE-T**: coordinate-wise trimmed mean, ``b`` per side;
* **BRIDGE-M**: coordinate-wise median;
* **BRIDGE-K**: Krum with *unsquared* distances, the score of :math:`x_i` being the sum of the
  :math:`M - b - 2` smallest distances :math:`\|x_j - x_i\|` over the whole neighbourhood *including*
  :math:`x_i` itself (distance 0) — so it sums the :math:`M - b - 3` nearest others
  (:class:`BridgeKrum`; Blanchard's Krum, squared distances over the :math:`M - b - 2` nearest
  others, is the ``krum`` rule);
* **BRIDGE-B**: Krum selection then trimmed mean: :math:`M - 2b` vectors chosen by repeated
  BRIDGE-K (each winner leaves the candidate set), then their coordinate-wise trimmed mean with
  ``b`` per side (:class:`BridgeBulyan`; El Mhamdi et al.'s Bulyan, which averages around the
  median instead, is the ``bulyan`` rule).

Reference: C. Fang, Z. Yang, W. U. Bajwa, "BRIDGE: Byzantine-resilient decentralized gradient
descent", IEEE Transactions on Signal and Information Processing over Networks 8 (2022); code of
the authors' lab (Rutgers INSPIRE lab, BRIDGE/ByRDiE repository, ``screening_method.py``).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from ..aggregators import CoordinateWiseMedian, TrimmedMean
from ..aggregators._safe import as_long, ranks, readable, sq_dists, weighted_select
from ..aggregators.base import AbstractAggregator
from ..registry import register_rule
from .mixing import AggregateAndMix


def bridge_krum_scores(dist: Tensor, alive: Tensor, f: Tensor) -> Tensor:
    r"""BRIDGE-K scores: the sum of the :math:`|A| - f - 2` (at least 1) smallest distances of each
    alive row to the alive set ``A``, its own zero distance included.

    ``dist [..., m, m]`` (unsquared, ``+inf`` for unreadable), ``alive [..., m]``, ``f [...]``
    ``-> [..., m]``; dead slots score ``+inf``.
    """
    inf = dist.new_tensor(float("inf"))
    row = torch.where(alive.unsqueeze(-2), dist, inf)
    q = (alive.sum(-1) - f - 2).clamp_min(1)
    near = ranks(row) < q.unsqueeze(-1).unsqueeze(-1)
    score = torch.where(near, row, dist.new_zeros(())).sum(-1)
    return torch.where(alive, score, inf)


class BridgeKrum(AbstractAggregator):
    """BRIDGE-K's screen: the input of least BRIDGE-K score (ties → least total distance, then the
    lowest slot, so that slot order never matters); see the module notes."""

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        dist = sq_dists(x, readable(x, mask)).sqrt()
        spread = torch.where(mask.unsqueeze(-2) & mask.unsqueeze(-1), dist, dist.new_zeros(())).sum(-1)
        return weighted_select(x, ranks(bridge_krum_scores(dist, mask, as_long(f)), spread) == 0)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 3) // 2).clamp_min(0)


class BridgeBulyan(AbstractAggregator):
    """BRIDGE-B's screen: ``m - 2f`` inputs by repeated BRIDGE-K, then their trimmed mean (``f`` per side)."""

    coordinatewise = True

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        f = as_long(f)
        dist = sq_dists(x, readable(x, mask)).sqrt()
        theta = (mask.sum(-1) - 2 * f).clamp_min(1)
        alive, chosen = mask.clone(), torch.zeros_like(mask)
        zero = dist.new_zeros(())
        for t in range(int(theta.max()) if theta.numel() else 0):
            # once |A| - f - 2 <= 1 every score is the zero self distance: ties → least total
            # distance to A, then the lower slot (the code takes list order), so slot order never matters
            spread = torch.where(alive.unsqueeze(-2) & alive.unsqueeze(-1), dist, zero).sum(-1)
            win = (ranks(bridge_krum_scores(dist, alive, f), spread) == 0) & alive & (t < theta).unsqueeze(-1)
            chosen, alive = chosen | win, alive & ~win
        return TrimmedMean()(x, chosen, f)

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return ((m - 1) // 4).clamp_min(0)


_SCREENS: dict[str, type[AbstractAggregator]] = {
    "T": TrimmedMean, "M": CoordinateWiseMedian, "K": BridgeKrum, "B": BridgeBulyan,
}


class BridgeScreening(AggregateAndMix):
    """BRIDGE-``variant``: aggregate-and-mix whose aggregator is the variant's screening rule."""

    def __init__(self, variant: str = "T", alpha: float = 1.0):
        if variant not in _SCREENS:
            raise ValueError(f"BRIDGE variant {variant!r} must be one of: {', '.join(_SCREENS)}")
        super().__init__(_SCREENS[variant](), alpha)
        self.variant = variant

    def __repr__(self) -> str:
        return f"BRIDGE-{self.variant}(alpha={self.alpha:g})"


#: rule name suffix (the variant) -> registry description
_DESCRIPTIONS = {
    "T": "BRIDGE-T: trimmed mean over the neighbourhood including itself",
    "M": "BRIDGE-M: coordinate-wise median over the neighbourhood including itself",
    "K": "BRIDGE-K: Krum (unsquared distances, self included, as the authors' code) over the neighbourhood",
    "B": "BRIDGE-B: Krum selection of m−2b, then trimmed mean with b (the authors' code)",
}
# rules bridge-t, bridge-m, bridge-k, bridge-b: factories (alpha=1.0) -> BridgeScreening(variant, alpha)
bridge_t, bridge_m, bridge_k, bridge_b = (
    register_rule(f"bridge-{v.lower()}", text)(partial(BridgeScreening, v)) for v, text in _DESCRIPTIONS.items()
)
