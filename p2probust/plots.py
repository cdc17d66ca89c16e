"""Plots of saved runs. Every function takes ``ax=`` and returns the artists; none calls ``show()``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

#: metrics drawn on a log scale
LOG_SCALE = ("consensus_distance", "dist_to_opt", "loss_gap")


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder: ``{"name", "columns": {col: [float|None]}, "config", "summary"}``."""
    run_dir = Path(run_dir)
    csv_path = run_dir / "metrics.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run folder: it has no metrics.csv")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns: dict[str, list[float | None]] = {}
    for col in (rows[0].keys() if rows else []):
        columns[col] = [float(r[col]) if r[col] not in ("", None) else None for r in rows]
    out: dict[str, Any] = {"name": run_dir.name, "path": run_dir, "columns": columns}
    for part in ("config", "summary"):
        p = run_dir / f"{part}.json"
        out[part] = json.loads(p.read_text()) if p.is_file() else {}
    return out


def plot_metric(runs: Sequence[str | Path | dict], metric: str = "consensus_distance", *, x: str = "round", ax=None,
                labels: Sequence[str] | None = None, log: bool | None = None) -> list:
    """Draw ``metric`` against ``x`` (``round`` or ``time``) for several runs on one axis.

    Parameters
    ----------
    runs : run folders or dicts from :func:`load_run`
    metric : column of ``metrics.csv`` (consensus_distance, accuracy, loss, node_acc_mean, ...)
    x : "round" or "time" (simulated seconds)
    ax : matplotlib Axes, optional (a new figure's axes if None)
    labels : legend labels, default the run folder names
    log : log scale on y; default True for distances and gaps (points <= 0 are then left out)

    Returns
    -------
    list of matplotlib.lines.Line2D
    """
    import matplotlib.pyplot as plt

    if x not in ("round", "time"):
        raise ValueError(f"x = {x!r} must be 'round' or 'time'")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    loaded = [r if isinstance(r, dict) else load_run(r) for r in runs]
    log = log if log is not None else metric in LOG_SCALE
    lines = []
    for i, run in enumerate(loaded):
        cols = run["columns"]
        if metric not in cols:
            raise ValueError(f"run {run['name']!r} has no metric {metric!r}; it has: {', '.join(cols)}")
        pts = [(a, b) for a, b in zip(cols[x], cols[metric])
               if a is not None and b is not None and math.isfinite(b) and (b > 0 or not log)]
        label = labels[i] if labels else run["name"]
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, marker="." if len(pts) < 30 else None)
        lines.append(line)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("round" if x == "round" else "simulated time (s)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return lines


def plot_theory(runs: Sequence[str | Path | dict], metric: str, *, x: str = "round", ax=None,
                kappa: float | None = None) -> list:
    """Overlay theory on :func:`plot_metric`'s axis (see :mod:`p2probust.viz.theory` for formulas and sources).

    ``metric = "dist_to_opt"``: a horizontal line at the predicted floor κ G²(θ*)/μ²;
    ``metric = "consensus_distance"``: the plain-gossip envelope Ξ_{t0} (1−γ)^{t−t0}.
    Draws in the colour of each run's line already on ``ax`` (in order); returns the new lines.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from .viz.theory import gossip_envelope, theory_floor

    if metric not in ("dist_to_opt", "consensus_distance"):
        raise ValueError(f"--theory draws on dist_to_opt (error floor) or consensus_distance (gossip envelope), not {metric!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    loaded = [r if isinstance(r, dict) else load_run(r) for r in runs]
    colours = [line.get_color() for line in ax.get_lines()]
    ylim = ax.get_ylim()  # the data's range: an envelope far below it is cut off, not allowed to squash the curves
    lines = []
    for i, run in enumerate(loaded):
        colour = colours[i] if i < len(colours) else None
        cols = run["columns"]
        xs = cols[x]
        if metric == "dist_to_opt":
            th = theory_floor(run["path"], kappa=kappa)
            lines.append(ax.axhline(th["floor"], color=colour, linestyle="--", linewidth=1.2,
                                    label=f"{run['name']}: floor κG²/μ² = {th['floor']:.3g} (κ = {th['kappa']:.3g})"))
        else:
            cd = [float("nan") if v is None else v for v in cols["consensus_distance"]]
            env, contraction = gossip_envelope(run["path"], np.asarray(cols["round"], dtype=float), np.asarray(cd))
            (line,) = ax.plot(xs, env, color=colour, linestyle=":", linewidth=1.5,
                              label=f"{run['name']}: gossip envelope (1−γ)^t, 1−γ = {contraction:.3g}")
            lines.append(line)
            ax.set_ylim(ylim[0] / 10 if ax.get_yscale() == "log" else ylim[0], ylim[1])
    ax.legend(fontsize="small")
    return lines
