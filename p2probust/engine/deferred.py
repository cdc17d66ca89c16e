"""Node events kept out of simpy's queue when nothing else can come between them (issue 15).

Without churn, without the ``wait`` clock and with a constant compute time, a node's wake-up
does nothing but start its compute: it draws nothing, reads nothing that can change, and the
completion it queues is known when the wake-up itself is queued. So the engine keeps its node
events in a queue of its own, of entries ``(time, insertion number, node)`` (one per node: the
event its process waits for), and puts one simpy event (:meth:`DeferredEvents._drain`)
at each instant where a compute completes. That event processes every queued node event up to
its instant in queue order, each at its own time (simpy's ``now`` is set to it), exactly as simpy
would have: the insertion numbers are given in processing order, as simpy's are, and no other
event of the same priority exists in this mode (compute and aggregate flushes come after, at
priorities 2 and 3; node starts come before, urgent, at time 0). Every random draw therefore
happens in the same order as with one simpy event per node event, and every run gives the same
bits and counts the same events. A Poisson round at n = 1000 processes about 1,500 node events;
instead of one simpy step each, about a dozen drains process them, in batches.

A drain of many events advances them in one vectorized pass (:meth:`DeferredEvents._advance`):
the wake-ups' completions, the completions' next gaps (one draw of all of them; a node that does
not train draws its messages' delays in between, where its event would have), their next
wake-ups; with :mod:`p2probust.jit.engine` (``AsyncSetup.compiled``) all but the draws in one
compiled pass.
"""

from __future__ import annotations

import heapq

import numpy as np
from simpy.events import NORMAL

from .node_process import COMPUTE, WAKE

_VECTOR_MIN = 8  # a drain of fewer events processes them one by one


