"""What the drawings read from a run folder: ``nodes.npz``, ``graph.json``, ``config.json``.

:func:`load_recording` gathers them into one :class:`Recording`; :func:`hops_to_byzantine` is the
graph distance of every node to its nearest Byzantine node (one multi-source BFS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ..node_recorder import load_nodes

__all__ = ["METRICS", "Recording", "color_norm", "hops_to_byzantine", "load_recording"]

#: per-node metrics: label, log colour scale, colour map. ``relative`` is the distance divided by
#: the round's mean over the recorded honest online nodes (the consensus distance when all are
#: recorded): 1 is an average node, so the place of the attack shows even while consensus improves.
METRICS = {
    "distance": (r"distance to the honest mean $\Vert\theta_i-\bar{\theta}_H\Vert^2$", True, "viridis"),
    "relative": (r"$\Vert\theta_i-\bar{\theta}_H\Vert^2$ / consensus distance (1 = average node)", True, "RdBu_r"),
    "loss": ("test loss of the node's model", True, "viridis"),
    "accuracy": ("test accuracy of the node's model", False, "viridis"),
}


@dataclass(frozen=True)
class Recording:
    """A recorded run, read back.

    Attributes
    ----------
    name : str
        The run folder's name.
    graph : networkx.Graph
        All ``n`` nodes, labelled ``0..n-1``.
    byzantine : ndarray [n] bool
    grid : tuple (r, c) or None
        Torus shape (node ``i*c + j`` sits at row ``i``, column ``j``).
    topology : str
    arrays : dict
        ``nodes.npz``: ``round [T]``, ``time [T]``, ``nodes [m]``, ``distance / loss / accuracy
        [T, m]``, ``online [T, m]``, ``byzantine [m]``.
    config : dict
        ``config.json`` (resolved).
    """

    name: str
    graph: nx.Graph
    byzantine: np.ndarray
    grid: tuple[int, int] | None
    topology: str
    arrays: dict[str, np.ndarray]
    config: dict[str, Any]

    @property
    def rounds(self) -> np.ndarray:
        return self.arrays["round"]

    @property
    def nodes(self) -> np.ndarray:
        return self.arrays["nodes"]

    def values(self, metric: str) -> np.ndarray:
        """``[T, m]`` float, NaN where unmeasured or the node was offline."""
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r} is not recorded per node; choose one of: {', '.join(METRICS)}")
        if metric == "relative":
            dist = self.values("distance")
            mean = np.nanmean(np.where(self.arrays["byzantine"], np.nan, dist), axis=1, keepdims=True)
            scale = np.nanmax(mean) if np.isfinite(mean).any() else 0.0
            return np.where(mean > 1e-9 * scale, dist / np.where(mean > 0, mean, 1.0), np.nan)
        vals = self.arrays[metric].astype(np.float64)
        return np.where(self.arrays["online"], vals, np.nan)

    def frame(self, round_: int | None) -> int:
        """Index of the recorded round ``round_`` (None: the last one); error naming the recorded rounds."""
        if round_ is None:
            return len(self.rounds) - 1
        hits = np.flatnonzero(self.rounds == round_)
        if hits.size == 0:
            shown = ", ".join(map(str, self.rounds[:8])) + (", ..." if len(self.rounds) > 8 else "")
            raise ValueError(f"round {round_} was not recorded; recorded rounds: {shown} (last {self.rounds[-1]})")
        return int(hits[0])


def load_recording(run_dir: str | Path) -> Recording:
    """Read a run folder written with ``--record-nodes`` (one-line error otherwise)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
    arrays = load_nodes(run_dir)
    gpath = run_dir / "graph.json"
    if not gpath.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} has no graph.json: rerun it with --record-nodes every=K")
    g = json.loads(gpath.read_text())
    graph = nx.Graph()
    graph.add_nodes_from(range(int(g["n"])))
    graph.add_edges_from(map(tuple, g["edges"]))
    byz = np.zeros(int(g["n"]), dtype=bool)
    byz[g["byzantine"]] = True
    cpath = run_dir / "config.json"
    config = json.loads(cpath.read_text()) if cpath.is_file() else {}
    grid = tuple(g["grid"]) if g.get("grid") else None
    return Recording(run_dir.name, graph, byz, grid, g.get("topology", ""), arrays, config)


def hops_to_byzantine(graph: nx.Graph, byzantine: np.ndarray) -> np.ndarray:
    """``[n]`` hops from each node to its nearest Byzantine node (0 for Byzantine nodes; -1 when
    unreachable or when there is no Byzantine node)."""
    n = graph.number_of_nodes()
    hops = np.full(n, -1, dtype=np.int64)
    sources = np.flatnonzero(byzantine).tolist()
    if sources:
        for node, dist in nx.multi_source_dijkstra_path_length(graph, sources).items():
            hops[node] = dist
    return hops


def color_norm(values: np.ndarray, log: bool, *, centred: bool = False):
    """A matplotlib norm over the finite ``values``: log from the smallest value above ``max·1e-9`` to
    the max (values below, e.g. the exact consensus of a common initial model, are numerically zero
    and drawn in the lowest colour), or linear from min to max; ``centred``: log, symmetric around 1."""
    from matplotlib.colors import LogNorm, Normalize

    finite = values[np.isfinite(values)]
    if centred:  # log scale symmetric around 1
        pos = finite[finite > 0]
        r = float(np.exp(np.abs(np.log(pos)).max())) if pos.size else 2.0
        return LogNorm(vmin=1 / max(r, 1.01), vmax=max(r, 1.01), clip=True)
    if log:
        hi = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        pos = finite[finite > hi * 1e-9]
        lo = float(pos.min()) if pos.size else hi * 1e-3
        return LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10, clip=True)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
