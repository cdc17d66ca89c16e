"""Batched seeds: the runs of one configuration that differ only by seed, as one simulation.

Each replica (one per seed) is assembled exactly as its separate run
(:func:`~p2probust.assembly.assemble`: graph, placement, partition, initial models, tolerances,
evaluation sample), then the replicas are joined: node ``i`` of replica ``r`` is
``offsets[r] + i``, the neighbour table is block diagonal, parameters and momentum are stacked,
and the training set is shared. One local step, one gather and one rule call serve every replica.
What must stay per replica stays per replica:

* random draws — batches come from each replica's own ``batches`` stream
  (:class:`~p2probust.rng.ReplicaGenerators`, :class:`~p2probust.sampling.ReplicaSampler`);
* the attack — each replica has its own attack object (its state, its ``attack`` stream) and
  crafts from its own context (its models, table, tolerances, bound rule), so global statistics
  (ALIE's honest mean, spectral vectors, line searches) never mix replicas;
* metrics — one :class:`~p2probust.observer.RunObserver` per replica on its ``[n, d]`` block; a
  replica that diverges with ``on_diverge = "stop"`` stops recording at the row its separate run
  stops at, while the others go on.

Each replica writes its own run folder, whose ``metrics.csv`` is byte for byte its separate run's
(tested). Replicas are batched only where that holds by construction or by test
(:func:`batch_blocker`); replicas whose neighbour tables have different widths (random graphs with
different maximum degrees) form separate batches, so no row gains padding slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .aggregators.base import Chain
from .assembly import RunParts, assemble, make_trainer
from .attacks.base import AttackContext
from .build import resolved_config
from .config import RunConfig
from .data.setup import build_task
from .device import resolve as resolve_device
from .engine import RoundTiming, SyncEngine
from .gossip.mixing import AggregateAndMix
from .gossip.registry import make_rule
from .local import LRSchedule
from .observer import RunObserver, metric_columns
from .result import Result
from .rng import ReplicaGenerators, torch_stream
from .rundir import RunDir
from .sampling import BatchSampler, ReplicaSampler
from .signals import stop_on_signals
from .state import Simulation, checked
from .step import sync_round
from .status import Diverged, failure_fields
from .topology import NeighbourTable
from .wiring import Wiring, tolerance_cap


def replica_safe(component: Any) -> bool:
    """Whether a rule, aggregator chain or attack is marked ``replica_safe`` (verified to give
    byte-identical per-replica metrics in a batched simulation; tests/test_batched.py)."""
    if isinstance(component, AggregateAndMix):
        return replica_safe(component.aggregator)
    if isinstance(component, Chain):
        return all(replica_safe(p) for p in (*component.pre, component.aggregator))
    return bool(getattr(component, "replica_safe", False))


def batch_blocker(cfg: RunConfig) -> str | None:
    """Why runs of ``cfg`` cannot be batched over seeds (None: they can). Batching needs the
    synchronous engine with constant timing (no randomness beyond the seeded streams it splits),
    no DP noise or per-node recording, and a rule and attack marked ``replica_safe``."""
    from . import registry

    e = cfg.engine
    specs = e.specs()
    if e.mode != "sync":
        return f"engine.mode = {e.mode!r} (only the synchronous engine is batched)"
    timing = [name for name in ("compute_time", "latency") if not specs[name].constant]
    if timing or e.drop or str(e.stragglers) != "none" or specs["churn"].active:
        return "random timing, drops, stragglers or churn"
    if specs["dynamics"].kind != "static" or specs["timing_attack"].kind != "none":
        return "a time-varying graph or a timing attack"
    if cfg.privacy.enabled:
        return "differential privacy"
    if cfg.data.task == "mnist-dropout-cnn":
        return "a model with dropout (its masks are drawn in one call, not per replica)"
    if cfg.topology.name == "server":
        return "the server topology (one aggregation per round, not one per node)"
    if cfg.record.every:
        return "per-node recording ([record] every)"
    if cfg.checkpoint_every:
        return "checkpoints (checkpoint_every; each run checkpoints its own folder)"
    rule = make_rule(cfg.rule.name, alpha=cfg.rule.alpha, **dict(cfg.rule.params))
    if not replica_safe(rule):
        return f"rule {cfg.rule.name!r} is not marked replica_safe"
    if not replica_safe(registry.attacks.get(cfg.attack.name).factory):
        return f"attack {cfg.attack.name!r} is not marked replica_safe"
    return None


@dataclass(frozen=True, eq=False)
class ReplicaSimulation(Simulation):
    """A :class:`~p2probust.state.Simulation` over the joined graph whose attack is crafted per replica.

    ``replicas``: each replica's :class:`~p2probust.assembly.RunParts` (its attack object, table,
    tolerances and bound rule); ``attack_gens``: each replica's ``attack`` stream;
    ``offsets``: ``R + 1`` node offsets; ``caches``: each replica's attack wiring cache."""

    replicas: list = field(default_factory=list)
    attack_gens: list = field(default_factory=list)
    offsets: list = field(default_factory=list)
    caches: list = field(default_factory=list)

    def craft(self, params: Tensor, recipients: Tensor, senders: Tensor, slots: Tensor, round: int, idx: Tensor,
              mask: Tensor, weights: Tensor, tolerance: Tensor, sent_at: np.ndarray | None = None,
              cache: dict | None = None) -> Tensor:
        """The Byzantine messages of every attacked edge, crafted replica by replica (edges come
        grouped by recipient in ascending order, so each replica's edges are one block)."""
        out = []
        for r, pos in ReplicaGenerators(self.attack_gens, self.offsets).split(recipients):
            run, lo, hi = self.replicas[r], self.offsets[r], self.offsets[r + 1]
            ctx = AttackContext(
                params=params[lo:hi], is_byzantine=run.is_byz, idx=run.table.idx, mask=run.table.mask,
                senders=senders[pos] - lo, recipients=recipients[pos] - lo, slots=slots[pos], round=round,
                generator=self.attack_gens[r], rule=run.gossip, num_classes=self.num_classes,
                weights=run.table.weights, tolerance=run.f, wiring_cache=self.caches[r],
            )
            out.append(checked(run.adversary, run.adversary.craft(ctx), ctx, params))
        return out[0] if len(out) == 1 else torch.cat(out)


