"""Learning runs for the reproductions of results 2 and 4: one :func:`p2probust.simulate` per cell,
cached as JSON so that an interrupted reproduction resumes where it stopped.

Each cell's run config is the reproduction's ``[base]`` table with the cell's dotted-key changes
(:func:`cell_config`); :func:`cached_run` runs it (or reads ``<out>/runs/<key>.json`` when that file
holds the same config) and keeps the final accuracy of the averaged honest model, its curve, the
wall time and whatever ``extra(result)`` adds.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..config import RunConfig, from_dict
from ..config.run import _merge, _nest


def cell_config(base: Mapping[str, Any], changes: Mapping[str, Any]) -> RunConfig:
    """``base`` (nested tables, as in TOML) with the dotted-key ``changes``, validated."""
    return from_dict(_merge(copy.deepcopy(dict(base)), _nest(dict(changes))))


def cached_run(cfg: RunConfig, out: Path, key: str,
               extra: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run ``cfg`` once: ``{"accuracy", "curve", "status", "wall_seconds", **extra(result)}``,
    stored in ``out/runs/<key>.json`` and read back from there when the config is the same."""
    path = out / "runs" / f"{key}.json"
    conf = cfg.to_dict()
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("config") == json.loads(json.dumps(conf)):
            return stored
    from ..simulation import simulate

    start = time.perf_counter()
    res = simulate(cfg)
    row = {"config": conf, "accuracy": res.final("accuracy"), "curve": res.metric("accuracy"),
           "status": res.summary.get("status"), "wall_seconds": round(time.perf_counter() - start, 2)}
    if extra is not None:
        row.update(extra(res))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row) + "\n")
    return row


def group_accuracy(cfg: RunConfig, groups: Mapping[str, list[int]]) -> Callable[[Any], dict[str, float]]:
    """``extra`` for :func:`cached_run`: the test accuracy of the average model of each group of
    nodes (e.g. each clique), as the authors' ``AverageEvaluator`` over a clique."""
    from ..data.setup import build_task
    from ..metrics import Evaluator

    task = build_task(cfg)
    ds = task.dataset
    evaluator = Evaluator(task.make_model(), ds.x_test, ds.y_test, loss=task.loss, classification=task.classification)

    def extra(res) -> dict[str, float]:
        return {name: evaluator.model_metrics(res.params[torch.as_tensor(nodes)].mean(0))["accuracy"]
                for name, nodes in groups.items()}

    return extra
