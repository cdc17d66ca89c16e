r"""ClippedGossip (self-centred clipping) of He, Karimireddy and Jaggi.

.. math:: \theta_i \leftarrow \theta_i + \alpha \sum_{j \in N(i)} W_{ij}\,
          \mathrm{Clip}(\theta_j - \theta_i, \tau_i),\qquad
          \mathrm{Clip}(v, \tau) = v \min(1, \tau/\|v\|),

with the table's mixing weights :math:`W` (Metropolis–Hastings; the self weight is
:math:`W_{ii} = 1 - \sum_j W_{ij}`) and one of three clipping radii:

* ``tau=<float>``: a fixed radius;
* ``tau="adaptive"`` (the practical rule): with :math:`\delta_i` the Byzantine weight (the sum of
  the ``f`` largest neighbour weights) and the neighbourhood including node ``i`` itself sorted by
  distance, the closest nodes up to cumulative weight :math:`1 - \delta_i` are treated as honest:
  :math:`\tau_i^2 = \frac{1}{\delta_i}\sum_{j \text{ closest}} W_{ij}\|\theta_i - \theta_j\|^2`;
* ``tau="oracle"``: the same formula over the truly honest neighbours, with
  :math:`\delta_i = \sum_{j \in N(i) \cap B} W_{ij}` — it needs :meth:`bind` (who is Byzantine) and
  a batched call over all nodes or over the honest nodes in ascending order (as the simulation
  makes); a one-node call raises.

:math:`\delta_i = 0` means no clipping (plain gossip). Malformed messages are replaced by
:math:`\theta_i` (clipped difference 0).

Reference: L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
ClippedGossip", arXiv:2202.01545, 2022.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..aggregators._safe import clip_rows
from ..registry import register_rule
from .base import AbstractGossipRule
from ._weighted import WeightedOrder, byzantine_weight, check_neighbour_tolerance, differences, real_weights
from .robust_sum import he_threshold

_F64 = torch.float64


@register_rule("clipped-gossip", "ClippedGossip: θ_i + Σ_j W_ij Clip(θ_j − θ_i, τ_i), adaptive τ (tau= float | adaptive | oracle)")
class ClippedGossip(AbstractGossipRule):
    r"""Self-centred clipping gossip; see :mod:`p2probust.gossip.clipped` for the rule as math.

    Parameters
    ----------
    alpha : float
        Gossip rate in (0, 1] multiplying the clipped sum.
    tau : float or {"adaptive", "oracle"}
        Clipping radius (see the module notes).

    Shapes: ``own [..., d], msgs [..., k, d], mask [..., k], weights [..., k], f [...] -> [..., d]``.
    """

    def __init__(self, alpha: float = 1.0, tau: float | str = "adaptive"):
        if not (0 < alpha <= 1):
            raise ValueError(f"gossip rate alpha = {alpha} must be in (0, 1]")
        if isinstance(tau, str):
            if tau not in ("adaptive", "oracle"):
                raise ValueError(f"clipping radius tau = {tau!r} must be a number > 0, 'adaptive' or 'oracle'")
        elif not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"clipping radius tau = {tau!r} must be a number > 0, 'adaptive' or 'oracle'")
        self.alpha = float(alpha)
        self.tau = tau if isinstance(tau, str) else float(tau)
        self._byz_slots: Tensor | None = None
        self._honest: Tensor | None = None

    def bind(self, table, is_byzantine: Tensor) -> "ClippedGossip":
        if self.tau != "oracle":
            return self
        bound = ClippedGossip(self.alpha, "oracle")
        bound._byz_slots = table.byzantine_slots(is_byzantine)
        bound._honest = ~is_byzantine
        bound.row_independent = False  # rows are matched to nodes by position
        return bound

    def _oracle_slots(self, rows: int) -> Tensor:
        if self._byz_slots is None:
            raise ValueError("ClippedGossip(tau='oracle') needs bind(table, is_byzantine) and a batched call")
        if rows == self._byz_slots.shape[0]:
            return self._byz_slots
        if self._honest is not None and rows == int(self._honest.sum()):
            return self._byz_slots[self._honest]
        raise ValueError(
            f"ClippedGossip(tau='oracle') got {rows} rows; it needs all {self._byz_slots.shape[0]} nodes "
            f"or the {int(self._honest.sum())} honest nodes in ascending order"
        )

    def radius(self, delta: Tensor, dist: Tensor, w: Tensor, mask: Tensor, f: Tensor, self_w: Tensor) -> Tensor:
        """The clipping radius ``tau_i`` per node (float64, ``[...]``)."""
        if not isinstance(self.tau, str):
            return torch.full(dist.shape[:-1], self.tau, dtype=_F64)
        if self.tau == "adaptive":
            # the neighbourhood including the node itself (distance 0, weight W_ii)
            zero = torch.zeros_like(dist[..., :1])
            o = WeightedOrder(torch.cat([zero, dist], -1), torch.cat([self_w.unsqueeze(-1), w], -1),
                              torch.cat([torch.ones_like(mask[..., :1]), mask], -1))
            return he_threshold(o, byzantine_weight(w, mask, f))
        if dist.dim() < 2:
            raise ValueError("ClippedGossip(tau='oracle') needs a batched call over nodes (after bind); use tau='adaptive' per node")
        byz = self._oracle_slots(dist.shape[0]) & mask
        delta_w = torch.where(byz, w, torch.zeros((), dtype=_F64)).sum(-1)
        d = dist.to(_F64)
        spread = torch.where(mask & ~byz, w * d * d, torch.zeros((), dtype=_F64)).sum(-1)
        tau = (spread / torch.where(delta_w > 0, delta_w, torch.ones((), dtype=_F64))).sqrt()
        return torch.where(delta_w > 0, tau, torch.tensor(float("inf"), dtype=_F64))

    def __call__(self, own: Tensor, msgs: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        delta, dist, _ = differences(own, msgs, mask)
        w = real_weights(weights, mask)
        self_w = (1.0 - w.sum(-1)).clamp_min(0)
        tau = self.radius(delta, dist, w, mask, f, self_w).to(own.dtype)
        clipped = clip_rows(delta, tau.unsqueeze(-1))
        return own + self.alpha * (w.to(own.dtype).unsqueeze(-1) * clipped).sum(-2)

    batched = __call__

    def check_tolerance(self, degree: Tensor, f: Tensor) -> None:
        check_neighbour_tolerance(self, degree, f)

    def __repr__(self) -> str:
        tau = self.tau if isinstance(self.tau, str) else f"{self.tau:g}"
        return f"ClippedGossip(alpha={self.alpha:g}, tau={tau})"
