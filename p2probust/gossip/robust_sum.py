r"""The robust-gossip family of Gaucher, Dieuleveut and Hendrikx: CS+, CS_he and GTS.

Each honest node takes a step along a robust summand of its weighted differences,

.. math:: x_i \leftarrow x_i - \alpha\,\eta\, F_i\big(\{w_{ij}(x_i - x_j)\}_{j \in N(i)}; b_i\big),

with :math:`w_{ij}` the link weights of the table (Metropolis–Hastings by default), :math:`b_i`
the Byzantine weight to tolerate — the sum of the ``f`` largest link weights of node ``i`` (``f``
with unit weights) — and :math:`\eta = 1/\lambda_{\max}(L_W)`, the weighted Laplacian of the
graph, computed by :meth:`bind` from the table (before ``bind``, each node uses the local
Gershgorin bound :math:`1/(2\sum_j w_{ij})`). Let :math:`d_j = \|x_i - x_j\|` and sort the
neighbours by increasing :math:`d_j` with cumulative weights :math:`c_r`:

* **CS+** (clipped sum): :math:`F_i = \sum_j w_{ij}\,\mathrm{Clip}(x_i - x_j, \tau_i)` with
  :math:`\tau_i = \max\{d_{(r)} : c_r \le W_i - 2b_i\}` (0 if none, ``+inf`` if :math:`b_i = 0`),
  so the neighbours at or above the threshold carry at least :math:`2b_i` of the weight.
* **CS_he**: the same clipped sum with He et al.'s threshold
  :math:`\tau_i^2 = \frac{1}{b_i}\sum_{r : c_r \le W_i - b_i} w_{(r)} d_{(r)}^2`.
* **GTS** (gossip trimmed sum): drop the :math:`b_i` weight of largest distances (the boundary
  neighbour keeps the fraction of its weight that fits) and sum the rest:
  :math:`F_i = \sum_r \min\big(w_{(r)}, \max(0, W_i - b_i - c_{r-1})\big)(x_i - x_{(r)})`.

Malformed messages are at infinite distance; their clipped or trimmed difference is 0.

**Paper vs the authors' code** (renaudgaucher/Byzantine-Robust-Gossip, ``aggregators/robust_gossip.py``
and ``topology.py``). Defaults follow the paper's definitions; the code's choices are options:

* ``variant="code"`` (CS_he, GTS): the code cuts at ``idx = searchsorted(cum, W - b)`` and keeps the
  ranks *before* it, so at an exact tie :math:`c_r = W_i - b_i` (unit weights: always) it keeps
  :math:`\deg - f - 1` neighbours where the paper's :math:`c_r \le W_i - b_i` keeps
  :math:`\deg - f`; GTS's boundary neighbour then gets the trimmed part of its weight,
  :math:`c_r - (W_i - b_i)`. (CS+'s code agrees with the paper.)
* ``byzantine_weight="max"``: :math:`b_i = f \cdot \max_j w_{ij}` (the code's
  ``weights[-1] * f``) instead of the sum of the ``f`` largest weights (``"sum"``, default: the
  largest weight ``f`` neighbours can actually hold; the two agree with unit weights).
* ``eta_graph="honest"``: :math:`\eta = 1/\lambda_{\max}` of the weighted Laplacian of the honest
  subgraph (the code's ``CommunicationNetwork`` is the honest graph), which needs the oracle's
  knowledge of who is Byzantine; the default ``"full"`` uses the whole graph, which every node can
  know, and since removing nodes cannot raise :math:`\lambda_{\max}` of a Laplacian its step is
  never larger than the honest one (any step condition stated on the honest graph still holds).

Reference: R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine
robust gossip", ICML 2025. (The authors' code gives GTS's boundary neighbour the trimmed part of
its weight, ``c_r - (W_i - b_i)``; we follow the paper's definition and keep the part that fits.)
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
import math

import torch
from torch import Tensor

from ..aggregators._safe import clip_rows
from ..registry import register_rule
from .base import AbstractGossipRule
from ._weighted import BYZANTINE_WEIGHTS, WeightedOrder, byzantine_weight, check_neighbour_tolerance, differences, real_weights


_VARIANTS = ("paper", "code")
_ETA_GRAPHS = ("full", "honest")


class _RobustSum(AbstractGossipRule):
    """Shared step and step-size handling; subclasses give :meth:`summand` (toward neighbours)."""

    def __init__(self, alpha: float = 1.0, eta: float | None = None, *, byzantine_weight: str = "sum",
                 eta_graph: str = "full", variant: str = "paper"):
        if not (0 < alpha <= 1):
            raise ValueError(f"gossip rate alpha = {alpha} must be in (0, 1]")
        if eta is not None and not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise ValueError(f"step size eta = {eta!r} must be None (1/λ_max of the weighted Laplacian) or a number > 0")
        for name, value, allowed in (("byzantine_weight", byzantine_weight, BYZANTINE_WEIGHTS),
                                     ("eta_graph", eta_graph, _ETA_GRAPHS), ("variant", variant, _VARIANTS)):
            if value not in allowed:
                raise ValueError(f"{name} = {value!r} must be one of: {', '.join(allowed)}")
        self.alpha = float(alpha)
        self.eta = None if eta is None else float(eta)
        self.byzantine_weight, self.eta_graph, self.variant = byzantine_weight, eta_graph, variant

    def _options(self) -> dict:
        return {"byzantine_weight": self.byzantine_weight, "eta_graph": self.eta_graph, "variant": self.variant}

    @abstractmethod
    def summand(self, delta: Tensor, o: WeightedOrder, b: Tensor) -> Tensor:
        """The variant's clipped or trimmed terms of the robust sum."""

    def __call__(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        delta, dist, _ = differences(own, inbox, mask)
        w = real_weights(weights, mask)
        b = byzantine_weight(w, mask, f, self.byzantine_weight)
        step = self.summand(delta, WeightedOrder(dist, w, mask), b)  # = −F_i
        if self.eta is None:
            eta = (1.0 / (2.0 * w.sum(-1)).clamp_min(1e-12)).to(own.dtype).unsqueeze(-1)
        else:
            eta = torch.tensor(self.eta, dtype=own.dtype)
        return own + self.alpha * eta * step

    batched = __call__

    def bind(self, table, is_byzantine: Tensor) -> "_RobustSum":
        if self.eta is not None:
            return self
        from ..topology.spectral import laplacian_max_eigenvalue

        if self.eta_graph == "honest":
            byz = table.byzantine_slots(is_byzantine) | is_byzantine.unsqueeze(1)
            table = dataclasses.replace(table, weights=torch.where(byz, torch.zeros((), dtype=table.weights.dtype),
                                                                    table.weights))
        return type(self)(alpha=self.alpha, eta=1.0 / laplacian_max_eigenvalue(table), **self._options())

    def check_tolerance(self, degree: Tensor, f: Tensor) -> None:
        check_neighbour_tolerance(self, degree, f)

    def __repr__(self) -> str:
        eta = ("1/λmax(L)" if self.eta_graph == "full" else "1/λmax(L_honest)") if self.eta is None else f"{self.eta:g}"
        extra = "".join(f", {k}={v!r}" for k, v in self._options().items()
                        if v != {"byzantine_weight": "sum", "eta_graph": "full", "variant": "paper"}[k])
        return f"{type(self).__name__}(alpha={self.alpha:g}, eta={eta}{extra})"


def _clipped_sum(delta: Tensor, o: WeightedOrder, tau: Tensor) -> Tensor:
    w = o.to_slots(o.w).to(delta.dtype)
    return (w.unsqueeze(-1) * clip_rows(delta, tau.to(delta.dtype).unsqueeze(-1))).sum(-2)


@register_rule("cs-plus", "CS+ robust gossip: clipped sum, threshold leaving 2b of the weight at or above it")
class CSPlus(_RobustSum):
    r"""CS+ robust gossip: :math:`x_i - \eta \sum_j w_{ij}\,\mathrm{Clip}(x_i - x_j, \tau_i)`,
    :math:`\tau_i` the largest distance with cumulative weight :math:`\le W_i - 2b_i`.
    See :mod:`p2probust.gossip.robust_sum` for the full definition and the reference."""

    def summand(self, delta: Tensor, o: WeightedOrder, b: Tensor) -> Tensor:
        keep = o.within(o.total - 2 * b)
        neg = torch.tensor(-1.0, dtype=o.dist.dtype)
        tau = torch.where(keep, o.dist, neg).amax(-1).clamp_min(0)
        tau = torch.where(b > 0, tau.to(torch.float64), torch.tensor(float("inf"), dtype=torch.float64))
        return _clipped_sum(delta, o, tau)


def he_threshold(o: WeightedOrder, b: Tensor, strict: bool = False) -> Tensor:
    r""":math:`\tau^2 = \frac1b \sum_{r: c_r \le W - b} w_{(r)} d_{(r)}^2` (``+inf`` when ``b = 0``);
    ``strict``: :math:`c_r < W - b` (Gaucher et al.'s code)."""
    honest = o.within(o.total - b, strict)
    zero = torch.zeros((), dtype=torch.float64)
    d = o.dist.to(torch.float64)
    s = torch.where(honest, o.w * d * d, zero).sum(-1)
    tau = (s / torch.where(b > 0, b, torch.ones((), dtype=torch.float64))).sqrt()
    return torch.where(b > 0, tau, torch.tensor(float("inf"), dtype=torch.float64))


@register_rule("cs-he", "CS_he robust gossip: clipped sum with He et al.'s adaptive threshold")
class CSHe(_RobustSum):
    r"""CS_he robust gossip: the clipped sum of CS+ with He, Karimireddy and Jaggi's threshold
    :math:`\tau_i^2 = b_i^{-1}\sum_{r: c_r \le W_i - b_i} w_{(r)} d_{(r)}^2`.
    See :mod:`p2probust.gossip.robust_sum`."""

    def summand(self, delta: Tensor, o: WeightedOrder, b: Tensor) -> Tensor:
        return _clipped_sum(delta, o, he_threshold(o, b, strict=self.variant == "code"))


@register_rule("gts", "GTS robust gossip: trim the Byzantine weight b of largest distances, sum the rest")
class GTS(_RobustSum):
    r"""GTS robust gossip: :math:`x_i - \eta \sum_r \tilde w_{(r)} (x_i - x_{(r)})` with the
    :math:`b_i` weight of largest distances trimmed. See :mod:`p2probust.gossip.robust_sum`."""

    def summand(self, delta: Tensor, o: WeightedOrder, b: Tensor) -> Tensor:
        target = (o.total - b).unsqueeze(-1)
        before = o.cum - o.w
        if self.variant == "code":  # ranks before searchsorted(cum, target), boundary gets cum - target
            full = o.within(o.total - b, strict=True)
            first_out = o.real & ~full & (torch.cumsum((o.real & ~full).long(), -1) == 1)
            kept = torch.where(full, o.w, torch.where(first_out, (o.cum - target).clamp_min(0), torch.zeros((), dtype=o.w.dtype)))
            kept = torch.where(o.real, kept, torch.zeros((), dtype=kept.dtype))
            return (o.to_slots(kept).to(delta.dtype).unsqueeze(-1) * delta).sum(-2)
        kept = torch.minimum(o.w, target - before).clamp_min(0)
        kept = torch.where(o.real, kept, torch.zeros((), dtype=kept.dtype))
        return (o.to_slots(kept).to(delta.dtype).unsqueeze(-1) * delta).sum(-2)
