"""The ``wait`` clock of the asynchronous engine: a node that computed waits until ``k`` of its
neighbours sent it fresh messages (or a timeout), then aggregates.

A mixin of :class:`~p2probust.engine.events.AsyncEngine`: it uses the engine's ``s`` (setup),
``deg``, ``_fresh`` (static graph: who sent a fresh message since the last aggregation, per slot)
or ``_fresh_sets`` (epidemic: per node, the senders), ``_waiting``, ``_armed``, ``_flight``,
``_done_events``, ``_at``, ``_settle`` and ``_queue_aggregate``. The messages to a waiting node
move into its inbox at their arrival instants, with one simpy event per such instant
(:meth:`WaitClock._arm`).
"""

from __future__ import annotations

import math

import numpy as np
from simpy.events import NORMAL


class WaitClock:
    """What the ``wait`` clock adds to the engine (see the module)."""

    def _fresh_count(self, nodes: np.ndarray) -> np.ndarray:
        if self._fresh is not None:
            return self._fresh[nodes].sum(1)
        return np.array([len(self._fresh_sets[i]) for i in nodes.tolist()], dtype=np.int64)

    def _wake_waiting(self, nodes: np.ndarray) -> None:
        """``wait`` clock: waiting ``nodes`` with fresh messages from enough senders aggregate now."""
        nodes = nodes[self._waiting[nodes]]
        if nodes.size == 0:
            return
        ready = nodes[self._fresh_count(nodes) >= np.minimum(self.s.clock.k, np.maximum(self.deg[nodes], 1))]
        self._waiting[ready] = False
        self._queue_aggregate(ready)

    def _arm(self) -> None:
        """``wait`` clock: one simpy event at the next instant a message reaches a waiting node."""
        if not self._wait:
            return
        t = self._flight.first(self._waiting)
        if t < self._armed:
            self._armed = t
            self._at(t, NORMAL, self._deliver_due)

    def _deliver_due(self, _ev) -> None:
        if self.env.now >= self._armed:
            self._armed = math.inf
        self._settle(self.env.now)
        self._arm()

    def _start_wait(self, nodes: np.ndarray) -> None:
        need = np.minimum(self.s.clock.k, np.maximum(self.deg[nodes], 1)) if not self._dynamic else self.s.clock.k
        ready = self._fresh_count(nodes) >= need
        self._queue_aggregate(nodes[ready])
        wait = nodes[~ready]
        self._waiting[wait] = True
        if wait.size and self.s.clock.timeout > 0:
            self.env.timeout(self.s.clock.timeout, wait).callbacks.append(self._wait_timeout)
        self._arm()

    def _wait_timeout(self, ev) -> None:
        nodes = ev.value[self._waiting[ev.value]]
        self._waiting[nodes] = False
        self._queue_aggregate(nodes)

    def _fresh_clear(self, nodes: np.ndarray) -> None:
        if self._fresh is not None:
            self._fresh[nodes] = False
        for i in nodes.tolist():  # each aggregated node's process resumes
            if self._fresh is None:
                self._fresh_sets[i].clear()
            done = self._done_events.pop(i, None)
            if done is not None:
                done.succeed()
