"""Simple attacks: sign flipping, Gaussian noise, label flipping, and the baselines honest /
silent (crash) / stale.

These send the same kind of message to every recipient, but are still crafted per recipient edge
(a recipient-relative reference such as its honest neighbourhood mean differs per recipient).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext

_REFERENCES = ("recipient", "global", "sender")


def _reference_mean(ctx: AttackContext, reference: str, scale: float | None = None) -> Tensor:
    """``[E, d]``: the honest mean at ``reference``, times ``scale`` if given (``mean * scale``)."""
    if reference == "recipient":
        return ctx.recipient_honest_mean(scale)  # the product fused into the compiled pass
    mean = ctx.honest_mean().expand(ctx.num_edges, -1) if reference == "global" else ctx.sender_honest_stats()[0]
    return mean if scale is None else mean * scale


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

    @property
    def broadcast(self) -> bool:
        """The global honest mean and the sender's own view do not depend on the recipient."""
        return self.reference != "recipient"


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

    Notes
    -----
    Acts on **models**; the server literature flips **gradients** (:math:`-c\,\bar g`). On the
    complete graph with α = 1 and a shared start, honest messages are :math:`\theta - \gamma g_j`
    and a model message :math:`m` is the server gradient :math:`(\theta - m)/\gamma`; here that is
    :math:`(1+c)\,\theta/\gamma - c\,\bar g`, the paper's attack plus a term along the current
    model, so the two are **not** equivalent (see the README's "Attacks on models, not gradients").

    Reference: L. Li, W. Xu, T. Chen, G. Giannakis, Q. Ling, "RSA: Byzantine-robust stochastic
    aggregation methods for distributed learning from heterogeneous datasets", AAAI 2019;
    C. Allen-Zhu et al., "Byzantine-resilient non-convex SGD", ICLR 2021.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, scale: float = 4.0, reference: str = "recipient"):
        _check_reference(reference)
        self.scale = float(scale)
        self.reference = reference

    def craft(self, ctx: AttackContext) -> Tensor:
        return _reference_mean(ctx, self.reference, -self.scale)  # the bits of -scale * mean


_CENTRES = ("mean", "neighbours", "zero")


@register_attack("gaussian", "honest mean (or Wu et al.'s neighbour mean, or 0 as in ByzFL) + sigma × N(0, I)")
class GaussianNoise(_ReferenceKnowledge, AbstractAttack):
    r"""Gaussian attack: :math:`m_{b\to i} = c_i + \sigma\,\xi`, :math:`\xi\sim N(0, I_d)` drawn
    per edge from the attack's own stream.

    The centre :math:`c_i` (``centre``):

    - ``"mean"`` (default): the honest mean at ``reference``, as in :class:`SignFlip` (at the
      recipient it includes the recipient's own model; ``reference="sender"`` makes it local);
    - ``"neighbours"``: the mean of the recipient's honest *neighbours*, the recipient excluded
      (Wu, Chen, Ling 2023 and their code: honest-neighbour mean + σ·N(0, I)); omniscient;
    - ``"zero"``: :math:`c_i = 0`, i.e. :math:`N(0, \sigma^2 I)` (ByzFL's ``Gaussian`` attack,
      LPD-EPFL/byzfl, ``mu = 0``); local.

    Parameters
    ----------
    sigma : float, default 1.0
    reference : {"recipient", "global", "sender"}, default "recipient"
        Used by ``centre="mean"`` only.
    centre : {"mean", "neighbours", "zero"}, default "mean"

    Notes
    -----
    Acts on models. On the complete graph with α = 1 and a shared start, :math:`\bar\theta + \sigma\xi`
    is the server gradient :math:`\bar g - (\sigma/\gamma)\xi`: the server's Gaussian attack with
    :math:`\sigma_{grad} = \sigma/\gamma`, in distribution only, since each edge draws its own
    :math:`\xi` (the honest models then differ, which a server's single broadcast model never does).

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
       adversaries: Byzantine tolerant gradient descent", NeurIPS 2017 (the Gaussian Byzantine worker).
    .. [2] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization with
       robust aggregation rules", IEEE TSP 71, 2023 (code: ByrdLab/IOS).
    .. [3] ByzFL (LPD-EPFL/byzfl), ``byzfl.attacks.Gaussian``.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, sigma: float = 1.0, reference: str = "recipient", centre: str = "mean"):
        if not sigma >= 0:
            raise ValueError(f"sigma = {sigma} must be >= 0")
        _check_reference(reference)
        if centre not in _CENTRES:
            raise ValueError(f"centre = {centre!r} must be one of: {', '.join(_CENTRES)}")
        self.sigma = float(sigma)
        self.reference = reference
        self.centre = centre

    broadcast = False  # a fresh draw per edge

    @property
    def knowledge(self) -> str:
        if self.centre == "zero":
            return "local"
        return "omniscient" if self.centre == "neighbours" else super().knowledge

    def craft(self, ctx: AttackContext) -> Tensor:
        if self.centre == "zero":
            mean = torch.zeros((ctx.num_edges, ctx.dim), dtype=ctx.params.dtype, device=ctx.params.device)
        elif self.centre == "neighbours":
            mean = ctx.recipient_neighbour_mean()
        else:
            mean = _reference_mean(ctx, self.reference)
        noise = torch.randn(mean.shape, generator=ctx.generator, dtype=mean.dtype, device=ctx.generator.device).to(mean.device)
        return noise.mul_(self.sigma).add_(mean)  # mean + σ·ξ, in place in the fresh draw


@register_attack("label-flip", "data poisoning: train honestly on labels y → C−1−y, send own model")
class LabelFlip(AbstractAttack):
    """Label flipping: the Byzantine node runs the honest protocol on labels :math:`y \\mapsto C-1-y`
    and sends its own (poisoned) model to every neighbour.

    Reference: Allen-Zhu et al., ICLR 2021; Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    knowledge = "local"
    follows_protocol = True
    flips_labels = True

    broadcast = True  # the sender's own model, to every recipient

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[ctx.senders]


