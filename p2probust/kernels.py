"""The per-instant kernels (torch), shared by the synchronous and the asynchronous loops.

A :class:`Kernels` object holds the run's stacked state (``params``, ``momentum``) and the wired
parts (trainer, rule, attack, neighbour table, tolerances). The engine decides *who* acts; each
method here takes integer index sets and runs one batched call:

* :meth:`Kernels.local_step` — ``local_steps`` batched SGD steps of a set of nodes;
* :meth:`Kernels.craft` — the Byzantine messages of a set of attacked inbox slots;
* :meth:`Kernels.mix` — the gossip rule over a set of nodes, given their inboxes;
* :meth:`Kernels.sync_round` — one synchronous round (local step, gather, attack, rule). Its
  plain path is, operation for operation, the foundation's round, so metrics stay bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .attacks.base import AbstractAttack, AttackContext
from .engine.sync import RoundPlan
from .gossip.mixing import AggregateAndMix
from .network_state import EdgeTable, edge_table


@dataclass
class Kernels:
    """Stacked state and the batched steps over it (``params`` and ``momentum`` are replaced, never mutated).

    Attributes
    ----------
    params, momentum : Tensor [n, d]
    table : NeighborTable
        The static neighbour table.
    is_byzantine : BoolTensor [n]
    f : LongTensor [n]
        Tolerance of each node's rule.
    actors : LongTensor [a]
        Nodes that run the protocol (honest, plus protocol-following Byzantine nodes).
    """

    params: Tensor
    momentum: Tensor
    table: Any
    is_byzantine: Tensor
    f: Tensor
    actors: Tensor
    trainer: Any
    gossip: Any
    adversary: AbstractAttack
    local_steps: int
    beta: float
    gen_batches: torch.Generator
    gen_attack: torch.Generator
    num_classes: int
    oracle: bool = True  #: tolerance = true Byzantine count (recomputed on time-varying graphs)
    replay: Callable[[np.ndarray], Tensor] | None = None  #: send times → stale models [E, d] (replay attack)

    def __post_init__(self) -> None:
        t, a = self.table, self.actors
        self.act_idx, self.act_mask, self.act_w, self.act_f = t.idx[a], t.mask[a], t.weights[a], self.f[a]
        self.rows, self.slots = torch.nonzero(self.act_mask & self.is_byzantine[self.act_idx], as_tuple=True)
        self.static_edges = edge_table(self.table)
        self._cap = self.gossip.aggregator.max_tolerance if isinstance(self.gossip, AggregateAndMix) else None

    # --- the pieces -------------------------------------------------------------------------
    def local_step(self, nodes: Tensor, lr: float) -> None:
        """``local_steps`` batched SGD steps of ``nodes``."""
        for _ in range(self.local_steps):
            self.params, self.momentum = self.trainer.step(self.params, self.momentum, nodes, lr, self.beta, self.gen_batches)

    def craft(self, recipients: Tensor, senders: Tensor, slots: Tensor, round: int, idx: Tensor, mask: Tensor,
              weights: Tensor, tolerance: Tensor, sent_at: np.ndarray | None = None) -> Tensor:
        """``[E, d]`` Byzantine messages for the edges ``senders[e] → recipients[e]`` (inbox ``slots[e]``)."""
        if self.replay is not None and sent_at is not None:
            return self.replay(sent_at).to(self.params.dtype)
        ctx = AttackContext(
            params=self.params, is_byzantine=self.is_byzantine, idx=idx, mask=mask, senders=senders,
            recipients=recipients, slots=slots, round=round, generator=self.gen_attack, rule=self.gossip,
            num_classes=self.num_classes, weights=weights, tolerance=tolerance,
        )
        crafted = self.adversary.craft(ctx)
        e, d = int(senders.numel()), self.params.shape[1]
        if crafted.shape != (e, d):
            raise ValueError(f"{self.adversary!r} returned messages of shape {tuple(crafted.shape)}, expected {(e, d)}")
        return crafted.to(self.params.dtype)

    def tolerance(self, nodes: Tensor, present: Tensor, f: Tensor | None = None) -> Tensor:
        """Tolerance of ``nodes`` given their ``present [a, k]`` slots: capped so that an
        aggregate-and-mix rule stays defined when messages are missing."""
        f = self.f[nodes] if f is None else f
        if self._cap is None:
            return f
        return torch.minimum(f, self._cap(present.sum(1) + 1).to(f.dtype))

    def mix(self, nodes: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> None:
        """The gossip rule of ``nodes`` in one batched call."""
        new = self.gossip.batched(self.params[nodes], inbox, mask, weights, f)
        self.params = self.params.index_copy(0, nodes, new)

    # --- one synchronous round --------------------------------------------------------------
    def sync_round(self, plan: RoundPlan, lr: float) -> int:
        """Run round ``plan.round``; return the number of messages sent."""
        if plan.online is None and plan.delivered is None and plan.src is None and self.replay is None:
            return self._plain_round(plan.round, lr)
        tab = self.static_edges if plan.src is None else edge_table_from(plan, self.table.n, self.params.dtype)
        actors = self.actors
        if plan.online is not None:
            actors = actors[torch.from_numpy(plan.online)[actors]]
        self.local_step(actors, lr)
        delivered = tab.mask if plan.delivered is None else tab.with_delivered(plan.delivered)
        idx, mask, w = tab.idx[actors], delivered[actors], tab.weights[actors]
        inbox = self.params[idx]
        rows, slots = torch.nonzero(mask & self.is_byzantine[idx], as_tuple=True)
        if rows.numel():
            f_all = self.round_f(tab, plan)
            sent_at = np.full(rows.numel(), plan.start)
            crafted = self.craft(actors[rows], idx[rows, slots], slots, plan.round, tab.idx, delivered, tab.weights,
                                 f_all, sent_at)
            inbox = inbox.index_put((rows, slots), crafted)
        f = self.round_f(tab, plan)[actors]
        self.mix(actors, inbox, mask, w, self.tolerance(actors, mask, f))
        sent = tab.mask if plan.online is None else tab.mask & torch.from_numpy(plan.online)[tab.idx]
        return int(sent.sum())

    def round_f(self, tab: EdgeTable, plan: RoundPlan) -> Tensor:
        """``[n]`` tolerances on this round's graph (oracle: its Byzantine in-neighbour counts)."""
        return tab.byzantine_counts(self.is_byzantine) if plan.src is not None and self.oracle else self.f

    def _plain_round(self, r: int, lr: float) -> int:
        """The foundation's round, unchanged: every actor, every message, the static table."""
        self.local_step(self.actors, lr)
        inbox = self.params[self.act_idx]  # [a, k, d]
        if self.rows.numel():
            crafted = self.craft(self.actors[self.rows], self.act_idx[self.rows, self.slots], self.slots, r,
                                 self.table.idx, self.table.mask, self.table.weights, self.f)
            inbox = inbox.index_put((self.rows, self.slots), crafted)
        new = self.gossip.batched(self.params[self.actors], inbox, self.act_mask, self.act_w, self.act_f)
        self.params = self.params.index_copy(0, self.actors, new)
        return int(self.table.mask.sum())


def edge_table_from(plan: RoundPlan, n: int, dtype: torch.dtype) -> EdgeTable:
    """The padded table of a round's edges (time-varying topologies)."""
    return edge_table(None, n=n, src=plan.src, dst=plan.dst, dtype=dtype)
