"""Messages in flight as arrays, not as simpy events: the asynchronous engine's delivery queue.

A message is sent at ``sent_at`` and arrives at ``arrive = sent_at + delay`` (the float sum simpy
itself would schedule). Nothing happens to it in between, so the engine keeps every message in
flight in one set of numpy columns and moves the ones that have arrived into the recipients'
inboxes only when something reads them or depends on them: an aggregation, a churn change, or
(``wait`` clock) a waiting recipient. Messages that arrive at the same instant keep their send
order, the tie order of simpy's event queue, so the latest message per inbox slot is the one
that one simpy event per message would have left there.

Snapshots of sent models are referred to by integer handles; :class:`Handles` counts what holds
each one (vectorized: the messages in flight that carry it, and the inbox slots whose latest
message it is) and recycles a handle when its count is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Deliveries:
    """Messages that arrived, in arrival order: ``dst, slot, src`` (int64), ``sent_at`` (float64),
    ``handle`` (int64; -1: a Byzantine message, crafted when read)."""

    dst: np.ndarray
    slot: np.ndarray
    src: np.ndarray
    sent_at: np.ndarray
    handle: np.ndarray

    def __len__(self) -> int:
        return int(self.dst.size)

    def latest(self, k: int) -> np.ndarray:
        """:func:`latest_per_slot` of these messages (inboxes of ``k`` slots), computed once."""
        memo = self.__dict__.get("_latest")
        if memo is None:
            memo = latest_per_slot(self.dst, self.slot, k)
            object.__setattr__(self, "_latest", memo)
        return memo

    def take(self, keep: np.ndarray) -> "Deliveries":
        """The messages selected by ``keep`` (a boolean mask or an index array), in that order."""
        return Deliveries(*(getattr(self, f.name)[keep] for f in fields(self)))

    @classmethod
    def concat(cls, parts: list["Deliveries"]) -> "Deliveries":
        if len(parts) == 1:
            return parts[0]
        if not parts:
            z = np.zeros(0, dtype=np.int64)
            return cls(z, z, z, np.zeros(0), z)
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def latest_per_slot(dst: np.ndarray, slot: np.ndarray, k: int) -> np.ndarray:
    """Positions (ascending) of the last message per inbox slot ``(dst, slot)`` of a list in
    arrival order: the messages that stay in the inbox ``[n, k]``. Each slot's largest position
    by one unbuffered scatter (``np.maximum.at``), no sort: 19 µs for 2,800 messages here, against
    133 µs for ``np.unique``."""
    key = dst * k + slot
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.arange(key.size)
    last = np.full(int(key.max()) + 1, -1, dtype=np.int64)
    np.maximum.at(last, key, pos)
    return np.flatnonzero(last[key] == pos)


class InFlight:
    """Messages sent and not yet arrived: their arrival times and their :class:`Deliveries` columns,
    in send order."""

    def __init__(self) -> None:
        self._arrive: list[np.ndarray] = []
        self._msgs: list[Deliveries] = []

    def __len__(self) -> int:
        return sum(a.size for a in self._arrive)

    def push(self, arrive: np.ndarray, msgs: Deliveries) -> None:
        if arrive.size:
            self._arrive.append(arrive)
            self._msgs.append(msgs)

    def _merged(self) -> tuple[np.ndarray, Deliveries]:
        if len(self._arrive) > 1:
            self._arrive = [np.concatenate(self._arrive)]
            self._msgs = [Deliveries.concat(self._msgs)]
        return self._arrive[0], self._msgs[0]

    def pop(self, t: float, *, strict: bool = False, sent_before: float = -np.inf) -> Deliveries:
        """Remove and return the messages arrived by ``t`` in arrival order (ties: send order).
        ``strict``: only those that arrive before ``t``, or at ``t`` if sent before ``sent_before``."""
        if not self._arrive:
            return Deliveries.concat([])
        arrive, msgs = self._merged()
        due = arrive < t if strict else arrive <= t
        if strict:
            due |= (arrive == t) & (msgs.sent_at < sent_before)
        if not due.any():
            return Deliveries.concat([])
        order = np.flatnonzero(due)[np.argsort(arrive[due], kind="stable")]
        out = msgs.take(order)
        if due.all():
            self._arrive, self._msgs = [], []
        else:
            self._arrive, self._msgs = [arrive[~due]], [msgs.take(~due)]
        return out

    def state(self) -> tuple[np.ndarray, Deliveries]:
        """Every message in flight: ``(arrive, columns)`` in send order (a checkpoint)."""
        if not self._arrive:
            return np.zeros(0), Deliveries.concat([])
        return self._merged()

    def restore(self, arrive: np.ndarray, msgs: Deliveries) -> None:
        """Put back what :meth:`state` returned."""
        self._arrive, self._msgs = [], []
        self.push(arrive, msgs)

    def first(self, wanted: np.ndarray) -> float:
        """Earliest arrival among the messages whose recipient is flagged in ``wanted [n]`` (inf: none)."""
        if not self._arrive:
            return np.inf
        arrive, msgs = self._merged()
        return float(arrive[wanted[msgs.dst]].min(initial=np.inf))


class Handles:
    """Integer handles of model snapshots, each held by the messages that carry it."""

    def __init__(self) -> None:
        self.refs = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)

    def alloc(self, m: int) -> np.ndarray:
        """``m`` handles not in use (the lowest free ones first), held until :meth:`hold`."""
        free = np.flatnonzero(~self._live)[:m]
        if free.size < m:
            top = self.refs.size
            grow = max(m - free.size, top)
            self.refs = np.concatenate([self.refs, np.zeros(grow, dtype=np.int64)])
            self._live = np.concatenate([self._live, np.zeros(grow, dtype=bool)])
            free = np.concatenate([free, np.arange(top, top + m - free.size)])
        self._live[free] = True
        return free.astype(np.int64)

    def hold(self, handles: np.ndarray, carried: np.ndarray) -> None:
        """``handles`` (fresh from :meth:`alloc`) are carried by the messages listed in
        ``carried`` (one entry per message); a handle carried by none is free again."""
        self.retain(carried)
        self._live[handles] = self.refs[handles] > 0

    def retain(self, carried: np.ndarray) -> None:
        """One more reference to each live handle listed (-1 entries are ignored)."""
        self.refs += self._count(carried)

    def release(self, carried: np.ndarray) -> None:
        """The messages ``carried`` (their handles; -1 entries are ignored) no longer need their snapshot."""
        counts = self._count(carried)
        self.refs -= counts
        done = np.flatnonzero(counts)
        self._live[done[self.refs[done] == 0]] = False

    def _count(self, carried: np.ndarray) -> np.ndarray:
        return np.bincount(carried[carried >= 0], minlength=self.refs.size)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """``(refs, live)``: the reference count and the in-use flag of every handle (a checkpoint)."""
        return self.refs.copy(), self._live.copy()

    def restore(self, refs: np.ndarray, live: np.ndarray) -> None:
        """Put back what :meth:`state` returned (the free list is the handles not live)."""
        self.refs, self._live = np.array(refs, dtype=np.int64), np.array(live, dtype=bool)

    @property
    def in_use(self) -> int:
        return int(self._live.sum())


def reverse_slots(idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``rev[i, s]``: the slot of sender ``i`` in the inbox of its neighbour ``idx[i, s]`` (-1 on padding)."""
    n = idx.shape[0]
    rows, slots = np.nonzero(mask)
    keys = idx[rows, slots] * n + rows  # (sender, recipient) of every real slot
    order = np.argsort(keys, kind="stable")
    want = rows * n + idx[rows, slots]  # (i, its neighbour)
    pos = np.searchsorted(keys[order], want)
    if not np.array_equal(keys[order][np.minimum(pos, keys.size - 1)], want):
        raise ValueError("the neighbour table is not symmetric: every link must be listed by both ends")
    rev = np.full(idx.shape, -1, dtype=np.int64)
    rev[rows, slots] = slots[order][pos]
    return rev
