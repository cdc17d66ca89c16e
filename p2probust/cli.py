"""The ``p2probust`` command line: ``run``, ``plot``, ``list``.

Bad input exits with code 2 and one line naming the value and what is allowed.
"""

from __future__ import annotations

import logging
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable

import click

from .cli_options import RUN_OPTIONS, overrides_from_flags, run_options
from .registry import FAMILIES, PluginError
from .viz import LAYOUTS

__all__ = ["RUN_OPTIONS", "main"]


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r} must look like key=value")
    key, value = text.split("=", 1)
    for conv in (int, float):
        try:
            return key.strip(), conv(value)
        except ValueError:
            pass
    low = value.strip().lower()
    if low in ("true", "false"):
        return key.strip(), low == "true"
    return key.strip(), value.strip()


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def user_errors(func: Callable) -> Callable:
    """Turn invalid-input exceptions into one line on stderr and exit code 2, a signal into one
    line and exit code 128 + signal, a failed write into one line and exit code 4."""
    from .recorder import RecordError
    from .signals import Interrupted, stop_on_signals
    from .status import EXIT_CODES

    @wraps(func)
    def wrapper(*args, **kwargs):
        with stop_on_signals(restore=False):
            try:
                return func(*args, **kwargs)
            except (ValueError, FileNotFoundError, NotADirectoryError, TypeError) as err:
                _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
            except RecordError as err:
                click.echo(f"failed: {err.strerror}; the rows written so far are whole", err=True)
                sys.exit(EXIT_CODES["failed"])
            except KeyboardInterrupt as err:
                name = err.name if isinstance(err, Interrupted) else "SIGINT"
                click.echo(f"interrupted by {name}: the rows computed so far are in metrics.csv", err=True)
                sys.exit(err.exit_code if isinstance(err, Interrupted) else 130)

    return wrapper


class OneLineErrors(click.Group):
    """A click group whose usage errors (unknown flag, bad choice, wrong type) are one line on
    stderr and exit code 2, like every other invalid input; help and ``--version`` are unchanged."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:  # bare `p2probust`: the help text
            err.show()
            sys.exit(err.exit_code)
        except click.UsageError as err:
            _fail(err.format_message())
        except PluginError as err:  # a broken plugin met while building help or choices
            _fail(str(err))
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="p2probust")
def main() -> None:
    """p2probust: simulate serverless peer-to-peer learning under Byzantine attack."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML experiment file; flags override its values")
@run_options
@click.option("--topology-param", multiple=True, metavar="KEY=VALUE", help="topology parameter, repeatable (e.g. h=3 for two-worlds)")
@click.option("--task-param", multiple=True, metavar="KEY=VALUE", help="task parameter, repeatable (e.g. hidden=128, dim=50)")
@click.option("--attack-param", multiple=True, metavar="KEY=VALUE", help="attack parameter, repeatable (e.g. scale=10)")
@click.option("--rule-param", multiple=True, metavar="KEY=VALUE", help="rule parameter, repeatable")
@click.option("--record-nodes", metavar="every=K[,max_nodes=M]", default=None,
              help="per-node values every K rounds into nodes.npz (a seeded sample beyond M nodes, default 1000)")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar and no placement report")
@click.option("--overwrite", is_flag=True, help="clear an existing run folder at --out first")
@click.option("--dry-run", is_flag=True, help="print the resolved config, the graph and the memory estimate; run nothing")
@click.option("--resume", "resume_dir", metavar="RUN_DIR", default=None,
              help="continue the run in RUN_DIR from its last checkpoint (see --checkpoint-every); no other run flags")
@user_errors
def run(config_path: str | None, topology_param: tuple[str, ...], task_param: tuple[str, ...],
        attack_param: tuple[str, ...], rule_param: tuple[str, ...], record_nodes: str | None, quiet: bool,
        overwrite: bool, dry_run: bool, resume_dir: str | None, **flags: Any) -> None:
    """Run one simulation and write its run folder (config.json, metrics.csv, timing.csv,
    summary.json, params.pt; nodes.npz and graph.json with --record-nodes).

    With no flags: 16 nodes on a 4×4 torus learning the bundled digits with logistic regression,
    2 Byzantine nodes sending sign-flipped models, trimmed-mean gossip, 100 rounds.

    With --resume RUN_DIR: continue a run started with --checkpoint-every from its last checkpoint.

    Exit codes: 0 completed, 2 bad input, 3 diverged, 4 failed (e.g. disk full), 128 + signal
    when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
    """
    from .checkpoint import resume as pr_resume
    from .config import from_overrides, load_config
    from .simulation import default_out_dir, simulate

    if resume_dir is not None:  # the config is the run's own; any other flag would change it
        if any((config_path, topology_param, task_param, attack_param, rule_param, record_nodes, overwrite, dry_run,
                *(v is not None for v in flags.values()))):
            raise ValueError("--resume RUN_DIR continues a run with the config in its config.json; give no other run flags (only --quiet)")
        _setup_logging(quiet)
        return _finish(pr_resume(resume_dir, progress=not quiet and sys.stderr.isatty()), Path(resume_dir))
    overrides = overrides_from_flags(flags)
    if topology_param:
        overrides["topology.params"] = dict(_param(p) for p in topology_param)
    if task_param:
        overrides["data.params"] = dict(_param(p) for p in task_param)
    if attack_param:
        overrides["attack.params"] = dict(_param(p) for p in attack_param)
    if rule_param:
        overrides["rule.params"] = dict(_param(p) for p in rule_param)
    if record_nodes is not None:
        from .node_recorder import parse_record_spec

        overrides.update(parse_record_spec(record_nodes))
    cfg = load_config(config_path, overrides) if config_path else from_overrides(overrides)
    _setup_logging(quiet)
    if dry_run:
        from .dryrun import describe_run

        for line in describe_run(cfg):
            click.echo(line)
        return
    out = Path(cfg.out) if cfg.out else default_out_dir(cfg)
    try:
        result = simulate(cfg, out=out, overwrite=overwrite, progress=not quiet and sys.stderr.isatty())
    except BaseException:
        if not cfg.out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the default folder made for a run that never started
        raise
    _finish(result, out)


