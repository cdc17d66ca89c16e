"""The explicit state of a run (issue 15): a frozen :class:`SimState` advanced by step functions
(:mod:`p2probust.step`) over a frozen, reusable :class:`Simulation`.

* :class:`SimState` — what changes from round to round: ``params``/``momentum [n, d]``, the round,
  the simulated time, the states of the run's torch streams and the engine's state (opaque).
* :class:`Simulation` — what does not: the trainer, the rule, the attack, the
  :class:`~p2probust.wiring.Wiring`, the settings; built by :func:`build` from
  :func:`~p2probust.assembly.assemble`.

**The generators' contract.** The run's torch streams (``batches``, ``attack``) are working
objects held by the Simulation: a step function draws from them, so advancing a state twice
from the same SimState gives different draws unless its generator states are put back
(:meth:`Simulation.restore`). The step functions hand out states with ``rng = None`` (capturing
two generator states per round would cost a copy each); :meth:`Simulation.capture` fills ``rng``
when an observer or a checkpoint asks for it. Rule and attack objects keep their own memory
(:func:`~p2probust.checkpoint.object_memory`).

**The engine's slot.** ``SimState.engine`` is opaque to the step functions and to
:class:`Simulation`: whoever captures a state for a checkpoint puts the engine's state there
(the synchronous engine's is :func:`~p2probust.checkpoint.sync_engine_state`: clock, event count,
``engine`` stream, next round's plan, churn; the asynchronous engine's is
:func:`~p2probust.checkpoint_async.async_engine_state`: the event engine's state as data, churn, and
the :class:`~p2probust.async_kernel.AsyncKernel`'s inbox buffer and scalars) and hands it back to
the engine (and kernel) on resume. The step functions return states with ``engine = None``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .profiling import timed
from .aggregators.coordinatewise import RankMean
from .attacks.base import AbstractAttack, AttackContext
from .gossip.mixing import AggregateAndMix
from .jit import check_mode
from .jit import rank_mean as jit_rank_mean
from .wiring import Wiring, tolerance_cap


@dataclass(frozen=True)
class SimState:
    """One instant of a run.

    Attributes
    ----------
    params, momentum : Tensor [n, d]
    round : int
        Rounds completed.
    time : float
        Simulated time.
    rng : dict or None
        ``{"batches": state, "attack": state}`` of the run's torch streams; None: not captured
        (see the module docstring).
    engine : object
        The engine's own state, opaque here (None: not captured).
    """

    params: Tensor
    momentum: Tensor
    round: int = 0
    time: float = 0.0
    rng: dict | None = None
    engine: Any = None


@dataclass(frozen=True, eq=False)
class Simulation:
    """The frozen, reusable wiring of one run (see the module docstring).

    ``replay``: send times → stale models ``[E, d]`` (the replay timing attack); ``jit``: the
    compiled rank-mean kernel, ``auto | on | off`` (:mod:`p2probust.jit`); ``order``:
    ``step-then-gossip`` or ``gossip-then-step`` (:mod:`p2probust.step`); ``server``: one server
    aggregates once and broadcasts (:mod:`p2probust.shared_inbox`); ``run``: the assembled
    :class:`~p2probust.assembly.RunParts` (None for hand-wired simulations)."""

    wiring: Wiring
    trainer: Any
    gossip: Any
    adversary: AbstractAttack
    local_steps: int
    beta: float
    gen_batches: Any
    gen_attack: torch.Generator
    num_classes: int
    dtype: torch.dtype = torch.float32
    replay: Callable[[np.ndarray], Tensor] | None = None
    jit: str = "auto"
    order: str = "step-then-gossip"
    server: bool = False
    run: Any = None

    @property
    def silent(self) -> bool:
        return self.wiring.silent

    @cached_property
    def fusable(self) -> bool:
        """The rule is aggregate-and-mix over a rank-mean aggregator and ``jit`` allows compiling."""
        rank_rule = isinstance(self.gossip, AggregateAndMix) and isinstance(self.gossip.aggregator, RankMean)
        return rank_rule and check_mode(self.jit, rank_rule, self.wiring.idx.device)

    def use_fused(self, a: int, m: int, d: int, dtype: torch.dtype) -> bool:
        """Whether :func:`~p2probust.step.mix_rows` runs the compiled kernel for ``a`` rows of ``m`` inputs."""
        if not self.fusable or not jit_rank_mean.supports(m, dtype):
            return False
        return self.jit == "on" or jit_rank_mean.worth_compiling(a, m, d)

    @timed("attack")
    def craft(self, params: Tensor, recipients: Tensor, senders: Tensor, slots: Tensor, round: int, idx: Tensor,
              mask: Tensor, weights: Tensor, tolerance: Tensor, sent_at: np.ndarray | None = None,
              cache: dict | None = None, graph_cache: dict | None = None) -> Tensor:
        """``[E, d]`` Byzantine messages for the edges ``senders[e] → recipients[e]`` (inbox ``slots[e]``)
        of the graph ``idx``/``mask``/``weights`` with tolerances ``tolerance [n]`` (``cache``,
        ``graph_cache``: :class:`~p2probust.attacks.base.AttackContext`'s ``wiring_cache`` and ``graph_cache``)."""
        if self.replay is not None and sent_at is not None:
            return self.replay(sent_at).to(params.device, params.dtype)
        ctx = AttackContext(
            params=params, is_byzantine=self.wiring.is_byzantine, idx=idx, mask=mask, senders=senders,
            recipients=recipients, slots=slots, round=round, generator=self.gen_attack, rule=self.gossip,
            num_classes=self.num_classes, weights=weights, tolerance=tolerance, wiring_cache=cache, graph_cache=graph_cache,
        )
        return checked(self.adversary, self.adversary.craft(ctx), ctx, params)

    def state(self, params: Tensor, momentum: Tensor | None = None) -> SimState:
        """The state at round 0 (``momentum`` defaults to zeros)."""
        return SimState(params, torch.zeros_like(params) if momentum is None else momentum)

    def capture(self, state: SimState, engine: Any = None) -> SimState:
        """``state`` with the generator states of this run's torch streams (and ``engine``'s state)."""
        rng = {"batches": self.gen_batches.get_state(), "attack": self.gen_attack.get_state()}
        return replace(state, rng=rng, engine=engine if engine is not None else state.engine)

    def restore(self, state: SimState) -> None:
        """Put back the generator states of a captured ``state``."""
        self.gen_batches.set_state(state.rng["batches"])
        self.gen_attack.set_state(state.rng["attack"])


def checked(adversary: Any, crafted: Tensor, ctx: AttackContext, params: Tensor) -> Tensor:
    """``crafted`` in the models' dtype, after checking it is ``[E, d]``."""
    e, d = ctx.num_edges, params.shape[1]
    if crafted.shape != (e, d):
        raise ValueError(f"{adversary!r} returned messages of shape {tuple(crafted.shape)}, expected {(e, d)}")
    return crafted.to(params.dtype)


def build(cfg: Any, graph: Any = None, rule: Any = None, attack: Any = None, *, replay: Any = None,
          server: bool = False) -> tuple[Simulation, SimState]:
    """The Simulation of ``cfg`` (objects ``graph``, ``rule``, ``attack`` instead of the configured
    ones; ``replay``: the replay attack's stale models) and its initial state. The initial state's
    tensors are the assembled ones (``sim.run.params``, ``sim.run.momentum``): a step that is
    donated this state (:mod:`p2probust.step`) writes into them, so ``sim.run.params`` holds the
    initial models only until the first donated step."""
    from .assembly import assemble, make_trainer
    from .rng import torch_stream

    run = assemble(cfg, graph, rule, attack)
    silent = not getattr(run.adversary, "sends", True)
    wiring = Wiring.of_table(run.table, run.is_byz, run.f, run.actors, oracle=cfg.rule.tolerance == "oracle",
                             silent=silent, cap=tolerance_cap(run.gossip))
    t = cfg.train
    sim = Simulation(wiring, make_trainer(run), run.gossip, run.adversary, t.local_steps, t.momentum,
                     torch_stream(cfg.seed, "batches", run.params.device), torch_stream(cfg.seed, "attack", run.params.device),
                     run.task.dataset.num_classes,
                     dtype=run.params.dtype, replay=replay, jit=cfg.jit, order=t.order, server=server, run=run)
    return sim, sim.state(run.params, run.momentum)
