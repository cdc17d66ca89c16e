"""The tensor side of asynchronous gossip: what happens when the engine says "these nodes act now".

:class:`AsyncKernel` answers the three calls of :class:`~p2probust.engine.events.AsyncEngine`
with the step functions of :mod:`p2probust.step` over a :class:`~p2probust.state.Simulation` and an
:class:`~p2probust.network_state.InboxBuffer`: local steps and snapshots of the nodes whose compute
finished at this instant; delivered messages written into the buffer; the rule over the nodes that
aggregate at this instant, on their buffered inboxes (slots that never received a message are
masked; Byzantine slots are crafted by the attack when read), through the same
:func:`~p2probust.step.mix_rows` as a synchronous round.

**Working tensors.** The asynchronous engine owns its working ``params``/``momentum`` between
instants: the state it starts from is donated (see :mod:`p2probust.step`), and the rows of a
local step and the rows mixed at an instant are written into them in place, because a copy of
``[n, d]`` per batch of a few nodes would cost more than the batch. Nothing else holds that tensor in between (metrics,
snapshots and the replay history copy what they keep); :meth:`AsyncKernel.state` materialises a
:class:`~p2probust.state.SimState` (copies) for observers and checkpoints.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .device import from_numpy, to_numpy
from .engine.events import AsyncEngine, AsyncSetup, Deliveries
from .jit import engine as jit_engine
from .network_state import SCRATCH_ROWS, InboxBuffer
from .state import SimState, Simulation
from .step import Inbox, kept_ranks, local_step, mix_rows
from .threads import one_thread_if, small_mix, small_step


class StaleModels:
    """History of the honest mean model, for the replay timing attack: ``record(t, θ̄)`` at every
    logged row; a replayed message sent at time ``s`` carries the newest θ̄ recorded at or before
    ``s − lag`` (the oldest if none)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.models: list[Tensor] = []

    def record(self, t: float, theta: Tensor) -> None:
        self.times.append(float(t))
        self.models.append(theta.detach().clone())

    def replay_fn(self, lag: float) -> Callable[[np.ndarray], Tensor]:
        def replay(sent_at: np.ndarray) -> Tensor:
            pos = np.searchsorted(np.asarray(self.times), np.asarray(sent_at) - lag, side="right") - 1
            return torch.stack(self.models)[from_numpy(np.maximum(pos, 0), self.models[0].device)]

        return replay


