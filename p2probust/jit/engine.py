"""The asynchronous engine's bookkeeping in compiled passes (numba): the snapshots' reference
counts at an aggregation (:func:`keep_latest`) and a batch of node events once its gaps are drawn
(:func:`advance`, :meth:`p2probust.engine.deferred.DeferredEvents._advance` with the same float
operations in the same order).

When messages are delivered, each becomes its slot's latest message: the snapshot it carries is
then held by the slot instead of by the message in flight, and the slot's previous snapshot loses
that hold (:meth:`p2probust.engine.inflight.Handles.keep_latest`). With numpy that is a
latest-per-slot pass, a few gathers and scatters, and three reference-count updates (about twenty
calls, each paying numpy's per-call cost); message by message in arrival order it is one loop:
a delivered handle keeps its count (one hold ends, one begins), the handle it replaces loses one,
and a handle left with none is free. The engine itself never imports torch or numba: the async
kernel hands this module to it (:class:`~p2probust.engine.events.AsyncSetup` ``compiled``).
"""

from __future__ import annotations

import numpy as np

from . import CheckedKernel, available

SOURCE = '''import numpy as np
from numba import njit


@njit(cache=True, nogil=True, boundscheck=False)
def keep_latest(dst, slot, handle, slot_handle, refs, live):
    """Messages j (arrival order) become the latest of their slots (dst[j], slot[j])."""
    for j in range(dst.shape[0]):
        d = dst[j]
        s = slot[j]
        old = slot_handle[d, s]
        slot_handle[d, s] = handle[j]
        if old >= 0:
            refs[old] -= 1
            if refs[old] == 0:
                live[old] = False


@njit(cache=True, nogil=True, boundscheck=False)
def compute_delay(c, now, tick):
    if tick > 0:
        return np.ceil((now + c) / tick - 1e-9) * tick - now
    return c


@njit(cache=True, nogil=True, boundscheck=False)
def advance(times, nodes, done, gaps, now, phase, wake, const, tick, seq0, compute, waking):
    """Node events j at times[j] (queue order): a wake-up (not done[j]) queues its compute's end; a
    compute's end (done[j]) takes the next gap (gaps, in order), waits until the wake-up or computes
    again at once. Writes phase and wake; returns the next events (time, insertion number, node)
    sorted by time then insertion number, and each one's due instant (a wake-up: its compute's end)."""
    m = nodes.shape[0]
    child = np.empty(m)
    due = np.empty(m)
    g = 0
    for j in range(m):
        i = nodes[j]
        kind = compute
        if done[j]:
            w = wake[i] + gaps[g]
            g += 1
            if not w >= now:
                w = now
            wake[i] = w
            if w > now:
                child[j] = now + (w - now)
                kind = waking
            else:
                child[j] = now + compute_delay(const[i], now, tick)
        else:
            child[j] = times[j] + compute_delay(const[i], times[j], tick)
        phase[i] = kind
        due[j] = child[j] + compute_delay(const[i], child[j], tick) if kind == waking else child[j]
    order = np.argsort(child, kind="mergesort")
    return child[order], seq0 + order, nodes[order], due
'''


def usable() -> bool:
    """Whether the compiled passes can be used (numba importable, the kernels loadable)."""
    return available() and _KERNEL.get() is not None and _ADVANCE.get() is not None


def keep_latest(dst: np.ndarray, slot: np.ndarray, handle: np.ndarray, slot_handle: np.ndarray, refs: np.ndarray,
                live: np.ndarray) -> None:
    """Messages ``[m]`` (arrival order) become their slots' latest in ``slot_handle [n, k]``, with
    the reference counts ``refs`` and in-use flags ``live`` of the handles updated. Indices must lie
    in the tables (the kernel does no bounds checks; the engine made them)."""
    if dst.size and (dst.min() < 0 or dst.max() >= slot_handle.shape[0] or slot.min() < 0 or slot.max() >= slot_handle.shape[1]
                     or handle.max() >= refs.size or slot_handle.max() >= refs.size):
        raise IndexError(f"messages to slots outside the inbox table {slot_handle.shape}, or handles past {refs.size}")
    _KERNEL.get()(dst, slot, handle, slot_handle, refs, live)


def advance(times: np.ndarray, nodes: np.ndarray, done: np.ndarray, gaps: np.ndarray, now: float, phase: np.ndarray,
            wake: np.ndarray, const: np.ndarray, tick: float, seq0: int, compute: int, waking: int) -> tuple[np.ndarray, ...]:
    """:meth:`p2probust.engine.deferred.DeferredEvents._advance` after the gap draws, in one pass
    (the same float operations in the same order: the same times). Nodes must lie in ``phase``."""
    if nodes.size and (nodes.min() < 0 or nodes.max() >= phase.size or int(done.sum()) != gaps.size):
        raise IndexError(f"nodes outside [0, {phase.size}) or {gaps.size} gaps for {int(done.sum())} completions")
    return _ADVANCE.get()(times, nodes, done, gaps, now, phase, wake, const, tick, seq0, compute, waking)


_KERNEL = CheckedKernel(SOURCE, "engine", "keep_latest", "the engine's bookkeeping kernel (once per machine, about 1 s")
_ADVANCE = CheckedKernel(SOURCE, "engine", "advance", "the engine's node-event kernel (once per machine, about 1 s")
