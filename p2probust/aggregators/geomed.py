r"""Geometric median by smoothed Weiszfeld iterations, hand-batched over nodes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_aggregator
from .base import AbstractAggregator
from ._safe import any_, coordinate_median, is_batched, readable, zero_unless


@register_aggregator("geomed", "geometric median (smoothed Weiszfeld from the coordinate-wise median)")
class GeometricMedian(AbstractAggregator):
    r"""Geometric median :math:`\arg\min_z \sum_j \|z - x_j\|`, by smoothed Weiszfeld iterations.

    .. math:: z_{t+1} = \frac{\sum_j \beta_j x_j}{\sum_j \beta_j},\qquad
              \beta_j = \frac{1}{\max(\nu, \|z_t - x_j\|)},

    started from the coordinate-wise median :math:`z_0` (not from 0) and stopped for each node
    when :math:`\|z_{t+1} - z_t\| \le \mathrm{tol}\cdot\max(\|z_t - z_0\|, \mathrm{scale})`,
    ``scale`` the median distance of the inputs to :math:`z_0`, or after ``max_iter`` iterations.

    Batching: all nodes iterate together; a node that has converged is frozen with
    ``torch.where`` (no per-node Python control flow), and the loop ends when every node has
    converged or at ``max_iter``, so each node's result equals its one-node computation.
    Distances come from centred Gram terms (``[..., m]`` per iteration, no ``[..., m, d]``
    temporaries beyond one matrix–vector product). Unreadable inputs, and inputs whose distance
    overflows, get weight 0 (a point at infinity cannot move a median by more than its share).
    Ignores ``f``; breakdown point 1/2.

    Parameters
    ----------
    nu : float
        Smoothing :math:`\nu > 0`, relative to ``scale`` (absolute when all inputs coincide).
    tol : float
        Relative tolerance of the stopping rule.
    max_iter : int
        Iteration cap.

    Reference: V. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust aggregation for federated
    learning", IEEE Trans. Signal Processing 70 (2022); E. Weiszfeld, Tohoku Math. J. 43 (1937).
    """

    def __init__(self, nu: float = 1e-6, tol: float = 1e-5, max_iter: int = 100):
        for name, v in (("nu", nu), ("tol", tol)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"geomed {name} = {v!r} must be a finite number > 0")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"geomed max_iter = {max_iter!r} must be an integer >= 1")
        self.nu, self.tol, self.max_iter = float(nu), float(tol), int(max_iter)

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        ok = readable(x, mask)
        z0 = coordinate_median(x, ok)
        y = zero_unless(x - z0.unsqueeze(-2), ok)  # centred at z0: precise Gram distances
        sq = (y * y).sum(-1)  # [..., m]; may overflow to inf for huge inputs
        ok = ok & torch.isfinite(sq)
        y = zero_unless(y, ok)
        sq = torch.where(ok, sq, torch.zeros((), dtype=x.dtype))
        dist0 = torch.where(ok, sq.sqrt(), torch.tensor(float("inf"), dtype=x.dtype))
        scale = _masked_median(dist0, ok)
        tiny = torch.finfo(x.dtype).tiny
        nu = self.nu * torch.where(scale > 0, scale, torch.ones((), dtype=x.dtype))
        u = torch.zeros_like(z0)  # z − z0
        done = torch.zeros(z0.shape[:-1], dtype=torch.bool)
        shortcut = not is_batched(x)
        for _ in range(self.max_iter):
            uu = (u * u).sum(-1, keepdim=True)
            dist = (sq - 2 * (y @ u.unsqueeze(-1)).squeeze(-1) + uu).clamp_min(0).sqrt()
            beta = torch.where(ok, 1.0 / torch.maximum(dist, nu.unsqueeze(-1)), torch.zeros((), dtype=x.dtype))
            new = (beta.unsqueeze(-1) * y).sum(-2) / beta.sum(-1, keepdim=True).clamp_min(tiny)
            step = torch.linalg.vector_norm(new - u, dim=-1)
            u = torch.where(done.unsqueeze(-1), u, new)
            ref = torch.maximum(torch.linalg.vector_norm(u, dim=-1), scale)
            done = done | (step <= self.tol * ref)
            if shortcut and not any_(~done):
                break
        return z0 + u

    batched = __call__

    def max_tolerance(self, m: Tensor) -> Tensor:
        return (m - 1) // 2

    def __repr__(self) -> str:
        return f"GeometricMedian(nu={self.nu:g}, tol={self.tol:g}, max_iter={self.max_iter})"


def _masked_median(v: Tensor, ok: Tensor) -> Tensor:
    """Lower median of the ``ok`` entries of the last axis (0 when none): ``[..., m] -> [...]``."""
    big = torch.tensor(float("inf"), dtype=v.dtype)
    s = torch.sort(torch.where(ok, v, big), dim=-1).values
    k = ((ok.sum(-1) - 1).clamp_min(0) // 2).unsqueeze(-1)
    med = torch.gather(s, -1, k).squeeze(-1)
    return torch.where(torch.isfinite(med), med, torch.zeros((), dtype=v.dtype))
