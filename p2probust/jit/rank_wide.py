r"""The rank-mean kernel for more than :data:`~p2probust.aggregators.sorting.MAX_NETWORK_WIRES`
inputs per coordinate (dense graphs: the complete graph, a server's ``n`` clients).

The unrolled kernel of :mod:`p2probust.jit.rank_mean` keeps every wire in a register; past 32
wires the generated code is too long to compile and the registers run out. This kernel runs the
*same* pruned Batcher network (K. E. Batcher, "Sorting networks and their applications", AFIPS
1968; :func:`~p2probust.aggregators.sorting.batcher_network`) from a comparator table over a
workspace of ``m`` wires × :data:`TILE` coordinates, so each compare-exchange is one vectorized
pass over a tile that stays in the CPU's cache, then sums the kept ranks in rank order and divides,
as the torch path does. The torch path sorts with ``torch.sort`` beyond 32 wires; any sort gives the
same ordered values, so the results are the same bits (equal values may swap places, which changes
nothing but, in principle, the sign of an exactly zero sum of ``+0.0`` and ``-0.0``).

The rule call alone at m = 1000 inputs, d = 650, float32 (``python benchmarks/bench_rules.py --n 20
--k 999 --d 650 --f 100 --rules trimmed-mean``, on this project's 2-core machine under load): 128
node-rounds/s against 12 for the torch path, 10.7×. One kernel serves every ``m`` (the comparator
table is an argument), so it is compiled once per machine, not once per ``m``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..aggregators.sorting import batcher_network

#: coordinates per workspace tile: 64 × m values (256 KB of float32 at m = 1000) stay in L2
TILE = 64

SOURCE = f'''from numba import njit
import numpy as np

TILE = {TILE}


@njit(cache=True, nogil=True, error_model="numpy")
def rank_mean_wide(params, crafted, rows, keep, count, consts, mix, pairs, out):
    m = rows.shape[1]
    d = params.shape[1]
    inf = consts[0]
    zero = consts[1]
    c_own = consts[2]
    c_agg = consts[3]
    buf = np.empty((m, TILE), dtype=params.dtype)
    acc = np.empty(TILE, dtype=params.dtype)
    for r in range(rows.shape[0]):
        n_r = count[r]
        for c0 in range(0, d, TILE):
            w = min(TILE, d - c0)
            for s in range(m):  # gather: NaN and padding read as +inf
                i = rows[r, s]
                if i >= 0:
                    for t in range(w):
                        v = params[i, c0 + t]
                        buf[s, t] = v if v == v else inf
                elif i <= -2:
                    for t in range(w):
                        v = crafted[-2 - i, c0 + t]
                        buf[s, t] = v if v == v else inf
                else:
                    for t in range(w):
                        buf[s, t] = inf
            for p in range(pairs.shape[0]):  # the sorting network, one tile-wide pass per comparator
                i = pairs[p, 0]
                j = pairs[p, 1]
                for t in range(TILE):
                    x = buf[i, t]
                    y = buf[j, t]
                    buf[i, t] = x if x <= y else y
                    buf[j, t] = y if x <= y else x
            for t in range(w):
                acc[t] = buf[0, t] if keep[r, 0] else zero
            for s in range(1, m):  # kept ranks summed in rank order, as the torch path
                k = keep[r, s]
                for t in range(w):
                    acc[t] = acc[t] + (buf[s, t] if k else zero)
            for t in range(w):
                a = acc[t] / n_r
                out[r, c0 + t] = c_own * params[rows[r, 0], c0 + t] + c_agg * a if mix else a
'''


@lru_cache(maxsize=None)
def comparators(m: int) -> np.ndarray:
    """``int64 [P, 2]``: the pruned Batcher network on ``m`` wires as a table."""
    return np.asarray(batcher_network(m), dtype=np.int64).reshape(-1, 2)
