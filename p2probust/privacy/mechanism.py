r"""DP-SGD's local gradient for every acting node at once: sample, clip, sum, add noise, divide.

For node ``i`` with batch :math:`\mathcal B_i` (Poisson sampling at rate ``q``, expected size
:math:`B_i = q\,|D_i|`; or a fixed size ``B``):

.. math::
    \tilde g_i = \frac{1}{B_i}\Big(\sum_{s\in\mathcal B_i} \mathrm{clip}_C(g_{is})
    + \mathcal N(0, \sigma^2 C^2 I_d)\Big),\qquad \mathrm{clip}_C(g) = g\min(1, C/\lVert g\rVert)

(Abadi et al., "Deep learning with differential privacy", CCS 2016, Algorithm 1; dividing by the
*expected* batch size as Opacus does with Poisson sampling, so that the noise scale does not depend
on the drawn batch; at least 1, so that a node without data steps by noise only). The trainer then applies local momentum to :math:`\tilde g_i` (noise before
momentum, as in the tutorial's DP robust D-SGD). Each node's steps are counted, so that its ε
(:mod:`.accountant`) is exact in asynchronous runs too.

With ``sampling = "fixed"`` the trainer's own batches (``B`` draws per node) are used and ``B_i = B``;
the accountant then still assumes Poisson sampling at ``q = B/|D_i|``, which is a *heuristic* bound
for fixed-size batches (a warning says so). With ``σ = 0`` and ``C = ∞`` this path is the non-DP
step: bit for bit for the closed-form linear models, to rounding for others (per-example
gradients are summed in another order than autograd's batch gradient).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config.base import or_list
from ..config.observe import DPSampling
from .accountant import epsilon
from .per_example import clipped_mean_fn
from .sampling import gather_batch, poisson_positions


@dataclass
class GaussianDP:
    """The DP local gradient and its accounting; handed to :class:`~p2probust.local.LocalTrainer`.

    Attributes
    ----------
    clip : float
        Per-example norm bound C (``inf``: no clipping, allowed only with σ = 0).
    noise_multiplier : float
        σ; the noise on the clipped sum has standard deviation σC per coordinate.
    sample_rate : float
        q in (0, 1]: each local example enters a Poisson batch with probability q.
    delta : float
        δ at which ε is reported.
    sampling : str
        ``"poisson"`` or ``"fixed"``.
    generator : torch.Generator
        The ``noise`` stream of the run.
    steps : LongTensor [n]
        Local steps taken by each node so far.
    """

    clip: float
    noise_multiplier: float
    sample_rate: float
    delta: float
    sampling: str = "poisson"
    generator: torch.Generator = field(default_factory=torch.Generator)
    steps: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ValueError(f"privacy clip = {self.clip!r} is invalid; expected a norm bound C > 0 (inf: no clipping)")
        if not 0 <= self.noise_multiplier < float("inf"):
            raise ValueError(f"privacy noise_multiplier = {self.noise_multiplier!r} is invalid; expected σ >= 0")
        if self.noise_multiplier > 0 and self.clip == float("inf"):
            raise ValueError("privacy noise needs a finite clip C (the noise is σ·C); set privacy.clip")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"privacy sample_rate = {self.sample_rate!r} is invalid; expected q in (0, 1]")
        if self.sampling not in typing.get_args(DPSampling):
            raise ValueError(f"privacy sampling = {self.sampling!r} is invalid; expected {or_list(typing.get_args(DPSampling))}")
        self._mean = None

    def bind(self, trainer) -> "GaussianDP":
        """Build the clipped-mean function for ``trainer``'s model and size the step counters."""
        self._mean = clipped_mean_fn(trainer.model, trainer.loss, trainer.criterion, trainer.spec)
        if self.steps.numel() != trainer.lengths.numel():
            self.steps = torch.zeros(trainer.lengths.numel(), dtype=torch.long, device=trainer.lengths.device)
        return self

    def gradients(self, trainer, theta: Tensor, nodes: Tensor, generator: torch.Generator) -> Tensor:
        """``[a, d]`` noisy clipped mean gradients of ``nodes`` at ``theta [a, d]``; batches are
        drawn from ``generator`` (the run's ``batches`` stream), noise from :attr:`generator`."""
        if self._mean is None:
            self.bind(trainer)
        if self.sampling == "poisson":
            lengths = trainer.lengths[nodes]
            pos, mask = poisson_positions(lengths, trainer.table.shape[1], self.sample_rate, generator)
            xb, yb = gather_batch(trainer, nodes, pos)
            keep = mask.to(theta.dtype)
            denom = (self.sample_rate * lengths).clamp(min=1.0).to(theta.dtype)  # a node without data: noise only
        else:
            xb, yb = trainer.sample(nodes, generator)
            keep = torch.ones(yb.shape, dtype=theta.dtype, device=theta.device)
            denom = torch.full((nodes.numel(),), float(yb.shape[1]), dtype=theta.dtype, device=theta.device)
        self.steps = self.steps.index_add(0, nodes, torch.ones_like(nodes))
        return self.privatize(self._mean(theta, xb, yb, keep, denom, self.clip), denom)

    def privatize(self, clipped_mean: Tensor, denom: Tensor) -> Tensor:
        r"""Add the Gaussian noise: :math:`\bar g_i + \sigma C z_i / B_i`, ``z ~ N(0, I)``; σ = 0 adds nothing."""
        if self.noise_multiplier == 0:
            return clipped_mean
        z = torch.randn(clipped_mean.shape, generator=self.generator, dtype=clipped_mean.dtype, device=clipped_mean.device)
        scale = (self.noise_multiplier * self.clip) / denom
        return torch.addcmul(clipped_mean, scale.unsqueeze(1), z)

    def epsilon(self, nodes: Tensor | None = None) -> float:
        """ε at :attr:`delta` of the node (among ``nodes``: ids or a mask; default all) that took the
        most local steps."""
        counts = self.steps if nodes is None else self.steps[nodes]
        return epsilon(self.sample_rate, self.noise_multiplier, int(counts.max()) if counts.numel() else 0, self.delta)

    def summary(self, nodes: Tensor | None = None) -> dict:
        """The ``privacy`` block of summary.json: ε of ``nodes`` (the honest ones), δ, σ, C, q."""
        return {"epsilon": self.epsilon(nodes), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "clip": self.clip, "sample_rate": self.sample_rate, "sampling": self.sampling}

    def used(self) -> dict:
        """The values a run used, added to config.json's ``privacy`` table."""
        return {"noise_multiplier_used": self.noise_multiplier, "clip_used": self.clip, "sample_rate_used": self.sample_rate}
