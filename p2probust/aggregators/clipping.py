r"""Clipping: static and self-centred clipping, adaptive robust clipping (ARC), centred clipping.

:math:`\mathrm{Clip}(v, \tau) = v \min(1, \tau/\|v\|)`. Unreadable (NaN/inf) vectors are replaced by
the clipping centre (their clipped difference is 0); finite vectors with overflowing norms
(``1e30``) are clipped exactly (see :func:`~p2probust.aggregators._safe.safe_norm`).
Shapes follow the contracts of :mod:`p2probust.aggregators.base`; each rule works on any leading
node axes, so :meth:`batched` is the call itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_aggregator, register_preaggregator
from .base import AbstractAggregator, AbstractPreAggregator
from ._safe import as_long, clip_rows, ranks, readable, safe_norm


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} = {value!r} must be a finite number > 0")
    return float(value)


@register_preaggregator("clip", "static clipping of every vector to norm C")
class StaticClipping(AbstractPreAggregator):
    r"""Static clipping :math:`y_j = \mathrm{Clip}(x_j, C)`; unreadable vectors become 0.

    Shapes: ``x [..., m, d], mask [..., m], f [...] -> ([..., m, d], [..., m])``.
    Identical inputs of norm above ``C`` are moved (``fixed_point = False``).
    """

    fixed_point = False

    def __init__(self, C: float = 1.0):
        self.C = _check_positive("clipping norm C", C)

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        return clip_rows(x, torch.tensor(self.C, dtype=x.dtype)), mask

    batched = __call__

    def __repr__(self) -> str:
        return f"StaticClipping(C={self.C:g})"


@register_preaggregator("self-clip", "clipping centred on the node's own model (slot 0): x_0 + Clip(x_j − x_0, C)")
class SelfCenteredClipping(AbstractPreAggregator):
    r"""Clipping centred on the node's own model, the decentralized form of clipping.

    .. math:: y_j = x_0 + \mathrm{Clip}(x_j - x_0, C),

    where slot 0 holds the node's own model (:class:`~p2probust.gossip.AggregateAndMix` puts it
    there). An unreadable message becomes :math:`x_0`.

    Reference: L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
    ClippedGossip", arXiv:2202.01545, 2022.
    """

    anchored = True

    def __init__(self, C: float = 1.0):
        self.C = _check_positive("clipping norm C", C)

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        own = x[..., :1, :]
        return own + clip_rows(x - own, torch.tensor(self.C, dtype=x.dtype)), mask

    batched = __call__

    def __repr__(self) -> str:
        return f"SelfCenteredClipping(C={self.C:g})"


def arc_count(m: int, f: int) -> int:
    r"""ARC's number of clipped vectors :math:`k = \lfloor 2 (f/m) (m - f) \rfloor`, in integers."""
    return (2 * f * (m - f)) // m if m > 0 else 0


@register_preaggregator("arc", "adaptive robust clipping: clip the ⌊2(f/m)(m−f)⌋ largest norms to the next one")
class ARC(AbstractPreAggregator):
    r"""Adaptive robust clipping (ARC).

    With :math:`k = \lfloor 2 (f/m)(m-f) \rfloor` (exact integer arithmetic) and
    :math:`\|x_{(1)}\| \ge \dots \ge \|x_{(m)}\|` the norms in decreasing order,

    .. math:: y_j = \mathrm{Clip}\big(x_j, \|x_{(k+1)}\|\big),

    so the ``k`` largest vectors are clipped to the norm of the (k+1)-th largest and the others
    are unchanged. Ties in norm are broken by slot order; unreadable vectors have infinite norm
    (largest) and, once clipped, become 0.

    Reference: Y. Allouah, R. Guerraoui, N. Gupta, A. Jellouli, G. Rizk, J. Stephan, "Boosting
    robustness by clipping gradients in distributed learning", ICLR 2025.
    """

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        ok = readable(x, mask)
        inf = torch.tensor(float("inf"), dtype=x.dtype)
        nrm = torch.where(ok, safe_norm(torch.where(ok.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype))), inf)
        m = mask.sum(-1)
        f = as_long(f)
        k = torch.div(2 * f * (m - f), m.clamp_min(1), rounding_mode="floor")  # integer ⌊2f(m−f)/m⌋
        key = torch.where(mask, -nrm, inf)  # largest norm first, padding last
        r = ranks(key)
        thr = torch.where(r == k.unsqueeze(-1), nrm, torch.zeros((), dtype=x.dtype)).sum(-1)  # ‖x_(k+1)‖
        thr = torch.where(k < m, thr, torch.zeros((), dtype=x.dtype))
        y = clip_rows(x, thr.unsqueeze(-1), ok)
        return torch.where(mask.unsqueeze(-1), y, x), mask

    batched = __call__


@register_aggregator("centered-clipping", "centred clipping: v + (1/m) Σ_j Clip(x_j − v, τ), centre = own model (slot 0)")
class CenteredClipping(AbstractAggregator):
    r"""Centred clipping (CC), iterated ``L`` times from a centre :math:`v_0`:

    .. math:: v_{l+1} = v_l + \frac{1}{m}\sum_{j=1}^m \mathrm{Clip}(x_j - v_l, \tau).

    The state (the centre) is passed explicitly: ``cc(x, mask, f, centre=v)``; a server keeps
    the previous aggregate (or momentum) as ``v``. Without ``centre`` the centre is slot 0, the
    node's own model in aggregate-and-mix, the natural centre of the decentralized form.
    Ignores ``f``. Unreadable inputs contribute 0 (they are replaced by the centre).

    Shapes: ``x [..., m, d], mask [..., m], f [...], centre [..., d] -> [..., d]``.

    Reference: S. P. Karimireddy, L. He, M. Jaggi, "Learning from history for Byzantine robust
    optimization", ICML 2021.
    """

    anchored = True

    def __init__(self, tau: float = 1.0, iters: int = 1):
        self.tau = _check_positive("clipping radius tau", tau)
        if int(iters) != iters or iters < 1:
            raise ValueError(f"iters = {iters!r} must be an integer >= 1")
        self.iters = int(iters)

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor, centre: Tensor | None = None) -> Tensor:
        v = x[..., 0, :] if centre is None else centre.to(x.dtype)
        count = mask.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
        tau = torch.tensor(self.tau, dtype=x.dtype)
        for _ in range(self.iters):
            v = v + clip_rows(x - v.unsqueeze(-2), tau, mask).sum(-2) / count
        return v

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2

    def __repr__(self) -> str:
        return f"CenteredClipping(tau={self.tau:g}, iters={self.iters})"
