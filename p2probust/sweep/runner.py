"""``run_sweep``: expand a grid, skip what is done, run the rest, index every outcome.

The sweep folder holds ``grid.toml`` (a copy of the grid file), ``index.sqlite`` (see
:mod:`~p2probust.sweep.index`) and ``runs/<id>/``, one run folder per configuration named by the
hash of its resolved config. Re-running the same command resumes: runs already indexed as
``completed`` or ``diverged`` are skipped, ``failed`` ones too unless ``retry_failed``; runs that
were in flight when a sweep was killed have no index row and run again.

Batched seeds (default; ``--no-batch`` or ``batch = false`` in the grid file turn it off): the runs
of one point that differ only by seed and are still to run form one job, run as one batched
simulation (:mod:`p2probust.batched`) with byte-identical per-run folders; points that cannot be
batched (:func:`~p2probust.batched.batch_blocker`) run one by one, and the plan says which and why.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
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
    jobs: list[list[Point]] = field(default_factory=list)  #: runs grouped as they execute (a batch or one run)
    separate: dict[str, int] = field(default_factory=dict)  #: why points run unbatched → how many

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
            *self.batch_lines(),
            f"workers: {self.workers} x {self.threads} torch thread(s)",
        ]

    def batch_lines(self) -> list[str]:
        """How the runs to do are grouped: batched seeds, and the points that run separately and why."""
        batches = [job for job in self.jobs if len(job) > 1]
        if not self.grid.batch:
            return ["batched seeds: off (batch = false / --no-batch); every run is its own simulation"]
        lines = []
        if batches:
            runs = sum(len(job) for job in batches)
            low, high = min(map(len, batches)), max(map(len, batches))
            seeds = f"{low}" if low == high else f"{low}-{high}"
            lines.append(f"batched seeds: {runs} runs as {len(batches)} batched simulation(s) (one per point, "
                         f"{seeds} seeds each; memory: about that many times the estimate per run)")
        lines += [f"runs separately: {count} point(s): {reason}" for reason, count in self.separate.items()]
        return lines


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def plan_sweep(grid_file: str | Path, out: str | Path, *, workers: int | None = None, retry_failed: bool = False,
               max_runs: int = MAX_RUNS, batch: bool = True) -> Plan:
    """Expand and validate the grid and compare it with the index in ``out`` (nothing runs).
    ``batch``: False turns batched seeds off (as ``batch = false`` in the grid file)."""
    grid = load_grid(grid_file)
    if not batch:
        grid = replace(grid, batch=False)
    points = grid.points(max_runs)
    statuses = Index(out).statuses() if (Path(out) / "index.sqlite").exists() else {}
    skip = DONE + (() if retry_failed else ("failed",))
    todo = [p for p in points if statuses.get(p.run_id) not in skip]
    jobs, separate = _group(todo, grid.batch)
    cores = default_workers()
    workers = max(1, min(workers or cores, len(jobs) or 1))
    threads = max(1, cores // workers)
    return Plan(grid, points, todo, workers, threads, _largest_memory(points), jobs, separate)


def _group(todo: list[Point], batch: bool) -> tuple[list[list[Point]], dict[str, int]]:
    """The jobs of a sweep: the runs of a point that differ only by seed as one batch where
    :func:`~p2probust.batched.batch_blocker` allows, every other run alone; and why points that
    have several seeds to run cannot be batched (reason → number of points)."""
    from ..batched import batch_blocker
    from .grid import run_id

    if not batch:
        return [[p] for p in todo], {}
    points: dict[str, list[Point]] = {}
    for p in todo:
        points.setdefault(run_id(p.config.replace(seed=0)), []).append(p)
    jobs: list[list[Point]] = []
    separate: dict[str, int] = {}
    for group in points.values():
        reason = batch_blocker(group[0].config) if len(group) > 1 else None
        if reason is None:
            jobs.append(group)
        else:
            jobs += [[p] for p in group]
            separate[reason] = separate.get(reason, 0) + 1
    return jobs, separate


def run_sweep(grid_file: str | Path, out: str | Path, *, workers: int | None = None, executor: str = "local",
              address: str | None = None, retry_failed: bool = False, max_runs: int = MAX_RUNS,
              progress: bool = False, batch: bool = True) -> dict[str, int]:
    """Run every point of ``grid_file`` not yet done into the sweep folder ``out``; returns the
    number of runs per status among those run now (see the module docstring). ``batch``: False
    runs every seed as its own simulation (``--no-batch``)."""
    if executor not in ("local", "ray"):
        raise ValueError(f"--executor {executor!r} is invalid; expected local or ray")
    plan = plan_sweep(grid_file, out, workers=workers, retry_failed=retry_failed, max_runs=max_runs, batch=batch)
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

    jobs = [_job(group, root) for group in plan.jobs]
    try:
        if executor == "ray":
            run_ray(jobs, on_done, address=address, cpus=plan.workers * plan.threads, threads=plan.threads,
                    memory=lambda c: plan.memory_per_run * (len(c) if isinstance(c, list) else 1),
                    gpu=lambda c: (c[0] if isinstance(c, list) else c).get("device") == "cuda")
        elif plan.workers == 1:
            run_inline(jobs, on_done, plan.threads)
        else:
            run_pool(jobs, on_done, plan.workers, plan.threads)
    finally:
        bar.close()
        index.close()
    return counts


def _job(group: list[Point], root: Path) -> tuple[Any, Any, Any]:
    """An executor job: one run, or lists of ids, configs and folders for a batch of seeds."""
    jobs = [(p.run_id, p.config.to_dict(), str(root / "runs" / p.run_id)) for p in group]
    if len(jobs) == 1:
        return jobs[0]
    ids, configs, folders = (list(x) for x in zip(*jobs))
    return ids, configs, folders


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
    from ..topology import NeighbourTable

    def size(p: Point) -> float:
        return (p.config.topology.nodes or 16) * p.config.train.batch_size

    first: Exception | None = None
    for point in sorted(points, key=size, reverse=True)[:8]:
        cfg = point.config
        try:
            G, _, _ = place(cfg)
            return estimate_run(cfg, build_task(cfg), NeighbourTable.from_graph(G)).total
        except ValueError as err:
            first = first or err
    raise first  # type: ignore[misc]
