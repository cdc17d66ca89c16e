"""The visual commands of the CLI: ``animate``, ``heatmap`` (a recorded run, or a sweep) and
``report``; ``plot --graph`` draws through :func:`plot_graph` (see :mod:`p2probust.viz`)."""

from __future__ import annotations

from pathlib import Path

import click

from .viz import LAYOUTS, METRICS, ORDERS

RUN_METRICS = tuple(METRICS)  # per-node values of a recorded run


def plot_graph(runs, metric, round_, layout, positions, out, title) -> None:
    """``plot --graph``: one frame of ``animate`` (metric names of metrics.csv map to per-node ones)."""
    import matplotlib.pyplot as plt

    from .viz import draw_graph, load_recording

    if len(runs) != 1:
        raise ValueError(f"--graph draws one run, got {len(runs)}")
    node_metric = {"consensus_distance": "distance", "node_acc_mean": "accuracy"}.get(metric, metric)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    frame = draw_graph(load_recording(runs[0]), round_, metric=node_metric, layout=layout, ax=ax, positions=positions)
    if title:
        frame.title.set_text(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    click.echo(f"wrote {out}")


def register(main: click.Group, user_errors) -> None:
    """Add the visual commands to the ``p2probust`` group."""
    for build in (_animate_command, _heatmap_command, _report_command):
        main.add_command(build(user_errors))


def _animate_command(user_errors) -> click.Command:
    @click.command()
    @click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
    @click.option("--metric", type=click.Choice(list(METRICS)), default="distance",
                  show_default=True, help="per-node value: distance to the honest mean, that distance ÷ the round's consensus "
                  "distance, test loss or test accuracy (the last two on eval rounds)")
    @click.option("--out", default="consensus.gif", show_default=True, type=click.Path(dir_okay=False),
                  help="animation file: .gif (Pillow) or .mp4 (needs ffmpeg)")
    @click.option("--layout", type=click.Choice(LAYOUTS), default="auto",
                  show_default=True, help="node positions (auto: grid for a torus, circular for a ring, else spring)")
    @click.option("--positions", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="with --layout file: JSON [[x, y], ...] or {\"id\": [x, y]}")
    @click.option("--fps", type=float, default=5.0, show_default=True, help="frames per second")
    @click.option("--max-frames", type=int, default=120, show_default=True, help="thin the recorded rounds to this many frames")
    @user_errors
    def animate(run_dir: str, metric: str, out: str, layout: str, positions: str | None, fps: float, max_frames: int) -> None:
        """Animate a recorded run (--record-nodes): the graph, node colour = per-node value, Byzantine nodes as red crosses."""
        from .viz import animate as make_animation, load_recording

        path = make_animation(load_recording(run_dir), out, metric=metric, layout=layout, fps=fps, max_frames=max_frames,
                              positions=positions)
        click.echo(f"wrote {path}")

    return animate


def _heatmap_command(user_errors) -> click.Command:
    @click.command()
    @click.argument("folder", metavar="RUN|SWEEP", type=click.Path(exists=True, file_okay=False))
    @click.option("--metric", default=None,
                  help="a recorded run: distance (default), relative (÷ the round's consensus distance), loss or accuracy; "
                       "a sweep: a final metric (default accuracy)")
    @click.option("--order", type=click.Choice(ORDERS), default="byzantine", show_default=True,
                  help="run: row order by hops to the nearest Byzantine node, or by graph communities (seeded Louvain)")
    @click.option("--x", "x", default=None, help="sweep: key on the x axis, e.g. f")
    @click.option("--y", "y", default=None, help="sweep: key on the y axis, e.g. dirichlet_alpha")
    @click.option("--worst-over", default=None, help="sweep: key to take the worst case over, e.g. attack")
    @click.option("--where", multiple=True, metavar="KEY=VALUE", help="sweep: fix the other keys, repeatable")
    @click.option("--out", default="heatmap.png", show_default=True, type=click.Path(dir_okay=False), help="image file")
    @user_errors
    def heatmap(folder: str, metric: str | None, order: str, x: str | None, y: str | None, worst_over: str | None,
                where: tuple[str, ...], out: str) -> None:
        """Heatmap of a recorded run (--record-nodes: honest nodes × rounds, coloured by a per-node
        value) or of a sweep (a final metric over two grid keys, mean over seeds)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if (Path(folder) / "index.sqlite").is_file():
            fig = _sweep_heatmap(folder, metric, x, y, worst_over, where)
        else:
            fig = _run_heatmap(folder, metric, order)
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        plt.close(fig)
        click.echo(f"wrote {out}")

    return heatmap


def _sweep_heatmap(folder: str, metric: str | None, x: str | None, y: str | None, worst_over: str | None,
                   where: tuple[str, ...]):
    """``heatmap SWEEP``: a final metric over the grid keys ``x`` and ``y``, mean over seeds."""
    import matplotlib.pyplot as plt

    from .sweep.results import filter_rows, plot_heatmap as sweep_heatmap, read_index

    if not (x and y):
        raise ValueError(f"{folder!r} is a sweep: give --x KEY and --y KEY (e.g. --x f --y dirichlet_alpha)")
    df = filter_rows(read_index(folder), where)
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    sweep_heatmap(df, x, y, metric or "accuracy", worst_over=worst_over, ax=ax)
    return fig


def _run_heatmap(folder: str, metric: str | None, order: str):
    """``heatmap RUN``: honest nodes × rounds of a recorded run, coloured by a per-node value."""
    import matplotlib.pyplot as plt

    from .viz import load_recording, plot_heatmap

    metric = metric or "distance"
    if metric not in RUN_METRICS:
        raise ValueError(f"--metric {metric!r} is invalid for a run; expected one of: {', '.join(RUN_METRICS)}")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    plot_heatmap(load_recording(folder), metric, order=order, ax=ax)
    return fig


def _report_command(user_errors) -> click.Command:
    @click.command()
    @click.argument("runs", metavar="RUN [RUN ...]", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write")
    @click.option("--frames", type=int, default=40, show_default=True, help="frames of each embedded animation")
    @user_errors
    def report(runs: tuple[str, ...], out: str, frames: int) -> None:
        """One self-contained HTML page: config, placement, curves, heatmap, animation; a comparison for several runs."""
        from .viz.report import build_report

        click.echo(f"wrote {build_report(runs, out, frames=frames)}")

    return report
