"""The kernels' side of asynchronous gossip: what happens when the engine says "these nodes act now".

:class:`AsyncKernel` answers the three calls of :class:`~p2probust.engine.events.AsyncEngine`
with batched tensor operations on :class:`~p2probust.kernels.Kernels` and an
:class:`~p2probust.network_state.InboxBuffer`: local steps and snapshots of the nodes whose compute
finished at this instant; delivered messages written into the buffer; the rule over the nodes that
aggregate at this instant, on their buffered inboxes (slots that never received a message are
masked; Byzantine slots are crafted by the attack when read).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .engine.events import AsyncEngine, AsyncSetup, Deliveries
from .kernels import Kernels
from .network_state import InboxBuffer


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
            return torch.stack(self.models)[torch.from_numpy(np.maximum(pos, 0))]

        return replay


class AsyncKernel:
    """Batched kernels for the asynchronous engine (see the module docstring)."""

    def __init__(self, kern: Kernels, capacity_idx: Tensor, *, dynamic: bool, schedule: Callable[[int], float],
                 measure: Callable[..., None], eval_every: int, rounds: int, duration: float, bar: Any):
        self.k = kern
        self.buf = InboxBuffer(capacity_idx, kern.params.shape[1], kern.params.dtype)
        self.dynamic = dynamic
        self.schedule, self.measure, self.bar = schedule, measure, bar
        self.eval_every, self.rounds, self.duration = eval_every, rounds, duration
        self.lr: float | None = None
        self.round = 0
        self.last_evaluated = True

    def compute(self, nodes: np.ndarray, handles: np.ndarray, round: int) -> None:
        """Local steps of ``nodes`` (one batched call), then snapshot their models."""
        self.round = round
        self.lr = self.schedule(round)
        t = torch.from_numpy(nodes)
        self.k.local_step(t, self.lr)
        self.buf.store(handles, self.k.params[t])

    def aggregate(self, nodes: np.ndarray, dl: Deliveries, now: float) -> None:
        """Write the deliveries, then the rule over ``nodes`` on their buffered inboxes (read from
        the snapshot pool in place; Byzantine slots are crafted into its scratch rows)."""
        buf, k = self.buf, self.k
        buf.deliver(dl.dst, dl.slot, dl.src, dl.sent_at, dl.handle)
        if nodes.size == 0:
            return
        a = torch.from_numpy(nodes)
        mask = buf.has[a] & ~buf.crafted[a] if k.silent else buf.has[a]  # silent: Byzantine slots absent
        senders = buf.sender[a]
        if self.dynamic:
            weights = mask.to(k.params.dtype) / (1 + mask.sum(1, keepdim=True)).to(k.params.dtype)
            f = (mask & k.is_byzantine[senders]).sum(1) if k.oracle else k.f[a]
        else:
            weights, f = k.table.weights[a], k.f[a]
        rows, slots = torch.nonzero(mask & buf.crafted[a], as_tuple=True)
        crafted = None
        if rows.numel():
            all_w = k.table.weights if not self.dynamic else torch.zeros(buf.has.shape, dtype=k.params.dtype)
            crafted = k.craft(a[rows], senders[rows, slots], slots, self.round, buf.sender, buf.has, all_w, k.f,
                              buf.sent_at[nodes[rows.numpy()], slots.numpy()])
        slot_rows = buf.slot_rows(nodes, rows, slots, crafted)  # may grow the pool: before reading it
        k.mix(a, buf.pool, mask, weights, k.tolerance(a, mask, f), slot_rows)

    def progress(self, r: int, now: float, messages: int, online: np.ndarray | None) -> bool:
        """Log round ``r`` (evaluated every ``eval_every`` rounds and at the last one)."""
        self.last_evaluated = r % self.eval_every == 0 or (not self.duration and r >= self.rounds)
        self.measure(r, now, self.lr, self.last_evaluated, messages, online)
        self.bar.update(1)
        return False


def make_async_engine(cfg, specs, kern: Kernels, compute, links, churn, dynamics, rng, honest) -> AsyncEngine:
    """Wire the asynchronous engine for a run (torch tensors → integer arrays)."""
    if dynamics is not None and dynamics.spec.kind != "epidemic":
        raise ValueError(f"engine.dynamics = {str(dynamics.spec)!r} needs mode sync; in async mode use epidemic:s=S")
    n = kern.table.n
    actors = np.zeros(n, dtype=bool)
    actors[kern.actors.numpy()] = True
    if dynamics is None:
        idx, mask = kern.table.idx.numpy(), kern.table.mask.numpy()
        if kern.silent:  # crashed Byzantine nodes send nothing and nobody waits for them
            byz = kern.is_byzantine.numpy()
            mask = mask & ~byz[idx] & ~byz[:, None]
    else:
        cap = 2 * dynamics.spec.value
        idx, mask = np.repeat(np.arange(n)[:, None], cap, 1), np.ones((n, cap), dtype=bool)
    setup = AsyncSetup(idx, mask, kern.is_byzantine.numpy(), actors, actors, compute, links, specs["clock"], rng,
                       churn, dynamics, specs["timing_attack"], cfg.engine.tick)
    return AsyncEngine(setup, cfg.train.rounds, duration=cfg.engine.duration)


def run_async(engine: AsyncEngine, kern: Kernels, schedule, measure, cfg, bar, ckpt=None) -> AsyncKernel:
    """Run the asynchronous engine to its end; log a final evaluated row when stopped by duration.
    ``ckpt``: an :class:`~p2probust.checkpoint_async.AsyncCheckpointer` (it restores the kernel's
    state on resume and writes checkpoints between instants)."""
    dynamic = engine.s.dynamics is not None
    ak = AsyncKernel(kern, torch.from_numpy(engine.s.idx), dynamic=dynamic, schedule=schedule, measure=measure,
                     eval_every=cfg.eval_every, rounds=cfg.train.rounds, duration=cfg.engine.duration, bar=bar)
    if ckpt is not None:
        ckpt.attach(ak)
    engine.run(ak)
    if cfg.engine.duration:
        online = None if engine.s.churn is None else engine.online.copy()
        measure(engine.round, float(engine.env.now), ak.lr, True, engine.messages, online)
    return ak
