r"""The per-instant kernels (torch), shared by the synchronous and the asynchronous loops.

A :class:`Kernels` object holds the run's stacked state (``params``, ``momentum``) and the wired
parts (trainer, rule, attack, neighbour table, tolerances). The engine decides *who* acts; each
method here takes integer index sets and runs one batched call:

* :meth:`Kernels.local_step` — ``local_steps`` batched SGD steps of a set of nodes;
* :meth:`Kernels.craft` — the Byzantine messages of a set of attacked inbox slots;
* :meth:`Kernels.mix` — the gossip rule over a set of nodes, given their inboxes;
* :meth:`Kernels.sync_round` — one synchronous round (local step, gather, attack, rule). Its
  plain path is, operation for operation, the foundation's round, so metrics stay bit-identical.

The order of the two phases of a synchronous round (``[train] order``):

* ``step-then-gossip`` (default; adapt-then-combine, the tutorial, He et al. 2022, and the IOS
  code's ``DSGD.run``): :math:`x_i \leftarrow \mathrm{Agg}_i(x - \gamma\nabla f(x))`; honest
  nodes send, and attacks see, the freshly stepped models.
* ``gossip-then-step`` (combine-then-adapt, D-PSGD of Lian et al., NeurIPS 2017):
  :math:`x_i \leftarrow \mathrm{Agg}_i(x) - \gamma\nabla f_i(x_i)`; the gradient is taken at the
  pre-gossip model, honest nodes send, and attacks see, the models of the previous round, and the
  local update (all ``local_steps`` of it, momentum and weight decay included) is added to the
  rule's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .aggregators.coordinatewise import RankMean
from .attacks.base import AbstractAttack, AttackContext
from .engine.sync import RoundPlan
from .gossip.mixing import AggregateAndMix
from .jit import check_mode
from .jit import rank_mean as jit_rank_mean
from .network_state import EdgeTable, edge_table
from .profiling import timed
from . import shared_inbox


#: bytes of inbox per block of recipients in :meth:`Kernels.gather_and_mix`: small enough for the
#: block's sorting-network wires to stay in the CPU's cache (2.5× faster than one big call on a
#: 1000-node, d = 650 round here) and to bound peak memory at large n
BLOCK_BYTES = 4 << 20


@dataclass
class Kernels:
    """Stacked state and the batched steps over it. A plain round updates ``params`` and ``momentum``
    in place (the local step's rows, then the rule's rows after every read): nothing holds them
    between phases (metrics, snapshots, histories and checkpoints copy what they keep); the
    gossip-then-step order keeps its pre-step models by replacing, not mutating.

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
    jit: str = "auto"  #: compiled gather-fused rank-mean kernel: auto | on | off (see :mod:`p2probust.jit`)
    order: str = "step-then-gossip"  #: or gossip-then-step (see the module docstring)
    server: bool = False  #: one server aggregates once and broadcasts (see :mod:`p2probust.shared_inbox`)

    def __post_init__(self) -> None:
        t, a = self.table, self.actors
        self.act_idx, self.act_mask, self.act_w, self.act_f = t.idx[a], t.mask[a], t.weights[a], self.f[a]
        self.silent = not getattr(self.adversary, "sends", True)  #: crashed Byzantine nodes: their slots are absent
        self._cap = self.gossip.aggregator.max_tolerance if isinstance(self.gossip, AggregateAndMix) else None
        if self.silent:
            self.act_mask = self.act_mask & ~self.is_byzantine[self.act_idx]
            self.act_f = self.tolerance(a, self.act_mask)
        self.rows, self.slots = torch.nonzero(self.act_mask & self.is_byzantine[self.act_idx], as_tuple=True)
        self.static_edges = edge_table(self.table)
        rank_rule = isinstance(self.gossip, AggregateAndMix) and isinstance(self.gossip.aggregator, RankMean)
        self._fusable = rank_rule and check_mode(self.jit, rank_rule)
        self._static_wiring: dict = {}  # per-wiring values of plain rounds (static table): attack helpers, fused kernel
        self._groups: Any = None  # actors sharing one inbox (shared_inbox.detect), found at the first plain round

    # --- the pieces -------------------------------------------------------------------------
    def local_step(self, nodes: Tensor, lr: float, inplace: bool = False) -> None:
        """``local_steps`` batched SGD steps of ``nodes`` (``inplace``: rows written into ``params``
        and ``momentum``, no ``[n, d]`` copies; only where nothing else holds them)."""
        for _ in range(self.local_steps):
            self.params, self.momentum = self.trainer.step(self.params, self.momentum, nodes, lr, self.beta,
                                                           self.gen_batches, inplace=inplace)

    def _step_phase(self, nodes: Tensor, lr: float) -> Tensor | None:
        """The local-step phase of a round. ``step-then-gossip``: step now, return None;
        ``gossip-then-step``: compute the update ``[a, d]`` from the current (pre-gossip) models,
        leave ``params`` unchanged, and return it for :meth:`_finish_step`."""
        if self.order == "step-then-gossip":
            self.local_step(nodes, lr, inplace=True)  # nothing holds params between phases (observers copy)
            return None
        before = self.params
        self.local_step(nodes, lr)
        update = self.params.index_select(0, nodes) - before.index_select(0, nodes)
        self.params = before
        return update

    def _finish_step(self, nodes: Tensor, update: Tensor | None) -> None:
        if update is not None:
            self.params = self.params.index_add(0, nodes, update)

    @timed("attack")
    def craft(self, recipients: Tensor, senders: Tensor, slots: Tensor, round: int, idx: Tensor, mask: Tensor,
              weights: Tensor, tolerance: Tensor, sent_at: np.ndarray | None = None,
              wiring_cache: dict | None = None) -> Tensor:
        """``[E, d]`` Byzantine messages for the edges ``senders[e] → recipients[e]`` (inbox ``slots[e]``)."""
        if self.replay is not None and sent_at is not None:
            return self.replay(sent_at).to(self.params.dtype)
        ctx = AttackContext(
            params=self.params, is_byzantine=self.is_byzantine, idx=idx, mask=mask, senders=senders,
            recipients=recipients, slots=slots, round=round, generator=self.gen_attack, rule=self.gossip,
            num_classes=self.num_classes, weights=weights, tolerance=tolerance, wiring_cache=wiring_cache,
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

    @timed("gather + rule")
    def mix(self, nodes: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor,
            slot_rows: Tensor | None = None) -> None:
        """The gossip rule of ``nodes`` in one batched call, given their inboxes ``[a, k, d]`` (or,
        with ``slot_rows [a, k]``, a flat store ``[R, d]`` of which slot ``s`` of the ``i``-th node
        is row ``slot_rows[i, s]``: the compiled kernel reads it in place, the torch rule gathers).

        The new rows are written into ``params`` in place. The asynchronous kernel calls this once per batch of a few nodes, right after
        their local step replaced ``params``; a copy of ``[n, d]`` per batch would cost more than
        the batch (nothing holds the tensor in between: metrics, snapshots and the replay history
        copy what they keep)."""
        a, k = mask.shape
        if self._use_fused(a, k + 1, self.params.shape[1]):
            new = jit_rank_mean.mix_inboxes(self.gossip, self.params, nodes, inbox, mask, f, slot_rows)
        else:
            inbox = inbox if slot_rows is None else inbox[slot_rows]
            new = self.gossip.for_nodes(nodes).batched(self.params[nodes], inbox, mask, weights, f)
        self.params.index_copy_(0, nodes, new)

    # --- one synchronous round --------------------------------------------------------------
    def sync_round(self, plan: RoundPlan, lr: float) -> int:
        """Run round ``plan.round``; return the number of messages sent."""
        if plan.online is None and plan.delivered is None and plan.src is None and self.replay is None:
            return self._plain_round(plan.round, lr)
        tab = self.static_edges if plan.src is None else edge_table_from(plan, self.table.n, self.params.dtype)
        actors = self.actors
        if plan.online is not None:
            actors = actors[torch.from_numpy(plan.online)[actors]]
        update = self._step_phase(actors, lr)
        delivered = tab.mask if plan.delivered is None else tab.with_delivered(plan.delivered)
        if self.silent:
            delivered = delivered & ~self.is_byzantine[tab.idx]
        idx, mask, w = tab.idx[actors], delivered[actors], tab.weights[actors]
        rows, slots = torch.nonzero(mask & self.is_byzantine[idx], as_tuple=True)
        crafted = None
        if rows.numel():
            f_all = self.round_f(tab, plan)
            sent_at = np.full(rows.numel(), plan.start)
            crafted = self.craft(actors[rows], idx[rows, slots], slots, plan.round, tab.idx, delivered, tab.weights,
                                 f_all, sent_at)
        f = self.round_f(tab, plan)[actors]
        self.gather_and_mix(actors, idx, mask, w, self.tolerance(actors, mask, f), rows, slots, crafted)
        self._finish_step(actors, update)
        sent = tab.mask if plan.online is None else tab.mask & torch.from_numpy(plan.online)[tab.idx]
        if self.silent:
            sent = sent & ~self.is_byzantine[tab.idx]
        return int(sent.sum())

    def round_f(self, tab: EdgeTable, plan: RoundPlan) -> Tensor:
        """``[n]`` tolerances on this round's graph (oracle: its Byzantine in-neighbour counts)."""
        return tab.byzantine_counts(self.is_byzantine) if plan.src is not None and self.oracle else self.f

    def _plain_round(self, r: int, lr: float) -> int:
        """The foundation's round: every actor, every message, the static table (actors that share an
        inbox aggregate it once, same bits: :mod:`p2probust.shared_inbox`)."""
        update = self._step_phase(self.actors, lr)
        if self._groups is None:
            self._groups = shared_inbox.detect(self) or False
        if self._groups:  # aggregate once per distinct inbox (same bits), or the server's one aggregation
            self._groups.mix(self, r, self._static_wiring.setdefault("inbox_groups", {}))
        else:
            crafted = None
            if self.rows.numel():
                crafted = self.craft(self.actors[self.rows], self.act_idx[self.rows, self.slots], self.slots, r,
                                     self.table.idx, self.table.mask, self.table.weights, self.f,
                                     wiring_cache=self._static_wiring)
            self.gather_and_mix(self.actors, self.act_idx, self.act_mask, self.act_w, self.act_f, self.rows, self.slots,
                                crafted, wiring_cache=self._static_wiring)
        self._finish_step(self.actors, update)
        if self.server:
            return self._groups.messages(self)
        sent = self.table.mask & ~self.is_byzantine[self.table.idx] if self.silent else self.table.mask
        return int(sent.sum())

    @timed("gather + rule")
    def gather_and_mix(self, nodes: Tensor, idx: Tensor, mask: Tensor, weights: Tensor, f: Tensor, rows: Tensor,
                       slots: Tensor, crafted: Tensor | None, wiring_cache: dict | None = None) -> None:
        """Gather the inboxes ``params[idx]`` of ``nodes``, overwrite the Byzantine slots
        ``(rows, slots)`` with ``crafted [E, d]``, and apply the rule — in blocks of consecutive
        recipients of about :data:`BLOCK_BYTES` of inbox each (``rows`` ascending, as
        ``torch.nonzero`` returns them). Rules whose ``row_independent`` is False get one call.
        ``wiring_cache``: shared by rounds with the same wiring (see :meth:`_plain_round`)."""
        a, k = idx.shape
        d = self.params.shape[1]
        if self._use_fused(a, k + 1, d):
            return self._fused_gather_and_mix(nodes, idx, mask, f, rows, slots, crafted, wiring_cache)
        block = a if not getattr(self.gossip, "row_independent", True) else max(1, BLOCK_BYTES // max(1, k * d * self.params.element_size()))
        own = self.params[nodes]
        starts = list(range(0, a, block))
        cuts = torch.searchsorted(rows, torch.tensor(starts + [a], dtype=rows.dtype)).tolist() if crafted is not None else None
        parts = []
        for b, s in enumerate(starts):
            e = min(s + block, a)
            inbox = self.params[idx[s:e]]  # [block, k, d]
            if cuts is not None and cuts[b] < cuts[b + 1]:
                lo, hi = cuts[b], cuts[b + 1]
                inbox = inbox.index_put((rows[lo:hi] - s, slots[lo:hi]), crafted[lo:hi])
            parts.append(self.gossip.for_nodes(nodes[s:e]).batched(own[s:e], inbox, mask[s:e], weights[s:e], f[s:e]))
        self.params.index_copy_(0, nodes, parts[0] if len(parts) == 1 else torch.cat(parts))  # after every read

    def _use_fused(self, a: int, m: int, d: int) -> bool:
        if not self._fusable or not jit_rank_mean.supports(m, self.params.dtype):
            return False
        return self.jit == "on" or jit_rank_mean.worth_compiling(a, m, d)

    def _fused_gather_and_mix(self, nodes: Tensor, idx: Tensor, mask: Tensor, f: Tensor, rows: Tensor,
                              slots: Tensor, crafted: Tensor | None, wiring_cache: dict | None) -> None:
        """:meth:`gather_and_mix` for aggregate-and-mix with a rank-mean aggregator, as one compiled
        kernel that reads the inboxes in place (same arithmetic, same bits). The wire sources and
        kept ranks depend on the wiring only, so plain rounds build them once (``wiring_cache``)."""
        cached = None if wiring_cache is None else wiring_cache.get("rank_mean_sources")
        if cached is None:
            a = idx.shape[0]
            source = torch.where(mask, idx, -1)
            if rows.numel():
                source = source.index_put((rows, slots), -2 - torch.arange(rows.numel()))
            source = torch.cat([nodes.unsqueeze(1), source], 1)
            present = torch.cat([torch.ones((a, 1), dtype=torch.bool), mask], 1)
            cached = source, self.gossip.aggregator.kept_ranks(present, f)
            if wiring_cache is not None:
                wiring_cache["rank_mean_sources"] = cached
        source, keep = cached
        new = jit_rank_mean.rank_mean(self.params, crafted, source, keep, alpha=self.gossip.alpha)
        self.params.index_copy_(0, nodes, new)  # in place, after every read (as mix does)


def edge_table_from(plan: RoundPlan, n: int, dtype: torch.dtype) -> EdgeTable:
    """The padded table of a round's edges (time-varying topologies)."""
    return edge_table(None, n=n, src=plan.src, dst=plan.dst, dtype=dtype)
