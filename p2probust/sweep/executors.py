"""Where a sweep's runs execute: in this process, a local process pool, or Ray tasks.

Every executor calls :func:`run_one` on ``(config, folder)`` and hands its outcome to the driver's
``on_done`` as each run finishes (the driver records it in the index). Runs are independent, so
the order in which they finish does not matter.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

Job = tuple[Any, dict[str, Any], str]  #: (key, resolved config dict, run folder)
OnDone = Callable[[Any, dict[str, Any]], None]


def run_one(config: dict[str, Any], folder: str, threads: int | None = None) -> dict[str, Any]:
    """Run one configuration into ``folder`` (replacing a partial folder left by a killed sweep) and
    return its outcome: ``status`` (``completed``, ``diverged``, ``failed`` or ``interrupted``),
    ``final`` metrics, ``error``, ``wall_s``, ``host``, ``finished``."""
    import torch

    from ..config import from_dict
    from ..simulation import simulate

    if threads:
        torch.set_num_threads(threads)
    logging.getLogger("p2probust").setLevel(logging.ERROR)  # no placement report per run
    start = time.perf_counter()
    out: dict[str, Any] = {"final": {}, "error": None, "diverged_round": None}
    try:
        res = simulate(from_dict(config), out=folder, overwrite=True)
        out.update(status=res.summary["status"], final=res.summary["final"],
                   diverged_round=res.summary.get("diverged_round"))
    except KeyboardInterrupt:
        out.update(status="interrupted")
    except Exception as err:  # recorded with its error; retried only with --retry-failed
        out.update(status="failed", error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    out.update(wall_s=time.perf_counter() - start, host=socket.gethostname(),
               finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return out


def run_inline(jobs: Sequence[Job], on_done: OnDone, threads: int | None) -> None:
    """One run after the other in this process (``--workers 1``)."""
    for key, config, folder in jobs:
        result = run_one(config, folder, threads)
        if result["status"] == "interrupted":
            raise KeyboardInterrupt
        on_done(key, result)


def _init_worker(threads: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides; workers finish or are terminated
    import torch

    torch.set_num_threads(threads)


def run_pool(jobs: Sequence[Job], on_done: OnDone, workers: int, threads: int) -> None:
    """A pool of ``workers`` processes (spawned: no inherited thread pools), ``threads`` torch
    threads each. If the driver is interrupted, running workers are terminated: only the runs in
    flight are lost, and a rerun redoes them."""
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    pending = {pool.submit(run_one, config, folder, threads): key for key, config, folder in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                on_done(key, fut.result())
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def connect_ray(address: str | None, cpus: int):
    """``ray.init`` on an existing cluster (``address``: ``auto`` or ``HOST:PORT``) or a new local
    one with ``cpus`` CPUs; an unreachable address is a one-line ``ValueError``."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'p2probust[ray]'") from None
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=cpus, **kwargs)
    except Exception as err:  # ConnectionError, RuntimeError, ValueError depending on the version
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"cannot reach the Ray cluster at --address {address!r}: {text}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast (3 s) when nothing listens at ``HOST:PORT``: ``ray.init`` would retry for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address!r} is invalid; expected auto or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise ValueError(f"cannot reach the Ray cluster at --address {address!r}: {err.strerror or err}") from None


def run_ray(jobs: Sequence[Job], on_done: OnDone, *, address: str | None, cpus: int, threads: int,
            memory: Callable[[dict[str, Any]], float], gpu: Callable[[dict[str, Any]], bool]) -> None:
    """Each run as a Ray task with ``threads`` CPUs, its memory estimate and a GPU when its
    config asks for CUDA; the driver records each outcome as it arrives (``ray.wait``). Run folders
    are written by the tasks: give a ``--out`` that every node of the cluster sees."""
    ray = connect_ray(address, cpus)
    remote = ray.remote(run_one)
    refs = {}
    for key, config, folder in jobs:
        opts = {"num_cpus": threads, "memory": int(memory(config)), "num_gpus": 1 if gpu(config) else 0,
                "max_retries": 0}
        refs[remote.options(**opts).remote(config, os.path.abspath(folder), threads)] = key
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                on_done(refs.pop(ref), ray.get(ref))
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
