"""Tensor-side state of the network: padded edge tables and the asynchronous inbox buffer.

The engine (no torch) says *which* messages arrived: integer arrays ``dst, slot, src, send_time,
handle``. This module keeps *what* they hold:

* :class:`EdgeTable` — a padded ``idx[n, k]`` / ``mask[n, k]`` / ``weights[n, k]`` table with the
  order of its edges, built from the static neighbour table or from a round's edge list;
* :class:`InboxBuffer` — the latest delivered message per ``(recipient, slot)`` with its sender and
  send time (so its age), plus a snapshot store of models in flight, indexed by integer handles
  that the engine allocates and frees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class EdgeTable:
    """A padded table of directed edges ``idx[i, s] → i``.

    Attributes
    ----------
    idx, mask : LongTensor [n, k], BoolTensor [n, k]
    weights : Tensor [n, k]
    rows, slots : LongTensor [E]
        Position of edge ``e`` (in the engine's edge order: by recipient, then slot).
    """

    idx: Tensor
    mask: Tensor
    weights: Tensor
    rows: Tensor
    slots: Tensor

    def with_delivered(self, delivered: np.ndarray) -> Tensor:
        """``[n, k]`` mask of the slots whose message arrived (``delivered [E]`` in edge order)."""
        return self.mask.index_put((self.rows, self.slots), torch.from_numpy(np.ascontiguousarray(delivered)))

    def byzantine_counts(self, is_byzantine: Tensor) -> Tensor:
        """``[n]`` number of Byzantine senders per recipient."""
        return (self.mask & is_byzantine[self.idx]).sum(1)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(src [E], dst [E])`` in edge order."""
        return self.idx[self.rows, self.slots].numpy(), self.rows.numpy()


def edge_table(table=None, *, n: int = 0, src: np.ndarray | None = None, dst: np.ndarray | None = None,
               dtype: torch.dtype = torch.float32) -> EdgeTable:
    """From a :class:`~p2probust.topology.NeighborTable`, or from edges sorted by ``dst`` with
    weights ``1 / (1 + in-degree of dst)`` (the uniform average of epidemic learning; equal to
    Metropolis–Hastings on regular graphs)."""
    if table is not None:
        rows, slots = torch.nonzero(table.mask, as_tuple=True)
        return EdgeTable(table.idx, table.mask, table.weights, rows, slots)
    dst = np.asarray(dst, dtype=np.int64)
    src = np.asarray(src, dtype=np.int64)
    if dst.size and np.any(np.diff(dst) < 0):
        raise ValueError("edges must be sorted by recipient")
    deg = np.bincount(dst, minlength=n)
    k = max(int(deg.max(initial=0)), 1)
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    slot = np.arange(dst.size) - start[dst]
    idx = np.repeat(np.arange(n, dtype=np.int64)[:, None], k, axis=1)
    idx[dst, slot] = src
    mask = np.zeros((n, k), dtype=bool)
    mask[dst, slot] = True
    w = np.where(mask, 1.0 / (1.0 + deg[:, None]), 0.0)
    return EdgeTable(torch.from_numpy(idx), torch.from_numpy(mask), torch.from_numpy(w).to(dtype),
                     torch.from_numpy(dst), torch.from_numpy(slot))


class InboxBuffer:
    """The latest message per ``(recipient, slot)``, for asynchronous gossip.

    Attributes
    ----------
    inbox : Tensor [n, k, d]
        Content of the latest honest message of each slot (Byzantine slots are crafted when read).
    has : BoolTensor [n, k]
        The slot received at least one message.
    crafted : BoolTensor [n, k]
        The latest message of the slot came from a Byzantine sender (crafted when read).
    sender : LongTensor [n, k]
        Sender of the latest message (the static table's neighbour, or a dynamic peer).
    sent_at : ndarray [n, k] (float64)
        Send time of the latest message (its age is ``now - sent_at``).
    pool : Tensor [P, d]
        Snapshots of models in flight, row ``h`` for handle ``h`` (grows by doubling).

    Notes
    -----
    A mutable buffer (like a replay buffer): :meth:`deliver` writes in place, one batched
    indexed copy per call.
    """

    def __init__(self, idx: Tensor, d: int, dtype: torch.dtype):
        n, k = idx.shape
        self.inbox = torch.zeros(n, k, d, dtype=dtype)
        self.has = torch.zeros(n, k, dtype=torch.bool)
        self.crafted = torch.zeros(n, k, dtype=torch.bool)
        self.sender = idx.clone()
        self.sent_at = np.full((n, k), -np.inf)
        self.pool = torch.zeros(max(n, 1), d, dtype=dtype)

    def store(self, handles: np.ndarray, models: Tensor) -> None:
        """Snapshot ``models [m, d]`` under integer ``handles [m]``."""
        if handles.size == 0:
            return
        need = int(handles.max()) + 1
        if need > self.pool.shape[0]:
            grown = torch.zeros(max(need, 2 * self.pool.shape[0]), self.pool.shape[1], dtype=self.pool.dtype)
            grown[: self.pool.shape[0]] = self.pool
            self.pool = grown
        self.pool[torch.from_numpy(handles)] = models

    def deliver(self, dst: np.ndarray, slot: np.ndarray, src: np.ndarray, sent_at: np.ndarray, handle: np.ndarray) -> None:
        """Write delivered messages (in arrival order: the last one per slot wins); ``handle < 0``
        marks a Byzantine message, crafted when the recipient aggregates. The writes go through
        numpy views of the tensors (same memory; numpy's fancy indexing costs less per call)."""
        if dst.size == 0:
            return
        key = dst * self.has.shape[1] + slot
        _, first = np.unique(key[::-1], return_index=True)
        keep = np.sort(key.size - 1 - first)
        dst, slot, src, sent_at, handle, key = dst[keep], slot[keep], src[keep], sent_at[keep], handle[keep], key[keep]
        self.has.numpy()[dst, slot] = True
        self.crafted.numpy()[dst, slot] = handle < 0
        self.sender.numpy()[dst, slot] = src
        self.sent_at[dst, slot] = sent_at
        real = handle >= 0
        if real.any():
            inbox = self.inbox.numpy().reshape(-1, self.inbox.shape[2])
            inbox[key[real]] = self.pool.numpy()[handle[real]]
