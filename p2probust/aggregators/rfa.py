r"""RFA: the smoothed Weiszfeld algorithm with a fixed number of iterations (Pillutla, Kakade,
Harchaoui), as the "GM" baseline of He, Karimireddy and Jaggi's ClippedGossip experiments.

.. math:: \beta_j = \frac{\alpha_j}{\max(\nu, \|z_t - x_j\|)},\qquad
          z_{t+1} = \frac{\sum_j \beta_j x_j}{\sum_j \beta_j},\qquad t = 0, \dots, T-1,

with uniform :math:`\alpha_j = 1/m` over the readable inputs. Unlike ``geomed`` (iterated to
convergence, Vardi–Zhang at input points, a relative tolerance) this stops after exactly ``T``
iterations and smooths with an *absolute* :math:`\nu`: inputs closer than :math:`\nu` to the iterate
all get the weight :math:`1/\nu`. The authors' code starts from :math:`z_0 = 0`
(``start="zero"``, the default); ``start="mean"`` starts from the mean of the inputs.

References
----------
.. [1] K. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust aggregation for federated learning",
   IEEE Trans. Signal Processing 70, 2022 (arXiv:1912.13445), Algorithm 2 (smoothed Weiszfeld).
.. [2] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
   ClippedGossip", arXiv:2202.01545, 2022; code epfml/byzantine-robust-decentralized-optimizer,
   ``codes/aggregator.py`` (``smoothed_weiszfeld``, ``RFA(T, nu=0.1)``, ``DeRFA``: the node's own
   model and its neighbours'; ``--agg rfa8`` is "GM" with T = 8).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_aggregator
from ._safe import readable, zero_unless
from .base import AbstractAggregator

_STARTS = ("zero", "mean")


@register_aggregator("rfa", "RFA: smoothed Weiszfeld, T iterations from 0, distances floored at nu (He et al.'s GM: T = 8)")
class RFA(AbstractAggregator):
    """Smoothed Weiszfeld geometric median with ``T`` fixed iterations (see the module).

    Parameters
    ----------
    T : int
        Number of iterations, ``>= 1`` (8 in He et al.'s dumbbell, ``--agg rfa8``).
    nu : float
        Smoothing ``ν > 0``: distances below it count as ``ν`` (0.1 in their code).
    start : {"zero", "mean"}
        ``z_0``: the origin (their code) or the mean of the readable inputs.

    Batched over any leading node axes (``[..., m, d]``); unreadable inputs get weight 0. Ignores
    ``f``.
    """

    def __init__(self, T: int = 8, nu: float = 0.1, start: str = "zero"):
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"rfa T = {T!r} must be an integer >= 1 (number of Weiszfeld iterations)")
        if not (isinstance(nu, (int, float)) and math.isfinite(nu) and nu > 0):
            raise ValueError(f"rfa nu = {nu!r} must be a number > 0")
        if start not in _STARTS:
            raise ValueError(f"rfa start = {start!r} must be one of: {', '.join(_STARTS)}")
        self.T, self.nu, self.start = T, float(nu), start

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        ok = readable(x, mask)
        x = zero_unless(x, ok)
        okf = ok.to(x.dtype)
        if self.start == "mean":
            z = x.sum(-2) / okf.sum(-1, keepdim=True).clamp_min(1)
        else:
            z = torch.zeros_like(x[..., 0, :])
        for _ in range(self.T):
            dist = torch.linalg.vector_norm(x - z.unsqueeze(-2), dim=-1)
            beta = okf / dist.clamp_min(self.nu)  # α_j = 1/m cancels in the ratio
            z = (beta.unsqueeze(-1) * x).sum(-2) / beta.sum(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        return z

    batched = __call__

    def __repr__(self) -> str:
        return f"RFA(T={self.T}, nu={self.nu:g}, start={self.start!r})"
