"""What a run returns: :class:`Result`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import torch


@dataclass(frozen=True)
class Result:
    """What a run returns.

    Attributes
    ----------
    config : dict
        The fully resolved configuration (as written to ``config.json``).
    history : list of dict
        One row per logged round (``round`` 0 is the initial state); evaluation columns are
        ``None`` on rounds without evaluation.
    summary : dict
        Final and best values, wall time, status (as written to ``summary.json``).
    params : Tensor [n, d]
        Final stacked parameters of every node.
    is_byzantine : BoolTensor [n]
    graph : networkx.Graph
    out_dir : Path or None
    timing : list of dict
        Wall-clock seconds since set-up at each logged round (``timing.csv``); kept out of
        ``history`` so that ``metrics.csv`` is reproducible byte for byte.
    """

    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    params: torch.Tensor
    is_byzantine: torch.Tensor
    graph: nx.Graph
    out_dir: Path | None = None
    timing: list[dict[str, Any]] = field(default_factory=list)  #: ``[{"round", "wall_s"}]``, as timing.csv

    def metric(self, name: str) -> list[tuple[int, float]]:
        """``[(round, value), ...]`` of the rounds where ``name`` was measured."""
        return [(r["round"], r[name]) for r in self.history if r.get(name) is not None]

    def final(self, name: str) -> float:
        """Last measured value of ``name``."""
        values = self.metric(name)
        if not values:
            raise KeyError(f"metric {name!r} was never measured; measured: {sorted(self.history[-1])}")
        return values[-1][1]
