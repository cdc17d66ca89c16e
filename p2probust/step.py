r"""The step functions: one synchronous round, a local step, the attack, and the one mix path.

Each takes the frozen :class:`~p2probust.state.Simulation` (the run's wiring) and tensors or a
:class:`~p2probust.state.SimState`, and returns new tensors: params and momentum are replaced,
never mutated, unless the caller *donates* them (``donate=True``, as ``jax.jit``'s
``donate_argnums``): then the rows are written into the given tensors, which the caller must not
use again. ``simulate``'s loop donates every state it advances (nothing else holds it: observers,
snapshots, histories and checkpoints copy what they keep), which saves two ``[n, d]`` copies per
round (260 MB each at n = 100,000) and gives the same bits; the asynchronous engine writes into its
own working tensors the same way (see :mod:`p2probust.async_kernel`).

* :func:`sync_round` — ``(state, plan, lr) -> (state, messages)``: local step, gather, attack,
  rule over every acting node in batched calls. Its plain path is, operation for operation, the
  foundation's round, so metrics stay bit-identical.
* :func:`mix_rows` — the new rows ``[a, d]`` of a set of nodes given their inbox source
  (:class:`Inbox`: rows of ``params`` with crafted slots, or a flat store with slot rows); the
  one path of the synchronous and the asynchronous engine, and the one call of the compiled
  rank-mean kernel (:func:`p2probust.jit.rank_mean.rank_mean`).

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

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .device import from_numpy
from .engine.sync import RoundPlan
from .jit import rank_mean as jit_rank_mean
from .profiling import timed
from .threads import one_thread_if, small_mix, small_step
from . import shared_inbox

#: bytes of inbox per block of recipients in :func:`mix_rows`: small enough for the block's
#: sorting-network wires to stay in the CPU's cache (2.5× faster than one big call on a
#: 1000-node, d = 650 round here) and to bound peak memory at large n
BLOCK_BYTES = 4 << 20


def local_step(sim: Any, params: Tensor, momentum: Tensor, nodes: Tensor, lr: float,
               donate: bool = False) -> tuple[Tensor, Tensor]:
    """``local_steps`` batched SGD steps of ``nodes``: new ``(params, momentum)`` (``donate``: the
    rows written into the given tensors, see the module docstring); on one torch thread when
    their arithmetic is small (:mod:`p2probust.threads`)."""
    with one_thread_if(small_step(sim.trainer, nodes.numel() * sim.local_steps)):
        for _ in range(sim.local_steps):
            params, momentum = sim.trainer.step(params, momentum, nodes, lr, sim.beta, sim.gen_batches, inplace=donate)
    return params, momentum


@dataclass(frozen=True)
class Inbox:
    """Where the ``k`` slots of ``a`` nodes' inboxes come from: rows ``idx [a, k]`` of the models
    with the slots ``(rows, slots)`` (``rows`` ascending) replaced by ``store [E, d]`` (crafted
    messages), or rows ``slot_rows [a, k]`` of a flat ``store [R, d]`` (an asynchronous inbox buffer)."""

    idx: Tensor | None = None
    rows: Tensor | None = None
    slots: Tensor | None = None
    store: Tensor | None = None
    slot_rows: Tensor | None = None

    def source(self, mask: Tensor) -> Tensor:
        """``[a, k]``: ``j >= 0`` row ``j`` of the models, ``-2 - j`` row ``j`` of the store, -1 absent."""
        if self.slot_rows is not None:
            return torch.where(mask, -2 - self.slot_rows, -1)
        source = torch.where(mask, self.idx, -1)
        if self.store is not None and self.rows.numel():
            source = source.index_put((self.rows, self.slots), -2 - torch.arange(self.rows.numel(), device=mask.device))
        return source

    def blocks(self, params: Tensor, block: int):
        """``(start, end, inbox [end - start, k, d])`` per block of ``block`` consecutive nodes."""
        a = (self.idx if self.slot_rows is None else self.slot_rows).shape[0]
        starts = list(range(0, a, block))
        cuts = None
        if self.slot_rows is None and self.store is not None:
            cuts = torch.searchsorted(self.rows, torch.tensor(starts + [a], dtype=self.rows.dtype, device=self.rows.device)).tolist()
        for b, s in enumerate(starts):
            e = min(s + block, a)
            if self.slot_rows is not None:
                yield s, e, self.store[self.slot_rows[s:e]]
                continue
            inbox = params[self.idx[s:e]]
            if cuts is not None and cuts[b] < cuts[b + 1]:
                lo, hi = cuts[b], cuts[b + 1]
                inbox = inbox.index_put((self.rows[lo:hi] - s, self.slots[lo:hi]), self.store[lo:hi])
            yield s, e, inbox


@timed("gather + rule")
def mix_rows(sim: Any, params: Tensor, nodes: Tensor, inbox: Inbox, mask: Tensor, weights: Tensor, f: Tensor,
             cache: dict | None = None, block_bytes: int | None = BLOCK_BYTES, kept: Callable[[], Tensor] | None = None) -> Tensor:
    """The gossip rule of ``nodes [a]``: their new rows ``[a, d]``, given their inboxes.

    Aggregate-and-mix with a rank-mean aggregator runs as one compiled kernel reading the inboxes
    in place (same bits as the rule); its sources and kept ranks depend on the wiring only, so a
    ``cache`` (:attr:`~p2probust.wiring.Wiring.cache`) keeps them, and ``kept()`` may give the
    ranks (:func:`kept_ranks`) from the caller's own. Otherwise the rule runs in blocks of about
    ``block_bytes`` of inbox (None, or a rule whose ``row_independent`` is False: one call)."""
    a, k = mask.shape
    d = params.shape[1]
    if sim.use_fused(a, k + 1, d, params.dtype):
        cached = None if cache is None else cache.get("rank_mean_sources")
        if cached is None:
            source = torch.cat([nodes.unsqueeze(1), inbox.source(mask)], 1)
            cached = source, kept_ranks(sim, mask, f) if kept is None else kept()
            if cache is not None:
                cache["rank_mean_sources"] = cached
        return jit_rank_mean.rank_mean(params, inbox.store, cached[0], cached[1], alpha=sim.gossip.alpha)
    block = a
    if block_bytes is not None and getattr(sim.gossip, "row_independent", True):
        block = max(1, block_bytes // max(1, k * d * params.element_size()))
    own = params[nodes]
    parts = [sim.gossip.for_nodes(nodes[s:e]).batched(own[s:e], box, mask[s:e], weights[s:e], f[s:e])
             for s, e, box in inbox.blocks(params, max(block, 1))]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def kept_ranks(sim: Any, mask: Tensor, f: Tensor) -> Tensor:
    """``[a, k + 1]``: the ranks the rank-mean aggregator of ``sim``'s rule keeps of each node's
    inputs, its own model and its present slots ``mask [a, k]``, with tolerances ``f [a]``."""
    present = torch.cat([torch.ones((mask.shape[0], 1), dtype=torch.bool, device=mask.device), mask], 1)
    return sim.gossip.aggregator.kept_ranks(present, f)


@dataclass(frozen=True)
class RoundView:
    """What one synchronous round acts on: the wiring, its acting nodes and their present slots."""

    wiring: Any
    actors: Tensor
    idx: Tensor
    mask: Tensor
    weights: Tensor
    f: Tensor
    rows: Tensor
    slots: Tensor
    delivered: Tensor  #: ``[n, k]`` present slots of every node (what the attack context sees)
    cache: dict | None  #: the wiring's cache (plain rounds) or None (this round's subset only)

    @classmethod
    def of(cls, sim: Any, plan: RoundPlan) -> "RoundView":
        w = sim.wiring if plan.src is None else sim.wiring.from_edges(plan.src, plan.dst, sim.dtype)
        if plan.online is None and plan.delivered is None:
            rows, slots = w.byzantine_slots
            return cls(w, w.actors, w.act_idx, w.act_mask, w.act_w, w.act_f, rows, slots, w.mask, w.cache)
        actors = w.actors
        if plan.online is not None:
            actors = actors[from_numpy(plan.online, actors.device)[actors]]
        delivered = w.mask if plan.delivered is None else w.with_delivered(plan.delivered)
        if w.silent:
            delivered = delivered & ~w.is_byzantine[w.idx]
        idx, mask = w.idx[actors], delivered[actors]
        rows, slots = torch.nonzero(mask & w.is_byzantine[idx], as_tuple=True)
        return cls(w, actors, idx, mask, w.weights[actors], w.tolerance(actors, mask), rows, slots, delivered, None)


def sync_round(sim: Any, state: Any, plan: RoundPlan, lr: float, *, donate: bool = False) -> tuple[Any, int]:
    """Round ``plan.round`` from ``state``: the next state (round ``plan.round + 1`` at time
    ``plan.end``) and the number of messages sent. ``donate``: ``state``'s tensors may be written
    in place (same bits; the caller never uses ``state`` again). A small local step or gossip
    phase runs on one torch thread (:mod:`p2probust.threads`)."""
    view = RoundView.of(sim, plan)
    params, momentum, update = _step_phase(sim, state.params, state.momentum, view.actors, lr, donate)
    with one_thread_if(small_mix(view.actors.numel(), view.idx.shape[1], params.shape[1])):
        params, sent = _gossip_phase(sim, params, plan, view, donate)
    if update is not None:
        params = params.index_add(0, view.actors, update)
    return replace(state, params=params, momentum=momentum, round=plan.round + 1, time=float(plan.end), rng=None,
                   engine=None), sent


def _gossip_phase(sim: Any, params: Tensor, plan: RoundPlan, view: RoundView, donate: bool) -> tuple[Tensor, int]:
    """Attack and rule over the acting nodes: the new ``params`` and the number of messages sent."""
    plain = view.cache is not None and plan.src is None and sim.replay is None
    groups = shared_inbox.detect_once(sim) if plain else None
    if groups:  # aggregate once per distinct inbox (same bits), or the server's one aggregation
        params = groups.mix(sim, params, plan.round)
    else:
        crafted = None
        if view.rows.numel():
            w = view.wiring
            sent_at = np.full(view.rows.numel(), plan.start) if sim.replay is not None else None
            crafted = sim.craft(params, view.actors[view.rows], view.idx[view.rows, view.slots], view.slots, plan.round,
                                w.idx, view.delivered, w.weights, w.f, sent_at, view.cache if plain else None)
        inbox = Inbox(view.idx, view.rows, view.slots, crafted)
        new = mix_rows(sim, params, view.actors, inbox, view.mask, view.weights, view.f, view.cache if plain else None)
        params = params.index_copy_(0, view.actors, new) if donate else params.index_copy(0, view.actors, new)
    sent = groups.messages(sim) if groups and groups.server else _messages(view.wiring, plan.online, plain)
    return params, sent


def _messages(wiring: Any, online: np.ndarray | None, plain: bool) -> int:
    if not plain:
        return int(wiring.sent(online).sum())
    if "messages" not in wiring.cache:
        wiring.cache["messages"] = int(wiring.sent().sum())
    return wiring.cache["messages"]


def _step_phase(sim: Any, params: Tensor, momentum: Tensor, nodes: Tensor, lr: float, donate: bool):
    """The local-step phase of a round: ``(params, momentum, update)``. ``step-then-gossip``: the
    stepped models, update None; ``gossip-then-step``: the pre-gossip models and the update
    ``[a, d]`` that the round adds to the rule's output (the pre-gossip models are kept, so the
    step itself is never donated)."""
    stepped, momentum = local_step(sim, params, momentum, nodes, lr, donate and sim.order == "step-then-gossip")
    if sim.order == "step-then-gossip":
        return stepped, momentum, None
    return params, momentum, stepped.index_select(0, nodes) - params.index_select(0, nodes)
