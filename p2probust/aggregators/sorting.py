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


def sort_masked(x: Tensor, mask: Tensor) -> Tensor:
    """Sort ``x`` along axis -2 with padding and NaN last: ``[..., m, d], [..., m] -> [..., m, d]``.

    Padding slots become ``+inf``, NaN becomes ``+inf``; real finite values come out ascending in
    the first positions. Uses a sorting network for ``m <= MAX_NETWORK_WIRES``, else ``torch.sort``.
    """
    inf = torch.tensor(float("inf"), dtype=x.dtype)
    x = torch.where(mask.unsqueeze(-1) & ~torch.isnan(x), x, inf)
    m = x.shape[-2]
    if m > MAX_NETWORK_WIRES:
        return torch.sort(x, dim=-2).values
    wires = list(x.unbind(-2))
    for i, j in batcher_network(m):
        lo, hi = torch.minimum(wires[i], wires[j]), torch.maximum(wires[i], wires[j])
        wires[i], wires[j] = lo, hi
    return torch.stack(wires, -2)


def select_ranks(sorted_x: Tensor, keep: Tensor) -> Tensor:
    """Sum over the kept ranks: ``[..., m, d], [..., m] bool -> [..., d]`` (others never read)."""
    zero = torch.zeros((), dtype=sorted_x.dtype)
    return torch.where(keep.unsqueeze(-1), sorted_x, zero).sum(-2)
