"""Compiled (numba) kernels for the hottest step of a round, with torch as the reference.

* :mod:`~p2probust.jit.rank_mean` — aggregate-and-mix with a coordinate-wise median or trimmed
  mean, the inbox gather fused into a register-resident sorting network (same bits as torch).

The torch paths remain the reference and serve everything else (``vmap``, other rules, small
calls). ``RunConfig.jit`` (``--jit``) chooses: ``auto`` uses a kernel when the call is large
enough to repay its one-off compilation, ``on`` always, ``off`` never. Compiled code is cached on
disk (numba ``cache=True``), so compilation is paid once per machine.

A compiled logistic-regression gradient (batch gather fused in) was tried and dropped: on 2 cores
it was no faster than torch's batched matrix products.

Work is split over ``torch.get_num_threads()`` threads by rows (the kernels release the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

MODES = ("auto", "on", "off")


def available() -> bool:
    """True if numba can be imported (the compiled paths are then usable)."""
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - depends on the installation
        return False
    return True


def check_mode(mode: str, needed: bool) -> bool:
    """Whether compiled kernels may be used in ``mode``; ``on`` without numba is an error when ``needed``."""
    if mode not in MODES:
        raise ValueError(f"jit = {mode!r} must be one of: {', '.join(MODES)}")
    if mode == "on" and needed and not available():
        raise ValueError("jit = 'on' needs numba, which cannot be imported here (pip install numba); use jit = 'auto' or 'off'")
    return mode != "off" and available()


def cache_dir() -> Path:
    """Folder for generated kernel sources (numba caches the compiled code beside them):
    ``$P2PROBUST_CACHE``, else ``~/.cache/p2probust``."""
    root = os.environ.get("P2PROBUST_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "p2probust"


@lru_cache(maxsize=4)
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """A pool per process: a forked child (e.g. a sweep worker) must not reuse its parent's pool,
    whose threads it does not have."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="p2probust-jit")


def split_rows(rows: int, call: Callable[[int, int], None], *, min_rows: int = 64) -> None:
    """Run ``call(start, stop)`` over ``[0, rows)`` cut into ``torch.get_num_threads()`` contiguous
    shares (at least ``min_rows`` rows each); the last share runs on the calling thread."""
    threads = max(1, min(torch.get_num_threads(), rows // min_rows))
    cuts = np.linspace(0, rows, threads + 1).astype(int)
    jobs = [_pool(threads - 1, os.getpid()).submit(call, int(s), int(e)) for s, e in zip(cuts[:-2], cuts[1:-1])] if threads > 1 else []
    call(int(cuts[-2]), rows)
    for job in jobs:
        job.result()
