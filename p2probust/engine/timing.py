"""How long things take: compute time per local step (with stragglers) and link delay / drops.

Everything here is numpy on integer node ids; every draw comes from the engine's random stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .specs import Dist, StragglerSpec


@dataclass(frozen=True)
class ComputeModel:
    """Duration of a node's local steps: ``local_steps`` draws of ``dist`` per activation, times
    ``factor[i]`` (``stragglers.factor`` for a ``stragglers.fraction`` of the nodes, else 1).

    Attributes
    ----------
    dist : Dist
        Duration of one local step.
    local_steps : int
    factor : ndarray [n]
        Slow-down of each node (drawn once per run by :meth:`build`).
    """

    dist: Dist
    local_steps: int
    factor: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, dist: Dist, local_steps: int, stragglers: StragglerSpec, n: int, rng: np.random.Generator):
        factor = np.ones(n)
        count = int(round(stragglers.fraction * n))
        if count:
            factor[rng.choice(n, count, replace=False)] = stragglers.factor
        return cls(dist, local_steps, factor)

    @property
    def uniform(self) -> bool:
        """True when every node always takes the same time (``local_steps × dist.a``)."""
        return self.dist.constant and bool((self.factor == 1).all())

    def draw(self, rng: np.random.Generator, nodes: np.ndarray) -> np.ndarray:
        """Compute time of one activation of each of ``nodes`` (float64 seconds)."""
        if self.dist.constant:
            return np.full(nodes.shape, self.local_steps * self.dist.a) * self.factor[nodes]
        return self.dist.sample(rng, (nodes.size, self.local_steps)).sum(1) * self.factor[nodes]


@dataclass(frozen=True)
class LinkModel:
    """Per-message delay ``latency + message_bytes / bandwidth (+ extra)`` and drop probability.

    Attributes
    ----------
    latency : Dist
    bandwidth : float
        Bytes per second (``inf``: no transfer time).
    drop : float
        Probability that a message is lost.
    message_bytes : int
        Size of one model message (``d × dtype size``).
    """

    latency: Dist
    bandwidth: float = float("inf")
    drop: float = 0.0
    message_bytes: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.drop < 1:
            raise ValueError(f"drop probability {self.drop!r} must be in [0, 1)")

    @property
    def transfer(self) -> float:
        return self.message_bytes / self.bandwidth if self.bandwidth != float("inf") else 0.0

    @property
    def constant(self) -> bool:
        return self.latency.constant and self.drop == 0

    def delays(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` message delays (seconds)."""
        return self.latency.sample(rng, size) + self.transfer

    def kept(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """BoolArray [size]: True for messages that are not dropped (draws nothing if drop = 0)."""
        if self.drop == 0:
            return np.ones(size, dtype=bool)
        return rng.random(size) >= self.drop
