r"""Compiled rank-range means with the inbox gather fused in (numba).

Coordinate-wise median and trimmed mean both average a contiguous range of order statistics:

.. math:: \mathrm{Agg}(x)_c = \frac{1}{|K|} \sum_{q \in K} x_{(q)c}, \qquad
          K = [f, m - f) \text{ (CWTM)}, \quad K = \{\lfloor (m-1)/2 \rfloor, \lfloor m/2 \rfloor\} \text{ (CWMed)}.

The torch path (:mod:`p2probust.aggregators.sorting`) gathers every inbox into a ``[a, m, d]``
tensor and runs the sorting network as whole-slice ``minimum``/``maximum`` calls: each
comparator is a pass over memory. Here, for each recipient ``r`` and coordinate ``c``, the ``m``
values are read straight from the stacked parameters (or from the crafted Byzantine messages),
kept in registers, sorted by the *same* pruned Batcher network, and the kept ranks summed in rank
order: one read of the inputs and one write of the result. The arithmetic is that of the torch path
(same comparators, same summation order, same division), so the results are the same bits. On a
1000-node, degree-10, d = 650 round it takes ≈ 3 ms where gathering the inboxes and running the
torch rule took ≈ 35 ms (``benchmarks/bench_rules.py`` times the rule call alone: 5× at d = 650,
18× at d = 9610).

The kernel is specialised per number of wires ``m`` (the network is unrolled, so the compiler can
vectorize over coordinates): its source is generated once per ``m`` into a cache folder
(:func:`p2probust.jit.cache_dir`) and compiled by numba with ``cache=True``, so
the few seconds of compilation are paid once per machine. Recipients are split across
``torch.get_num_threads()`` threads (the kernel releases the GIL).

Inputs of :func:`rank_mean`: ``rows [a, m]`` names the source of each wire: ``i >= 0`` is row ``i``
of ``params``, ``-1`` is padding (``+inf``, sorts last), ``i <= -2`` is row ``-2 - i`` of
``crafted``. NaN is read as ``+inf``, as in the torch path.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..aggregators.sorting import MAX_NETWORK_WIRES, batcher_network
from . import cache_path, in_disk_cache, load_kernel, rank_wide, split_rows

#: calls with fewer than this many inbox values (a · m · d) stay on the torch path in ``jit="auto"``:
#: for them the one-off compilation costs more than it saves
AUTO_MIN_VALUES = 1 << 19


def worth_compiling(a: int, m: int, d: int) -> bool:
    """``jit="auto"``'s choice for a call of ``a`` recipients, ``m`` wires, ``d`` coordinates: at least
    :data:`AUTO_MIN_VALUES` inbox values, more than :data:`MAX_NETWORK_WIRES` wires (there the
    torch path is ``torch.sort``, about 10× slower, and one compiled kernel serves every ``m``), or
    a kernel for ``m`` wires that costs nothing more to use: already run in this process or compiled
    on this machine (numba's disk cache). An asynchronous run's batches vary in size: without this,
    its small batches took the torch path, 2 ms a call against 0.1 ms."""
    return m > MAX_NETWORK_WIRES or a * m * d >= AUTO_MIN_VALUES or _ready(m)


_compiled: dict[int, bool] = {}  # m -> the kernel for m wires has run here or is in the disk cache


def _ready(m: int) -> bool:
    if m not in _compiled:
        path = cache_path(kernel_source(m), f"rank_mean_m{m}")
        _compiled[m] = path is not None and in_disk_cache(path, "rank_mean")
    return _compiled[m]


def supports(m: int, dtype: torch.dtype) -> bool:
    """True if :func:`rank_mean` handles ``m`` wires of ``dtype`` (any ``m >= 2``: beyond
    :data:`MAX_NETWORK_WIRES` through :mod:`p2probust.jit.rank_wide`)."""
    return m >= 2 and dtype in (torch.float32, torch.float64)


def kernel_source(m: int) -> str:
    """Python source of the ``m``-wire kernel (network unrolled; wires are local scalars)."""
    lines = [
        "from numba import njit",
        "",
        "",
        "@njit(cache=True, nogil=True, error_model='numpy')",
        "def rank_mean(params, crafted, rows, keep, count, consts, mix, out):",
        "    d = params.shape[1]",
        "    inf = consts[0]  # +inf, 0 and the mixing weights in the parameters' dtype: float32 stays float32",
        "    zero = consts[1]",
        "    c_own = consts[2]",
        "    c_agg = consts[3]",
        "    for r in range(rows.shape[0]):",
        "        n_r = count[r]",
    ]
    for s in range(m):
        lines.append(f"        i{s} = rows[r, {s}]; k{s} = keep[r, {s}]")
    lines.append("        for c in range(d):")
    for s in range(m):
        lines.append(f"            v = params[i{s}, c] if i{s} >= 0 else (crafted[-2 - i{s}, c] if i{s} <= -2 else inf)")
        lines.append(f"            w{s} = v if v == v else inf")
    for i, j in batcher_network(m):
        lines.append(f"            w{i}, w{j} = (w{i}, w{j}) if w{i} <= w{j} else (w{j}, w{i})")
    lines.append("            t = w0 if k0 else zero")
    for s in range(1, m):
        lines.append(f"            t = t + (w{s} if k{s} else zero)")
    lines.append("            a = t / n_r")
    lines.append("            out[r, c] = c_own * params[i0, c] + c_agg * a if mix else a")
    return "\n".join(lines) + "\n"


_lock = threading.Lock()


@lru_cache(maxsize=None)
def _kernel(m: int):
    """The unrolled kernel for ``m <= MAX_NETWORK_WIRES`` wires, else the table-driven one."""
    if m > MAX_NETWORK_WIRES:
        return _wide_kernel()
    seconds = max(2, round(0.085 * len(batcher_network(m))))
    return load_kernel(kernel_source(m), f"rank_mean_m{m}", "rank_mean",
                 f"the rank-mean kernel for {m} inputs per coordinate (once per machine, about {seconds} s")


@lru_cache(maxsize=None)
def _wide_kernel():
    return load_kernel(rank_wide.SOURCE, "rank_mean_wide", "rank_mean_wide",
                 f"the rank-mean kernel for more than {MAX_NETWORK_WIRES} inputs per coordinate (once per machine, about 5 s")


def rank_mean(params: Tensor, crafted: Tensor | None, rows: Tensor, keep: Tensor, *, alpha: float | None = None,
              table: bool = False) -> Tensor:
    r"""Mean of the kept ranks of each recipient's gathered values, coordinate-wise.

    ``params [n, d]``, ``crafted [E, d]`` or None, ``rows [a, m]`` (see the module docstring),
    ``keep [a, m]`` bool over ranks (rank 0 = smallest) → ``[a, d]``; a row with no kept rank
    gives 0 (as the torch path's ``clamp_min(1)`` division). With ``alpha``, returns the
    aggregate-and-mix step :math:`(1-\alpha)\,\theta_{own} + \alpha\,\mathrm{Agg}` instead, the own
    model being row ``rows[:, 0]`` of ``params`` (the arithmetic of
    :class:`~p2probust.gossip.AggregateAndMix`: weights rounded to the dtype, no fused multiply-add).
    ``table``: use the table-driven kernel of :mod:`~p2probust.jit.rank_wide` at any ``m`` (same
    bits; compiled once for all ``m``, so small calls do not compile a kernel per ``m``).
    """
    a, m = rows.shape
    d = params.shape[1]
    if not supports(m, params.dtype):
        raise ValueError(f"compiled rank mean needs m >= 2 wires of float32/float64, got m = {m}, {params.dtype}")
    n_extra = 0 if crafted is None else crafted.shape[0]
    rows_np = rows.to(torch.int64).contiguous().numpy()
    if a and (rows_np.max() >= params.shape[0] or rows_np.min() < -1 - n_extra):  # the kernel does no bounds checks
        raise IndexError(f"rows must lie in [-1 - {n_extra}, {params.shape[0]}), got [{rows_np.min()}, {rows_np.max()}]")
    if alpha is not None and a and rows_np[:, 0].min() < 0:
        raise IndexError("with alpha, rows[:, 0] must name each recipient's own row of params")
    src = params.detach().contiguous().numpy()
    extra = (crafted.detach().to(params.dtype).contiguous().numpy() if crafted is not None and crafted.numel()
             else np.empty((0, d), dtype=src.dtype))
    keep_np = keep.contiguous().numpy()
    count = np.maximum(keep_np.sum(1), 1).astype(src.dtype)  # whole numbers: exact in the dtype
    out = np.empty((a, d), dtype=src.dtype)
    mix = alpha is not None
    consts = np.array([np.inf, 0.0, 1 - alpha if mix else 0.0, alpha if mix else 1.0], dtype=src.dtype)
    with _lock:  # write and import the kernel's module once (numba compiles, or loads its disk cache,
        kernel = _wide_kernel() if table else _kernel(m)  # at the first call, under numba's own compiler lock)
    if table or m > MAX_NETWORK_WIRES:
        pairs = rank_wide.comparators(m)
        split_rows(a, lambda s, e: kernel(src, extra, rows_np[s:e], keep_np[s:e], count[s:e], consts, mix, pairs, out[s:e]),
                   min_rows=1)
    else:
        split_rows(a, lambda s, e: kernel(src, extra, rows_np[s:e], keep_np[s:e], count[s:e], consts, mix, out[s:e]))
        _compiled[m] = True
    return torch.from_numpy(out)


def mix_inboxes(rule, params: Tensor, nodes: Tensor, inbox: Tensor, mask: Tensor, f: Tensor,
                slot_rows: Tensor | None = None) -> Tensor:
    """Aggregate-and-mix ``rule`` (a :class:`~p2probust.gossip.AggregateAndMix` over a
    :class:`~p2probust.aggregators.coordinatewise.RankMean`) for ``nodes [a]`` whose inboxes are
    given as ``inbox [a, k, d]``, ``mask [a, k]``: the slots are read in place as extra rows.
    With ``slot_rows [a, k]``, ``inbox`` is a flat store ``[R, d]`` and slot ``s`` of the ``i``-th
    node is its row ``slot_rows[i, s]`` (an asynchronous inbox buffer, read without a gather).
    Returns the new models ``[a, d]``, the bits of ``rule.batched(params[nodes], inbox, mask, ·, f)``."""
    a, k = mask.shape
    if slot_rows is None:
        slot_rows, inbox = torch.arange(a * k).view(a, k), inbox.reshape(a * k, -1)
    source = torch.cat([nodes.unsqueeze(1), torch.where(mask, -2 - slot_rows, -1)], 1)
    keep = rule.aggregator.kept_ranks(torch.cat([torch.ones((a, 1), dtype=torch.bool), mask], 1), f)
    return rank_mean(params, inbox, source, keep, alpha=rule.alpha)
