"""Simple attacks: sign flipping, Gaussian noise, label flipping.

These send the same kind of message to every recipient, but are still crafted per recipient edge
(a recipient-relative reference such as its honest neighbourhood mean differs per recipient).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext

_REFERENCES = ("recipient", "global", "sender")


def _reference_mean(ctx: AttackContext, reference: str) -> Tensor:
    if reference == "global":
        return ctx.honest_mean().expand(ctx.num_edges, -1)
    if reference == "sender":
        return ctx.sender_honest_stats()[0]
    return ctx.recipient_honest_mean()


def _check_reference(reference: str) -> None:
    if reference not in _REFERENCES:
        raise ValueError(f"reference = {reference!r} must be one of: {', '.join(_REFERENCES)}")


class _ReferenceKnowledge:
    """Knowledge follows the reference: ``"sender"`` (what the sender received) is local, the
    recipient's neighbourhood and the global honest mean are omniscient."""

    reference: str

    @property
    def knowledge(self) -> str:
        return "local" if self.reference == "sender" else "omniscient"


@register_attack("sign-flip", "send −scale × the honest mean (of the recipient's neighbourhood, global, or the sender's inbox)")
class SignFlip(_ReferenceKnowledge, AbstractAttack):
    r"""Sign flipping: :math:`m_{b\to i} = -c\,\bar\theta`.

    :math:`\bar\theta` is the mean of the honest models recipient ``i`` aggregates
    (``reference="recipient"``, the reflection of what it would otherwise move to), of all honest
    models (``reference="global"``), or of the honest messages the sender ``b`` received itself
    (``reference="sender"``: the flipped model ``b`` would hold if it averaged honestly; local
    knowledge). ``scale=1`` is the plain sign flip :math:`-\bar\theta`; the default ``scale=4``
    is the scaled sign flip, which breaks plain averaging faster.

    Shapes: ``craft(ctx) -> [E, d]``.

    Reference: L. Li, W. Xu, T. Chen, G. Giannakis, Q. Ling, "RSA: Byzantine-robust stochastic
    aggregation methods for distributed learning from heterogeneous datasets", AAAI 2019;
    C. Allen-Zhu et al., "Byzantine-resilient non-convex SGD", ICLR 2021.
    """

    def __init__(self, scale: float = 4.0, reference: str = "recipient"):
        _check_reference(reference)
        self.scale = float(scale)
        self.reference = reference

    def craft(self, ctx: AttackContext) -> Tensor:
        return -self.scale * _reference_mean(ctx, self.reference)


@register_attack("gaussian", "honest mean + sigma × N(0, I) noise")
class GaussianNoise(_ReferenceKnowledge, AbstractAttack):
    r"""Gaussian attack: :math:`m_{b\to i} = \bar\theta + \sigma\,\xi`, :math:`\xi\sim N(0, I_d)` drawn
    per edge from the attack's own stream.

    The mean is taken as in :class:`SignFlip` (``reference``); ``"sender"`` makes it local.

    Reference: P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
    adversaries: Byzantine tolerant gradient descent", NeurIPS 2017 (the Gaussian Byzantine worker).
    """

    def __init__(self, sigma: float = 1.0, reference: str = "recipient"):
        if not sigma >= 0:
            raise ValueError(f"sigma = {sigma} must be >= 0")
        _check_reference(reference)
        self.sigma = float(sigma)
        self.reference = reference

    def craft(self, ctx: AttackContext) -> Tensor:
        mean = _reference_mean(ctx, self.reference)
        noise = torch.randn(mean.shape, generator=ctx.generator, dtype=mean.dtype, device=ctx.generator.device).to(mean.device)
        return mean + self.sigma * noise


@register_attack("label-flip", "data poisoning: train honestly on labels y → C−1−y, send own model")
class LabelFlip(AbstractAttack):
    """Label flipping: the Byzantine node runs the honest protocol on labels :math:`y \\mapsto C-1-y`
    and sends its own (poisoned) model to every neighbour.

    Reference: Allen-Zhu et al., ICLR 2021; Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024.
    """

    knowledge = "local"
    follows_protocol = True
    flips_labels = True

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[ctx.senders]


@register_attack("none", "no attack: Byzantine nodes send their (initial) model unchanged")
class NoAttack(AbstractAttack):
    """Byzantine nodes are silent crash-like peers that keep sending their current model."""

    knowledge = "local"

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[ctx.senders]
