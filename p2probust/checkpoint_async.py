"""Checkpoint and resume of asynchronous runs (issue 15): the event engine's part.

:class:`AsyncCheckpointer` is the :class:`~p2probust.checkpoint.Checkpointer` of a run with
``engine.mode = "async"``: the :class:`~p2probust.state.SimState` (models, momentum, the torch
streams' states), attack and rule memory, privacy accountant, sampler, replay history and logged
rows are saved as for a synchronous run; the state's engine slot is
:func:`async_engine_state`: the event engine's state as data
(:func:`~p2probust.engine.events_state.engine_state`: simpy's queue with its insertion ids, each
node process's phase and wake-up time, the messages in flight, the snapshot handles, the
deliveries not yet aggregated, the engine's random stream), the churn processes' state, and the
:class:`~p2probust.async_kernel.AsyncKernel`'s side: its inbox buffer
(:meth:`~p2probust.network_state.InboxBuffer.state`) and the learning rate, round and evaluation
flag it last used.

When: an asynchronous round ends inside an aggregation, in the middle of a simulated instant. The
engine calls :meth:`AsyncCheckpointer.on_idle` once that instant is over (every event in simpy's
queue lies later), and the checkpoint is written there when the round crossed a multiple of
``checkpoint_every`` since the last one (several rounds may end within one instant). A resumed
run rebuilds everything else from the config, puts this state back (the engine's part at
:meth:`~p2probust.checkpoint.Checkpointer.restore`, the kernel's part once the loop has built its
kernel: :meth:`AsyncCheckpointer.attach`) and continues; its ``metrics.csv`` is identical, byte for
byte, to that of an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .checkpoint import Checkpointer, churn_state, resume_churn
from .state import SimState

_ENGINE, _BUFFER = "engine.", "inbox."


def async_engine_state(engine, ak, churn) -> dict[str, Any]:
    """The asynchronous run's engine slot for :attr:`SimState.engine <p2probust.state.SimState>`,
    between two instants: the engine's ``now``, ``events``, ``arrays`` and ``scalars``
    (:meth:`~p2probust.engine.events.AsyncEngine.state`), the churn state, and the kernel ``ak``'s
    ``inbox`` buffer and ``kernel`` scalars. Arrays may be views of the live engine and buffer:
    the slot is written out before the next instant."""
    arrays, scalars = engine.state()
    return {"now": scalars["now"], "events": scalars["events"], "arrays": arrays, "scalars": scalars,
            "churn": churn_state(churn), "inbox": ak.buf.state(),
            "kernel": {"lr": ak.lr, "round": ak.round, "last_evaluated": ak.last_evaluated}}


class AsyncCheckpointer(Checkpointer):
    """Saves and restores the state of one asynchronous run (the objects :func:`simulate` wired,
    and the :class:`~p2probust.async_kernel.AsyncKernel` handed over by :meth:`attach`)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.ak: Any = None
        self.last = 0  # the round of the last checkpoint (or of the one resumed from)

    def attach(self, ak, state: SimState) -> None:
        """Called once the loop's :class:`AsyncKernel` exists (built from ``state``), before the
        engine runs: put back the kernel's part of a restored engine slot, and ask the engine to
        call :meth:`on_idle` between instants."""
        self.ak = ak
        eng = state.engine
        if eng is not None:
            ak.buf.restore(eng["inbox"])
            ak.lr, ak.round, ak.last_evaluated = eng["kernel"]["lr"], eng["kernel"]["round"], eng["kernel"]["last_evaluated"]
        self.engine.on_idle = self.on_idle

    def on_idle(self, done: int) -> None:
        """Between two instants after round ``done`` ended: write the checkpoint when it is due."""
        every = self.cfg.checkpoint_every
        if self.path is not None and done // every > self.last // every:
            self.last = done
            now = float(self.engine.env.now)
            st = self.ak.state(now, engine=async_engine_state(self.engine, self.ak, self.churn))
            self.write(self.sim.capture(replace(st, round=done)))

    def restore(self, ckpt: dict[str, Any]) -> SimState:
        state = super().restore(ckpt)
        self.last = state.round
        return state

    # --- the engine hooks of Checkpointer -----------------------------------------------------
    def engine_meta(self, eng: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
        tensors.update({_ENGINE + k: torch.from_numpy(v) for k, v in eng["arrays"].items()})
        tensors.update({_BUFFER + k: v for k, v in eng["inbox"].items()})
        return {"now": eng["now"], "events": eng["events"], "async": eng["scalars"], "kernel": eng["kernel"]}

    def engine_from(self, meta: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
        return {"now": meta["now"], "events": meta["events"], "scalars": meta["async"], "kernel": meta["kernel"],
                "arrays": {k[len(_ENGINE):]: v.numpy() for k, v in tensors.items() if k.startswith(_ENGINE)},
                "inbox": {k[len(_BUFFER):]: v for k, v in tensors.items() if k.startswith(_BUFFER)}}

    def resume_engine(self, eng: dict[str, Any]) -> None:
        resume_churn(self.churn, eng["churn"])
        self.engine.restore(eng["arrays"], eng["scalars"])