def simulate_seeds(configs: Sequence[RunConfig], outs: Sequence[str | Path | None] | None = None, *,
                   overwrite: bool = False) -> list[Result]:
    """Run ``configs`` (one configuration that differs only by ``seed``) as batched simulations.

    Parameters
    ----------
    configs : list of RunConfig
        Equal but for ``seed``; :func:`batch_blocker` must be None for them.
    outs : list of paths, optional
        One run folder per config (None: nothing written), as ``simulate(out=...)``.
    overwrite : bool
        Clear existing run folders first.

    Returns
    -------
    list of Result
        One per config, in order; each equals ``simulate(config, out=out)``'s (metrics.csv byte for
        byte; ``wall_s`` is the batch's).

    Examples
    --------
    >>> import p2probust as pr
    >>> cfgs = [pr.RunConfig().replace(seed=s) for s in range(32)]      # doctest: +SKIP
    >>> results = pr.simulate_seeds(cfgs)                                 # doctest: +SKIP
    """
    configs = list(configs)
    outs = list(outs) if outs is not None else [cfg.out or None for cfg in configs]
    if not configs or len(outs) != len(configs):
        raise ValueError(f"simulate_seeds needs one out per config, got {len(configs)} configs and {len(outs)} outs")
    base = configs[0].replace(seed=0, out=None)
    for cfg in configs[1:]:
        if cfg.replace(seed=0, out=None) != base:
            raise ValueError(f"simulate_seeds batches configs that differ only by seed; seed {cfg.seed} differs in more")
    reason = batch_blocker(configs[0])
    if reason is not None:
        raise ValueError(f"these runs cannot be batched: {reason}")
    task = build_task(configs[0]).to(resolve_device(configs[0].device))  # one copy of the data on the device
    runs = [assemble(cfg, task=task) for cfg in configs]
    results: list[Result | None] = [None] * len(runs)
    widths: dict[int, list[int]] = {}
    for i, run in enumerate(runs):  # a batch per table width: no row gains padding slots
        widths.setdefault(run.table.k, []).append(i)
    for members in widths.values():
        done = _run_batch([runs[i] for i in members], [outs[i] for i in members], overwrite)
        for i, res in zip(members, done):
            results[i] = res
    return results  # type: ignore[return-value]


