"""The process of one node of the asynchronous engine, as a state machine whose state is data.

A node wakes on its own clock, computes its local steps for a drawn time, hands its model to the
engine (:meth:`AsyncEngine._finish_compute`: send, then aggregate or wait), and again; while
offline it waits for the next churn change. The generator holds no state of its own: the phase
(what the node waits for) and the next wake-up time live in the arrays ``_phase [n]`` and
``_wake [n]``, so that a checkpoint between instants can save them and rebuild every process at
the same point (:mod:`p2probust.engine.events_state`). The random draws (clock gaps, compute
times) are those of the plain loop this replaces, in the same order.
"""

from __future__ import annotations

import math

import numpy as np
import simpy

WAKE, OFFLINE, COMPUTE, DONE, ENDED = range(5)  # what a node's process waits for
PHASES = ("wake", "offline", "compute", "done", "ended")


class NodeProcess:
    """The node processes of :class:`~p2probust.engine.events.AsyncEngine` (a mixin: it uses the
    engine's ``env``, ``s`` (setup), ``online``, ``_wait``, ``_done_events`` and ``_finish_compute``)."""

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

    def _compute_time(self, i: int) -> float:
        if self._const_compute is not None:
            return float(self._const_compute[i])
        return float(self.s.compute.draw(self.s.rng, np.array([i]))[0])

    def _node(self, i: int, pending: simpy.Event | None = None):
        """Node ``i``'s process: wake on its clock, compute, send, aggregate (or wait), and again;
        offline, wait for the next churn change. ``pending``: resume waiting for that event."""
        ev = self._start(i) if pending is None else pending
        while ev is not None:
            yield ev
            ev = self._resumed(i)

    def _start(self, i: int) -> simpy.Event | None:
        self._wake[i] = self.env.now + self._gap(True)
        return self._top(i)

    def _top(self, i: int) -> simpy.Event | None:
        """The top of the loop: sleep until the wake time, then :meth:`_awake`."""
        wake = float(self._wake[i])
        if wake > self.env.now:
            self._phase[i] = WAKE
            return self.env.timeout(wake - self.env.now)
        return self._awake(i)

    def _awake(self, i: int) -> simpy.Event | None:
        """Offline: wait for the next churn change (or end); online: compute for a drawn time."""
        env, s = self.env, self.s
        if not self.online[i]:
            wait = s.churn.next_change() - env.now if s.churn is not None else math.inf
            if not math.isfinite(wait):
                self._phase[i] = ENDED
                return None
            self._phase[i] = OFFLINE
            return env.timeout(max(wait, 0.0))
        c = self._compute_time(i)
        if s.tick > 0:
            c = math.ceil((env.now + c) / s.tick - 1e-9) * s.tick - env.now
        self._phase[i] = COMPUTE
        return env.timeout(c)

    def _resumed(self, i: int) -> simpy.Event | None:
        """The event node ``i`` waited for in its phase happened: the next event to wait for."""
        phase = self._phase[i]
        if phase == WAKE:
            return self._awake(i)
        if phase == OFFLINE:
            self._wake[i] = self.env.now
            return self._top(i)
        if phase == COMPUTE:
            if not self.online[i]:
                return self._top(i)
            self._finish_compute(i)
            if self._wait and self.s.trains[i]:
                self._phase[i] = DONE
                done = self._done_events[i] = self.env.event()
                return done
        self._wake[i] = max(float(self._wake[i]) + self._gap(False), self.env.now)
        return self._top(i)

