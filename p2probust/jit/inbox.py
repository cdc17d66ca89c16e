"""Delivered messages written into the asynchronous inbox buffer in one compiled pass, and the
snapshots of sent models copied into its pool in one pass (numba).

:meth:`p2probust.network_state.InboxBuffer.deliver` keeps, per inbox slot ``(dst, slot)``, the
latest delivered message: whether the slot has one, whether it was crafted (a Byzantine sender,
``handle < 0``), its sender, send time and snapshot handle, and it flags the nodes whose slots
changed in which have a message or from whom. With numpy that is a latest-per-slot pass, then a
gather and a scatter per column (about fifteen calls, each paying numpy's per-call cost). Written
message by message in arrival order, the last one per slot is what stays, with no latest-per-slot
pass: one call, integers and booleans only (nothing to round). A slot written twice in one call
may flag its node although its final sender did not change; what is computed again from the
flags is then the same.
"""

from __future__ import annotations

import numpy as np

from . import CheckedKernel, available

SOURCE = '''from numba import njit


@njit(cache=True, nogil=True, boundscheck=False)
def deliver(dst, slot, src, sent, handle, has, crafted, sender, sent_table, handle_table, changed):
    """Write the messages j (in arrival order) into their slots (dst[j], slot[j]); flag changed[dst[j]]
    when the slot had no message or another sender; return whether any was flagged."""
    flagged = False
    for j in range(dst.shape[0]):
        d = dst[j]
        s = slot[j]
        if not has[d, s] or sender[d, s] != src[j]:
            changed[d] = True
            flagged = True
        has[d, s] = True
        crafted[d, s] = handle[j] < 0
        sender[d, s] = src[j]
        sent_table[d, s] = sent[j]
        handle_table[d, s] = handle[j]
    return flagged


@njit(cache=True, nogil=True, boundscheck=False)
def copy_rows(src, rows, dst, targets):
    """dst[targets[i]] = src[rows[i]] for every i: the snapshots of sent models, one pass."""
    for i in range(rows.shape[0]):
        dst[targets[i]] = src[rows[i]]
'''


def usable() -> bool:
    """Whether :func:`deliver` and :func:`copy_rows` take the compiled passes (numba importable,
    the kernels loadable)."""
    return available() and _KERNEL.get() is not None and _COPY.get() is not None


def deliver(dst: np.ndarray, slot: np.ndarray, src: np.ndarray, sent: np.ndarray, handle: np.ndarray,
            has: np.ndarray, crafted: np.ndarray, sender: np.ndarray, sent_table: np.ndarray,
            handle_table: np.ndarray, changed: np.ndarray) -> bool:
    """Write messages ``[m]`` into the slot tables ``[n, k]`` (the last per slot stays) and flag
    ``changed [n]``; whether any node was flagged. Every index must lie in its table (the kernel
    does no bounds checks): ``dst`` in ``[0, n)``, ``slot`` in ``[0, k)``."""
    if dst.size and (dst.min() < 0 or dst.max() >= has.shape[0] or slot.min() < 0 or slot.max() >= has.shape[1]):
        raise IndexError(f"messages to slots outside the inbox table {has.shape}")
    return bool(_KERNEL.get()(dst, slot, src, sent, handle, has, crafted, sender, sent_table, handle_table, changed))


def copy_rows(src: np.ndarray, rows: np.ndarray, dst: np.ndarray, targets: np.ndarray) -> None:
    """``dst[targets] = src[rows]`` in one pass (row copies: the same bits as a gather and a
    scatter); indices must lie in the arrays (no bounds checks in the kernel)."""
    if rows.size and (rows.min() < 0 or rows.max() >= src.shape[0] or targets.min() < 0 or targets.max() >= dst.shape[0]):
        raise IndexError(f"rows outside [0, {src.shape[0]}) or targets outside [0, {dst.shape[0]})")
    _COPY.get()(src, rows, dst, targets)


_KERNEL = CheckedKernel(SOURCE, "inbox", "deliver", "the inbox-delivery kernel (once per machine, about 1 s")
_COPY = CheckedKernel(SOURCE, "inbox", "copy_rows", "the row-copy kernel (once per machine, about 1 s")