def _join(runs: list[RunParts]) -> tuple[list[int], NeighbourTable, Tensor]:
    """Node offsets, the block-diagonal neighbour table and the joined Byzantine mask."""
    offsets = [0]
    for run in runs:
        offsets.append(offsets[-1] + run.n)
    t = [run.table for run in runs]
    table = NeighbourTable(
        idx=torch.cat([tab.idx + off for tab, off in zip(t, offsets)]), mask=torch.cat([tab.mask for tab in t]),
        weights=torch.cat([tab.weights for tab in t]), self_weight=torch.cat([tab.self_weight for tab in t]),
        degree=torch.cat([tab.degree for tab in t]),
    )
    return offsets, table, torch.cat([run.is_byz for run in runs])


def _simulation(runs: list[RunParts], offsets: list[int], table: NeighbourTable, is_byz: Tensor) -> ReplicaSimulation:
    cfg, first = runs[0].cfg, runs[0]
    t = cfg.train
    samplers = [BatchSampler(run.part_table, run.lengths, t.batch_size, t.sampling) for run in runs]
    trainer = make_trainer(first, ReplicaSampler(samplers, offsets), flipped=is_byz)
    gossip = make_rule(cfg.rule.name, alpha=cfg.rule.alpha, **dict(cfg.rule.params)).bind(table, is_byz)
    actors = torch.cat([run.actors + off for run, off in zip(runs, offsets)])
    wiring = Wiring.of_table(table, is_byz, torch.cat([run.f for run in runs]), actors,
                             oracle=cfg.rule.tolerance == "oracle", silent=not getattr(first.adversary, "sends", True),
                             cap=tolerance_cap(gossip))
    return ReplicaSimulation(
        wiring, trainer, gossip, first.adversary, t.local_steps, t.momentum,
        ReplicaGenerators([torch_stream(run.cfg.seed, "batches", run.params.device) for run in runs], offsets),
        torch.Generator(first.params.device),
        first.task.dataset.num_classes, dtype=first.params.dtype, jit=cfg.jit, order=t.order,
        replicas=runs, attack_gens=[torch_stream(run.cfg.seed, "attack", run.params.device) for run in runs],
        offsets=offsets,
        caches=[{} for _ in runs],
    )


def _messages(sim: ReplicaSimulation, run: RunParts) -> int:
    """Messages one replica sends per round (what its separate plain round returns)."""
    tab = run.table
    return int((tab.mask & ~run.is_byz[tab.idx]).sum()) if sim.silent else int(tab.mask.sum())


