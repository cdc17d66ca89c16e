r"""BRIDGE screening rules of Fang, Yang and Bajwa: -T, -M, -K, -B.

Each honest node screens its neighbourhood *including itself* with a robust aggregator and takes
the result as its new model (a local gradient step follows in the simulation's local step):

.. math:: \theta_i \leftarrow (1-\alpha)\theta_i + \alpha\,
          \mathrm{Screen}_f\big(\{\theta_i\} \cup \{\theta_j\}_{j \in N(i)}\big),

with Screen the coordinate-wise trimmed mean (BRIDGE-T, ``f`` per side), the coordinate-wise
median (BRIDGE-M), Krum (BRIDGE-K) or Bulyan (BRIDGE-B). ``f`` is the tolerance at the node.

Reference: C. Fang, Z. Yang, W. U. Bajwa, "BRIDGE: Byzantine-resilient decentralized gradient
descent", IEEE Transactions on Signal and Information Processing over Networks 8 (2022).
"""

from __future__ import annotations

from ..aggregators import Bulyan, CoordinateWiseMedian, Krum, TrimmedMean
from ..aggregators.base import AbstractAggregator
from ..registry import register_rule
from .mixing import AggregateAndMix

_SCREENS: dict[str, type[AbstractAggregator]] = {
    "T": TrimmedMean, "M": CoordinateWiseMedian, "K": Krum, "B": Bulyan,
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


@register_rule("bridge-t", "BRIDGE-T: trimmed mean over the neighbourhood including itself")
def bridge_t(alpha: float = 1.0) -> BridgeScreening:
    return BridgeScreening("T", alpha)


@register_rule("bridge-m", "BRIDGE-M: coordinate-wise median over the neighbourhood including itself")
def bridge_m(alpha: float = 1.0) -> BridgeScreening:
    return BridgeScreening("M", alpha)


@register_rule("bridge-k", "BRIDGE-K: Krum over the neighbourhood including itself")
def bridge_k(alpha: float = 1.0) -> BridgeScreening:
    return BridgeScreening("K", alpha)


@register_rule("bridge-b", "BRIDGE-B: Bulyan over the neighbourhood including itself")
def bridge_b(alpha: float = 1.0) -> BridgeScreening:
    return BridgeScreening("B", alpha)
