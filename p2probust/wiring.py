"""One graph's wiring, and the tolerance policy (issue 15).

A :class:`Wiring` holds everything derived from a neighbour table and the Byzantine placement
only: the padded table ``idx``/``mask``/``weights [n, k]``, the order of its edges, the rows of the
nodes that run the protocol (``act_idx``/``act_mask``/``act_w``/``act_f``) with their Byzantine slots
(``rows``, ``slots``), the tolerance ``f [n]`` of each node's rule on this graph, and **one cache
dict** (:attr:`Wiring.cache`) for every value that depends on the wiring only: the compiled
rank-mean kernel's sources, the shared-inbox groups, the attacks' helpers (recipient adjacency,
spectral vectors), the message count of a plain round. A static graph has one Wiring for the whole
run; a time-varying graph (``engine.dynamics``) builds one per round from its edge list
(:meth:`Wiring.from_edges`), so nothing is compared between rounds.

The **tolerance policy** is decided here and nowhere else:

* :func:`configured_tolerance` — the f of each node's rule at set-up: the oracle count of Byzantine
  neighbours (``rule.tolerance = "oracle"``) or the configured number; protocol-following Byzantine
  nodes of an aggregate-and-mix rule cap theirs at what their degree allows;
* :meth:`Wiring.from_edges` — on a round's graph the oracle f is that graph's Byzantine count;
* :meth:`Wiring.tolerance` — the f a set of nodes uses given which inbox slots hold a message:
  with an aggregate-and-mix rule it is capped at ``max_tolerance(present + 1)`` so that the rule
  stays defined when messages are missing; an inbox of dynamic peers (asynchronous epidemic
  gossip) counts its present Byzantine senders under the oracle. Slots of silent (crashed)
  Byzantine nodes are removed from the actors' rows (:attr:`Wiring.act_mask`).

The synchronous round, the asynchronous aggregation, the attack context and the server path all
read f from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .device import from_numpy, to_numpy
from .gossip.mixing import AggregateAndMix


def tolerance_cap(rule: Any) -> Callable[[Tensor], Tensor] | None:
    """``max_tolerance(m)`` of an aggregate-and-mix rule's aggregator (None: the rule needs no cap)."""
    return rule.aggregator.max_tolerance if isinstance(rule, AggregateAndMix) else None


def configured_tolerance(setting: str, table: Any, is_byz: Tensor, rule: Any) -> Tensor:
    """``[n]`` tolerance of each node's rule at set-up (``setting``: ``"oracle"`` or a number);
    checked against the rule for honest nodes (:class:`~p2probust.aggregators.base.ToleranceError`)."""
    honest = ~is_byz
    if setting == "oracle":
        f = table.byzantine_counts(is_byz).clone()
    else:
        f = torch.full((table.n,), int(setting), dtype=torch.long, device=is_byz.device)
    rule.check_tolerance(table.degree, torch.where(honest, f, torch.zeros_like(f)))
    cap = tolerance_cap(rule)
    if cap is not None:  # protocol-following Byzantine nodes cap their own f
        f = torch.where(honest, f, torch.minimum(f, cap(table.degree + 1)))
    return f


