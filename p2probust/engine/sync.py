"""Synchronous rounds on a simpy clock: one simpy event per round, not one per node.

Every online node computes, then every message crosses its link, then every node aggregates; the
round ends when the slowest needed message has arrived (dropped messages are not waited for).
With constant compute and link times the round duration is
``local_steps × compute_time + latency + message_bytes / bandwidth``, computed by that formula so
that the simulated times match the foundation's bit for bit. With random compute or link times
the engine draws them for all nodes / edges of the round in one vectorized call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import simpy

from .churn import ChurnSchedule
from .dynamics import EdgeSampler
from .specs import TimingAttackSpec
from .timing import ComputeModel, LinkModel


@dataclass(frozen=True)
class RoundTiming:
    """Simulated duration of one synchronous round with constant times (seconds).

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


@dataclass(frozen=True)
class RoundPlan:
    """What the kernels need to run one synchronous round (integer index sets only).

    Attributes
    ----------
    round : int
    start, end : float
        Simulated time at which the round starts and ends.
    online : BoolArray [n] or None
        Nodes online during the round (None: all).
    src, dst : IntArray [E] or None
        The edges of this round's graph (None: the static neighbour table's edges).
    delivered : BoolArray [E] or None
        Per edge (in the order of ``src``/``dst``, or of the static table's edges): the message
        arrived (not dropped, both ends online). None: all arrived.
    last : bool
        True on the final round (stop by rounds or by duration).
    """

    round: int
    start: float
    end: float
    online: np.ndarray | None = None
    src: np.ndarray | None = None
    dst: np.ndarray | None = None
    delivered: np.ndarray | None = None
    last: bool = False


@dataclass
class SyncNetwork:
    """The random parts of a synchronous round; every draw comes from ``rng`` (the engine stream).

    Attributes
    ----------
    compute, links : ComputeModel, LinkModel
    src, dst : IntArray [E]
        Edges of the static graph, in the kernels' table order.
    is_byzantine : BoolArray [n]
    churn : ChurnSchedule or None
    dynamics : EdgeSampler or None
    timing_attack : TimingAttackSpec
    """

    compute: ComputeModel
    links: LinkModel
    src: np.ndarray
    dst: np.ndarray
    is_byzantine: np.ndarray
    rng: np.random.Generator
    churn: ChurnSchedule | None = None
    dynamics: EdgeSampler | None = None
    timing_attack: TimingAttackSpec = field(default_factory=TimingAttackSpec)

    @property
    def trivial(self) -> bool:
        """Constant times, no drops, no churn, no dynamics, no delay attack: the foundation's rounds."""
        return (self.compute.uniform and self.links.constant and self.churn is None and self.dynamics is None
                and self.timing_attack.kind != "delay")

    def plan(self, r: int, start: float, constant_duration: float) -> RoundPlan:
        """Draw round ``r`` starting at ``start``."""
        if self.trivial:
            return RoundPlan(r, start, start + constant_duration)
        online = self.churn.advance(start) if self.churn is not None else None
        src, dst = (self.src, self.dst) if self.dynamics is None else self.dynamics.edges(r, self.rng)
        n = self.compute.factor.size
        active = np.arange(n) if online is None else np.flatnonzero(online)
        comp = np.zeros(n)
        comp[active] = self.compute.draw(self.rng, active)
        delay = self.links.delays(self.rng, src.size) + comp[src]
        if self.timing_attack.kind == "delay":
            delay = delay + np.where(self.is_byzantine[src], self.timing_attack.value, 0.0)
        kept = self.links.kept(self.rng, src.size)
        if online is not None:
            kept &= online[src] & online[dst]
        waited = np.concatenate([delay[kept], comp[active]])
        duration = float(waited.max(initial=0.0))
        moving = self.dynamics is not None
        return RoundPlan(r, start, start + duration, online, src if moving else None, dst if moving else None,
                         None if bool(kept.all()) else kept)


class SyncEngine:
    """Drive synchronous rounds; ``on_round(r, now)`` (or ``on_plan(plan)``) runs the kernels.

    Parameters
    ----------
    rounds : int
        Number of rounds (an upper bound when ``duration`` is set).
    timing : RoundTiming
        The constant-time round (used when ``network`` is None or trivial).
    network : SyncNetwork, optional
        Random compute / link times, drops, churn, time-varying graph.
    duration : float
        Stop at this simulated time (0: no limit): the last round is the one that ends by then.

    Notes
    -----
    The callback may return ``True`` to stop early. :attr:`events` counts processed simpy events
    (O(rounds): one timeout per round plus the process bookkeeping).
    """

    def __init__(self, rounds: int, timing: RoundTiming, *, network: SyncNetwork | None = None, duration: float = 0.0):
        if rounds < 1:
            raise ValueError(f"rounds = {rounds} must be >= 1")
        self.rounds = rounds
        self.timing = timing
        self.network = network
        self.duration = duration
        self.env = simpy.Environment()
        self.events = 0
        self.next_plan: RoundPlan | None = None  #: the round after the current one, drawn as it ends (checkpoints)
        self._first: RoundPlan | None = None

    def resume_at(self, plan: RoundPlan, now: float, events: int) -> None:
        """Start at ``plan`` (a checkpoint's :attr:`next_plan`) at simulated time ``now``."""
        self.env = simpy.Environment(initial_time=now)
        self._first, self.events = plan, events

    def _plan(self, r: int) -> RoundPlan:
        start = float(self.env.now)
        if self.network is None:
            return RoundPlan(r, start, start + self.timing.duration)
        return self.network.plan(r, start, self.timing.duration)

    def _clock(self, on_plan: Callable[[RoundPlan], bool | None]):
        plan = self._first if self._first is not None else self._plan(0)
        r = plan.round
        while True:
            if self.duration and plan.end > self.duration:
                return
            exact = self.network is None or self.network.trivial  # the foundation's float arithmetic
            yield self.env.timeout(self.timing.duration if exact else plan.end - plan.start)
            nxt = None
            if r + 1 < self.rounds or self.duration:
                nxt = self._plan(r + 1)
            self.next_plan = nxt
            last = nxt is None or bool(self.duration and nxt.end > self.duration)
            if last:
                plan = RoundPlan(plan.round, plan.start, plan.end, plan.online, plan.src, plan.dst, plan.delivered, True)
            if on_plan(plan) or last:
                return
            r, plan = r + 1, nxt

    def run(self, on_round: Callable[[int, float], bool | None] | None = None, *,
            on_plan: Callable[[RoundPlan], bool | None] | None = None) -> float:
        """Run to the end; return the final simulated time."""
        if (on_round is None) == (on_plan is None):
            raise ValueError("pass exactly one of on_round(r, now) and on_plan(plan)")
        callback = on_plan if on_plan is not None else (lambda p: on_round(p.round, self.env.now))
        self.env.process(self._clock(callback))
        # step until the queue is empty: a failing callback fails the process event, and simpy
        # re-raises that failure when the event is processed (stopping at ``not proc.is_alive``
        # would swallow it)
        while self.env.peek() != float("inf"):
            self.env.step()
            self.events += 1
        return float(self.env.now)
