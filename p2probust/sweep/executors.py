"""Where a sweep's runs execute: in this process, a local process pool, or Ray tasks.

Every executor calls :func:`run_job` on each job — one run ``(config, folder)``, or a batch of
seeds ``([config, ...], [folder, ...])`` run as one simulation (:func:`run_batch`) — and hands each
run's outcome to the driver's ``on_done`` as it finishes (the driver records it in the index).
Runs are independent, so the order in which they finish does not matter.
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

Job = tuple[Any, Any, Any]  #: (key, resolved config dict, run folder), or three lists for a batch of seeds
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


def run_batch(configs: list[dict[str, Any]], folders: list[str], threads: int | None = None) -> list[dict[str, Any]]:
    """Run configurations that differ only by seed as batched simulations
    (:func:`~p2probust.batched.simulate_seeds`); outcomes as :func:`run_one`'s, in order, each
    with the batch's wall time divided by its number of runs. If the batch fails (anything but a
    signal), its runs are run again one by one, so a failure is recorded against the run it
    belongs to."""
    import torch

    from ..batched import simulate_seeds
    from ..config import from_dict

    if threads:
        torch.set_num_threads(threads)
    logging.getLogger("p2probust").setLevel(logging.ERROR)
    start = time.perf_counter()
    try:
        results = simulate_seeds([from_dict(c) for c in configs], folders, overwrite=True)
    except KeyboardInterrupt:
        return [{"status": "interrupted", "final": {}, "error": None, "diverged_round": None} for _ in configs]
    except Exception:
        return [run_one(c, f, threads) for c, f in zip(configs, folders)]
    wall = (time.perf_counter() - start) / len(configs)
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [{"status": r.summary["status"], "final": r.summary["final"], "error": None,
             "diverged_round": r.summary.get("diverged_round"), "wall_s": wall, "host": socket.gethostname(),
             "finished": finished} for r in results]


def run_job(config: Any, folder: Any, threads: int | None = None) -> Any:
    """:func:`run_batch` for a batch (lists), :func:`run_one` for one run."""
    if isinstance(config, list):
        return run_batch(config, folder, threads)
    return run_one(config, folder, threads)


def _deliver(key: Any, result: Any, on_done: OnDone, stop_on_interrupt: bool = False) -> None:
    """Hand each run's outcome of a job to ``on_done`` (``stop_on_interrupt``: an interrupted run
    stops the sweep, as Ctrl-C in an inline sweep)."""
    pairs = list(zip(key, result)) if isinstance(key, list) else [(key, result)]
    for k, outcome in pairs:
        if stop_on_interrupt and outcome["status"] == "interrupted":
            raise KeyboardInterrupt
        on_done(k, outcome)


def run_inline(jobs: Sequence[Job], on_done: OnDone, threads: int | None) -> None:
    """One job after the other in this process (``--workers 1``)."""
    for key, config, folder in jobs:
        _deliver(key, run_job(config, folder, threads), on_done, stop_on_interrupt=True)


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
    pending = {pool.submit(run_job, config, folder, threads): key for key, config, folder in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                _deliver(key, fut.result(), on_done)
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
    remote = ray.remote(run_job)
    refs = {}
    for key, config, folder in jobs:
        opts = {"num_cpus": threads, "memory": int(memory(config)), "num_gpus": 1 if gpu(config) else 0,
                "max_retries": 0}
        where = [os.path.abspath(f) for f in folder] if isinstance(folder, list) else os.path.abspath(folder)
        refs[remote.options(**opts).remote(config, where, threads)] = key
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                _deliver(refs.pop(ref), ray.get(ref), on_done)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