@dataclass(frozen=True, eq=False)
class Wiring:
    """One graph's wiring (see the module docstring). Built by :meth:`of_table` or :meth:`from_edges`.

    Attributes
    ----------
    idx, mask, weights : LongTensor, BoolTensor, Tensor [n, k]
        Slot ``s`` of node ``i`` receives from ``idx[i, s]`` when ``mask[i, s]``, with weight ``weights[i, s]``.
    edge_rows, edge_slots : LongTensor [E]
        Position of edge ``e`` in the engine's edge order (by recipient, then slot).
    is_byzantine : BoolTensor [n]
    f : LongTensor [n]
        Tolerance of each node's rule on this graph (before :meth:`tolerance`'s cap).
    actors : LongTensor [a]
        Nodes that run the protocol (honest, plus protocol-following Byzantine nodes).
    oracle, silent : bool
        f is the true Byzantine count; Byzantine nodes send nothing (crash attack).
    cap : callable or None
        ``max_tolerance`` of an aggregate-and-mix rule (:func:`tolerance_cap`).
    cache : dict
        Values that depend on this wiring only (shared by every round that uses it).
    """

    idx: Tensor
    mask: Tensor
    weights: Tensor
    edge_rows: Tensor
    edge_slots: Tensor
    is_byzantine: Tensor
    f: Tensor
    actors: Tensor
    oracle: bool = True
    silent: bool = False
    cap: Callable[[Tensor], Tensor] | None = None
    cache: dict = field(default_factory=dict)

    @classmethod
    def of_table(cls, table: Any, is_byz: Tensor, f: Tensor, actors: Tensor, *, oracle: bool = True,
                 silent: bool = False, cap: Callable[[Tensor], Tensor] | None = None) -> "Wiring":
        """The static wiring of a :class:`~p2probust.topology.NeighbourTable`."""
        rows, slots = torch.nonzero(table.mask, as_tuple=True)
        return cls(table.idx, table.mask, table.weights, rows, slots, is_byz, f, actors, oracle, silent, cap)

    def from_edges(self, src: np.ndarray, dst: np.ndarray, dtype: torch.dtype | None = None) -> "Wiring":
        """The wiring of one round's edges (sorted by ``dst``) on the same nodes, with weights
        ``1 / (1 + in-degree of dst)`` (the uniform average of epidemic learning; equal to
        Metropolis–Hastings on regular graphs); oracle f: this graph's Byzantine counts."""
        n, dev = self.n, self.idx.device
        dst, src = np.asarray(dst, dtype=np.int64), np.asarray(src, dtype=np.int64)
        if dst.size and np.any(np.diff(dst) < 0):
            raise ValueError("edges must be sorted by recipient")
        deg = np.bincount(dst, minlength=n)
        k = max(int(deg.max(initial=0)), 1)
        slot = np.arange(dst.size) - np.concatenate([[0], np.cumsum(deg)[:-1]])[dst]
        idx = np.repeat(np.arange(n, dtype=np.int64)[:, None], k, axis=1)
        idx[dst, slot] = src
        mask = np.zeros((n, k), dtype=bool)
        mask[dst, slot] = True
        w = np.where(mask, 1.0 / (1.0 + deg[:, None]), 0.0)
        idx_t, mask_t = from_numpy(idx, dev), from_numpy(mask, dev)
        f = (mask_t & self.is_byzantine[idx_t]).sum(1) if self.oracle else self.f
        return Wiring(idx_t, mask_t, from_numpy(w, dev).to(dtype or self.weights.dtype), from_numpy(dst, dev),
                      from_numpy(slot, dev), self.is_byzantine, f, self.actors, self.oracle, self.silent, self.cap)

    @property
    def n(self) -> int:
        return int(self.idx.shape[0])

    # --- the tolerance policy ---------------------------------------------------------------
    def tolerance(self, nodes: Tensor, present: Tensor, senders: Tensor | None = None) -> Tensor:
        """``[a]`` tolerance of ``nodes`` given their ``present [a, k]`` slots: ``f[nodes]``, or with
        ``senders [a, k]`` (an inbox of dynamic peers) under the oracle the count of present
        Byzantine senders; capped so that an aggregate-and-mix rule stays defined when messages
        are missing."""
        if senders is not None and self.oracle:
            f = (present & self.is_byzantine[senders]).sum(1)
        else:
            f = self.f[nodes]
        if self.cap is None:
            return f
        return torch.minimum(f, self.cap(present.sum(1) + 1).to(f.dtype))

    # --- the actors' rows (plain rounds) ----------------------------------------------------
    @cached_property
    def act_idx(self) -> Tensor:
        return self.idx[self.actors]

    @cached_property
    def act_w(self) -> Tensor:
        return self.weights[self.actors]

    @cached_property
    def act_mask(self) -> Tensor:
        """The actors' present slots (a silent Byzantine node's slots are absent)."""
        mask = self.mask[self.actors]
        return mask & ~self.is_byzantine[self.act_idx] if self.silent else mask

    @cached_property
    def act_f(self) -> Tensor:
        """The actors' tolerances (capped: a no-op on a full static inbox, whose f the rule accepted)."""
        return self.tolerance(self.actors, self.act_mask)

    @cached_property
    def byzantine_slots(self) -> tuple[Tensor, Tensor]:
        """``(rows, slots)``: the actors' present Byzantine slots (rows index :attr:`actors`, ascending)."""
        return torch.nonzero(self.act_mask & self.is_byzantine[self.act_idx], as_tuple=True)

    # --- edges --------------------------------------------------------------------------------
    def with_delivered(self, delivered: np.ndarray) -> Tensor:
        """``[n, k]`` mask of the slots whose message arrived (``delivered [E]`` in edge order)."""
        arrived = from_numpy(delivered, self.mask.device)
        return self.mask.index_put((self.edge_rows, self.edge_slots), arrived)

    def sent(self, online: np.ndarray | None = None) -> Tensor:
        """``[n, k]``: the slots whose sender sends this round (online; not silent Byzantine)."""
        sent = self.mask
        if online is not None:
            sent = sent & from_numpy(online, self.mask.device)[self.idx]
        return sent & ~self.is_byzantine[self.idx] if self.silent else sent

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(src [E], dst [E])`` in edge order."""
        return to_numpy(self.idx[self.edge_rows, self.edge_slots]), to_numpy(self.edge_rows)