@register_attack("honest", "no attack: Byzantine-labelled nodes follow the protocol (train and gossip honestly)")
@register_attack("none", "alias of 'honest': Byzantine-labelled nodes follow the protocol")
class Honest(AbstractAttack):
    """No attack: the Byzantine-labelled nodes run the honest protocol — they train on their own
    (unpoisoned) data and send their current model, exactly like honest nodes.

    ``none`` is an alias of ``honest``. Use it as the "no attack" baseline of a run with Byzantine
    nodes: the graph, placement, tolerances and data split stay those of the attacked runs, and
    only the behaviour changes. Metrics are still taken over the honest nodes only.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    knowledge = "local"
    follows_protocol = True

    broadcast = True  # the sender's own model, to every recipient

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[ctx.senders]


#: backwards-compatible name: ``NoAttack`` is the "none" attack, which is now :class:`Honest`
NoAttack = Honest


@register_attack("silent", "crash: Byzantine nodes send nothing; their inbox slots are absent")
class Silent(AbstractAttack):
    """Crash failure: Byzantine nodes send nothing at all.

    Their slots are absent from every inbox (masked, like a message that was never delivered),
    so each recipient's rule sees only its honest neighbours (and itself): fewer inputs, with
    the node's tolerance ``f`` unchanged (capped, for aggregate-and-mix rules, so that the rule
    stays defined on the smaller set). Weighted gossip drops the absent slots' weights (they
    go to the node's own model). No message is counted for them.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    knowledge = "local"
    sends = False

    def craft(self, ctx: AttackContext) -> Tensor:  # reached only if a caller ignores `sends`
        raise ValueError("the 'silent' attack sends nothing; the simulator masks its slots instead of crafting them")


@register_attack("stale", "Byzantine nodes do not train and keep sending their initial model")
class Stale(AbstractAttack):
    """Stale peers: Byzantine nodes never train and keep sending their initial model (they hold
    it unchanged because they do not run the protocol). This is what ``none`` meant before issue 16;
    it *is* an attack — a fixed point that every neighbour keeps being pulled towards."""

    knowledge = "local"

    broadcast = True  # the sender's own model, to every recipient

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[ctx.senders]