class AsyncKernel:
    """Batched kernels for the asynchronous engine (see the module docstring)."""

    def __init__(self, sim: Simulation, state: SimState, capacity_idx: Tensor, *, dynamic: bool,
                 schedule: Callable[[int], float], measure: Callable[..., None], eval_every: int, rounds: int,
                 duration: float, bar: Any):
        self.sim = sim
        self.params, self.momentum = state.params, state.momentum  # the working tensors: ``state`` is donated
        w = sim.wiring  # scratch rows for as many crafted messages as a static graph has Byzantine links (up to 1024)
        byzantine_links = int((w.mask & w.is_byzantine[w.idx]).sum()) if not dynamic else 0
        self.buf = InboxBuffer(capacity_idx, self.params.shape[1], self.params.dtype, self.params.device,
                               scratch=max(SCRATCH_ROWS, min(byzantine_links, 1024)))
        self._graph_cache: dict = {}  # :meth:`_tables`
        self.dynamic = dynamic
        self.schedule, self.measure, self.bar = schedule, measure, bar
        self.eval_every, self.rounds, self.duration = eval_every, rounds, duration
        self.lr: float | None = None
        self.round = 0
        self.last_evaluated = True

    def state(self, now: float, engine: Any = None) -> SimState:
        """A :class:`~p2probust.state.SimState` of this instant (copies of the working tensors)."""
        return SimState(self.params.clone(), self.momentum.clone(), self.round, float(now), engine=engine)

    def compute(self, nodes: np.ndarray, handles: np.ndarray, round: int) -> None:
        """Local steps of ``nodes`` (one batched call), then snapshot their models."""
        self.round = round
        self.lr = self.schedule(round)
        t = from_numpy(nodes, self.params.device)
        with one_thread_if(small_step(self.sim.trainer, nodes.size * self.sim.local_steps)):  # the snapshot too
            self.params, self.momentum = local_step(self.sim, self.params, self.momentum, t, self.lr, donate=True)
            self.buf.store(handles, self.params, t)

    def aggregate(self, nodes: np.ndarray, dl: Deliveries, now: float) -> None:
        """Write the deliveries, then the rule over ``nodes`` on their buffered inboxes (read from
        the snapshot pool in place; Byzantine slots are crafted into its scratch rows)."""
        self.buf.deliver(dl)
        if nodes.size == 0:
            return
        with one_thread_if(small_mix(nodes.size, self.buf.has.shape[1], self.params.shape[1])):
            self._mix(nodes)

    def _mix(self, nodes: np.ndarray) -> None:
        """The rule over ``nodes`` on their buffered inboxes, written into ``params``."""
        buf, sim, w, t = self.buf, self.sim, self.sim.wiring, self._tables()
        a = torch.from_numpy(nodes).to(self.params.device)  # the buffer's bookkeeping is on the CPU
        mask = t["mask"][a]
        rows, slots = torch.nonzero(t["crafted"][a], as_tuple=True)
        crafted = None
        if rows.numel():
            recipients = a[rows]
            sent_at = buf.sent_at[to_numpy(recipients), to_numpy(slots)] if sim.replay is not None else None
            crafted = sim.craft(self.params, recipients, t["sender"][recipients, slots], slots, self.round, t["sender"],
                                t["has"], t["all_weights"], w.f, sent_at, graph_cache=t["attack"])
        slot_rows = buf.slot_rows(nodes, rows, slots, crafted)  # may grow the pool: before reading it
        new = mix_rows(sim, self.params, a, Inbox(store=buf.pool, slot_rows=slot_rows), mask, t["weights"][a], t["f"][a],
                       block_bytes=None, kept=lambda: self._kept(t)[a])  # one call per instant: a rule's draws are per aggregation
        self.params.index_copy_(0, a, new)

    def _tables(self) -> dict[str, Any]:
        """Every node's present slots, mixing weights, tolerance (and kept ranks, :meth:`_kept`) and
        the attack's graph cache: each node's row depends on which of its slots hold a message and
        from whom alone, so the rows are kept and only those of the nodes whose slots changed since
        (:meth:`InboxBuffer.take_changed`) are computed again (the attack's cache is told them, under
        ``"dirty"``); all of them at first, or when more than a quarter changed."""
        buf, w, t = self.buf, self.sim.wiring, self._graph_cache
        rows = buf.take_changed()
        if not rows.size:
            return t
        dev, dtype = self.params.device, self.params.dtype
        if not t or 4 * rows.size > buf.has.shape[0]:
            has, sender = buf.has.to(dev), buf.sender.to(dev)
            t = self._graph_cache = {"has": has, "sender": sender, "attack": {}, "mask": torch.empty_like(has),
                                     "crafted": torch.empty_like(has), "f": torch.empty_like(w.f)}
            if self.dynamic:  # weights from the present slots; the attack sees none
                t["weights"] = torch.empty(has.shape, dtype=dtype, device=dev)
                t["all_weights"] = torch.zeros(has.shape, dtype=dtype, device=dev)
            else:
                t["weights"] = t["all_weights"] = w.weights
            rows = torch.arange(has.shape[0], device=dev)
        else:
            rows = from_numpy(rows, dev)
            if t["has"] is not buf.has:  # a copy on the run's device
                t["has"][rows], t["sender"][rows] = buf.has[rows.cpu()].to(dev), buf.sender[rows.cpu()].to(dev)
            dirty = t["attack"].get("dirty")
            t["attack"]["dirty"] = rows if dirty is None else torch.cat([dirty, rows])
        has, crafted, sender = t["has"][rows], buf.crafted[rows.cpu()].to(dev), t["sender"][rows]
        mask = has & ~crafted if w.silent else has  # silent: Byzantine slots absent
        t["mask"][rows], t["crafted"][rows] = mask, mask & crafted
        if self.dynamic:
            t["weights"][rows] = mask.to(dtype) / (1 + mask.sum(1, keepdim=True)).to(dtype)
        t["f"][rows] = w.tolerance(rows, mask, sender if self.dynamic else None)
        if "kept" in t:
            t["kept"][rows] = kept_ranks(self.sim, mask, t["f"][rows])
        return t

    def _kept(self, t: dict[str, Any]) -> Tensor:
        if "kept" not in t:
            t["kept"] = kept_ranks(self.sim, t["mask"], t["f"])
        return t["kept"]

    def progress(self, r: int, now: float, messages: int, online: np.ndarray | None) -> bool:
        """Log round ``r`` (evaluated every ``eval_every`` rounds and at the last one)."""
        self.last_evaluated = r % self.eval_every == 0 or (not self.duration and r >= self.rounds)
        self.measure(self.params, r, now, self.lr, self.last_evaluated, messages, online)
        self.bar.update(1)
        return False


def make_async_engine(cfg, specs, sim: Simulation, compute, links, churn, dynamics, rng) -> AsyncEngine:
    """Wire the asynchronous engine for a run (torch tensors → integer arrays)."""
    if dynamics is not None and dynamics.spec.kind != "epidemic":
        raise ValueError(f"engine.dynamics = {str(dynamics.spec)!r} needs mode sync; in async mode use epidemic:s=S")
    w = sim.wiring
    n = w.n
    byz = to_numpy(w.is_byzantine)
    actors = np.zeros(n, dtype=bool)
    actors[to_numpy(w.actors)] = True
    if dynamics is None:
        idx, mask = to_numpy(w.idx), to_numpy(w.mask)
        if w.silent:  # crashed Byzantine nodes send nothing and nobody waits for them
            mask = mask & ~byz[idx] & ~byz[:, None]
    else:
        cap = 2 * dynamics.spec.value
        idx, mask = np.repeat(np.arange(n)[:, None], cap, 1), np.ones((n, cap), dtype=bool)
    setup = AsyncSetup(idx, mask, byz, actors, actors, compute, links, specs["clock"], rng,
                       churn, dynamics, specs["timing_attack"], cfg.engine.tick, jit_engine if jit_engine.usable() else None)
    return AsyncEngine(setup, cfg.train.rounds, duration=cfg.engine.duration)


def run_async(engine: AsyncEngine, ak: AsyncKernel, cfg) -> SimState:
    """Run the asynchronous engine to its end; log a final evaluated row when stopped by
    duration; the final state (``ak`` holds the working tensors while it runs)."""
    engine.run(ak)
    if cfg.engine.duration:
        online = None if engine.s.churn is None else engine.online.copy()
        ak.measure(ak.params, engine.round, float(engine.env.now), ak.lr, True, engine.messages, online)
    return SimState(ak.params, ak.momentum, engine.round, float(engine.env.now))
