"""Small calls run on one thread: torch's intra-op threads cost more than they save below a size.

p2probust sets torch's OpenMP workers to wait passively (:mod:`p2probust`'s ``__init__``): a
spinning worker steals a core from the compiled kernels and, on a shared machine, from every other
process (measured here with one competing busy process: a synchronous round at n = 1000 took
28–32 ms with torch's default spinning against 19–21 ms passive, and an asynchronous Poisson round
200–230 ms against 48–55 ms). A sleeping worker must be woken for every parallel op, though, which
costs tens of microseconds: an asynchronous instant that steps or aggregates a batch of 130 nodes
(d = 650) issues dozens of small ops and spends more time waking the worker than computing. So a
call over fewer than :data:`SMALL_VALUES` model values (rows × d) runs with one torch thread, and
the thread count is put back after it.

The results do not depend on it: torch's element-wise, matrix-product, softmax and indexing ops,
and the compiled kernels, give the same bits on one thread and on two (checked on 60 asynchronous
runs: 3 clocks × 4 attacks × 5 rules, parameters and metrics byte-identical; the metrics, whose
reductions may depend on the thread count, are computed outside these calls).

Break-even here (2 cores, passive workers, d = 650): a local step of 130 nodes took 1.5 ms on one
thread against 2.2 ms on two, of 300 nodes 3.5 ms against 3.1 ms.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

#: model values (rows × d) below which a call runs on one torch thread (≈ 200 nodes at d = 650)
SMALL_VALUES = 1 << 17

_lock = threading.Lock()
_inside = 0  # calls currently running on one thread (several Python threads may be in one)
_saved = 0  # the thread count to put back when the last of them ends


@contextmanager
def one_thread_if_small(values: int) -> Iterator[None]:
    """Run the body with one torch thread when it works on fewer than :data:`SMALL_VALUES` values."""
    global _inside, _saved
    if values >= SMALL_VALUES:
        yield
        return
    with _lock:
        if _inside == 0:
            _saved = torch.get_num_threads()
            if _saved > 1:
                torch.set_num_threads(1)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _saved > 1:
                torch.set_num_threads(_saved)
