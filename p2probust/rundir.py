"""Run folders that are never overwritten, mixed or lost.

* A folder is *claimed* before a run writes to it: created if needed, locked (``.lock``, an
  advisory ``flock`` held for the whole run, released by the kernel if the process dies), and
  checked to be empty. A second writer fails at once with one line; a non-empty folder is refused
  unless ``overwrite`` is set, which clears it first, and only if it is a run folder.
* Default names are unique: time to the millisecond, the topology, rule, attack and seed, a short
  hash of the resolved configuration, and a suffix if the name is taken (created with an exclusive
  ``mkdir``, so two runs started in the same millisecond still get two folders).
* JSON files are written atomically (temporary file, ``fsync``, rename): a reader sees the old
  file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

#: files that mark a folder as a run folder (``overwrite`` clears only such folders)
RUN_FILES = ("config.json", "metrics.csv", "summary.json")
LOCK = ".lock"


def _run_file(name: str) -> bool:
    """A run file, or the temporary of one left by a process killed inside :func:`write_atomic`."""
    return name in RUN_FILES or any(name.startswith(f".{run}.tmp-") for run in RUN_FILES)


class RunDirError(ValueError):
    """A run folder that cannot be used (one line: the path, why, and what to do)."""


def config_hash(config: dict[str, Any]) -> str:
    """Six hex digits of SHA-256 over the canonical JSON of a configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def default_run_dir(name_parts: list[str], config: dict[str, Any], root: str | os.PathLike = "runs") -> Path:
    """Create and return a new, empty folder ``root/<time.ms>-<parts>-<hash>[-N]``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S.%f")[:-3]
    base = Path(root).expanduser() / "-".join([stamp, *name_parts, config_hash(config)])
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunDirError(f"no free run folder name under {base.parent}")  # pragma: no cover


class RunDir:
    """A claimed run folder: locked for this process until :meth:`release`."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path).expanduser()
        self._lock_fd: int | None = None
        self._claim(overwrite)

    def _claim(self, overwrite: bool) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {str(path)!r} is an existing file, not a folder; give a folder path")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create run folder {str(path)!r}: {err.strerror or err}; give a writable --out") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunDirError(f"run folder {str(path)!r} is not writable; give a writable --out")
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunDirError(f"cannot write to run folder {str(path)!r}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirError(
                f"run folder {str(path)!r} is in use by another run (pid {owner}); wait for it or give another --out"
            ) from None
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        others = sorted(p.name for p in path.iterdir() if p.name != LOCK)
        if others and not overwrite:
            self.release()
            shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
            raise RunDirError(
                f"run folder {str(path)!r} is not empty ({shown}); pass --overwrite (Python: overwrite=True) to replace it, or give another --out"
            )
        if others:
            if not any(_run_file(name) for name in others):
                self.release()
                raise RunDirError(
                    f"--overwrite replaces run folders only, and {str(path)!r} holds no {RUN_FILES[0]} "
                    f"(it holds {', '.join(others[:4])}); give another --out"
                )
            for name in others:
                target = path / name
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``name`` atomically (whole old file or whole new file, never a mix)."""
        text = json.dumps(data, indent=2, default=str) + "\n"
        write_atomic(self.path / name, text.encode())

    def release(self) -> None:
        """Unlock (and remove the lock file); idempotent."""
        if self._lock_fd is None:
            return
        try:
            (self.path / LOCK).unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
