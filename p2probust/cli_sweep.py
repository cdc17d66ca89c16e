"""The sweep commands of the CLI: ``sweep`` and ``table`` (``heatmap`` of a sweep is in :mod:`p2probust.cli_viz`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def register(main: click.Group, user_errors) -> None:
    """Add the sweep commands to the ``p2probust`` group."""
    main.add_command(_sweep_command(user_errors))
    main.add_command(_table_command(user_errors))


def _sweep_command(user_errors) -> click.Command:
    @click.command()
    @click.argument("grid_file", type=click.Path(dir_okay=False))
    @click.option("--out", default=None, help="sweep folder [default: sweeps/<grid file name>]; rerun to resume")
    @click.option("--workers", type=click.IntRange(min=1), default=None,
                  help="parallel runs [default: one per core]; torch threads per run = cores // workers")
    @click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                  help="a local process pool, or Ray tasks (pip install 'p2probust[ray]')")
    @click.option("--address", default=None, help="Ray cluster: auto or HOST:PORT [default: start a local Ray]")
    @click.option("--retry-failed", is_flag=True, help="run again the runs indexed as failed")
    @click.option("--max-runs", type=click.IntRange(min=1), default=10_000, show_default=True,
                  help="refuse grids that expand to more runs")
    @click.option("--no-batch", is_flag=True,
                  help="run every seed as its own simulation [default: the seeds of a point run as one batched simulation]")
    @click.option("--dry-run", is_flag=True, help="print the number of runs, the memory per run and the plan; run nothing")
    @user_errors
    def sweep(grid_file, out, workers, executor, address, retry_failed, max_runs, no_batch, dry_run):
        """Run a grid of simulations: GRID_FILE is a run TOML plus [grid] lists, seeds, [[include]]
        and [[exclude]]. Each run gets runs/<config hash>/ in the sweep folder and a row in its
        index.sqlite; rerunning the same command skips finished runs."""
        from .sweep import plan_sweep, run_sweep

        out = out or str(Path("sweeps") / Path(grid_file).stem)
        plan = plan_sweep(grid_file, out, workers=workers, retry_failed=retry_failed, max_runs=max_runs, batch=not no_batch)
        if executor == "ray" and not dry_run:
            from .sweep.executors import connect_ray

            connect_ray(address, plan.workers * plan.threads)  # an unreachable cluster fails before anything runs
        for line in plan.lines():
            click.echo(line)
        if dry_run:
            return
        counts = run_sweep(grid_file, out, workers=workers, executor=executor, address=address,
                           retry_failed=retry_failed, max_runs=max_runs, progress=sys.stderr.isatty(), batch=not no_batch)
        done = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to run"
        click.echo(f"sweep {out}: {done}; index in {Path(out) / 'index.sqlite'}")

    return sweep


def _table_command(user_errors) -> click.Command:
    @click.command()
    @click.argument("sweep_dir", type=click.Path(exists=True, file_okay=False))
    @click.option("--rows", default="rule", show_default=True, help="key(s) of the rows, comma separated")
    @click.option("--cols", default="", help="key(s) of the columns, comma separated")
    @click.option("--metric", default="accuracy", show_default=True, help="final metric of each run")
    @click.option("--worst-over", default=None, help="key to take the worst case over, e.g. attack")
    @click.option("--tune", default="", help="keys to choose per cell by the best worst case (ByzFL's rule), e.g. train.lr")
    @click.option("--where", multiple=True, metavar="KEY=VALUE", help="keep only these runs, repeatable")
    @click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
    @click.option("--percent", is_flag=True, help="show the metric × 100")
    @user_errors
    def table(sweep_dir, rows, cols, metric, worst_over, tune, where, fmt, percent):
        """Print a table of a sweep: mean ± std over seeds per cell, optionally the worst case over
        attacks and the hyperparameters that maximise it."""
        from .sweep.results import filter_rows, read_index, table_text

        df = filter_rows(read_index(sweep_dir), where)
        click.echo(table_text(df, metric, _split(rows), _split(cols), worst_over=worst_over, tune=_split(tune),
                              fmt=fmt, scale=100.0 if percent else 1.0, digits=1 if percent else 3), nl=False)

    return table


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
