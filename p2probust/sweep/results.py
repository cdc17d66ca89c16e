"""Reading a sweep: the index as a pandas DataFrame, worst-case tables, heatmaps.

The field reports robustness as the *worst case over attacks*: for each defence (and f,
heterogeneity, ...) the lowest accuracy any attack achieved, each value a mean ± std over seeds.
Hyperparameters are chosen the way ByzFL's benchmark does (ByzFL, code LPD-EPFL/byzfl, its
``benchmark`` module): for each cell, the learning rate / momentum that *maximises the worst-case*
accuracy, so a defence is not credited with a setting tuned against a weaker attack.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Sequence

from .index import VOLATILE

#: short names accepted for grid keys (``--rows rule`` means ``rule.name``)
ALIASES = {"f": "byzantine.count", "byzantine": "byzantine.count", "nodes": "topology.nodes",
           "topology": "topology.name", "rule": "rule.name", "attack": "attack.name", "task": "data.task"}
LOWER_IS_BETTER = ("loss", "consensus_distance", "dist_to_opt", "loss_gap")
_META = ("id", "status", "error", "diverged_round", "config", *VOLATILE)


def read_index(sweep_dir: str | Path, *, finished_only: bool = True):
    """The sweep's index as a ``pandas.DataFrame`` (one row per run; config keys and final metrics
    as columns). ``finished_only``: keep ``completed`` and ``diverged`` runs (not ``failed``)."""
    import pandas as pd

    path = Path(sweep_dir) / "index.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"{str(sweep_dir)!r} is not a sweep folder (no index.sqlite); run `p2probust sweep` first")
    with sqlite3.connect(path) as db:
        df = pd.read_sql_query("SELECT * FROM runs ORDER BY id", db)
    if finished_only:
        df = df[df["status"].isin(["completed", "diverged"])].reset_index(drop=True)
    return df


def resolve(df, name: str) -> str:
    """The column ``name`` stands for: itself, an alias, ``name.name``, or the one key ending in ``.name``."""
    cols = list(df.columns)
    for cand in (name, ALIASES.get(name), f"{name}.name"):
        if cand in cols:
            return cand
    ends = [c for c in cols if c.endswith("." + name)]
    if len(ends) == 1:
        return ends[0]
    keys = [c for c in cols if c not in _META]
    raise ValueError(f"no column {name!r} in the sweep; columns: {', '.join(keys)}")


def config_keys(df, metric: str) -> list[str]:
    """The grid keys: columns that are neither bookkeeping nor metrics (dotted, or ``seed``)."""
    return [c for c in df.columns if c not in _META and ("." in c or c == "seed") and c != metric]


def filter_rows(df, where: Sequence[str] = ()):
    """Keep rows with ``key=value`` for each ``where`` entry (values compared as text)."""
    for cond in where:
        if "=" not in cond:
            raise ValueError(f"--where {cond!r} must look like key=value")
        key, value = cond.split("=", 1)
        col = resolve(df, key.strip())
        df = df[df[col].astype(str) == value.strip()]
    if df.empty:
        raise ValueError(f"no finished run matches --where {' '.join(where)}")
    return df


def summarize(df, metric: str, rows: Sequence[str], cols: Sequence[str] = (), *, worst_over: str | None = None,
              tune: Sequence[str] = ()):
    """Mean and std over seeds of ``metric`` per cell, worst case over ``worst_over``, best over
    ``tune`` (keys chosen to maximise the worst case). Returns a DataFrame with the cell keys,
    ``mean``, ``std``, ``runs`` and, where they were reduced, the worst attack and the chosen values.
    Keys that vary but are not named are kept as extra row keys, never silently averaged."""
    metric = resolve(df, metric)
    rows, cols = [resolve(df, r) for r in rows], [resolve(df, c) for c in cols]
    worst = resolve(df, worst_over) if worst_over else None
    tune = [resolve(df, t) for t in tune]
    keys = [k for k in config_keys(df, metric) if k != "seed" and df[k].nunique(dropna=False) > 1]
    cell = [k for k in keys if k not in (*rows, *cols, *tune, worst)]
    rows = [*rows, *cell]
    group = [*rows, *cols, *tune] + ([worst] if worst else [])
    agg = df.groupby(group, dropna=False)[metric].agg(mean="mean", std="std", runs="count").reset_index()
    agg["std"] = agg["std"].fillna(0.0)
    low = metric.startswith(LOWER_IS_BETTER)
    worst_of, best_of = ("idxmax", "idxmin") if low else ("idxmin", "idxmax")
    if worst:  # the worst attack per cell (and per tuned setting)
        idx = getattr(agg.groupby([*rows, *cols, *tune], dropna=False)["mean"], worst_of)()
        agg = agg.loc[idx].rename(columns={worst: f"worst {worst}"})
    if tune:  # then the setting with the best worst case
        agg = agg.loc[getattr(agg.groupby([*rows, *cols], dropna=False)["mean"], best_of)()]
    return agg.reset_index(drop=True), rows, cols


def table_text(df, metric: str, rows: Sequence[str], cols: Sequence[str] = (), *, worst_over: str | None = None,
               tune: Sequence[str] = (), fmt: str = "md", scale: float = 1.0, digits: int = 2) -> str:
    """A markdown (``md``) or CSV table of :func:`summarize`: rows × cols, cells ``mean ± std``."""
    agg, rows, cols = summarize(df, metric, rows, cols, worst_over=worst_over, tune=tune)
    agg["cell"] = [f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}" for m, s in zip(agg["mean"], agg["std"])]
    notes = [c for c in agg.columns if c.startswith("worst ")] + [resolve(df, t) for t in tune]
    if notes and not cols:  # say which attack was the worst and which hyperparameters were chosen
        labels = [n.removeprefix("worst ") for n in notes]
        agg["cell"] = agg["cell"] + [" (" + ", ".join(f"{k}={v}" for k, v in zip(labels, vals)) + ")"
                                     for vals in agg[notes].itertuples(index=False)]
    if cols:
        wide = agg.pivot_table(index=rows, columns=cols, values="cell", aggfunc="first").reset_index()
        wide.columns = [" ".join(map(str, c)).strip() if isinstance(c, tuple) else str(c) for c in wide.columns]
    else:
        wide = agg[[*rows, "cell"]].rename(columns={"cell": metric + (f" (worst over {worst_over})" if worst_over else "")})
    if fmt == "csv":
        return wide.to_csv(index=False)
    if fmt != "md":
        raise ValueError(f"--format {fmt!r} is invalid; expected md or csv")
    header = "| " + " | ".join(map(str, wide.columns)) + " |"
    rule = "|" + "|".join("---" for _ in wide.columns) + "|"
    body = ["| " + " | ".join("" if v != v else str(v) for v in row) + " |" for row in wide.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def plot_heatmap(df, x: str, y: str, metric: str, *, worst_over: str | None = None, ax: Any = None,
                 cmap: str = "viridis", annotate: bool = True):
    """Heatmap of ``metric`` (mean over seeds, worst case over ``worst_over``) on ``x`` × ``y``;
    every other varying key must be fixed first (``filter_rows``). Returns the ``AxesImage``."""
    import matplotlib.pyplot as plt
    import numpy as np

    agg, rows, cols = summarize(df, metric, [y], [x], worst_over=worst_over)
    if len(rows) > 1:
        raise ValueError(f"other keys vary ({', '.join(rows[1:])}); fix them with --where KEY=VALUE")
    ycol, xcol = rows[0], cols[0]
    grid = agg.pivot_table(index=ycol, columns=xcol, values="mean")
    ax = ax if ax is not None else plt.gca()
    image = ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, origin="lower", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(v) for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(v) for v in grid.index])
    ax.set_xlabel(xcol)
    ax.set_ylabel(ycol)
    title = resolve(df, metric) + (f", worst over {worst_over}" if worst_over else "")
    ax.set_title(title)
    if annotate:
        values = grid.to_numpy(dtype=float)
        mid = np.nanmean(values)
        for (i, j), v in np.ndenumerate(values):
            if v == v:
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="white" if v < mid else "black", fontsize=8)
    ax.figure.colorbar(image, ax=ax)
    return image
