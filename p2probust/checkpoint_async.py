"""Checkpoint and resume of asynchronous runs (issue 15): the event engine's part.

:class:`AsyncCheckpointer` is the :class:`~p2probust.checkpoint.Checkpointer` of a run with
``engine.mode = "async"``: the models, momentum, random generators, attack and rule memory,
privacy accountant, churn schedule, replay history and logged rows are saved as for a synchronous
run; the engine's part is the event engine's state as data
(:func:`~p2probust.engine.events_state.engine_state`: simpy's queue with its insertion ids, each
node process's phase and wake-up time, the messages in flight, the snapshot handles, the
deliveries not yet aggregated, the engine's random stream), plus the kernels' side: the inbox
buffer (:meth:`~p2probust.network_state.InboxBuffer.state`) and the learning rate and round the
kernels last used.

When: an asynchronous round ends inside an aggregation, in the middle of a simulated instant. The
engine calls :meth:`AsyncCheckpointer.on_idle` once that instant is over (every event in simpy's
queue lies later), and the checkpoint is written there when the round crossed a multiple of
``checkpoint_every`` since the last one (several rounds may end within one instant). A resumed
run rebuilds everything else from the config, puts this state back and continues; its
``metrics.csv`` is identical, byte for byte, to that of an uninterrupted run.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .checkpoint import FILE, Checkpointer
from .engine.events_state import engine_state, restore_engine
from .rundir import write_atomic

_ENGINE, _BUFFER = "engine.", "inbox."


class AsyncCheckpointer(Checkpointer):
    """Saves and restores the state of one asynchronous run (the objects :func:`simulate` wired,
    and the :class:`~p2probust.async_kernel.AsyncKernel` handed over by :meth:`attach`)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.ak: Any = None
        self.last = 0  # the round of the last checkpoint (or of the one resumed from)
        self._kernel_state: tuple[dict[str, Tensor], dict[str, Any]] | None = None

    def attach(self, ak) -> None:
        """Called once the run's :class:`AsyncKernel` exists, before the engine runs: restore its
        state when resuming, and ask the engine to call :meth:`on_idle` between instants."""
        self.ak = ak
        if self._kernel_state is not None:
            tensors, meta = self._kernel_state
            ak.buf.restore({k[len(_BUFFER):]: v for k, v in tensors.items() if k.startswith(_BUFFER)})
            ak.lr, ak.round, ak.last_evaluated = meta["lr"], meta["round"], meta["last_evaluated"]
            self._kernel_state = None
        self.engine.on_idle = self.on_idle

    def on_idle(self, done: int) -> None:
        """Between two instants after round ``done`` ended: write the checkpoint when it is due."""
        every = self.cfg.checkpoint_every
        if self.path is not None and done // every > self.last // every:
            self.last = done
            buf = io.BytesIO()
            torch.save(self.state(done), buf)
            write_atomic(self.path / FILE, buf.getvalue())

    def engine_state(self, tensors: dict[str, Tensor]) -> dict[str, Any]:
        arrays, scalars = engine_state(self.engine)
        tensors.update({_ENGINE + k: torch.from_numpy(v) for k, v in arrays.items()})
        tensors.update({_BUFFER + k: v for k, v in self.ak.buf.state().items()})
        ak = self.ak
        return {"now": scalars["now"], "events": scalars["events"], "async": scalars,
                "kernel": {"lr": ak.lr, "round": ak.round, "last_evaluated": ak.last_evaluated}}

    def engine_restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        arrays = {k[len(_ENGINE):]: _numpy(v) for k, v in tensors.items() if k.startswith(_ENGINE)}
        restore_engine(self.engine, arrays, meta["async"])
        self.last = meta["round"]
        self._kernel_state = (tensors, meta["kernel"])


def _numpy(t: Tensor) -> np.ndarray:
    return t.numpy()
