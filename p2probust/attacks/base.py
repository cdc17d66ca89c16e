"""The attack contract: Byzantine messages crafted per recipient, for every Byzantine edge at once.

Byzantine node ``b`` may tell each neighbour ``i`` something different (equivocation). The
simulator lists every Byzantine edge ``b → i`` whose recipient runs the protocol this round as
``E`` rows of an :class:`AttackContext` and asks the attack for all ``E`` messages in one batched
call: ``attack.craft(ctx) -> [E, d]``. Only those inbox slots are overwritten.

Knowledge levels: an **omniscient** attack may read every honest model, the graph and the rule
deployed at the recipient; a **local** attack only what its own node received
(:meth:`AttackContext.sender_inbox`). Data poisoning (label flipping) is an attack that
``follows_protocol``: the Byzantine node trains and gossips like an honest node on poisoned data,
and its messages are its own model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class AttackContext:
    """What an attack may see at one round.

    Attributes
    ----------
    params : Tensor [n, d]
        Every node's current outgoing model (honest rows are the honest messages this round).
    is_byzantine : BoolTensor [n]
    idx, mask : LongTensor [n, k], BoolTensor [n, k]
        The neighbour table (slot ``j`` of node ``i`` receives from ``idx[i, j]``).
    senders, recipients : LongTensor [E]
        Byzantine sender and recipient of each attacked edge.
    slots : LongTensor [E]
        The recipient's inbox slot of each edge.
    round : int
    generator : torch.Generator
        The attack's own named random stream.
    rule : object
        The gossip rule deployed at the recipients (omniscient attacks may use it).
    num_classes : int
    weights : Tensor [n, k] or None
        Mixing weights of the neighbour table (omniscient).
    tolerance : LongTensor [n] or None
        The tolerance f each node's rule uses (omniscient).
    """

    params: Tensor
    is_byzantine: Tensor
    idx: Tensor
    mask: Tensor
    senders: Tensor
    recipients: Tensor
    slots: Tensor
    round: int
    generator: torch.Generator
    rule: Any = None
    num_classes: int = 0
    weights: Tensor | None = None
    tolerance: Tensor | None = None

    @property
    def num_edges(self) -> int:
        return int(self.senders.numel())

    @property
    def honest_slots(self) -> Tensor:
        """``[n, k]``: slots that hold a real message from an honest node."""
        return self.mask & ~self.is_byzantine[self.idx]

    def honest_mean(self) -> Tensor:
        """``[d]``: mean of all honest models (omniscient)."""
        return self.params[~self.is_byzantine].mean(0)

    def recipient_honest_stats(self) -> tuple[Tensor, Tensor]:
        """``([E, d], [E, d])``: mean and (population) std of the honest models each recipient
        aggregates — its own model and its honest neighbours' messages."""
        r = self.recipients
        slots = self.honest_slots[r]  # [E, k]
        msgs = self.params[self.idx[r]]  # [E, k, d]
        own = self.params[r].unsqueeze(1)
        x = torch.cat([own, msgs], 1)
        w = torch.cat([torch.ones_like(slots[:, :1]), slots], 1).unsqueeze(-1).to(x.dtype)
        count = w.sum(1)
        mean = (w * x).sum(1) / count
        var = (w * (x - mean.unsqueeze(1)) ** 2).sum(1) / count
        return mean, var.sqrt()

    def sender_inbox(self) -> tuple[Tensor, Tensor]:
        """``([E, k, d], [E, k])``: what each edge's Byzantine sender itself received (local view)."""
        s = self.senders
        return self.params[self.idx[s]], self.mask[s]


class AbstractAttack:
    """Crafts the Byzantine messages of every attacked edge in one call."""

    #: "omniscient" or "local"
    knowledge: str = "omniscient"
    #: True for data poisoning: the Byzantine node trains and gossips like an honest node
    follows_protocol: bool = False
    #: True if the Byzantine node's training labels are flipped y → C−1−y
    flips_labels: bool = False

    def craft(self, ctx: AttackContext) -> Tensor:  # pragma: no cover
        """``[E, d]`` messages, row e for edge ``senders[e] → recipients[e]``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
