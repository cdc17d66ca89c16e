"""The run folder: ``config.json`` first, ``metrics.csv`` row by row, ``summary.json`` at the end.

Each metrics row is written and flushed as soon as its round ends, so an interrupted run keeps
every row it computed; ``summary.json`` records whether the run completed.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

#: metrics where smaller is better (for the "best" values of the summary)
LOWER_IS_BETTER = ("loss", "consensus_distance", "dist_to_opt", "loss_gap")


class Recorder:
    """Buffers nothing: every row goes straight to ``metrics.csv``; the history is also kept in memory."""

    def __init__(self, out_dir: str | os.PathLike | None, columns: Sequence[str]):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.columns = list(columns)
        self.history: list[dict[str, Any]] = []
        self._file = None
        self._writer = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.out_dir / "metrics.csv", "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="raise")
            self._writer.writeheader()
            self._file.flush()

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if self.out_dir is not None:
            with open(self.out_dir / name, "w") as fh:
                json.dump(data, fh, indent=2, sort_keys=False, default=str)
                fh.write("\n")

    def log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self._writer is not None:
            self._writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
            self._file.flush()

    def summary(self) -> dict[str, Any]:
        """Final and best value of every numeric column."""
        final: dict[str, Any] = {}
        best: dict[str, Any] = {}
        for col in self.columns:
            values = [(r["round"], r[col]) for r in self.history if _is_number(r.get(col))]
            if not values:
                continue
            final[col] = values[-1][1]
            if col in ("round", "time", "wall_s", "lr", "messages"):
                continue
            pick = min if col.startswith(LOWER_IS_BETTER) else max
            rnd, val = pick(values, key=lambda rv: rv[1])
            best[col] = {"value": val, "round": rnd}
        return {"final": final, "best": best}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v
