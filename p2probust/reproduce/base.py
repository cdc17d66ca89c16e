"""What every reproduction shares: its description, the sizes, and the files it writes.

A reproduction is a :class:`Reproduction` (a name, the paper, the folder of its TOML files under
``experiments/papers/``, and a ``run`` function). :func:`run_reproduction` calls ``run`` with the
size and seeds, times it, and writes into the output folder:

* ``table.md`` — the tables the reproduction returns (ours, the published value or claim, the
  difference or whether the claim holds), preceded by the command, seeds, size and wall time;
* one or more figures (``*.png``) drawn by the reproduction;
* ``wall_time.json`` — ``{"name", "size", "seeds", "wall_seconds", "cores"}``.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SIZES = ("smoke", "full")
#: experiments/papers/ of a source checkout (the TOML files of each reproduction)
PAPERS_DIR = Path(__file__).resolve().parents[2] / "experiments" / "papers"


@dataclass(frozen=True)
class Reproduction:
    """One published result and how to reproduce it.

    ``run(settings, size, seeds, out) -> list[str]`` runs it at ``size`` with ``seeds`` (a list of
    ints), draws its figures into the folder ``out`` and returns the markdown sections of
    ``table.md``; ``settings`` is the merged content of the reproduction's TOML files.
    """

    name: str
    title: str
    paper: str
    run: Callable[[dict, str, list[int], Path], list[str]]
    default_seeds: int = 6
    files: tuple[str, ...] = field(default=())

    def settings(self, size: str) -> dict:
        """The TOML files of ``experiments/papers/<name>/``, each as ``{file stem: table}``, with
        the ``[smoke]`` table of each file merged over its top level at smoke size."""
        folder = PAPERS_DIR / self.name
        if not folder.is_dir():
            raise FileNotFoundError(f"reproduction {self.name!r} needs its TOML files in {folder}")
        out = {}
        for path in sorted(folder.glob("*.toml")):
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
            smoke = data.pop("smoke", {})
            out[path.stem] = {**data, **smoke} if size == "smoke" else data
        return out


def run_reproduction(rep: Reproduction, *, size: str = "full", seeds: int | None = None,
                     out: str | Path | None = None, command: str | None = None) -> Path:
    """Run ``rep`` and write ``table.md``, its figures and ``wall_time.json`` into ``out``
    (default ``reproductions/<name>-<size>``); return the folder."""
    if size not in SIZES:
        raise ValueError(f"size = {size!r} must be one of: {', '.join(SIZES)}")
    k = rep.default_seeds if seeds is None else seeds
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"seeds = {seeds!r} must be an integer >= 1")
    folder = Path(out) if out is not None else Path("reproductions") / f"{rep.name}-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(k))
    start = time.perf_counter()
    sections = rep.run(rep.settings(size), size, seed_list, folder)
    wall = time.perf_counter() - start
    cores = os.cpu_count()
    cmd = command or f"p2probust reproduce {rep.name} --size {size} --seeds {k}"
    head = [f"# {rep.title}", "", f"Paper: {rep.paper}", "",
            f"Command: `{cmd}`; seeds {seed_list[0]}..{seed_list[-1]}; size {size}; "
            f"wall time {wall:.1f} s on {cores} cores.", ""]
    (folder / "table.md").write_text("\n".join(head + sections).rstrip() + "\n")
    (folder / "wall_time.json").write_text(json.dumps(
        {"name": rep.name, "size": size, "seeds": seed_list, "wall_seconds": round(wall, 3), "cores": cores}) + "\n")
    return folder


def mean_std(values) -> str:
    """``"m ± s"`` over seeds (population std, as the papers' ``np.std``), ignoring ``nan`` (undefined)
    values; ``—`` if all are ``nan``; ``∞ (i/k seeds)`` if ``i`` of the ``k`` values are infinite
    (the run broke down)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return "—"
    inf = int(np.isinf(v).sum())
    if inf:
        return f"∞ ({inf}/{v.size} seeds)"
    return f"{v.mean():.3g} ± {v.std():.2g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
