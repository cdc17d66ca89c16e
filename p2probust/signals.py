"""Stopping a run from outside: Ctrl-C (SIGINT), ``timeout``/Slurm/``docker stop`` (SIGTERM), a
closed terminal (SIGHUP) all end it the same way — status ``interrupted``, one line, complete rows.

The first signal raises :class:`Interrupted` in the main thread (a ``KeyboardInterrupt``, so code
that already handles Ctrl-C handles it); every later signal is only counted, so the run's clean-up
(the last row, ``summary.json``, the final parameters) is never cut short by a second Ctrl-C and
never prints a traceback.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by signal ``signum``; exit code ``128 + signum`` by shell convention."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_active = threading.local()


class SignalGuard:
    """The handlers of one :func:`stop_on_signals` block; ``received`` lists the signals seen."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def later(self, signum, _frame) -> None:
        self.received.append(signum)

    def first(self, signum, _frame) -> None:
        self.received.append(signum)
        self.hold()
        raise Interrupted(signum)

    def hold(self) -> None:
        """From now on, signals are only recorded (for clean-up that must not be cut short)."""
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                signal.signal(s, self.later)


@contextmanager
def stop_on_signals(*, restore: bool = True) -> Iterator[SignalGuard]:
    """Within the block, the first of SIGINT/SIGTERM/SIGHUP raises :class:`Interrupted`; later ones
    (and any after :meth:`SignalGuard.hold`) are recorded and otherwise ignored. Nested blocks reuse
    the outer handlers. With ``restore=False`` the handlers stay "record and ignore" after an
    interruption (for a process about to exit: a late Ctrl-C cannot interrupt its last words)."""
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread() or getattr(_active, "on", False):
        yield guard
        return
    old = {s: signal.signal(s, guard.first) for s in SIGNALS}
    _active.on = True
    try:
        yield guard
    finally:
        _active.on = False
        if restore or not guard.received:
            for s, handler in old.items():
                signal.signal(s, handler)
