"""Asynchronous gossip on simpy: node processes, links that hold messages, batched instants.

Each node runs a process: wake on its own clock, compute its local steps (a simulated duration),
send its model to its neighbours through the links, and aggregate whatever its inbox holds at that
moment (or, with the ``wait`` clock, once ``k`` neighbours sent fresh messages). A message lives in
the network as one simpy timeout between send and arrival (simpy's ``latency.py`` cable pattern);
a message to an offline node, or a dropped one, is lost.

The engine never touches tensors. It calls the kernels with integer arrays only:

* ``compute(nodes, handles, round)`` — the listed nodes finished their local steps now; snapshot
  their models under the given integer handles (the engine allocates and frees handles);
* ``aggregate(nodes, deliveries, now)`` — first write ``deliveries`` (a :class:`Deliveries` of every
  message that arrived since the last call), then run the rule for ``nodes``;
* ``progress(round, now, messages, online)`` — ``round`` node-rounds per actor are complete
  (return True to stop).

Nodes whose compute finishes at the same simulated instant are handed over in one call: a
"compute" flush (priority 2) runs after every ordinary event of that instant, and an "aggregate"
flush (priority 3) after the zero-delay deliveries that the compute flush sent. With ``tick > 0``
compute completions are rounded up to multiples of ``tick``, so that nearly simultaneous nodes
share a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from .churn import ChurnSchedule
from .dynamics import EdgeSampler
from .specs import ClockSpec, TimingAttackSpec
from .timing import ComputeModel, LinkModel

_COMPUTE, _AGGREGATE = 2, 3  # flush priorities: after every NORMAL (1) event of the same instant


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


@dataclass
class AsyncSetup:
    """Who is who and how long things take.

    Attributes
    ----------
    idx, mask : IntArray [n, k], BoolArray [n, k]
        Static neighbour table (slot ``s`` of node ``i`` receives from ``idx[i, s]``); with
        epidemic dynamics, ``k`` is the inbox capacity and slots are assigned per sender.
    is_byzantine, trains, counted : BoolArray [n]
        Byzantine nodes; nodes that run local steps; nodes whose aggregations count as rounds.
    """

    idx: np.ndarray
    mask: np.ndarray
    is_byzantine: np.ndarray
    trains: np.ndarray
    counted: np.ndarray
    compute: ComputeModel
    links: LinkModel
    clock: ClockSpec
    rng: np.random.Generator
    churn: ChurnSchedule | None = None
    dynamics: EdgeSampler | None = None
    timing_attack: TimingAttackSpec = field(default_factory=TimingAttackSpec)
    tick: float = 0.0


class AsyncEngine:
    """Run asynchronous gossip until ``rounds`` node-rounds per counted node, or ``duration`` seconds."""

    def __init__(self, setup: AsyncSetup, rounds: int, *, duration: float = 0.0):
        self.s = setup
        self.rounds, self.duration = rounds, duration
        self.env = simpy.Environment()
        self.events = 0
        self.n = setup.idx.shape[0]
        self.online = np.ones(self.n, dtype=bool) if setup.churn is None else setup.churn.advance(0.0)
        self.deg = setup.mask.sum(1)
        self._pending: tuple[list, list, list, list, list] = ([], [], [], [], [])
        self._compute_batch: list[int] = []
        self._agg_batch: list[int] = []
        self._refs: dict[int, int] = {}
        self._free: list[int] = []
        self._next_handle = 0
        self._done_events: dict[int, simpy.Event] = {}
        self._fresh = [set() for _ in range(self.n)] if setup.clock.kind == "wait" else None
        self._waiting = np.zeros(self.n, dtype=bool)
        self._rev = reverse_slots(setup.idx, setup.mask) if setup.dynamics is None else None
        self._dyn_slots: list[dict[int, int]] = [dict() for _ in range(self.n)] if setup.dynamics is not None else []
        self.activations = 0
        self.messages = 0
        self.round = 0
        self.stopped = False
        self.kernel: Any = None
        self._counted_total = max(int(setup.counted.sum()), 1)

    # --- handles ----------------------------------------------------------------------------
    def _alloc(self, m: int) -> np.ndarray:
        out = [self._free.pop() if self._free else self._new() for _ in range(m)]
        return np.asarray(out, dtype=np.int64)

    def _new(self) -> int:
        self._next_handle += 1
        return self._next_handle - 1

    def _unref(self, h: int) -> None:
        if h < 0:
            return
        self._refs[h] -= 1
        if self._refs[h] == 0:
            del self._refs[h]
            self._free.append(h)

    # --- processes --------------------------------------------------------------------------
    def _gap(self, first: bool) -> float:
        c = self.s.clock
        if c.kind == "poisson":
            return float(self.s.rng.exponential(1.0 / c.rate))
        if c.kind == "periodic" and c.period > 0:
            if first:
                return float(c.period * c.jitter * self.s.rng.random()) if c.jitter else 0.0
            return c.period * (1 + c.jitter * (2 * self.s.rng.random() - 1)) if c.jitter else c.period
        return 0.0

    def _node(self, i: int):
        env, s = self.env, self.s
        wake = env.now + self._gap(True)
        nodes = np.array([i])
        while True:
            if wake > env.now:
                yield env.timeout(wake - env.now)
            if not self.online[i]:
                wait = s.churn.next_change() - env.now if s.churn is not None else math.inf
                if not math.isfinite(wait):
                    return
                yield env.timeout(max(wait, 0.0))
                wake = env.now
                continue
            c = float(s.compute.draw(s.rng, nodes)[0])
            if s.tick > 0:
                c = math.ceil((env.now + c) / s.tick - 1e-9) * s.tick - env.now
            yield env.timeout(c)
            if not self.online[i]:
                continue
            self._finish_compute(i)
            if self._fresh is not None and s.trains[i]:
                done = self._done_events[i] = env.event()
                yield done
            wake = wake + self._gap(False)
            if wake < env.now:
                wake = env.now

    def _churn(self):
        churn = self.s.churn
        while True:
            t = churn.next_change()
            if not math.isfinite(t):
                return
            yield self.env.timeout(t - self.env.now)
            self.online = churn.advance(self.env.now)

    # --- compute, send, aggregate -----------------------------------------------------------
    def _finish_compute(self, i: int) -> None:
        if not self.s.trains[i]:
            self._send(i, -1)
            return
        if not self._compute_batch:
            self._flush_at(self._compute_flush, _COMPUTE)
        self._compute_batch.append(i)

    def _flush_at(self, fn, priority: int) -> None:
        ev = simpy.Event(self.env)
        ev._ok, ev._value = True, None
        ev.callbacks.append(fn)
        self.env.schedule(ev, priority, 0)

    def _compute_flush(self, _ev) -> None:
        nodes = np.asarray(sorted(self._compute_batch), dtype=np.int64)
        self._compute_batch = []
        handles = self._alloc(nodes.size)
        self.kernel.compute(nodes, handles, self.round)
        for i, h in zip(nodes.tolist(), handles.tolist()):
            self._refs[h] = 1  # held until this flush ends
            self._send(i, h)
            if self._fresh is None:
                self._queue_aggregate(i)
            else:
                self._start_wait(i)
            self._unref(h)

    def _recipients(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.s
        if s.dynamics is None:
            row = s.mask[i]
            return s.idx[i][row], self._rev[i][row]
        peers = s.dynamics.peers(i, s.rng)
        return peers, np.full(peers.size, -1)

    def _send(self, i: int, handle: int) -> None:
        s, env = self.s, self.env
        dst, slots = self._recipients(i)
        copies = int(s.timing_attack.value) if s.timing_attack.kind == "flood" and s.is_byzantine[i] else 1
        if copies > 1:
            dst, slots = np.repeat(dst, copies), np.repeat(slots, copies)
        m = dst.size
        self.messages += m
        delay = s.links.delays(s.rng, m)
        if copies > 1:  # the copies of a flood leave one after another
            delay = delay + np.tile(np.arange(copies), m // copies) * 1e-6
        if s.timing_attack.kind == "delay" and s.is_byzantine[i]:
            delay = delay + s.timing_attack.value
        kept = s.links.kept(s.rng, m)
        dst, slots, delay = dst[kept], slots[kept], delay[kept]
        if dst.size == 0:
            return
        if handle >= 0:
            self._refs[handle] += int(dst.size)
        now = env.now
        arrive, timeout = self._arrive, env.timeout
        if s.links.latency.constant and copies == 1 and not s.links.drop:  # one event: every copy arrives together
            timeout(float(delay[0]), (dst.tolist(), slots.tolist(), i, now, handle)).callbacks.append(arrive)
            return
        for t, d_, s_ in zip(delay.tolist(), dst.tolist(), slots.tolist()):  # one event per message in flight
            timeout(t, ((d_,), (s_,), i, now, handle)).callbacks.append(arrive)

    def _arrive(self, ev) -> None:
        dst, slots, src, sent_at, handle = ev.value
        pend = self._pending
        for j, d in enumerate(dst):
            if not self.online[d]:
                self._unref(handle)
                continue
            sl = int(slots[j]) if slots[j] >= 0 else self._dyn_slot(d, src)
            pend[0].append(d), pend[1].append(sl), pend[2].append(src), pend[3].append(sent_at), pend[4].append(handle)
            if self._fresh is not None:
                fresh = self._fresh[d]
                fresh.add(src)
                if self._waiting[d] and len(fresh) >= min(self.s.clock.k, max(self.deg[d], 1)):
                    self._waiting[d] = False
                    self._queue_aggregate(d)

    def _dyn_slot(self, d: int, src: int) -> int:
        """Epidemic inboxes: one slot per sender, the least recently written evicted when full."""
        slots = self._dyn_slots[d]
        if src in slots:
            sl = slots.pop(src)
        elif len(slots) < self.s.idx.shape[1]:
            sl = len(slots)
        else:
            sl = slots.pop(next(iter(slots)))
        slots[src] = sl
        return sl

    def _start_wait(self, i: int) -> None:
        need = min(self.s.clock.k, max(int(self.deg[i]), 1)) if self.s.dynamics is None else self.s.clock.k
        if len(self._fresh[i]) >= need:
            self._queue_aggregate(i)
            return
        self._waiting[i] = True
        if self.s.clock.timeout > 0:
            ev = self.env.timeout(self.s.clock.timeout, i)
            ev.callbacks.append(self._wait_timeout)

    def _wait_timeout(self, ev) -> None:
        i = ev.value
        if self._waiting[i]:
            self._waiting[i] = False
            self._queue_aggregate(i)

    def _queue_aggregate(self, i: int) -> None:
        if not self._agg_batch:
            self._flush_at(self._aggregate_flush, _AGGREGATE)
        self._agg_batch.append(i)

    def _aggregate_flush(self, _ev) -> None:
        nodes = np.asarray(sorted(self._agg_batch), dtype=np.int64)
        self._agg_batch = []
        if self.stopped:
            return
        nodes = nodes[self.online[nodes]]
        pend = self._pending
        deliveries = Deliveries(*(np.asarray(p, dtype=np.float64 if k == 3 else np.int64) for k, p in enumerate(pend)))
        self._pending = ([], [], [], [], [])
        self.kernel.aggregate(nodes, deliveries, self.env.now)
        for h in deliveries.handle.tolist():
            self._unref(h)
        for i in nodes.tolist():
            if self._fresh is not None:
                self._fresh[i].clear()
                done = self._done_events.pop(i, None)
                if done is not None:
                    done.succeed()
        self.activations += int(self.s.counted[nodes].sum())
        r = self.activations // self._counted_total
        if r > self.round:
            self.round = r
            online = None if self.s.churn is None else self.online.copy()
            stop = self.kernel.progress(r, self.env.now, self.messages, online)
            self.messages = 0
            if stop or (not self.duration and r >= self.rounds):
                self.stopped = True

    # --- run --------------------------------------------------------------------------------
    def run(self, kernel: Any) -> float:
        """Run with ``kernel`` (``compute``, ``aggregate``, ``progress``); return the final time."""
        self.kernel = kernel
        for i in range(self.n):
            self.env.process(self._node(i))
        if self.s.churn is not None:
            self.env.process(self._churn())
        limit = self.duration if self.duration else math.inf
        while not self.stopped and self.env.peek() <= limit:
            self.env.step()
            self.events += 1
        if self.duration and not self.stopped and self.env.now < self.duration:
            self.env.run(until=self.duration)  # advance the clock to the limit (no event there is processed)
        return float(self.env.now)


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
