r"""Aggregate once per distinct inbox, and the parameter server (``topology.name = "server"``).

On the complete graph every node's inbox together with its own model holds the same ``n`` models,
so when the Byzantine messages do not depend on the recipient, every honest node computes the same
aggregate: n − b sorts of the same ``n × d`` values where one would do. This module computes the
aggregate **once per distinct inbox** and hands it to every node of the group; each node still
mixes it into its own model, :math:`(1-\alpha)\,\theta_i + \alpha\,\mathrm{Agg}`.

When recipients provably share one inbox (decided once per wiring, by :func:`detect`):

1. the rule is aggregate-and-mix with a rank-mean aggregator (coordinate-wise median or trimmed
   mean, :class:`~p2probust.aggregators.coordinatewise.RankMean`): its output depends on the
   *multiset* of inputs only (their sorted values), not on the order of the slots;
2. two actors are in one group when their closed inboxes — the own model plus every present
   slot, as the list of sending node ids — are equal as multisets, and their tolerances f are
   equal (a wiring property: rows of ``sort([i] ∪ idx[i, mask[i]])`` and ``f[i]`` compared);
3. the message in a Byzantine slot depends on the sender only: no Byzantine slot is present (no
   attack, or a crashed one), or the attack declares ``broadcast = True`` (its message for an edge
   ``b → i`` does not depend on ``i`` and crafting any subset of edges gives those rows of the full
   call: no random draws; e.g. sign flip, ALIE, IPM with ``reference`` ``global`` or ``sender``,
   label flipping, stale). The attack is then asked for the representatives' edges only.

Then each group's aggregate is bit for bit what each member computed before (same sorted values,
same summation), and it is used only when it saves at least half of the aggregations (complete
graphs; not sparse ones, where closed neighbourhoods rarely coincide). ``tests/test_shared_inbox.py``
checks equality with the per-node round.

**The parameter server.** ``topology.name = "server"``: ``n`` clients (the vertices; ``byzantine.count``
of them Byzantine) send their models to one server, which aggregates the ``n`` messages once per
round with the rule's aggregator and tolerance ``f`` and broadcasts the result, which every client
adopts. This is robust D-SGD as in the tutorial (one local step per round: Guerraoui, Gupta, Pinot,
*Robust Machine Learning*, 2024, ch. 4; El-Mhamdi et al., "Collaborative learning in the jungle",
NeurIPS 2021) and, with ``train.local_steps = K`` and the mean, FedAvg (McMahan et al., AISTATS 2017;
every client participates). The wiring is the complete graph (whose closed inbox is the server's
``n`` inputs), so with a rank-mean rule and a broadcast attack it is exactly the complete graph with
α = 1. A Byzantine client sends one message, to the server: the attack is asked for the edges of
one representative honest client, whose view (all ``n`` models) is the server's. Messages counted:
``n`` uploads (fewer when Byzantine clients are silent) and one download per acting client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .aggregators.coordinatewise import RankMean
from .gossip.mixing import AggregateAndMix
from .jit import rank_mean as jit_rank_mean


@dataclass(frozen=True)
class InboxGroups:
    """Actors grouped by their (closed) inbox. Positions index the wiring's ``actors``.

    Attributes
    ----------
    reps : LongTensor [G]
        One representative actor per group (the first one).
    inverse : LongTensor [a]
        The group of each actor.
    rows, slots : LongTensor [E]
        The Byzantine slots of the representatives (rows index ``reps``).
    server : bool
        Every actor adopts the aggregate (``topology = "server"``) instead of mixing it in.
    """

    reps: Tensor
    inverse: Tensor
    rows: Tensor
    slots: Tensor
    server: bool = False

    @classmethod
    def of(cls, wiring: Any, reps: Tensor, inverse: Tensor, server: bool = False) -> "InboxGroups":
        mask = wiring.act_mask[reps]
        rows, slots = torch.nonzero(mask & wiring.is_byzantine[wiring.act_idx[reps]], as_tuple=True)
        return cls(reps, inverse, rows, slots, server)

    def mix(self, sim: Any, params: Tensor, r: int) -> Tensor:
        """One plain round's attack, aggregation and mixing, once per group: the new ``params``."""
        w = sim.wiring
        reps, actors = self.reps, w.actors
        idx, mask, f = w.act_idx[reps], w.act_mask[reps], w.act_f[reps]
        cache = w.cache.setdefault("inbox_groups", {})
        crafted = None
        if self.rows.numel():
            crafted = sim.craft(params, actors[reps][self.rows], idx[self.rows, self.slots], self.slots, r, w.idx,
                                w.mask, w.weights, w.f, cache=cache)
        agg = aggregate(sim, params, actors[reps], idx, mask, f, self.rows, self.slots, crafted, cache)
        agg = agg.expand(actors.numel(), -1) if reps.numel() == 1 else agg[self.inverse]
        if not self.server:
            alpha = sim.gossip.alpha
            agg = (1 - alpha) * params[actors] + alpha * agg  # AggregateAndMix's arithmetic, row for row
        return params.index_copy(0, actors, agg)

    def messages(self, sim: Any) -> int:
        """Server rounds: uploads from the clients that send, plus one broadcast per acting client."""
        w = sim.wiring
        senders = w.n - (int(w.is_byzantine.sum()) if w.silent else 0)
        return senders + int(w.actors.numel())


