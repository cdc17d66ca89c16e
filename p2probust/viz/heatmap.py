"""Heatmap of honest nodes × recorded rounds: where on the graph the attack bites, and when.

Rows are the recorded honest nodes, sorted by ``order``: ``byzantine`` (hops to the nearest
Byzantine node, then id: the attack's neighbours on top) or ``community`` (seeded Louvain
communities of the graph, then id). Columns are the recorded rounds where the metric was measured.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .data import METRICS, Recording, color_norm, hops_to_byzantine

__all__ = ["ORDERS", "hop_summary", "node_order", "plot_heatmap"]

ORDERS = ("byzantine", "community")


def node_order(rec: Recording, order: str = "byzantine") -> tuple[np.ndarray, np.ndarray, str]:
    """Columns of the recorded honest nodes in display order, their group label, and the group name.

    Returns ``(cols [h], groups [h], name)``: ``cols`` index ``rec.nodes``; ``groups`` are hops to
    the nearest Byzantine node (-1: unreachable or none) or community numbers.
    """
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is unknown; choose one of: {', '.join(ORDERS)}")
    cols = np.flatnonzero(~rec.byzantine[rec.nodes])
    ids = rec.nodes[cols]
    if order == "byzantine":
        groups = hops_to_byzantine(rec.graph, rec.byzantine)[ids]
        groups = np.where(groups < 0, np.iinfo(np.int64).max, groups)
        name = "hops to nearest Byzantine"
    else:
        comms = nx.community.louvain_communities(rec.graph, seed=0)
        label = np.empty(rec.graph.number_of_nodes(), dtype=np.int64)
        for c, members in enumerate(sorted(comms, key=min)):
            label[list(members)] = c
        groups, name = label[ids], "community"
    perm = np.lexsort((ids, groups))
    groups = groups[perm]
    groups = np.where(groups == np.iinfo(np.int64).max, -1, groups)
    return cols[perm], groups, name


def plot_heatmap(rec: Recording, metric: str = "distance", *, order: str = "byzantine", ax=None,
                 colorbar: bool = True) -> dict:
    """Draw honest nodes × rounds coloured by ``metric`` (log scale for distance and loss).

    Returns ``{"mesh": QuadMesh, "colorbar": Colorbar or None, "separators": [Line2D]}``;
    never calls ``show()``.
    """
    import matplotlib.pyplot as plt

    cols, groups, name = node_order(rec, order)
    vals = rec.values(metric)[:, cols]  # [T, h]
    keep = np.isfinite(vals).any(1)
    if not keep.any():
        raise ValueError(f"metric {metric!r} was never measured per node in {rec.name!r}")
    vals, rounds = vals[keep], rec.rounds[keep]
    label, log, cmap_name = METRICS[metric]
    if log:
        vals = np.where(vals > 0, vals, np.nan)
    norm = color_norm(vals, log, centred=metric == "relative")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    edges = np.concatenate([rounds, [rounds[-1] + (rounds[-1] - rounds[-2] if len(rounds) > 1 else 1)]])
    cmap = plt.get_cmap(cmap_name).with_extremes(bad="0.85")
    mesh = ax.pcolormesh(edges, np.arange(len(cols) + 1), np.ma.masked_invalid(vals.T), cmap=cmap, norm=norm,
                         shading="flat")
    ax.invert_yaxis()
    seps = [ax.axhline(i, color="white", linewidth=1.2) for i in np.flatnonzero(np.diff(groups)) + 1]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(groups)) + 1, [len(groups)]])
    ax.set_yticks((starts[:-1] + starts[1:]) / 2)
    ax.set_yticklabels([("none" if g < 0 else str(g)) for g in groups[starts[:-1]]])
    ax.set_ylabel(f"honest nodes by {name}")
    ax.set_xlabel("round")
    ax.set_title(f"{rec.name}: {'relative distance' if metric == 'relative' else metric} per honest node")
    cbar = ax.figure.colorbar(mesh, ax=ax, label=label) if colorbar else None
    return {"mesh": mesh, "colorbar": cbar, "separators": seps}


def hop_summary(rec: Recording, round_: int | None = None) -> list[dict]:
    """Per hop distance to the nearest Byzantine node: honest node count; mean distance to the honest
    mean and mean accuracy at the last recorded round where each was measured (or at ``round_``);
    and ``relative``, the group's mean relative distance averaged over the recorded rounds."""
    cols, groups, _ = node_order(rec, "byzantine")
    relative = rec.values("relative")
    rows = []
    for g in np.unique(groups):
        sel = cols[groups == g]
        row = {"hops": int(g), "nodes": int(sel.size)}
        for metric in ("distance", "accuracy"):
            vals = rec.values(metric)[:, sel]
            have = np.flatnonzero(np.isfinite(vals).any(1))
            t = rec.frame(round_) if round_ is not None else (have[-1] if have.size else None)
            row[metric] = float(np.nanmean(vals[t])) if t is not None and np.isfinite(vals[t]).any() else None
            row[f"{metric}_round"] = int(rec.rounds[t]) if t is not None else None
        per_round = relative[:, sel]
        per_round = per_round[np.isfinite(per_round).any(1)]
        row["relative"] = float(np.nanmean(np.nanmean(per_round, 1))) if per_round.size else None
        rows.append(row)
    return rows