def _finish(result, out: Path) -> None:
    """The console's closing lines of a run, and its exit code."""
    from .status import EXIT_CODES, describe

    click.echo(final_line(result.summary))
    click.echo(f"results written to {out}")
    if (status := result.summary["status"]) != "completed":
        click.echo(f"{describe(result.summary)} (status {status!r} in summary.json)", err=True)
        sys.exit(EXIT_CODES.get(status, 1))


_FINAL_LABELS = (
    ("accuracy", "accuracy of the averaged honest model"), ("node_acc_mean", "honest node accuracy: mean"),
    ("node_acc_min", "min"), ("consensus_distance", "consensus distance"), ("dist_to_opt", "distance to optimum"),
)


def final_line(summary: dict[str, Any]) -> str:
    """The console's last line: averaged-model accuracy, then the mean and min of the honest nodes'
    own accuracies (what papers report), consensus distance, distance to the optimum."""
    final = summary["final"]
    parts = [f"{label} {final[k]:.4g}" for k, label in _FINAL_LABELS if final.get(k) is not None]
    return f"round {summary['rounds_done']}: " + ", ".join(parts)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (not the stream of the first
    command: under click's test runner, or a caller that swaps ``sys.stderr``, that one is gone)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("p2probust")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--metric", default="consensus_distance", show_default=True,
              help="metrics.csv column: consensus_distance, accuracy, loss, node_acc_mean, node_acc_min, dist_to_opt, ...")
@click.option("--x", "x_axis", type=click.Choice(["round", "time"]), default="round", show_default=True,
              help="x axis: rounds or simulated seconds")
@click.option("--out", default="fig.png", show_default=True, type=click.Path(dir_okay=False), help="image file to write")
@click.option("--title", default=None, help="figure title")
@click.option("--graph", "graph", is_flag=True,
              help="draw the graph of one run coloured per node at --round (metric distance, loss or accuracy; needs --record-nodes)")
@click.option("--round", "round_", type=int, default=None, help="with --graph: the recorded round [default: the last]")
@click.option("--layout", type=click.Choice(LAYOUTS), default="auto",
              show_default=True, help="with --graph: node positions (auto: grid for a torus, circular for a ring, else spring)")
@click.option("--positions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="with --layout file: JSON [[x, y], ...] or {\"id\": [x, y]}")
@click.option("--theory", is_flag=True,
              help="overlay theory: the error floor κG²/μ² on dist_to_opt, the plain-gossip envelope on consensus_distance")
@click.option("--kappa", type=float, default=None, help="with --theory: use this κ instead of the rule's bound")
@user_errors
def plot(runs: tuple[str, ...], metric: str, x_axis: str, out: str, title: str | None, graph: bool, round_: int | None,
         layout: str, positions: str | None, theory: bool, kappa: float | None) -> None:
    """Draw one metric against rounds for several run folders on one axis (or, with --graph, one run's graph)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import plot_metric, plot_theory

    if graph:
        from .cli_viz import plot_graph

        plot_graph(runs, metric, round_, layout, positions, out, title)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    plot_metric(runs, metric, x=x_axis, ax=ax)
    if theory:
        plot_theory(runs, metric, x=x_axis, ax=ax, kappa=kappa)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    click.echo(f"wrote {out}")


@main.command(name="list")
@click.argument("what", required=False, type=click.Choice(FAMILIES))
@user_errors
def list_(what: str | None) -> None:
    """List the available topologies, placements, tasks, partitions, rules, aggregators and attacks."""
    from . import registry  # importing p2probust.* registered the built-ins

    for family in [what] if what else FAMILIES:
        reg = getattr(registry, family)
        entries = list(reg)
        if not entries:
            continue
        click.echo(f"{family}:")
        width = max(len(e.name) for e in entries)
        for e in entries:
            click.echo(f"  {e.name:<{width}}  {e.description}")
            if family == "attacks":  # knowledge level and parameters (attacks issue)
                from .attacks.base import describe_attack

                click.echo(f"  {'':<{width}}    {describe_attack(e.factory)}")
        if family == "rules":
            click.echo(f"  {'<aggregator>':<{width}}  any aggregator below, used as aggregate-and-mix")


def _register_commands() -> None:
    from . import cli_kappa, cli_reproduce, cli_sweep, cli_viz

    cli_kappa.register(main, user_errors)
    cli_reproduce.register(main, user_errors)
    cli_sweep.register(main, user_errors)
    cli_viz.register(main, user_errors)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
