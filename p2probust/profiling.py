"""Where a run's wall-clock time goes: the engine's own per-phase timers (issue 15's split of a round).

The phases of a synchronous round are timed where they run — ``local step``
(:meth:`p2probust.local.LocalTrainer.step`), ``attack`` (the Byzantine messages,
``Simulation.craft``), ``gather + rule`` (:func:`p2probust.step.mix_rows`: with the
compiled kernel the gather is fused into the rule), ``metrics`` and ``evaluation``
(:class:`p2probust.observer.RunObserver`) and ``record`` (writing the row). Spans are exclusive: a
phase nested in another (evaluation inside metrics) is not counted twice. Nothing is measured, and
a span costs one global read, unless a :func:`phase_times` block is active::

    import p2probust as pr
    from p2probust.profiling import phase_times

    with phase_times() as split:
        pr.simulate(cfg)
    print(split.seconds)        # {"local step": 0.7, "attack": 0.1, ...}

Times are ``time.perf_counter`` differences around synchronous CPU work; on a GPU pass
``phase_times(synchronize=True)`` so that each span waits for the device's queued work.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_active: "PhaseTimes | None" = None


class PhaseTimes:
    """Accumulated exclusive seconds and call counts per phase name."""

    def __init__(self, synchronize: bool = False, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.synchronize = synchronize
        self._stack: list[list[Any]] = []  # [name, start, seconds spent in nested spans]

    def _sync(self) -> None:
        if self.synchronize:
            import torch

            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()

    def enter(self, name: str) -> None:
        self._sync()
        self._stack.append([name, self.clock(), 0.0])

    def exit(self) -> None:
        self._sync()
        name, start, nested = self._stack.pop()
        spent = self.clock() - start
        self.seconds[name] += spent - nested
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][2] += spent

    def share(self, total: float) -> dict[str, float]:
        """Each phase's fraction of ``total`` seconds, plus ``other`` (the rest: engine, bookkeeping)."""
        out = {k: v / total for k, v in self.seconds.items()}
        out["other"] = max(0.0, 1.0 - sum(out.values()))
        return out


@contextmanager
def phase_times(synchronize: bool = False, clock: Callable[[], float] = time.perf_counter) -> Iterator[PhaseTimes]:
    """Time the phases of everything run inside the block (not thread-safe: one block at a time).
    ``clock``: wall time by default; ``time.process_time`` counts this process's CPU seconds (all
    its threads), steadier on a shared machine."""
    global _active
    if _active is not None:
        raise RuntimeError("phase_times blocks do not nest")
    _active = PhaseTimes(synchronize, clock)
    try:
        yield _active
    finally:
        _active = None


@contextmanager
def span(name: str) -> Iterator[None]:
    """Count the block's time as phase ``name`` (a no-op outside :func:`phase_times`)."""
    timer = _active
    if timer is None:
        yield
        return
    timer.enter(name)
    try:
        yield
    finally:
        timer.exit()


def timed(name: str) -> Callable[[Callable], Callable]:
    """Decorator: count every call of the function as phase ``name``."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            timer = _active
            if timer is None:
                return fn(*args, **kwargs)
            timer.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                timer.exit()

        return inner

    return wrap