def _run_batch(runs: list[RunParts], outs: list, overwrite: bool) -> list[Result]:
    """One batched simulation of ``runs`` (same table width), each replica into its own folder."""
    cfg = runs[0].cfg
    offsets, table, is_byz = _join(runs)
    sim = _simulation(runs, offsets, table, is_byz)
    live = [sim.state(torch.cat([run.params for run in runs]), torch.cat([run.momentum for run in runs]))]
    t = cfg.train
    schedule = LRSchedule(t.lr, t.lr_schedule, t.lr_decay, t.lr_step, t.lr_offset, t.lr_milestones)
    specs = cfg.engine.specs()
    msg_bytes = runs[0].d * live[0].params.element_size()
    timing = RoundTiming(compute_time=specs["compute_time"].mean, latency=specs["latency"].mean,
                         local_steps=t.local_steps, message_bytes=msg_bytes, bandwidth=cfg.engine.bandwidth)
    engine = SyncEngine(t.rounds, timing, duration=cfg.engine.duration)
    reps = [_Replica(run, out, msg_bytes, _messages(sim, run)) for run, out in zip(runs, outs)]
    blocks = [slice(lo, hi) for lo, hi in zip(offsets, offsets[1:])]

    def on_plan(plan) -> bool:
        lr = schedule(plan.round)
        live[0] = sync_round(sim, live[0], plan, lr, donate=True)[0]  # observers copy what they keep
        done = plan.round + 1
        evaluate = done % cfg.eval_every == 0 or done == t.rounds or plan.last
        for rep, block in zip(reps, blocks):
            rep.observe(live[0].params[block], engine, done, plan.end, lr, evaluate)
        return not any(rep.live for rep in reps)

    with stop_on_signals() as signals:
        try:
            for rep, block in zip(reps, blocks):
                rep.start(live[0].params[block], engine, overwrite)
            if any(rep.live for rep in reps):
                engine.run(on_plan=on_plan)
            for rep in reps:
                rep.ended()
        except BaseException as err:  # the whole batch stops: every replica still running records why
            for rep in reps:
                rep.fail(err)
            raise
        finally:
            signals.hold()  # a second signal must not cut the clean-up short
            out = [rep.finish(live[0].params[block], engine) for rep, block in zip(reps, blocks)]
    return out


class _Replica:
    """One replica's records: its observer, run folder and outcome."""

    def __init__(self, run: RunParts, out, msg_bytes: int, messages: int):
        self.run, self.messages = run, messages
        self.out_dir = Path(out).expanduser() if out is not None else None
        self.run_dir: RunDir | None = None
        self.observer = RunObserver(run, metric_columns(run, churning=False, asynchronous=False),
                                    msg_bytes=msg_bytes, churning=False)
        self.resolved = resolved_config(run.cfg, run.G, run.is_byz, run.gossip, run.adversary, run.f, run.n,
                                        run.d, run.report)
        self.outcome: dict[str, Any] = {"status": "interrupted"}
        self.live = True
        self.stopped_at: tuple | None = None  # (simulated time, simpy events, its models) when it stopped

    def start(self, params: Tensor, engine: SyncEngine, overwrite: bool) -> None:
        """Claim the run folder, write config.json and the round-0 row."""
        if self.out_dir is not None:
            self.run_dir = RunDir(self.out_dir, overwrite=overwrite)
        self.observer.open(self.out_dir, self.run_dir, self.resolved)
        self.observe(params, engine, 0, 0.0, None, True, messages=0)

    def observe(self, params: Tensor, engine: SyncEngine, rnd: int, now: float, lr: float | None, evaluate: bool,
                messages: int | None = None) -> None:
        """The replica's row of round ``rnd`` (nothing once it has stopped)."""
        if not self.live:
            return
        try:
            self.observer.observe(params, rnd, now, lr, evaluate, self.messages if messages is None else messages)
        except Diverged:  # on_diverge = "stop": this replica's separate run ends here
            self.live, self.outcome = False, {"status": "diverged"}
            self.stopped_at = (float(engine.env.now), engine.events, params.clone())

    def ended(self) -> None:
        if self.live:
            self.outcome = {"status": "diverged" if self.observer.diverged else "completed"}

    def fail(self, err: BaseException) -> None:
        if self.live:
            recorder = self.observer.recorder
            self.outcome = failure_fields(err, recorder.history if recorder is not None else [])

    def finish(self, params: Tensor, engine: SyncEngine) -> Result:
        """Close the records; the replica's :class:`~p2probust.result.Result`."""
        # a clone (its own storage: params.pt holds this replica only), taken when the replica stopped
        now, events, final = self.stopped_at or (float(engine.env.now), engine.events, params.clone())
        summary = self.observer.finish(self.outcome, now, events, final, self.run_dir)
        recorder, run = self.observer.recorder, self.run
        history = recorder.history if recorder is not None else []
        return Result(self.resolved, history, summary, final, run.is_byz, run.G, self.out_dir,
                      timing=recorder.timing if recorder is not None else [])
