"""Time-varying topologies: the edges of each round, drawn from the engine stream.

* ``random-regular:degree=D`` — a fresh random D-regular graph every round (both directions);
* ``epidemic:s=S`` — every node pushes its model to S distinct peers drawn uniformly from the other
  nodes, every round (de Vos, Farhadkhani, Guerraoui, Kermarrec, Pires, Sharma, "Epidemic
  learning: boosting decentralized learning with randomized communication", NeurIPS 2023).

Edges are returned as ``(src, dst)`` integer arrays sorted by ``(dst, src)``: the order in which a
recipient's inbox slots are filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from .specs import DynamicsSpec


@dataclass(frozen=True)
class EdgeSampler:
    """Draws the directed edges ``src → dst`` of round ``r`` for ``n`` nodes."""

    spec: DynamicsSpec
    n: int

    def __post_init__(self) -> None:
        v, n = self.spec.value, self.n
        if self.spec.kind == "random-regular" and (v >= n or (v * n) % 2):
            raise ValueError(f"graph dynamics {self.spec}: a {v}-regular graph on {n} nodes needs degree < n and degree·n even")
        if self.spec.kind == "epidemic" and v >= n:
            raise ValueError(f"graph dynamics {self.spec}: s = {v} must be smaller than the number of nodes {n}")

    def edges(self, r: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(src [E], dst [E])`` of round ``r`` (``r`` is only informative: draws are sequential)."""
        n, v = self.n, self.spec.value
        if self.spec.kind == "random-regular":
            G = nx.random_regular_graph(v, n, seed=int(rng.integers(2**31)))
            e = np.asarray(G.edges(), dtype=np.int64).reshape(-1, 2)
            src, dst = np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])
        elif self.spec.kind == "epidemic":
            offsets = np.argpartition(rng.random((n, n - 1)), v - 1, axis=1)[:, :v] + 1
            src = np.repeat(np.arange(n, dtype=np.int64), v)
            dst = (src + offsets.reshape(-1)) % n
        else:
            raise ValueError("a static topology has no per-round edges")
        order = np.lexsort((src, dst))
        return src[order], dst[order]

    def peers(self, node: int, rng: np.random.Generator) -> np.ndarray:
        """Epidemic push targets of one node at one activation (asynchronous mode)."""
        offsets = rng.choice(self.n - 1, self.spec.value, replace=False) + 1
        return np.sort((node + offsets) % self.n)
