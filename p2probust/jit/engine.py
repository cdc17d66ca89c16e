"""The asynchronous engine's snapshot bookkeeping in one compiled pass (numba).

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

SOURCE = '''from numba import njit


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
'''


def usable() -> bool:
    """Whether the compiled pass can be used (numba importable, the kernel loadable)."""
    return available() and _KERNEL.get() is not None


def keep_latest(dst: np.ndarray, slot: np.ndarray, handle: np.ndarray, slot_handle: np.ndarray, refs: np.ndarray,
                live: np.ndarray) -> None:
    """Messages ``[m]`` (arrival order) become their slots' latest in ``slot_handle [n, k]``, with
    the reference counts ``refs`` and in-use flags ``live`` of the handles updated. Indices must lie
    in the tables (the kernel does no bounds checks; the engine made them)."""
    if dst.size and (dst.min() < 0 or dst.max() >= slot_handle.shape[0] or slot.min() < 0 or slot.max() >= slot_handle.shape[1]
                     or handle.max() >= refs.size or slot_handle.max() >= refs.size):
        raise IndexError(f"messages to slots outside the inbox table {slot_handle.shape}, or handles past {refs.size}")
    _KERNEL.get()(dst, slot, handle, slot_handle, refs, live)


_KERNEL = CheckedKernel(SOURCE, "engine", "keep_latest", "the engine's bookkeeping kernel (once per machine, about 1 s")
