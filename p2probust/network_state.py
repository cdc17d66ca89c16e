"""Tensor-side state of the asynchronous network: the inbox buffer.

The engine (no torch) says *which* messages arrived: integer arrays ``dst, slot, src, send_time,
handle``. This module keeps *what* they hold (a graph's padded tables and edge order are its
:class:`~p2probust.wiring.Wiring`):

* :class:`InboxBuffer` — the latest delivered message per ``(recipient, slot)`` with its sender and
  send time (so its age), as a reference into a store of snapshots of sent models, indexed by
  integer handles that the engine allocates and frees.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .device import from_numpy, to_numpy
from .engine.inflight import Deliveries
from .jit import inbox as jit_inbox


#: scratch rows at first, unless told how many crafted messages an aggregation may need (each
#: doubling reallocates the pool)
SCRATCH_ROWS = 64


class InboxBuffer:
    """The latest message per ``(recipient, slot)``, for asynchronous gossip.

    A slot does not hold a copy of its message: it names the snapshot (the engine's integer
    handle) of the model that was sent, and the engine keeps a handle alive while a message in
    flight carries it or while it is the latest message of a slot. The compiled rank-mean kernel
    reads the inboxes straight from the snapshot pool; the torch rules gather ``[a, k, d]``.

    Attributes
    ----------
    handle : ndarray [n, k] (int64)
        Snapshot of the latest honest message of each slot (-1: none, or a Byzantine message,
        crafted when read).
    has : BoolTensor [n, k]
        The slot received at least one message.
    crafted : BoolTensor [n, k]
        The latest message of the slot came from a Byzantine sender (crafted when read).
    sender : LongTensor [n, k]
        Sender of the latest message (the static table's neighbour, or a dynamic peer).
    sent_at : ndarray [n, k] (float64)
        Send time of the latest message (its age is ``now - sent_at``).
    changed : ndarray [n] (bool)
        Nodes whose slots changed in which have a message or from whom (``has``, ``sender``) since
        :meth:`take_changed` last read them (all, at first and after a restore): what depends
        on those alone needs their rows again.
    pool : Tensor [P + 1 + C, d]
        Row ``h < P`` for handle ``h`` (``P`` grows by doubling), row ``P`` zeros (the content of
        a slot without an honest message), then scratch rows for the crafted messages of one
        aggregation.

    Notes
    -----
    A mutable buffer (like a replay buffer): :meth:`deliver` writes integers in place through
    numpy views of the tensors (same memory).
    """

    def __init__(self, idx: Tensor, d: int, dtype: torch.dtype, device: torch.device | str = "cpu", *,
                 scratch: int = SCRATCH_ROWS):
        n, k = idx.shape
        # the engine's bookkeeping stays on the CPU, written in place through numpy views
        self.has = torch.zeros(n, k, dtype=torch.bool, device="cpu")
        self.crafted = torch.zeros(n, k, dtype=torch.bool, device="cpu")
        self.sender = idx.to("cpu", copy=True)
        self.sent_at = np.full((n, k), -np.inf)
        self.handle = np.full((n, k), -1, dtype=np.int64)
        # live snapshots: about one per node (each slot's latest) and those in flight: 2n at first,
        # which most runs never outgrow (each growth copies the pool)
        self.cap = max(2 * n, 1)
        self.pool = torch.zeros(self.cap + 1 + scratch, d, dtype=dtype, device=device)  # on the run's device
        self.changed = np.ones(n, dtype=bool)
        self._any_changed = True

    def state(self) -> dict[str, Tensor]:
        """The buffer as tensors (a checkpoint): the slots' columns and the snapshot rows of every
        handle (the scratch rows are rewritten before each read: only their number is kept)."""
        return {"has": self.has, "crafted": self.crafted, "sender": self.sender,
                "sent_at": torch.from_numpy(self.sent_at), "handle": torch.from_numpy(self.handle),
                "pool": self.pool[: self.cap], "rows": torch.tensor(self.pool.shape[0], device="cpu")}

    def restore(self, state: dict[str, Tensor]) -> None:
        """Put back what :meth:`state` returned (into a buffer built for the same ``idx`` and ``d``)."""
        self.changed[:] = self._any_changed = True
        self.has.copy_(state["has"])
        self.crafted.copy_(state["crafted"])
        self.sender.copy_(state["sender"])
        self.sent_at = state["sent_at"].numpy().copy()
        self.handle = state["handle"].numpy().copy()
        self.cap = state["pool"].shape[0]
        self.pool = torch.zeros(int(state["rows"]), self.pool.shape[1], dtype=self.pool.dtype, device=self.pool.device)
        self.pool[: self.cap] = state["pool"].to(self.pool.device)

    def _resize(self, cap: int, rows: int) -> None:
        """Handle capacity ``cap`` and at least ``rows`` rows in all (handles' rows kept)."""
        if cap == self.cap and rows <= self.pool.shape[0]:
            return
        grown = torch.zeros(max(rows, cap + 1), self.pool.shape[1], dtype=self.pool.dtype, device=self.pool.device)
        grown[: self.cap] = self.pool[: self.cap]
        self.pool, self.cap = grown, cap

    def store(self, handles: np.ndarray, params: Tensor, rows: Tensor) -> None:
        """Snapshot the models ``params[rows]`` (``rows [m]``) under integer ``handles [m]``."""
        if handles.size == 0:
            return
        need = int(handles.max()) + 1
        if need > self.cap:  # grow by doubling; the zero row and the scratch rows stay as many
            cap = max(need, 2 * self.cap)
            self._resize(cap, cap + self.pool.shape[0] - self.cap)
        if self.pool.device.type == "cpu" and params.is_contiguous() and jit_inbox.usable():  # one pass
            jit_inbox.copy_rows(params.detach().numpy(), to_numpy(rows), self.pool.numpy(), handles)
            return
        self.pool.index_copy_(0, from_numpy(handles, self.pool.device), params.index_select(0, rows))

    def deliver(self, dl: Deliveries) -> None:
        """Write delivered messages (in arrival order: the last one per slot wins); ``handle < 0``
        marks a Byzantine message, crafted when the recipient aggregates."""
        has, sender = self.has.numpy(), self.sender.numpy()
        if len(dl) and jit_inbox.usable():  # one compiled pass, message by message
            if jit_inbox.deliver(dl.dst, dl.slot, dl.src, dl.sent_at, dl.handle, has, self.crafted.numpy(), sender,
                                 self.sent_at, self.handle, self.changed):
                self._any_changed = True
            return
        keep = dl.latest(self.handle.shape[1])
        dst, slot, src, sent_at, handle = dl.dst[keep], dl.slot[keep], dl.src[keep], dl.sent_at[keep], dl.handle[keep]
        fresh = ~has[dst, slot] | (sender[dst, slot] != src)
        if fresh.any():
            self.changed[dst[fresh]] = self._any_changed = True
        has[dst, slot] = True
        self.crafted.numpy()[dst, slot] = handle < 0
        sender[dst, slot] = src
        self.sent_at[dst, slot] = sent_at
        self.handle[dst, slot] = handle

    def take_changed(self) -> np.ndarray:
        """The nodes in :attr:`changed` (ascending), which it then clears."""
        if not self._any_changed:
            return np.zeros(0, dtype=np.int64)
        rows = np.flatnonzero(self.changed)
        self.changed[rows] = self._any_changed = False
        return rows

    def slot_rows(self, nodes: np.ndarray, rows: Tensor, slots: Tensor, crafted: Tensor | None) -> Tensor:
        """``[a, k]`` pool row of each slot of ``nodes``: the snapshot of its latest honest message,
        the zero row for a slot without one, and for the slots ``(rows, slots)`` their crafted
        messages ``crafted [E, d]``, written to the scratch rows."""
        out = self.handle[nodes]
        out = np.where(out >= 0, out, self.cap)
        if crafted is not None and crafted.shape[0]:
            e = crafted.shape[0]
            if self.cap + 1 + e > self.pool.shape[0]:  # scratch rows grow by doubling: few reallocations
                self._resize(self.cap, self.cap + 1 + max(e, 2 * (self.pool.shape[0] - self.cap - 1)))
            self.pool[self.cap + 1 : self.cap + 1 + e] = crafted
            out[to_numpy(rows), to_numpy(slots)] = self.cap + 1 + np.arange(e)
        return from_numpy(out, self.pool.device)
