"""Synchronous rounds on a simpy clock: one simpy event per round, not one per node.

Every node computes, then every message crosses its link, then every node aggregates; the round
ends when the slowest needed message has arrived. With constant compute and link times the round
duration is ``local_steps × compute_time + latency + message_bytes / bandwidth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import simpy


@dataclass(frozen=True)
class RoundTiming:
    """Simulated duration of one synchronous round (seconds).

    Attributes
    ----------
    compute_time : float
        Time of one local step on every node.
    latency : float
        One-way link latency.
    local_steps : int
        Local steps per round.
    message_bytes : int
        Size of one model message.
    bandwidth : float
        Link bandwidth in bytes per second (``inf``: transfer time 0).
    """

    compute_time: float = 0.01
    latency: float = 0.005
    local_steps: int = 1
    message_bytes: int = 0
    bandwidth: float = float("inf")

    @property
    def duration(self) -> float:
        transfer = self.message_bytes / self.bandwidth if self.bandwidth != float("inf") else 0.0
        return self.local_steps * self.compute_time + self.latency + transfer


class SyncEngine:
    """Drive ``rounds`` synchronous rounds; ``on_round(r, now)`` runs the kernels of round ``r``.

    ``on_round`` may return ``True`` to stop early. :attr:`events` counts processed simpy events
    (O(rounds): one timeout per round plus the process bookkeeping).
    """

    def __init__(self, rounds: int, timing: RoundTiming):
        if rounds < 1:
            raise ValueError(f"rounds = {rounds} must be >= 1")
        self.rounds = rounds
        self.timing = timing
        self.env = simpy.Environment()
        self.events = 0

    def _clock(self, on_round: Callable[[int, float], bool | None]):
        for r in range(self.rounds):
            yield self.env.timeout(self.timing.duration)
            if on_round(r, self.env.now):
                return

    def run(self, on_round: Callable[[int, float], bool | None]) -> float:
        """Run to the end; return the final simulated time."""
        proc = self.env.process(self._clock(on_round))
        # step until the queue is empty: a failing callback fails the process event, and simpy
        # re-raises that failure when the event is processed (stopping at ``not proc.is_alive``
        # would swallow it)
        while self.env.peek() != float("inf"):
            self.env.step()
            self.events += 1
        return float(self.env.now)
