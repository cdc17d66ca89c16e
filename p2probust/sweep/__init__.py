"""Sweeps: a grid of runs on a local process pool or a Ray cluster, resumable, indexed in SQLite,
read back as worst-case tables and heatmaps.

* :func:`load_grid` / :class:`Grid` — the grid file (a run TOML plus ``[grid]`` lists, ``seeds``,
  ``[[include]]``, ``[[exclude]]``);
* :func:`plan_sweep` / :func:`run_sweep` — what runs, and running it (``p2probust sweep``);
* :func:`read_index` — the index as a pandas DataFrame; :func:`table_text`, :func:`plot_heatmap`
  (``p2probust table``, ``p2probust heatmap``).
"""

from .grid import Grid, Point, load_grid, run_id
from .index import Index
from .results import plot_heatmap, read_index, summarize, table_text
from .runner import Plan, plan_sweep, run_sweep

__all__ = ["Grid", "Index", "Plan", "Point", "load_grid", "plan_sweep", "plot_heatmap", "read_index", "run_id",
           "run_sweep", "summarize", "table_text"]
