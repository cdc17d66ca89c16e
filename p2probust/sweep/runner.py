"""``run_sweep``: expand a grid, skip what is done, run the rest, index every outcome.

The sweep folder holds ``grid.toml`` (a copy of the grid file), ``index.sqlite`` (see
:mod:`~p2probust.sweep.index`) and ``runs/<id>/``, one run folder per configuration named by the
hash of its resolved config. Re-running the same command resumes: runs already indexed as
``completed`` or ``diverged`` are skipped, ``failed`` ones too unless ``retry_failed``; runs that
were in flight when a sweep was killed have no index row and run again.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .executors import run_inline, run_pool, run_ray
from .grid import MAX_RUNS, Grid, Point, load_grid
from .index import Index

DONE = ("completed", "diverged")


@dataclass(frozen=True)
class Plan:
    """What a sweep will do: every point, which of them still run, and how."""

    grid: Grid
    points: list[Point]
    todo: list[Point]
    workers: int
    threads: int
    memory_per_run: float

    def lines(self) -> list[str]:
        from ..memory import human

        axes = [f"  {key}: {values}" for key, values in self.grid.axes.items()]
        extra = [f"  + {len(self.grid.include)} included point(s)"] if self.grid.include else []
        extra += [f"  - {len(self.grid.exclude)} exclusion rule(s)"] if self.grid.exclude else []
        return [
            f"{len(self.points)} runs ({len(self.points) // len(self.grid.seeds)} points x {len(self.grid.seeds)} seeds "
            f"{self.grid.seeds}); {len(self.todo)} to run, {len(self.points) - len(self.todo)} already done",
            "grid:", *axes, *extra,
            f"estimated memory per run: {human(self.memory_per_run)} (largest configuration)",
            f"workers: {self.workers} x {self.threads} torch thread(s)",
        ]


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def plan_sweep(grid_file: str | Path, out: str | Path, *, workers: int | None = None, retry_failed: bool = False,
               max_runs: int = MAX_RUNS) -> Plan:
    """Expand and validate the grid and compare it with the index in ``out`` (nothing runs)."""
    grid = load_grid(grid_file)
    points = grid.points(max_runs)
    statuses = Index(out).statuses() if (Path(out) / "index.sqlite").exists() else {}
    skip = DONE + (() if retry_failed else ("failed",))
    todo = [p for p in points if statuses.get(p.run_id) not in skip]
    cores = default_workers()
    workers = max(1, min(workers or cores, len(todo) or 1))
    threads = max(1, cores // workers)
    return Plan(grid, points, todo, workers, threads, _largest_memory(points))


def run_sweep(grid_file: str | Path, out: str | Path, *, workers: int | None = None, executor: str = "local",
              address: str | None = None, retry_failed: bool = False, max_runs: int = MAX_RUNS,
              progress: bool = False) -> dict[str, int]:
    """Run every point of ``grid_file`` not yet done into the sweep folder ``out``; returns the
    number of runs per status among those run now (see the module docstring)."""
    if executor not in ("local", "ray"):
        raise ValueError(f"--executor {executor!r} is invalid; expected local or ray")
    plan = plan_sweep(grid_file, out, workers=workers, retry_failed=retry_failed, max_runs=max_runs)
    root = Path(out)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    if Path(grid_file).resolve() != (root / "grid.toml").resolve():
        shutil.copyfile(grid_file, root / "grid.toml")
    index = Index(root)
    counts: dict[str, int] = {}
    bar = tqdm(total=len(plan.todo), desc="runs", unit="run", disable=not progress or None)
    by_id = {p.run_id: p for p in plan.todo}

    def on_done(run_id: str, outcome: dict[str, Any]) -> None:
        point = by_id[run_id]
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
        if outcome["status"] != "interrupted":
            index.record(point.values, {**outcome, "id": run_id, "config": _stored(point)})
        bar.set_postfix_str(f"{counts.get('failed', 0)} failed")
        bar.update(1)

    jobs = [(p.run_id, p.config.to_dict(), str(root / "runs" / p.run_id)) for p in plan.todo]
    try:
        if executor == "ray":
            run_ray(jobs, on_done, address=address, cpus=plan.workers * plan.threads, threads=plan.threads,
                    memory=lambda c: plan.memory_per_run, gpu=lambda c: c.get("device") == "cuda")
        elif plan.workers == 1:
            run_inline(jobs, on_done, plan.threads)
        else:
            run_pool(jobs, on_done, plan.workers, plan.threads)
    finally:
        bar.close()
        index.close()
    return counts


def _stored(point: Point) -> dict[str, Any]:
    data = point.config.to_dict()
    data.pop("out", None)
    return data


def _largest_memory(points: list[Point]) -> float:
    """The memory estimate of the largest configuration (by nodes × batch) whose graph and data can
    be built; a point that cannot be built is left to fail (and be recorded) when it runs."""
    from ..build import place
    from ..data.setup import build_task
    from ..memory import estimate_run
    from ..topology import NeighborTable

    def size(p: Point) -> float:
        return (p.config.topology.nodes or 16) * p.config.train.batch_size

    first: Exception | None = None
    for point in sorted(points, key=size, reverse=True)[:8]:
        cfg = point.config
        try:
            G, _, _ = place(cfg)
            return estimate_run(cfg, build_task(cfg), NeighborTable.from_graph(G)).total
        except ValueError as err:
            first = first or err
    raise first  # type: ignore[misc]
