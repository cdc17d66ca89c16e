r"""Means of listed rows in one compiled pass, the bits of a sparse product (numba).

An attack that knows what each recipient aggregates (the sign flip's and the Gaussian attack's
honest mean at the recipient, :meth:`p2probust.attacks.base.AttackContext.recipient_honest_mean`)
needs, for every edge ``e`` with recipient ``r = inv[e]``,

.. math:: \mu_e = \frac{1}{|M_r|} \sum_{j \in M_r} \theta_j ,

with :math:`M_r` the recipient and its honest neighbours. The torch path is ``torch.sparse.mm(A,
params) / count`` and a gather to the edges. ATen's sparse-dense product
(``s_addmm_out_sparse_dense_worker``) zeroes each output row and adds ``params[j]`` for the stored
entries in coalesced order, columns ascending, one at a time (``axpy`` with weight 1, so each step
is one rounded addition); it runs on one thread, and the division and the gather are two more passes
over ``[R, d]`` and ``[E, d]``. Here each group's row is summed once, in the same order from +0.0
(so ``-0.0`` inputs give ``+0.0`` as there), divided by the same count and copied to its edges: the
same bits, over ``torch.get_num_threads()`` threads. For n = 1000 (degree 10, 650 recipients,
1000 edges, d = 650) it takes 0.64 ms on two threads here, against 1.1 ms for the torch path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import CheckedKernel, available, split_rows

#: edge rows × d from which the compiled pass is used (a smaller call is not worth its one-off
#: compilation, about 1 s once per machine)
MIN_VALUES = 1 << 12

SOURCE = '''from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def group_mean(params, members, count, scale, r, acc):
    """acc = ((+0.0 + params[members[r, 0]] + params[members[r, 1]] + ...) / count[r]) * scale[0]
    (members[r] ascending and ended by -1; acc a row view: the loops over coordinates vectorize)."""
    d = params.shape[1]
    for c in range(d):
        acc[c] = 0
    for j in range(members.shape[1]):
        i = members[r, j]
        if i < 0:
            break
        row = params[i]
        for c in range(d):
            acc[c] = acc[c] + row[c]
    size = count[r]
    factor = scale[0]  # 1 when unscaled: x * 1 is x, bit for bit
    for c in range(d):
        acc[c] = (acc[c] / size) * factor


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def listed_means(params, members, count, scale, edges, offsets, start, stop, out):
    """For the groups r in [start, stop): their group_mean, written to the rows
    edges[offsets[r]:offsets[r + 1]] of out (summed once, then copied)."""
    for r in range(start, stop):
        if offsets[r] == offsets[r + 1]:
            continue
        acc = out[edges[offsets[r]]]
        group_mean(params, members, count, scale, r, acc)
        for q in range(offsets[r] + 1, offsets[r + 1]):
            out[edges[q]] = acc


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def edge_means(params, members, count, scale, groups, start, stop, out):
    """For the edges e in [start, stop): the group_mean of their group groups[e], written to out[e]
    (a group with several edges is summed for each)."""
    for e in range(start, stop):
        group_mean(params, members, count, scale, groups[e], out[e])
'''


def usable(params: Tensor, edges: int) -> bool:
    """Whether :func:`listed_means` takes the compiled pass: float32/float64 on the CPU, at least
    :data:`MIN_VALUES` output values, numba importable (and the kernel loadable)."""
    return (params.device.type == "cpu" and params.dtype in (torch.float32, torch.float64)
            and edges * params.shape[1] >= MIN_VALUES and available() and _KERNEL.get() is not None)


def listed_means(params: Tensor, members: Tensor, count: Tensor, inv: Tensor, scale: float = 1.0, *,
                 per_edge: bool = False) -> Tensor:
    """``[E, d]``: row ``e`` is the mean of the rows ``members[inv[e]]`` of ``params [n, d]``
    (``members [R, K]`` int64, each row strictly ascending and padded with −1; ``count [R]`` their
    number in the dtype of ``params``; ``inv [E]`` into ``[0, R)``), times ``scale`` (rounded to the
    dtype, one more rounded product, as ``mean * scale`` in torch). Each group's mean is summed once
    and copied to its edges; ``per_edge``: summed for each edge, with no grouping pass (for a table
    of many groups, e.g. every node's, of which few edges use each one), the same bits."""
    src = params.detach().contiguous().numpy()
    rows, counts = members.contiguous().numpy(), count.contiguous().numpy()
    if rows.size and int(rows.max()) >= src.shape[0]:  # the kernel does no bounds checks
        raise IndexError(f"members must lie in [-1, {src.shape[0]}), got {int(rows.max())}")
    out = np.empty((inv.shape[0], src.shape[1]), dtype=src.dtype)
    with np.errstate(over="ignore"):
        factor = np.array([scale], dtype=src.dtype)  # an overflowing scale is ±inf, as in torch's mean * scale
    if per_edge:
        kernel, groups = _EDGE_KERNEL.get(), inv.contiguous().numpy()
        split_rows(groups.shape[0], lambda s, e: kernel(src, rows, counts, factor, groups, s, e, out), min_rows=32)
        return torch.from_numpy(out)
    kernel = _KERNEL.get()
    edges = torch.argsort(inv, stable=True).numpy()  # the edges of each group, group by group
    offsets = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(torch.bincount(inv, minlength=rows.shape[0]).numpy(), out=offsets[1:])
    split_rows(rows.shape[0], lambda s, e: kernel(src, rows, counts, factor, edges, offsets, s, e, out), min_rows=32)
    return torch.from_numpy(out)


_KERNEL = CheckedKernel(SOURCE, "row_means", "listed_means", "the row-mean kernel (once per machine, about 1 s")
_EDGE_KERNEL = CheckedKernel(SOURCE, "row_means", "edge_means", "the per-edge row-mean kernel (once per machine, about 1 s")
