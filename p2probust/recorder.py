"""The rows of a run: ``metrics.csv`` (reproducible) and ``timing.csv`` (wall clock), row by row.

Each row is written whole (one ``write`` of the full line, flushed) as soon as its round ends, so
an interrupted run keeps every row it computed and a reader never sees half a row. If a write
fails (disk full, folder removed), the file is cut back to its last whole row and
:class:`RecordError` is raised: the run then ends with status ``failed``.

``metrics.csv`` holds only what the configuration and seed determine, so two runs of one config
give the same file byte for byte; wall-clock seconds go to ``timing.csv`` beside it.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

#: metrics where smaller is better (for the "best" values of the summary)
LOWER_IS_BETTER = ("loss", "consensus_distance", "dist_to_opt", "loss_gap")
#: columns that are bookkeeping, not quality (no "best" value)
_NO_BEST = ("round", "time", "lr", "messages", "bytes", "online", "epsilon")  # epsilon: privacy spent


class RecordError(OSError):
    """Writing a row failed; the file holds every whole row written before."""


class _RowFile:
    """A CSV file written one whole, flushed row at a time (``os.write`` on an unbuffered fd)."""

    def __init__(self, path: Path, columns: Sequence[str], keep: int | None = None):
        self.path = path
        self.columns = list(columns)
        if keep is not None:  # resume: keep the header and the first `keep` rows, cut the rest
            self._fd = os.open(path, os.O_RDWR)
            self._size = self._cut(keep)
            return
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._size = 0
        self.write({c: c for c in self.columns})

    def _cut(self, keep: int) -> int:
        """Truncate the file after its header and ``keep`` rows; return its new size."""
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        lines = data.split(b"\n")
        if lines[0].decode() != ",".join(self.columns) or len(lines) < keep + 2:
            os.close(self._fd)
            raise RecordError(0, f"{self.path} does not hold the {keep} rows of the checkpoint; it cannot be resumed")
        size = sum(len(line) + 1 for line in lines[: keep + 1])
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        return size

    def write(self, row: dict[str, Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_fmt(row.get(c)) for c in self.columns])
        data = buf.getvalue().encode()
        try:
            done = 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as err:
            try:
                os.ftruncate(self._fd, self._size)  # drop the partial row
            except OSError:
                pass
            raise RecordError(err.errno, f"cannot write {self.path}: {err.strerror or err}") from None
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Recorder:
    """Rows go straight to ``metrics.csv`` (and their wall time to ``timing.csv``); the history is
    also kept in memory. Without a folder, nothing is written."""

    def __init__(self, out_dir: str | os.PathLike | None, columns: Sequence[str],
                 restored: tuple[list, list] | None = None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.columns = list(columns)
        #: resume (:mod:`p2probust.checkpoint`): the rows and timings written before the checkpoint
        self.history, self.timing = (list(restored[0]), list(restored[1])) if restored else ([], [])
        self._metrics = self._timing = None
        if self.out_dir is not None:
            keep = (len(self.history), len(self.timing)) if restored else (None, None)
            self._metrics = _RowFile(self.out_dir / "metrics.csv", self.columns, keep[0])
            self._timing = _RowFile(self.out_dir / "timing.csv", ["round", "wall_s"], keep[1])

    def log(self, row: dict[str, Any], wall_s: float | None = None) -> None:
        """Append ``row`` (keys: ``columns``; missing ones are empty) and its wall-clock time."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"metrics row has columns that were not declared: {sorted(unknown)}")
        if self._metrics is not None:
            self._metrics.write(row)
        self.history.append(row)
        if wall_s is not None:
            self.timing.append({"round": row.get("round"), "wall_s": wall_s})
            if self._timing is not None:
                self._timing.write(self.timing[-1])

    def summary(self) -> dict[str, Any]:
        """Final value of every column (its last measured value, NaN included: a run that ended
        in NaN reports NaN) and the best finite value with its round."""
        final: dict[str, Any] = {}
        best: dict[str, Any] = {}
        for col in self.columns:
            values = [(r["round"], r[col]) for r in self.history if r.get(col) is not None]
            if not values:
                continue
            final[col] = values[-1][1]
            finite = [(rnd, v) for rnd, v in values if _is_finite(v)]
            if col in _NO_BEST or not finite:
                continue
            pick = min if col.startswith(LOWER_IS_BETTER) else max
            rnd, val = pick(finite, key=lambda rv: rv[1])
            best[col] = {"value": val, "round": rnd}
        return {"final": final, "best": best}

    def close(self) -> None:
        for f in (self._metrics, self._timing):
            if f is not None:
                f.close()


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v
