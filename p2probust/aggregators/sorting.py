"""Order statistics along a short axis without ``torch.sort``.

Coordinate-wise rules need, for each coordinate, the values of ``m`` inputs in sorted order, with
``m`` small (a node's degree + 1). ``torch.sort`` along such a short axis is tens of times slower
than a *sorting network*: a fixed sequence of compare-exchange steps, each one ``torch.minimum`` /
``torch.maximum`` over whole ``[..., d]`` slices. We use Batcher's odd–even merge sort on the next
power of two and drop every comparator that touches a wire ``>= m``: those wires would hold
``+inf`` and such comparators never move anything, so the pruned network sorts ``m`` wires.

Non-finite inputs are made orderable first: NaN is mapped to ``+inf`` (a malformed Byzantine value
is then just an extreme one, removed by trimming), so ``torch.minimum``'s NaN propagation can never
leak a NaN into an order statistic.

Reference: K. E. Batcher, "Sorting networks and their applications", AFIPS 1968.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

#: beyond this many wires the network is longer than a library sort is slow
MAX_NETWORK_WIRES = 32


@lru_cache(maxsize=None)
def batcher_network(m: int) -> tuple[tuple[int, int], ...]:
    """Comparator pairs ``(i, j)``, ``i < j``, of Batcher's odd–even merge sort pruned to ``m`` wires."""
    size = 1
    while size < m:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < m:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


def sorted_wires(x: Tensor, mask: Tensor) -> list[Tensor]:
    """The order statistics of ``x`` along axis -2, as ``m`` tensors ``[..., d]`` (rank 0 first).

    Padding slots and NaN become ``+inf`` (so they sort last); ``±inf`` stay as they are. Uses the
    sorting network for ``m <= MAX_NETWORK_WIRES``, else ``torch.sort``. Returning the wires
    rather than a stacked tensor saves a copy of ``[..., m, d]`` (memory and time) for callers that
    only reduce over ranks, see :func:`sum_ranks`.
    """
    inf = float("inf")
    x = torch.where(mask.unsqueeze(-1), torch.nan_to_num(x, nan=inf, posinf=inf, neginf=-inf), inf)
    m = x.shape[-2]
    if m > MAX_NETWORK_WIRES:
        return list(torch.sort(x, dim=-2).values.unbind(-2))
    wires = list(x.unbind(-2))
    for i, j in batcher_network(m):
        lo, hi = torch.minimum(wires[i], wires[j]), torch.maximum(wires[i], wires[j])
        wires[i], wires[j] = lo, hi
    return wires


def sorted_wires_into_workspace(x: Tensor, mask: Tensor) -> list[Tensor]:
    """:func:`sorted_wires` for plain (not ``vmap``-ed) batched tensors, without temporaries.

    Copies ``x`` once into a ``[m, ..., d]`` workspace, sanitizes it in place and runs every
    compare-exchange with ``out=`` into a single spare buffer, so the network allocates nothing
    per comparator (allocation and page faults cost as much as the arithmetic here). Same values
    as :func:`sorted_wires`. Not usable under ``torch.func.vmap`` (``out=`` is not batchable).
    """
    m = x.shape[-2]
    inf = float("inf")
    if m > MAX_NETWORK_WIRES:
        return sorted_wires(x, mask)
    work = torch.empty((m,) + x.shape[:-2] + x.shape[-1:], dtype=x.dtype, device=x.device)
    work.copy_(x.movedim(-2, 0))
    work.nan_to_num_(nan=inf, posinf=inf, neginf=-inf)
    if not bool(mask.all()):  # regular graphs have no padding: skip a pass over the workspace
        work.masked_fill_(~mask.movedim(-1, 0).unsqueeze(-1), inf)
    wires = list(work.unbind(0))
    spare = torch.empty_like(wires[0])
    for i, j in batcher_network(m):
        lo, hi = wires[i], wires[j]
        torch.minimum(lo, hi, out=spare)
        torch.maximum(lo, hi, out=hi)
        wires[i], spare = spare, lo
    return wires


def sort_masked(x: Tensor, mask: Tensor) -> Tensor:
    """Sort ``x`` along axis -2 with padding and NaN last: ``[..., m, d], [..., m] -> [..., m, d]``.

    Padding slots become ``+inf``, NaN becomes ``+inf``; real finite values come out ascending in
    the first positions. Uses a sorting network for ``m <= MAX_NETWORK_WIRES``, else ``torch.sort``.
    """
    return torch.stack(sorted_wires(x, mask), -2)


def select_ranks(sorted_x: Tensor, keep: Tensor) -> Tensor:
    """Sum over the kept ranks: ``[..., m, d], [..., m] bool -> [..., d]`` (others never read)."""
    zero = sorted_x.new_zeros(())
    return torch.where(keep.unsqueeze(-1), sorted_x, zero).sum(-2)


def sum_ranks(wires: list[Tensor], keep: Tensor) -> Tensor:
    """Sum of the kept ranks of :func:`sorted_wires`: ``m × [..., d], [..., m] bool -> [..., d]``.

    Ranks that are not kept are never read (an ``inf`` there cannot leak into the sum).
    """
    zero = torch.zeros((), dtype=wires[0].dtype, device=wires[0].device)
    total = torch.where(keep[..., :1], wires[0], zero)
    for r in range(1, len(wires)):
        total = total + torch.where(keep[..., r : r + 1], wires[r], zero)
    return total


def sum_ranks_into(wires: list[Tensor], keep: Tensor) -> Tensor:
    """:func:`sum_ranks` with two buffers and in-place adds (not usable under ``vmap``)."""
    zero = torch.zeros((), dtype=wires[0].dtype, device=wires[0].device)
    total = torch.where(keep[..., :1], wires[0], zero)
    tmp = torch.empty_like(total)
    for r in range(1, len(wires)):
        torch.where(keep[..., r : r + 1], wires[r], zero, out=tmp)
        total.add_(tmp)
    return total
