"""The process of one node of the asynchronous engine, as a state machine whose state is data.

A node wakes on its own clock, computes its local steps for a drawn time, hands its model to the
engine (:meth:`AsyncEngine._finish_compute`: send, then aggregate or wait), and again; while
offline it waits for the next churn change. The phase (what the node waits for) and the next
wake-up time live in ``_phase [n]`` and ``_wake [n]`` (lists of Python ints and floats, faster to
read and write one at a time than numpy scalars; numpy arrays when the engine queues node events
itself and advances many at once, :mod:`~p2probust.engine.deferred`), so that a checkpoint between
instants can save them and rebuild every node at the same point
(:mod:`p2probust.engine.events_state`). The random draws (clock gaps, compute times) are those of
the plain loop this replaces, in the same order.

A node is not a ``simpy.Process``: its pending event (a timeout, or the ``wait`` clock's "done"
event) carries the node and one callback, :meth:`NodeProcess._on_event`, that advances the state
machine. It is the same queue entry a process would have made, ``(now + delay, priority,
insertion id)``, pushed at the same moment, so every event is processed in the same order as
with generator processes: a node starts with an urgent event at time 0 (simpy's ``Initialize``),
and a node whose loop ends leaves one event at that instant (a finished process's own event).
Without the generator and ``Process._resume`` around each step, the engine alone runs a Poisson
round at n = 1000 (about 1,500 events) in 9.0 ms instead of 10.6 (issue 15).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

WAKE, OFFLINE, COMPUTE, DONE, ENDED, START = range(6)  # what a node's process waits for
PHASES = ("wake", "offline", "compute", "done", "ended", "start")


class NodeProcess:
    """The node processes of :class:`~p2probust.engine.events.AsyncEngine` (a mixin: it uses the
    engine's ``env``, ``s`` (setup), ``online``, ``_wait``, ``_done_events``, ``_at`` and
    ``_finish_compute``)."""

    # --- processes --------------------------------------------------------------------------
    def _gap(self, first: bool, size: int | None = None) -> Any:
        """The time from one wake-up to the next (``first``: from 0 to the first), drawn from the
        engine's stream; ``size``: that many, as an array (the same numbers as ``size`` draws)."""
        c, rng = self.s.clock, self.s.rng
        if c.kind == "poisson":
            return float(rng.exponential(1.0 / c.rate)) if size is None else rng.exponential(1.0 / c.rate, size)
        if c.kind == "periodic" and c.period > 0 and c.jitter:
            if first:
                return c.period * c.jitter * rng.random(size)
            return c.period * (1 + c.jitter * (2 * rng.random(size) - 1))
        gap = c.period if c.kind == "periodic" and not first else 0.0
        return gap if size is None else np.full(size, gap)

    def _compute_time(self, i: int) -> float:
        if self._const_compute is not None:
            return self._const_compute[i]
        return float(self.s.compute.draw(self.s.rng, np.array([i]))[0])

    def _spawn(self, i: int) -> None:
        """Start node ``i``: an urgent event now, where ``env.process`` puts its ``Initialize``."""
        self._phase[i] = START
        self._sleep(i, 0.0, URGENT)

    def _sleep(self, i: int, delay: float, priority: int = NORMAL) -> None:
        """Node ``i`` waits ``delay``: ``env.timeout(delay)``'s queue entry (time ``now + delay``),
        pushed now, whose event carries the node and the callback :meth:`_on_event` (in the
        engine's own queue, see :meth:`_defer`, where nothing else can come between)."""
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        if self._later is not None and priority == NORMAL:  # engine/deferred.py
            self._defer(i, self.env._now + delay)
            return
        self._at(self.env._now + delay, priority, self._on_event).node = i

    def _wait_done(self, i: int) -> None:
        """``wait`` clock: node ``i`` waits for its aggregation (an untriggered event)."""
        done = self._done_events[i] = self.env.event()
        done.node = i
        done.callbacks.append(self._on_event)

    def _ended(self) -> None:
        """A node's loop ended: one event now, where a finished process puts its own."""
        self._at(self.env._now, NORMAL)

    def _on_event(self, ev: simpy.Event) -> None:
        """The event node ``ev.node`` waited for happened: advance its state machine."""
        i = ev.node
        if self._phase[i] == START:
            self._start(i)
        else:
            self._resumed(i)

    def _start(self, i: int) -> None:
        self._wake[i] = self.env._now + self._gap(True)
        self._top(i)

    def _top(self, i: int) -> None:
        """The top of the loop: sleep until the wake time, then :meth:`_awake`."""
        wake, now = float(self._wake[i]), self.env._now  # a list's float, or an array's element
        if wake > now:
            self._phase[i] = WAKE
            self._sleep(i, wake - now)
        else:
            self._awake(i)

    def _awake(self, i: int) -> None:
        """Offline: wait for the next churn change (or end); online: compute for a drawn time."""
        s, now = self.s, self.env._now
        if not self.online[i]:
            wait = s.churn.next_change() - now if s.churn is not None else math.inf
            if not math.isfinite(wait):
                self._phase[i] = ENDED
                self._ended()
                return
            self._phase[i] = OFFLINE
            self._sleep(i, max(wait, 0.0))
            return
        self._phase[i] = COMPUTE
        self._sleep(i, self._compute_delay(i, now))

    def _compute_delay(self, i: int, now: float) -> float:
        """Node ``i``'s compute time from ``now``: drawn, then rounded up to a multiple of ``tick``."""
        c = self._compute_time(i)
        if self.s.tick > 0:
            c = math.ceil((now + c) / self.s.tick - 1e-9) * self.s.tick - now
        return c

    def _resumed(self, i: int) -> None:
        """The event node ``i`` waited for in its phase happened: wait for the next one."""
        phase = self._phase[i]
        if phase == WAKE:
            self._awake(i)
            return
        if phase == OFFLINE:
            self._wake[i] = self.env._now
            self._top(i)
            return
        if phase == COMPUTE:
            if not self.online[i]:
                self._top(i)
                return
            self._finish_compute(i)
            if self._wait and self.s.trains[i]:
                self._phase[i] = DONE
                self._wait_done(i)
                return
        self._wake[i] = max(float(self._wake[i]) + self._gap(False), self.env._now)
        self._top(i)
