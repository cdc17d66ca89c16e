"""The index of a sweep: one SQLite table ``runs`` in ``SWEEP_DIR/index.sqlite``.

One row per finished run (``completed``, ``diverged`` or ``failed``), written by the driver as the
run ends, in one transaction: a killed sweep loses only the runs in flight. Columns: ``id`` (the
run's config hash, also its folder ``runs/<id>``), ``status``, ``error``, one column per varying
config key (dotted names, ``seed`` included), the final value of every metric, ``wall_s``,
``host``, ``finished`` and the whole resolved config as JSON.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any, Iterable

#: columns that depend on the machine and the moment, not on the run (ignored when comparing indexes)
VOLATILE = ("wall_s", "host", "finished")
_FIXED = ("id", "status", "error", "diverged_round", "wall_s", "host", "finished", "config")


class Index:
    """Open (or create) the index of the sweep folder ``root``."""

    def __init__(self, root: str | Path):
        self.path = Path(root) / "index.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, status TEXT, error TEXT, "
                "diverged_round INTEGER, wall_s REAL, host TEXT, finished TEXT, config TEXT)"
            )

    def columns(self) -> list[str]:
        return [row[1] for row in self._db.execute("PRAGMA table_info(runs)")]

    def statuses(self) -> dict[str, str]:
        """``{run id: status}`` of every recorded run."""
        return dict(self._db.execute("SELECT id, status FROM runs"))

    def record(self, values: dict[str, Any], outcome: dict[str, Any]) -> None:
        """Insert or replace the row of one finished run.

        ``values``: the run's grid values (dotted keys); ``outcome``: ``id``, ``status``, ``error``,
        ``final`` (metric → value), ``wall_s``, ``host``, ``finished``, ``config``.
        """
        row: dict[str, Any] = {k: outcome.get(k) for k in _FIXED}
        row["config"] = json.dumps(outcome.get("config"), sort_keys=True, default=str)
        row.update({k: _plain(v) for k, v in values.items()})
        row.update({k: _plain(v) for k, v in (outcome.get("final") or {}).items() if k not in row})
        with self._db:
            have = set(self.columns())
            for key in row:
                if key not in have:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {_quote(key)}")
            names = ", ".join(_quote(k) for k in row)
            marks = ", ".join("?" for _ in row)
            self._db.execute(f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})", list(row.values()))

    def rows(self, drop: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Every row as a dict, sorted by id (``drop``: columns to leave out)."""
        cur = self._db.execute("SELECT * FROM runs ORDER BY id")
        names = [d[0] for d in cur.description]
        skip = set(drop)
        return [{k: v for k, v in zip(names, r) if k not in skip} for r in cur.fetchall()]

    def close(self) -> None:
        self._db.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plain(v: Any) -> Any:
    """SQLite stores NaN as NULL; keep NaN visible as the text 'nan' is worse, so store None and
    let the status column say the run diverged. Lists and tables become JSON."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return v
