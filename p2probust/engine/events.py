"""Asynchronous gossip on simpy: node processes, links that hold messages, batched instants.

Each node runs a process: wake on its own clock, compute its local steps (a simulated duration),
send its model to its neighbours through the links, and aggregate whatever its inbox holds at that
moment (or, with the ``wait`` clock, once ``k`` neighbours sent fresh messages). A message to an
offline node, or a dropped one, is lost.

Messages are not simpy events. Each has its own delay (latency, transfer time, timing attack) and
drop draw, and its arrival time is the float sum ``sent + delay`` that a simpy timeout would have
used; the engine keeps them in a vectorized queue (:class:`~p2probust.engine.inflight.InFlight`)
and moves those that have arrived into the inboxes when something depends on them: before an
aggregation, before a churn change, and (``wait`` clock) at the arrival instants of messages to a
waiting node, with one simpy event per such instant. simpy stays the clock: node wake-ups,
compute completions, churn changes and the batched flushes below are its events (without churn,
the ``wait`` clock or random compute times, node events wait in the engine's own queue, drained in
order by one simpy event per compute instant: :mod:`~p2probust.engine.deferred`).

The engine never touches tensors. It calls the kernels with integer arrays only:

* ``compute(nodes, handles, round)`` — the listed nodes finished their local steps now; snapshot
  their models under the given integer handles (the engine allocates and frees handles; a handle
  stays valid while a message in flight carries it or it is the latest message of an inbox slot);
* ``aggregate(nodes, deliveries, now)`` — first write ``deliveries`` (a :class:`Deliveries` of every
  message that arrived since the last call), then run the rule for ``nodes``;
* ``progress(round, now, messages, online)`` — ``round`` node-rounds per actor are complete
  (return True to stop).

Nodes whose compute finishes at the same simulated instant are handed over in one call: a
"compute" flush (priority 2) runs after every ordinary event of that instant and sends all their
messages with one vectorized draw of delays (then one of drops), and an "aggregate" flush
(priority 3) runs after it, reading every message arrived by then, zero-delay ones included.
With ``tick > 0`` compute completions are rounded up to multiples of ``tick``, so that nearly
simultaneous nodes share a batch.

Order of the random draws (the ``engine`` stream): node clocks and compute times in simpy's
event order, as before; at a compute flush, the senders in increasing node order: first every
message's delay, then every message's drop draw (the per-message engine drew delay then drop
per sender, so runs with random latency *and* drops draw in a new order; every other run draws
the same numbers). Epidemic push draws a sender's peers, delays and drops sender by sender.

State as data (checkpoints): a node keeps its phase and wake-up time as data, and its pending
event carries the node (no simpy process per node: :mod:`~p2probust.engine.node_process`), and
``on_idle(round)`` is called once the instant in which
a round ended is over; :mod:`~p2probust.engine.events_state` saves the engine there and rebuilds an
engine that continues from it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from .churn import ChurnSchedule
from .deferred import DeferredEvents
from .dynamics import EdgeSampler
from .inflight import Deliveries, Handles, InFlight, reverse_slots
from .node_process import NodeProcess
from .specs import ClockSpec, TimingAttackSpec
from .timing import ComputeModel, LinkModel
from .wait_clock import WaitClock

_NORMAL, _COMPUTE, _AGGREGATE = 1, 2, 3  # flush priorities: after every NORMAL event of the same instant
__all__ = ["AsyncEngine", "AsyncSetup", "Deliveries", "reverse_slots"]


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
    compiled: Any = None  #: :mod:`p2probust.jit.engine` for the bookkeeping passes, or None (numpy)


class AsyncEngine(NodeProcess, DeferredEvents, WaitClock):
    """Run asynchronous gossip until ``rounds`` node-rounds per counted node, or ``duration`` seconds."""

    def __init__(self, setup: AsyncSetup, rounds: int, *, duration: float = 0.0):
        self.s = setup
        self.rounds, self.duration = rounds, duration
        self.env = simpy.Environment()
        self.events = 0
        self.n = setup.idx.shape[0]
        self.online = np.ones(self.n, dtype=bool) if setup.churn is None else setup.churn.advance(0.0)
        self.deg = setup.mask.sum(1)
        self._flight = InFlight()
        self._handles = Handles()
        self._pending: list[Deliveries] = []
        self._slot_handle = np.full(setup.idx.shape, -1, dtype=np.int64)  # snapshot of each slot's latest message
        self._compute_batch: list[int] = []
        self._agg_batch: list[np.ndarray] = []
        self._done_events: dict[int, simpy.Event] = {}
        self._wait = setup.clock.kind == "wait"
        self._dynamic = setup.dynamics is not None
        # wait clock: who sent a fresh message since the last aggregation (static: per slot)
        self._fresh = np.zeros(setup.idx.shape, dtype=bool) if self._wait and not self._dynamic else None
        self._fresh_sets = [set() for _ in range(self.n)] if self._wait and self._dynamic else []
        self._waiting = np.zeros(self.n, dtype=bool)
        self._armed = math.inf  # time of the next delivery event (wait clock)
        self._last_change = 0.0  # when the churn process last ran
        self._rev = reverse_slots(setup.idx, setup.mask) if not self._dynamic else None
        self._full = bool(setup.mask.all())
        self._dyn_slots: list[dict[int, int]] = [dict() for _ in range(self.n)] if self._dynamic else []
        # a constant compute time draws nothing: the same float64 products, computed once
        self._const_compute = setup.compute.draw(setup.rng, np.arange(self.n)).tolist() if setup.compute.dist.constant else None
        # the queue of node events, each node's phase (what it waits for) and next wake-up time (engine/deferred.py)
        self._init_deferred(setup.churn is None and not self._wait and self._const_compute is not None)
        self.activations = 0
        self.messages = 0
        self.round = 0
        self.stopped = False
        self.kernel: Any = None
        self._counted_total = max(int(setup.counted.sum()), 1)
        self._churn_proc: simpy.Process | None = None
        self.resumed = False  # set by events_state.restore: the nodes' events are queued already
        self.stepping = False  # within an event (its instant is not over)
        self.on_idle: Any = None  # called with the round between instants after a round ends (checkpoints)

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet arrived."""
        return len(self._flight)

    # --- processes (the node process: engine/node_process.py) --------------------------------
    def _churn(self, pending: simpy.Event | None = None):
        """The churn process: at every change of the schedule, settle the messages arrived before
        it, then switch nodes on and off. ``pending``: resume waiting for that event."""
        churn = self.s.churn
        if pending is not None:
            yield pending
            self._churn_change()
        while True:
            t = churn.next_change()
            if not math.isfinite(t):
                return
            yield self.env.timeout(t - self.env.now)
            self._churn_change()

    def _churn_change(self) -> None:
        # simpy's tie order: a message arriving exactly now was processed before this change
        # if it was sent before the timeout of this change was scheduled
        self._settle(self.env.now, strict=True, sent_before=self._last_change)
        self._last_change = self.env.now
        self.online = self.s.churn.advance(self.env.now)

    def _at(self, t: float, priority: int, fn: Any = None) -> simpy.Event:
        """A triggered event at simulated time ``t`` exactly (``now + (t − now)`` may round
        elsewhere) that calls ``fn`` (None: nothing); returned so that the caller may tag it."""
        ev = simpy.Event(self.env)
        ev._ok, ev._value = True, None
        if fn is not None:
            ev.callbacks.append(fn)
        heapq.heappush(self.env._queue, (t, priority, next(self.env._eid), ev))
        return ev

    # --- compute, send ----------------------------------------------------------------------
    def _finish_compute(self, i: int) -> None:
        """Node ``i`` finished computing now: it sends at once if it does not train, else it joins
        this instant's compute flush."""
        if not self.s.trains[i]:
            self._send(np.array([i]), np.array([-1]))
            return
        self._join_compute_flush([i])

    def _join_compute_flush(self, nodes: list[int]) -> None:
        """``nodes`` (training ones) finished computing now: they join this instant's compute flush."""
        if not self._compute_batch:
            self._at(self.env.now, _COMPUTE, self._compute_flush)
        self._compute_batch.extend(nodes)

    def _compute_flush(self, _ev) -> None:
        nodes = np.asarray(sorted(self._compute_batch), dtype=np.int64)
        self._compute_batch = []
        handles = self._handles.alloc(nodes.size)
        self.kernel.compute(nodes, handles, self.round)
        if self._wait:
            self._settle(self.env.now)  # every message that arrived by now counts as fresh
        self._handles.hold(handles, self._send(nodes, handles))
        if self._wait:
            self._start_wait(nodes)
        else:
            self._queue_aggregate(nodes)

    def _send(self, nodes: np.ndarray, handles: np.ndarray) -> np.ndarray:
        """Send the models of ``nodes`` (in that order) to their recipients; return the handles
        carried by the messages that were not dropped (one entry per message)."""
        s = self.s
        if self._dynamic:  # epidemic push: a sender's peers, then its delays and drops, sender by sender
            out = []
            for i, h in zip(nodes.tolist(), handles.tolist()):
                peers = s.dynamics.peers(i, s.rng)
                out.append(self._post(np.full(peers.size, i), np.full(peers.size, h), peers, np.full(peers.size, -1)))
            return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        return self._post(*self._outgoing(nodes, handles))

    def _outgoing(self, nodes: np.ndarray, handles: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(src, handle, dst, slot)``: one message per link of ``nodes`` (static graph)."""
        if self._full:  # every slot real (a regular graph): no mask to apply
            k = self.s.idx.shape[1]
            return np.repeat(nodes, k), np.repeat(handles, k), self.s.idx[nodes].ravel(), self._rev[nodes].ravel()
        rows = self.s.mask[nodes]
        counts = rows.sum(1)
        return np.repeat(nodes, counts), np.repeat(handles, counts), self.s.idx[nodes][rows], self._rev[nodes][rows]

    def _post(self, src: np.ndarray, handle: np.ndarray, dst: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Put one message per entry in flight: its delay and drop draws, the timing attacks; return the handles kept."""
        msgs, copy = self._copies(src, handle, dst, slot)
        return self._enqueue(*self._arrivals(msgs, copy, *self._link_draws(msgs[2].size)))

    def _copies(self, src: np.ndarray, *columns: np.ndarray) -> tuple[tuple, Any]:
        """``((src, *columns), copy)``: with the flood attack, each message from a Byzantine ``src``
        ``copies`` times (``copy``: which copy it is; None without copies)."""
        attack = self.s.timing_attack
        if attack.kind == "flood" and int(attack.value) > 1:  # copies leave one after another
            byz = self.s.is_byzantine[src]
            if byz.any():
                reps = np.where(byz, int(attack.value), 1)
                copy = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
                return tuple(np.repeat(x, reps) for x in (src, *columns)), copy
        return (src, *columns), None

    def _link_draws(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` messages' delays, then whether each is kept (the engine stream's draws)."""
        self.messages += size
        return self.s.links.delays(self.s.rng, size), self.s.links.kept(self.s.rng, size)

    def _arrivals(self, msgs: tuple, copy: Any, delay: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(src, handle, dst, slot, arrival)`` of the messages kept, the timing attacks applied."""
        attack = self.s.timing_attack
        if copy is not None or attack.kind == "delay":
            byz = self.s.is_byzantine[msgs[0]]
            if copy is not None:
                delay[byz] += copy[byz] * 1e-6
            if attack.kind == "delay":
                delay[byz] += attack.value
        if not kept.all():
            msgs, delay = tuple(x[kept] for x in msgs), delay[kept]
        return (*msgs, self.env.now + delay)

    def _enqueue(self, src: np.ndarray, handle: np.ndarray, dst: np.ndarray, slot: np.ndarray, arrive: np.ndarray, *,
                 hold: bool = False) -> np.ndarray:
        """Messages sent now that arrive at ``arrive``, in flight (in this order; ``hold``: see
        :meth:`InFlight.push`); their handles."""
        now = self.env.now
        self._flight.push(arrive, Deliveries(dst, slot, src, np.full(dst.size, now), handle), hold=hold)
        self._arm()
        return handle

    # --- deliveries -------------------------------------------------------------------------
    def _settle(self, t: float, *, strict: bool = False, sent_before: float = -math.inf) -> None:
        """Move the messages arrived by ``t`` (see :meth:`InFlight.pop`) to the pending deliveries;
        those whose recipient is offline are lost."""
        got = self._flight.pop(t, strict=strict, sent_before=sent_before)
        if not len(got):
            return
        on = self.online[got.dst]
        if not on.all():
            self._handles.release(got.handle[~on])
            got = got.take(on)
        if self._dynamic:
            got = Deliveries(got.dst, self._dyn_slots_of(got), got.src, got.sent_at, got.handle)
        elif self._fresh is not None:
            self._fresh[got.dst, got.slot] = True
        self._pending.append(got)
        if self._wait:
            self._wake_waiting(np.unique(got.dst))

    def _dyn_slots_of(self, got: Deliveries) -> np.ndarray:
        """Epidemic inboxes: one slot per sender, the least recently written evicted when full (in
        arrival order, message by message: the eviction order is sequential)."""
        cap, out = self.s.idx.shape[1], np.empty(len(got), dtype=np.int64)
        for j, (d, src) in enumerate(zip(got.dst.tolist(), got.src.tolist())):
            slots = self._dyn_slots[d]
            if src in slots:
                sl = slots.pop(src)
            elif len(slots) < cap:
                sl = len(slots)
            else:
                sl = slots.pop(next(iter(slots)))
            slots[src] = out[j] = sl
            if self._wait:
                self._fresh_sets[d].add(src)
        return out

    # --- aggregate --------------------------------------------------------------------------
    def _queue_aggregate(self, nodes: np.ndarray) -> None:
        if nodes.size == 0:
            return
        if not self._agg_batch:
            self._at(self.env.now, _AGGREGATE, self._aggregate_flush)
        self._agg_batch.append(nodes)

    def _aggregate_flush(self, _ev) -> None:
        nodes = np.sort(np.concatenate(self._agg_batch))
        self._agg_batch = []
        if self.stopped:
            return
        nodes = nodes[self.online[nodes]]
        self._settle(self.env.now)
        deliveries = Deliveries.concat(self._pending)
        self._pending = []
        self.kernel.aggregate(nodes, deliveries, self.env.now)
        self._handles.keep_latest(deliveries, self._slot_handle, self.s.compiled)
        if self._wait:
            self._fresh_clear(nodes)
        self.activations += int(self.s.counted[nodes].sum())
        r = self.activations // self._counted_total
        if r > self.round:
            self.round = r
            online = None if self.s.churn is None else self.online.copy()
            stop = self.kernel.progress(r, self.env.now, self.messages, online)
            self.messages = 0
            if stop or (not self.duration and r >= self.rounds):
                self.stopped = True

    # --- state (checkpoints) ------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, scalars)``: this engine's state between two instants (see :mod:`.events_state`)."""
        from .events_state import engine_state

        return engine_state(self)

    def restore(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        """Continue from :meth:`state`'s result (a freshly built engine with the same setup, before :meth:`run`)."""
        from .events_state import restore_engine

        restore_engine(self, arrays, scalars)

    # --- run --------------------------------------------------------------------------------
    def run(self, kernel: Any) -> float:
        """Run with ``kernel`` (``compute``, ``aggregate``, ``progress``); return the final time."""
        self.kernel = kernel
        if not self.resumed:
            for i in range(self.n):
                self._spawn(i)
            if self.s.churn is not None:
                self._churn_proc = self.env.process(self._churn())
        limit = self.duration if self.duration else math.inf
        idle_round = self.round
        while not self.stopped and self.env.peek() <= limit:
            self.stepping = True
            self.env.step()
            self.stepping = False
            self.events += 1
            if self.round != idle_round and self.on_idle is not None and not self.stopped and self.env.peek() > self.env.now:
                idle_round = self.round  # between instants: nothing of this instant is left to do
                self.on_idle(self.round)
        if self._later and self.duration and not self.stopped:
            self._drain(None, until=limit)  # the wake-ups up to the limit (they only queue a completion after it)
        if self.duration and not self.stopped and self.env.now < self.duration:
            self.env.run(until=self.duration)  # advance the clock to the limit (no event there is processed)
        return float(self.env.now)
