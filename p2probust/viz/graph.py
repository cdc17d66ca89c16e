"""The graph drawn once, node colours per recorded round: one frame of ``p2probust animate``.

Layouts: ``grid`` (a torus at its lattice positions, wrap-around links as short stubs leaving
the border; other graphs in row-major order), ``circular`` (a ring in its cyclic order),
``spring`` (seeded Fruchterman–Reingold), ``kamada`` (Kamada–Kawai), ``file`` (positions from a
JSON file: ``[[x, y], ...]`` or ``{"id": [x, y]}``) and ``auto`` (grid for a torus, circular for
a ring, spring otherwise). Edges are one faded ``LineCollection``; honest nodes one scatter
coloured on a log scale (distance, relative distance, loss) or a linear one (accuracy) with a
colour bar; Byzantine nodes red crosses, their links red; offline or unmeasured nodes grey;
unrecorded nodes (sampled out) small grey dots.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np

from .data import METRICS, Recording, color_norm

__all__ = ["LAYOUTS", "GraphFrame", "draw_graph", "layout_positions"]

LAYOUTS = ("auto", "spring", "kamada", "circular", "grid", "file")


def layout_positions(rec: Recording, layout: str = "auto", *, positions: str | Path | None = None) -> np.ndarray:
    """``[n, 2]`` node positions of ``rec.graph`` for ``layout`` (see the module docstring)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is unknown; choose one of: {', '.join(LAYOUTS)}")
    G, n = rec.graph, rec.graph.number_of_nodes()
    if layout == "auto":
        layout = "grid" if rec.grid else ("circular" if rec.topology == "ring" else "spring")
    if layout == "file":
        return _positions_file(positions, n)
    if layout == "grid":
        cols = rec.grid[1] if rec.grid else math.ceil(math.sqrt(n))
        ids = np.arange(n)
        return np.stack([ids % cols, -(ids // cols)], 1).astype(float)
    fn = {"spring": lambda: nx.spring_layout(G, seed=0), "kamada": lambda: nx.kamada_kawai_layout(G),
          "circular": lambda: nx.circular_layout(G)}[layout]
    pos = fn()
    return np.array([pos[i] for i in range(n)], dtype=float)


def _positions_file(path: str | Path | None, n: int) -> np.ndarray:
    if path is None:
        raise ValueError("layout 'file' needs a positions file (--positions FILE: JSON [[x, y], ...] or {\"id\": [x, y]})")
    data = json.loads(Path(path).read_text())
    rows = [data[str(i)] if str(i) in data else data[i] for i in range(n)] if isinstance(data, dict) else data
    pos = np.asarray(rows, dtype=float)
    if pos.shape != (n, 2):
        raise ValueError(f"positions file {str(path)!r} gives shape {list(pos.shape)}; expected {n} pairs [x, y]")
    return pos


def _edge_segments(rec: Recording, pos: np.ndarray, grid_layout: bool) -> tuple[np.ndarray, np.ndarray]:
    """``[S, 2, 2]`` line segments and ``[S]`` whether a Byzantine node is an end; torus wrap-around
    links (on the grid layout) become two border stubs."""
    edges = np.array(list(rec.graph.edges()), dtype=np.int64).reshape(-1, 2)
    a, b = pos[edges[:, 0]], pos[edges[:, 1]]
    hit = rec.byzantine[edges].any(1)
    if not grid_layout or not rec.grid:
        return np.stack([a, b], 1), hit
    diff = b - a
    wrap = (np.abs(diff) > 1.5).any(1)
    out = -np.sign(diff) * (np.abs(diff) > 1.5)  # from a, the link leaves the border away from b
    stubs_a = np.stack([a[wrap], a[wrap] + 0.4 * out[wrap]], 1)
    stubs_b = np.stack([b[wrap], b[wrap] - 0.4 * out[wrap]], 1)
    segments = np.concatenate([np.stack([a[~wrap], b[~wrap]], 1), stubs_a, stubs_b])
    return segments, np.concatenate([hit[~wrap], hit[wrap], hit[wrap]])


class GraphFrame:
    """The drawn graph of a recording; :meth:`show` recolours it for a recorded round.

    Attributes: ``edges`` (LineCollection), ``nodes`` (PathCollection of honest recorded nodes),
    ``byzantine`` (PathCollection), ``others`` (sampled-out nodes), ``colorbar``, ``title``.
    """

    def __init__(self, rec: Recording, *, metric: str = "distance", layout: str = "auto", ax=None,
                 positions: str | Path | None = None, colorbar: bool = True):
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection

        self.rec, self.metric = rec, metric
        self.values = rec.values(metric)  # [T, m]
        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 5.6))
        self.ax = ax
        pos = layout_positions(rec, layout, positions=positions)
        grid_layout = layout == "grid" or (layout == "auto" and rec.grid is not None)
        n = pos.shape[0]
        segments, attacked = _edge_segments(rec, pos, grid_layout)
        colours = np.where(attacked[:, None], [[0.84, 0.15, 0.16, 0.55]], [[0.55, 0.55, 0.55, 0.35]])
        self.edges = ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.9, zorder=1))
        size = float(np.clip(6000 / n, 12, 260))
        nodes = rec.nodes
        honest = ~rec.byzantine[nodes]
        self._cols = np.flatnonzero(honest)
        others = np.setdiff1d(np.arange(n), nodes)
        self.others = ax.scatter(pos[others, 0], pos[others, 1], s=size / 6, c="0.75", zorder=2, linewidths=0)
        label, log, cmap_name = METRICS[metric]
        norm = color_norm(self.values[:, self._cols], log, centred=metric == "relative")
        cmap = plt.get_cmap(cmap_name).with_extremes(bad="0.82")
        hp = pos[nodes[self._cols]]
        self.nodes = ax.scatter(hp[:, 0], hp[:, 1], s=size, c=np.zeros(len(hp)), cmap=cmap, norm=norm,
                                edgecolors="0.2", linewidths=0.5, zorder=3, plotnonfinite=True)
        bp = pos[np.flatnonzero(rec.byzantine)]
        self.byzantine = ax.scatter(bp[:, 0], bp[:, 1], s=size * 1.3, marker="X", c="#d62728", edgecolors="black",
                                    linewidths=0.6, zorder=4, label="Byzantine")
        self.colorbar = ax.figure.colorbar(self.nodes, ax=ax, label=label, shrink=0.85) if colorbar else None
        ax.set_aspect("equal")
        ax.autoscale_view()
        ax.margins(0.08)
        ax.set_axis_off()
        if len(bp):
            ax.legend(loc="lower right", fontsize="small", framealpha=0.8)
        self.title = ax.set_title("")

    def show(self, t: int) -> list:
        """Recolour for frame index ``t`` (of ``rec.rounds``); returns the changed artists."""
        vals = self.values[t, self._cols]
        if METRICS[self.metric][1]:  # log scale: zero is drawn as unmeasured
            vals = np.where(vals > 0, vals, np.nan)
        self.nodes.set_array(np.ma.masked_invalid(vals))
        rnd, now = int(self.rec.rounds[t]), float(self.rec.arrays["time"][t])
        name = "relative distance" if self.metric == "relative" else self.metric
        self.title.set_text(f"{self.rec.name}\n{name} · round {rnd} · simulated t = {now:.3g} s")
        return [self.nodes, self.title]


def draw_graph(rec: Recording, round_: int | None = None, *, metric: str = "distance", layout: str = "auto", ax=None,
               positions: str | Path | None = None) -> GraphFrame:
    """Draw the graph of a recorded run coloured by ``metric`` at round ``round_`` (None: last).

    Returns the :class:`GraphFrame` (its attributes are the matplotlib artists). Never calls ``show()``.
    """
    t = rec.frame(round_)
    frame = GraphFrame(rec, metric=metric, layout=layout, ax=ax, positions=positions)
    frame.show(t)
    return frame