def aggregate(sim: Any, params: Tensor, nodes: Tensor, idx: Tensor, mask: Tensor, f: Tensor, rows: Tensor,
              slots: Tensor, crafted: Tensor | None, cache: dict) -> Tensor:
    """``[G, d]``: the aggregator over each representative's own model and inbox (Byzantine slots
    ``(rows, slots)`` replaced by ``crafted``), through the compiled table-driven kernel whenever
    ``jit`` allows it (compiled once per machine for every size, so ``auto`` uses it at any size)."""
    g, k = idx.shape
    agg = sim.gossip.aggregator
    dev = params.device
    if isinstance(agg, RankMean) and sim.fusable and jit_rank_mean.supports(k + 1, params.dtype):
        if "sources" not in cache:
            source = torch.where(mask, idx, -1)
            if rows.numel():
                source = source.index_put((rows, slots), -2 - torch.arange(rows.numel(), device=dev))
            present = torch.cat([torch.ones((g, 1), dtype=torch.bool, device=dev), mask], 1)
            cache["sources"] = torch.cat([nodes.unsqueeze(1), source], 1), agg.kept_ranks(present, f)
        source, keep = cache["sources"]
        return jit_rank_mean.rank_mean(params, crafted, source, keep, table=True)
    inbox = params[idx]
    if crafted is not None:
        inbox = inbox.index_put((rows, slots), crafted)
    x = torch.cat([params[nodes].unsqueeze(1), inbox], 1)
    present = torch.cat([torch.ones((g, 1), dtype=torch.bool, device=dev), mask], 1)
    return agg.batched(x, present, f)


def detect_once(sim: Any) -> InboxGroups | None:
    """:func:`detect`, decided once per wiring (kept in its cache)."""
    cache = sim.wiring.cache
    if "groups" not in cache:
        cache["groups"] = detect(sim)
    return cache["groups"]


def detect(sim: Any) -> InboxGroups | None:
    """The groups of actors that provably share one inbox (see the module docstring), or None when
    grouping would not halve the aggregations or is not provably exact."""
    w = sim.wiring
    if sim.server:
        return server_groups(w)
    rule = sim.gossip
    if not (isinstance(rule, AggregateAndMix) and isinstance(rule.aggregator, RankMean)):
        return None
    if w.byzantine_slots[0].numel() and not getattr(sim.adversary, "broadcast", False):
        return None
    a = int(w.actors.numel())
    if a < 2:
        return None
    closed = torch.cat([w.actors.unsqueeze(1), torch.where(w.act_mask, w.act_idx, -1)], 1).sort(1).values
    key = torch.cat([closed, w.act_f.unsqueeze(1)], 1)
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    if 2 * uniq.shape[0] > a:
        return None
    arange = torch.arange(a, device=key.device)
    reps = torch.full((uniq.shape[0],), a, dtype=torch.long, device=key.device).scatter_reduce(0, inverse, arange, "amin")
    return InboxGroups.of(w, reps, inverse)


def server_groups(wiring: Any) -> InboxGroups:
    """One group: the server's inbox, seen from the first honest acting client (on the complete
    graph its own model and inbox are all ``n`` models)."""
    dev = wiring.actors.device
    honest = torch.nonzero(~wiring.is_byzantine[wiring.actors]).squeeze(1)
    rep = honest[:1] if honest.numel() else torch.zeros(1, dtype=torch.long, device=dev)
    return InboxGroups.of(wiring, rep, torch.zeros(int(wiring.actors.numel()), dtype=torch.long, device=dev), server=True)


def check_server(rule: Any, mode: str, specs: dict, drop: float) -> None:
    """``topology = "server"`` needs an aggregator (aggregate-and-mix) with alpha = 1 and plain
    synchronous rounds; raise a one-line ``ValueError`` otherwise."""
    if not isinstance(rule, AggregateAndMix):
        raise ValueError(f"topology 'server' aggregates with an aggregator (e.g. mean, trimmed-mean, median), got rule {rule!r}")
    if rule.alpha != 1:
        raise ValueError(f"topology 'server' broadcasts the aggregate: rule.alpha = {rule.alpha:g} must be 1")
    unsupported = [name for name, on in (("engine.mode = 'async'", mode != "sync"), ("engine.drop", drop > 0),
                                         ("engine.churn", specs["churn"].active),
                                         ("engine.dynamics", specs["dynamics"].kind != "static"),
                                         ("engine.timing_attack", specs["timing_attack"].kind != "none")) if on]
    if unsupported:
        raise ValueError(f"topology 'server' runs plain synchronous rounds; unset {', '.join(unsupported)}")