class DeferredEvents:
    """The engine's own queue of node events (a mixin of :class:`~p2probust.engine.events.AsyncEngine`;
    it uses the node process's ``_phase``, ``_wake``, ``_gap``, ``_resumed`` and the engine's
    ``_finish_compute``, ``_join_compute_flush``, ``_at``).

    The queue is a heap of ``(time, insertion number, node)`` for events queued one by one, and
    runs of arrays for those queued by a vectorized pass (one run per pass, sorted by time and
    insertion number when made); a drain takes what is due from both and merges it in order. In
    this mode ``_phase`` and ``_wake`` are numpy arrays, which a pass reads and writes at once."""

    _MAX_RUNS = 16  #: more runs than this are merged into one

    def _init_deferred(self, on: bool) -> None:
        self._later: list[tuple[float, int, int]] | None = [] if on else None
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (time, insertion number, node)
        self._seq = 0  # the next insertion number
        self._drains: set[float] = set()  # instants with a drain event in simpy's queue
        self._const = np.asarray(self._const_compute, dtype=np.float64) if on else None
        self._phase = np.full(self.n, WAKE, dtype=np.int64) if on else [WAKE] * self.n  # engine/node_process.py
        self._wake = np.zeros(self.n) if on else [0.0] * self.n

    def _defer(self, i: int, t: float) -> None:
        """Queue node ``i``'s event at ``t``; make sure a drain stands at the instant that depends
        on it: its compute completion (for a wake-up, the completion it starts)."""
        heapq.heappush(self._later, (t, self._seq, i))
        self._seq += 1
        due = t if self._phase[i] == COMPUTE else t + self._compute_delay(i, t)
        self._drain_at([due])

    def _drain_at(self, times: list[float]) -> None:
        for t in times:
            if t not in self._drains:
                self._drains.add(t)
                self._at(t, NORMAL, self._drain)

    def queued(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every queued node event, ``(time, insertion number, node)`` in queue order (a checkpoint)."""
        return self._merged(list(zip(*sorted(self._later))) if self._later else [], self._runs)

    def restore_queued(self, time: np.ndarray, seq: np.ndarray, node: np.ndarray) -> None:
        """Put back what :meth:`queued` returned."""
        self._later, self._runs = [], [(time, seq, node)] if time.size else []

    @staticmethod
    def _merged(heap_part: list, runs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = ([tuple(np.array(c) for c in heap_part)] if heap_part else []) + list(runs)
        if not parts:
            return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if len(parts) == 1:
            return parts[0]
        time, seq, node = (np.concatenate(c) for c in zip(*parts))
        order = np.lexsort((seq, time))
        return time[order], seq[order], node[order]

    def _due(self, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Remove and return the queued events at or before ``limit``, in queue order (None: none)."""
        later, popped = self._later, []
        while later and later[0][0] <= limit:
            popped.append(heapq.heappop(later))
        prefixes, kept = [], []
        for run in self._runs:
            cut = int(run[0].searchsorted(limit, side="right"))
            if cut:
                prefixes.append(tuple(c[:cut] for c in run))
            if cut < run[0].size:
                kept.append(tuple(c[cut:] for c in run))
        self._runs = kept
        if not popped and not prefixes:
            return None
        return self._merged(list(zip(*popped)) if popped else [], prefixes)

    def _drain(self, _ev, until: float | None = None) -> None:
        """Process the queued node events up to now (or ``until``) in their order. Each counts as
        an event; the simpy event that called this one does not. Events queued while draining lie
        at or after now, after every event drained with them (wake-ups queued before now were
        drained at their completion's instant), so batch by batch is queue order."""
        env = self.env
        now = env._now
        limit = now if until is None else until
        while (batch := self._due(limit)) is not None:
            times, _, nodes = batch
            self.events += nodes.size
            if nodes.size >= _VECTOR_MIN and until is None:
                self._advance(times, nodes)
                continue
            for t, i in zip(times.tolist(), nodes.tolist()):
                env._now = t
                self._resumed(i)
            env._now = now
        self._drains.discard(now)
        self.events -= until is None

    def _advance(self, times: np.ndarray, nodes: np.ndarray) -> None:
        """The events of ``nodes`` at ``times`` (queue order: wake-ups up to now, completions now)
        in one pass: what :meth:`~p2probust.engine.node_process.NodeProcess._resumed` does to
        each, vectorized; the nodes' next events go in as one run."""
        now = self.env._now
        done = self._phase[nodes] == COMPUTE
        ended = nodes[done]
        gaps = self._gaps_after_compute(ended) if ended.size else np.zeros(0)
        if self.s.compiled is not None:  # the rest in one compiled pass (p2probust.jit.engine)
            child, seq, moved, due = self.s.compiled.advance(times, nodes, done, gaps, now, self._phase, self._wake,
                                                            self._const, self.s.tick, self._seq, COMPUTE, WAKE)
            self._queue_run(child, seq, moved, nodes.size)
            self._drain_at(sorted(set(due.tolist())))
            return
        child, phase = times.copy(), np.full(nodes.size, COMPUTE)  # each event queues the node's next
        up = ~done  # wake-ups: their compute
        child[up] += self._compute_delays(nodes[up], times[up])
        if ended.size:
            wake = np.maximum(self._wake[ended] + gaps, now)
            self._wake[ended] = wake
            asleep = wake > now  # until the wake-up; the others compute again at once
            child[done] = np.where(asleep, now + (wake - now), now + self._compute_delays(ended, now))
            phase[done] = np.where(asleep, WAKE, COMPUTE)
        self._phase[nodes] = phase
        order = np.argsort(child, kind="stable")  # by time, then insertion number
        self._queue_run(child[order], self._seq + order, nodes[order], nodes.size)
        waking = phase == WAKE
        child[waking] += self._compute_delays(nodes[waking], child[waking])
        self._drain_at(sorted(set(child.tolist())))

    def _queue_run(self, time: np.ndarray, seq: np.ndarray, node: np.ndarray, count: int) -> None:
        """Queue a run of events sorted by time then insertion number (the next ``count`` numbers)."""
        self._seq += count
        self._runs.append((time, seq, node))
        if len(self._runs) > self._MAX_RUNS:
            self._runs = [self._merged([], self._runs)]

    def _gaps_after_compute(self, nodes: np.ndarray) -> np.ndarray:
        """The next gap of each of ``nodes`` (in order), whose compute finished now; a node that
        does not train sends its model first: its delay and drop draws come between the others'
        gap draws, its messages go in flight with the others' after the loop, in the same order
        (nothing reads them before)."""
        trains = self.s.trains[nodes]
        if trains.any():
            self._join_compute_flush(nodes[trains].tolist())
        senders = np.flatnonzero(~trains)
        if self._dynamic:  # epidemic push draws its peers too: one by one
            return self._gaps_between(nodes.size, senders, lambda m: self._finish_compute(int(nodes[senders[m]])))
        src, handle, dst, slot = self._outgoing(nodes[senders], np.full(senders.size, -1))
        owner = np.repeat(np.arange(senders.size), self.s.mask[nodes[senders]].sum(1))
        (*msgs, owner), copy = self._copies(src, handle, dst, slot, owner)
        ends = np.concatenate([[0], owner.searchsorted(np.arange(senders.size), side="right")])  # each sender's messages
        draws = []
        gaps = self._gaps_between(nodes.size, senders, lambda m: draws.append(self._link_draws(int(ends[m + 1] - ends[m]))))
        if draws:
            self._enqueue(*self._arrivals(tuple(msgs), copy, *(np.concatenate(c) for c in zip(*draws))), hold=True)  # with this instant's compute flush
        return gaps

    def _gaps_between(self, size: int, marks: np.ndarray, at_mark) -> np.ndarray:
        """``size`` gaps drawn in order, calling ``at_mark(m)`` before the gap of position ``marks[m]``."""
        gaps = np.empty(size)
        start = 0
        for m, j in enumerate(marks.tolist() + [size]):
            gaps[start:j] = self._gap(False, j - start)
            if j < size:
                at_mark(m)
            start = j
        return gaps

    def _compute_delays(self, nodes: np.ndarray, now) -> np.ndarray:
        """:meth:`~p2probust.engine.node_process.NodeProcess._compute_delay` of ``nodes`` at times ``now``."""
        c = self._const[nodes]
        tick = self.s.tick
        return np.ceil((now + c) / tick - 1e-9) * tick - now if tick > 0 else c

