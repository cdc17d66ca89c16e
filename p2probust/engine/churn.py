"""Churn and faults: which nodes are online at a simulated time.

Three mechanisms combine (a node is online when all three say so):

* on/off churn, a two-state process per node: up for an exponential time of mean ``up``, down for
  an exponential time of mean ``down``, and so on (every node starts up);
* crash-stop: a ``crash`` fraction of the nodes goes down for good at an exponential time of mean
  ``crash_time``; node-join: a ``join`` fraction starts down and comes up at an exponential time
  of mean ``join_time``;
* scripted outages ``(node, start, end)``.

The schedule is advanced in time order with vectorized numpy draws from the engine stream, so a
synchronous round costs no simpy event and no Python loop over nodes; the asynchronous engine
asks :meth:`ChurnSchedule.next_change` and wakes once per change.
"""

from __future__ import annotations

import numpy as np

from .specs import ChurnSpec


class ChurnSchedule:
    """Online state of ``n`` nodes under a :class:`~p2probust.engine.specs.ChurnSpec`.

    Parameters
    ----------
    spec : ChurnSpec
    n : int
    rng : numpy.random.Generator
        The engine stream (all draws of churn come from it, in time order).
    """

    def __init__(self, spec: ChurnSpec, n: int, rng: np.random.Generator):
        self.spec, self.n, self.rng = spec, n, rng
        self.now = 0.0
        self.up_state = np.ones(n, dtype=bool)
        self.next_toggle = rng.exponential(spec.up, n) if spec.up > 0 else np.full(n, np.inf)
        self.crash_at = np.full(n, np.inf)
        self.join_at = np.zeros(n)
        if spec.crash > 0:
            who = rng.choice(n, int(round(spec.crash * n)), replace=False)
            self.crash_at[who] = rng.exponential(spec.crash_time, who.size)
        if spec.join > 0:
            who = rng.choice(n, int(round(spec.join * n)), replace=False)
            self.join_at[who] = rng.exponential(spec.join_time, who.size)
        out = np.array(spec.outages, dtype=float).reshape(-1, 3)
        if out.size and (out[:, 0].max() >= n):
            raise ValueError(f"churn outage node {int(out[:, 0].max())} does not exist (n = {n})")
        self.out_node, self.out_start, self.out_end = out[:, 0].astype(np.int64), out[:, 1], out[:, 2]

    def advance(self, t: float) -> np.ndarray:
        """Move the on/off processes to time ``t`` (non-decreasing) and return ``online [n]``."""
        if t < self.now:
            raise ValueError(f"churn cannot go back in time from {self.now} to {t}")
        self.now = t
        while True:
            due = np.flatnonzero(self.next_toggle <= t)
            if due.size == 0:
                break
            self.up_state[due] = ~self.up_state[due]
            means = np.where(self.up_state[due], self.spec.up, self.spec.down)
            self.next_toggle[due] += self.rng.exponential(1.0, due.size) * means
        return self.online(t)

    def online(self, t: float) -> np.ndarray:
        """``online [n]`` at time ``t`` (call :meth:`advance` first for on/off churn)."""
        on = self.up_state & (self.crash_at > t) & (self.join_at <= t)
        if self.out_node.size:
            hit = (self.out_start <= t) & (t < self.out_end)
            on[self.out_node[hit]] = False
        return on

    def next_change(self) -> float:
        """The first time after :attr:`now` at which some node may change state (``inf``: never)."""
        t = self.now
        candidates = [self.next_toggle.min(initial=np.inf)]
        for times in (self.crash_at, self.join_at, self.out_start, self.out_end):
            later = times[times > t]
            candidates.append(later.min(initial=np.inf))
        return float(min(candidates))
