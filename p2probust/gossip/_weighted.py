"""Shared pieces of the weighted robust gossip rules: differences, weighted order statistics.

All helpers work on arbitrary leading node axes (``[..., k]`` slots), so the rules built on them
are hand-batched: ``batched`` is the one-node call itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..aggregators._safe import as_long, ranks, readable, safe_norm, zero_unless
from ..aggregators.base import ToleranceError

_F64 = torch.float64


def differences(own: Tensor, inbox: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""``(delta, dist, ok)``: :math:`\delta_j = x_j - x_i` (0 where unreadable or padding),
    :math:`\|\delta_j\|` (``+inf`` where unreadable or padding) and the readable real slots.

    ``own [..., d], inbox [..., k, d], mask [..., k] -> [..., k, d], [..., k], [..., k]``.
    """
    ok = readable(inbox, mask) & torch.isfinite(own).all(-1, keepdim=True)
    delta = zero_unless(inbox - own.unsqueeze(-2), ok)
    dist = torch.where(ok, safe_norm(delta), torch.tensor(float("inf"), dtype=own.dtype))
    return delta, dist, ok


def real_weights(weights: Tensor, mask: Tensor) -> Tensor:
    """Slot weights in float64, 0 on padding (and never negative)."""
    return torch.where(mask, weights.to(_F64), torch.zeros((), dtype=_F64)).clamp_min(0)


BYZANTINE_WEIGHTS = ("sum", "max")


def byzantine_weight(w: Tensor, mask: Tensor, f: Tensor, mode: str = "sum") -> Tensor:
    r"""Worst-case Byzantine weight :math:`b_i` of ``f`` neighbours.

    ``mode="sum"``: the sum of the ``f`` largest real slot weights (the largest weight ``f``
    neighbours can hold); ``mode="max"``: ``f`` times the largest real slot weight (Gaucher et
    al.'s code, ``weights[-1] * f``, an upper bound of the former). With unit weights both are ``f``.
    ``w [..., k] float64, mask [..., k], f [...] -> [...]``.
    """
    if mode == "max":
        top = torch.where(mask, w, torch.zeros((), dtype=_F64)).amax(-1) if w.shape[-1] else torch.zeros(w.shape[:-1], dtype=_F64)
        return as_long(f).to(_F64) * top
    key = torch.where(mask, -w, torch.tensor(float("inf"), dtype=_F64))
    top = ranks(key) < as_long(f).unsqueeze(-1)
    return torch.where(top & mask, w, torch.zeros((), dtype=_F64)).sum(-1)


class WeightedOrder:
    """Real slots sorted by distance (stable: ties by slot), with cumulative weights.

    Attributes (all ``[..., k]``, in sorted order): ``order`` (slot of each rank), ``dist``,
    ``w``, ``cum`` (weight of ranks ``<= r``), ``real``.
    """

    def __init__(self, dist: Tensor, w: Tensor, mask: Tensor):
        key = torch.where(mask, dist.to(_F64), torch.tensor(float("inf"), dtype=_F64))
        r = ranks(torch.where(torch.isnan(key), torch.tensor(float("inf"), dtype=_F64), key))
        # order[rank] = slot: invert the rank permutation with a scatter
        slots = torch.arange(dist.shape[-1]).expand_as(r)
        self.order = torch.zeros_like(r).scatter(-1, r, slots)
        self.dist = torch.gather(dist, -1, self.order)
        self.w = torch.gather(w, -1, self.order)
        self.real = torch.gather(mask, -1, self.order)
        self.cum = self.w.cumsum(-1)
        self.total = self.cum[..., -1] if dist.shape[-1] else torch.zeros(dist.shape[:-1], dtype=_F64)

    def within(self, target: Tensor, strict: bool = False) -> Tensor:
        """Ranks whose cumulative weight is at most ``target`` (with a round-off slack), or below
        it (``strict``: the ranks before ``searchsorted(cum, target)``, as Gaucher et al.'s code)."""
        slack = 1e-9 * self.total.abs().clamp_min(1.0)
        if strict:
            return self.real & (self.cum < (target - slack).unsqueeze(-1))
        return self.real & (self.cum <= (target + slack).unsqueeze(-1))

    def to_slots(self, v: Tensor) -> Tensor:
        """Map a per-rank tensor ``[..., k]`` back to slot order."""
        return torch.zeros_like(v).scatter(-1, self.order, v)


def check_neighbour_tolerance(rule, degree: Tensor, f: Tensor) -> None:
    """Raise :class:`ToleranceError` unless ``0 <= f <= degree`` at every node."""
    bad = (f < 0) | (f > degree)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ToleranceError(
            f"node {i} has {int(degree[i])} neighbours and tolerance f = {int(f[i])}; "
            f"{rule!r} allows 0 <= f <= {int(degree[i])}"
        )
