"""Runs per hour of a seed sweep of the default 16-node setting, four ways, in one run:

* one process per run: ``p2probust run --seed S`` started once per seed (what a shell loop does);
* ``p2probust sweep --workers 1 --no-batch``: every run in one process (imports, data and compiled
  kernels paid once);
* ``p2probust sweep --workers N --no-batch``: a process pool;
* ``p2probust sweep --workers 1`` (batched seeds, the default): the 32 seeds as one simulation on
  the disjoint union of their graphs (:mod:`p2probust.batched`).

It also checks that the batched sweep's metrics.csv of every seed run once per process is byte for
byte that run's.

    python benchmarks/bench_sweep.py --seeds 32 --workers 2
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--per-process", type=int, default=8, help="seeds timed for the one-process-per-run reference")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "p2probust.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "grid.toml").write_text(f"seeds = {args.seeds}\n")
        per = [timed([*exe, "run", "--seed", str(s), "-q", "--out", f"single/{s}"], root)
                            for s in range(args.per_process)]
        per_run = sum(per) / len(per)
        rows = [("one process per run", per_run)]
        for workers in sorted({1, args.workers}):
            wall = timed([*exe, "sweep", "grid.toml", "--workers", str(workers), "--no-batch", "--out", f"sweep{workers}"], root)
            rows.append((f"p2probust sweep --workers {workers} --no-batch", wall / args.seeds))
        wall = timed([*exe, "sweep", "grid.toml", "--workers", "1", "--out", "batched"], root)
        rows.append((f"p2probust sweep --workers 1 (batched: {args.seeds} seeds, one simulation)", wall / args.seeds))
        same = _same_metrics(root, args.per_process)
    print(f"default setting (16-node torus, digits, 100 rounds), {args.seeds}-seed sweep, {os.cpu_count()} cores\n")
    print("| how | seconds per run | runs per hour | × one process per run |")
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {3600 / seconds:,.0f} | {per_run / seconds:.1f}× |")
    print(f"\nbatched metrics.csv byte-identical to the one-process runs: {same}/{args.per_process} seeds")


def _same_metrics(root: Path, seeds: int) -> int:
    """How many of the seeds run once per process have a byte-identical metrics.csv in the batched sweep."""
    from p2probust.sweep import load_grid

    ids = {p.values["seed"]: p.run_id for p in load_grid(root / "grid.toml").points()}
    return sum(filecmp.cmp(root / "single" / str(s) / "metrics.csv", root / "batched" / "runs" / ids[s] / "metrics.csv",
                           shallow=False) for s in range(seeds))


if __name__ == "__main__":
    main()
