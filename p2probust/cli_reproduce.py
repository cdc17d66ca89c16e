"""The ``reproduce`` command of the CLI (see :mod:`p2probust.reproduce`)."""

from __future__ import annotations

import click


def register(main: click.Group, user_errors) -> None:
    """Add ``reproduce`` to the ``p2probust`` group."""

    @main.command()
    @click.argument("name", required=False)
    @click.option("--size", type=click.Choice(["smoke", "full"]), default="full", show_default=True,
                  help="smoke: seconds, checks the pipeline; full: the published setting (minutes)")
    @click.option("--seeds", type=click.IntRange(min=1), default=None,
                  help="seeds 0..K-1 [default: the paper's count, 6]")
    @click.option("--out", default=None, type=click.Path(file_okay=False),
                  help="output folder [default: reproductions/<name>-<size>]")
    @click.option("--list", "list_", is_flag=True, help="list the reproductions and exit")
    @user_errors
    def reproduce(name, size, seeds, out, list_):
        """Reproduce a published result: run it, then write table.md (ours next to the paper's
        values or claims), its figures (PNG) and wall_time.json into --out."""
        from .reproduce import REPRODUCTIONS, get_reproduction, run_reproduction

        if list_:
            for rep in REPRODUCTIONS.values():
                click.echo(f"{rep.name:<20} {rep.title}")
            return
        if name is None:
            raise ValueError(f"give a reproduction NAME (one of: {', '.join(REPRODUCTIONS)}) or --list")
        rep = get_reproduction(name)
        cmd = f"p2probust reproduce {name} --size {size}" + (f" --seeds {seeds}" if seeds else "")
        folder = run_reproduction(rep, size=size, seeds=seeds, out=out, command=cmd)
        click.echo(f"{name}: table in {folder / 'table.md'}")
