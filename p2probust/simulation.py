"""The one place where a run is wired and driven: ``simulate(config) -> Result``.

Top to bottom: :func:`~p2probust.state.build` makes the frozen :class:`~p2probust.state.Simulation`
(trainer, rule, attack, :class:`~p2probust.wiring.Wiring`) and the initial
:class:`~p2probust.state.SimState`; the engine (synchronous rounds, or the event engine) decides
who acts when, and its loop calls the step functions of :mod:`p2probust.step`, each returning the
next state; the :class:`~p2probust.observer.RunObserver` measures and records every logged round,
and the :class:`~p2probust.checkpoint.Checkpointer` saves states (an asynchronous run's
:class:`~p2probust.checkpoint_async.AsyncCheckpointer` between instants, its engine slot holding
the event engine's and the kernel's state).

Per synchronous round (one simpy event), for the acting nodes A (honest nodes, plus Byzantine
nodes whose attack follows the protocol, e.g. label flipping):

1. ``local_steps`` batched local SGD steps with local momentum (:mod:`p2probust.local`);
2. gather: ``inbox[a, j] = params[idx[a, j]]`` for every acting node in one indexing call;
3. attack: the Byzantine slots of every inbox are overwritten by ``attack.craft`` (one batched call
   over all Byzantine edges, so each recipient can get its own lie);
4. rule: the gossip rule for all acting nodes in one batched call;
5. metrics on honest nodes only, written to the run folder as the round ends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import networkx as nx
from tqdm.auto import tqdm

from .async_kernel import AsyncKernel, StaleModels, make_async_engine, run_async
from .attacks.base import AbstractAttack
from .build import default_out_dir, resolved_config
from .checkpoint import Checkpointer
from .checkpoint_async import AsyncCheckpointer
from .config import RunConfig
from .device import to_numpy
from .engine import ChurnSchedule, ComputeModel, EdgeSampler, LinkModel, RoundPlan, RoundTiming, SyncEngine, SyncNetwork
from .local import LRSchedule
from .observer import RunObserver, metric_columns
from .result import Result
from .rng import numpy_stream
from .rundir import RunDir
from .shared_inbox import check_server
from .signals import stop_on_signals
from .state import SimState, Simulation, build
from .status import Diverged, failure_fields
from .step import sync_round

log = logging.getLogger("p2probust")

__all__ = ["Loop", "Result", "default_out_dir", "simulate"]  # default_out_dir: public here too


def simulate(
    config: RunConfig | None = None,
    *,
    graph: nx.Graph | None = None,
    rule: Any = None,
    attack: AbstractAttack | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    _resume: dict | None = None,
    **overrides: Any,
) -> Result:
    """Run one simulation.

    Parameters
    ----------
    config : RunConfig, optional
        Defaults to ``RunConfig()`` (the default experiment of ``p2probust run``).
    graph : networkx.Graph, optional
        Use this graph instead of ``config.topology`` (labels are normalized to ``0..n-1``).
    rule : gossip rule or aggregator, optional
        An object instead of ``config.rule.name``; an aggregator (or ``chain``) is used in
        aggregate-and-mix with ``config.rule.alpha``.
    attack : attack object, optional
        Instead of ``config.attack.name``.
    out : path, optional
        Run folder; overrides ``config.out``. Without either, nothing is written. A non-empty
        folder is refused (``ValueError``) unless ``overwrite``; a folder in use by another run
        is always refused.
    overwrite : bool
        Clear an existing run folder at ``out`` first.
    progress : bool
        Show a progress bar of rounds (tqdm; hidden when stderr is not a terminal).
    _resume : dict, optional
        A checkpoint to continue from (use :func:`p2probust.resume`, which checks it).
    **overrides
        Dotted config keys, e.g. ``simulate(**{"train.rounds": 20})`` or ``rounds=20`` for the
        common ones (``rounds``, ``seed``, ``nodes``, ``byzantine``, ``alpha``, ``lr``).

    Returns
    -------
    Result
        ``result.summary["status"]`` is ``completed`` or ``diverged`` (an honest model became
        non-finite; see ``config.on_diverge``). A signal (Ctrl-C, SIGTERM, SIGHUP) raises
        :class:`~p2probust.signals.Interrupted` and a failed write :class:`~p2probust.recorder.RecordError`,
        after the run folder has been closed with that status.

    Examples
    --------
    >>> import p2probust as pr
    >>> res = pr.simulate(pr.RunConfig(), rounds=5)        # doctest: +SKIP
    >>> res.final("accuracy")                              # doctest: +SKIP
    """
    cfg = config if config is not None else RunConfig()
    if overrides:
        cfg = cfg.replace(**{_SHORT.get(k, k): v for k, v in overrides.items()})
    out_dir = Path(out).expanduser() if out is not None else (Path(cfg.out) if cfg.out else None)
    if cfg.checkpoint_every and any(obj is not None for obj in (graph, rule, attack)):
        raise ValueError("checkpoint_every needs a run built from its config alone (no graph, rule or attack objects), so that it can be rebuilt to resume")
    specs = cfg.engine.specs()
    server = cfg.topology.name == "server" and graph is None  # a graph object replaces the configured topology
    history = StaleModels() if specs["timing_attack"].kind == "replay" else None
    sim, state = build(cfg, graph, rule, attack, server=server,
                       replay=history.replay_fn(specs["timing_attack"].value) if history is not None else None)
    run = sim.run
    if server:
        check_server(run.gossip, cfg.engine.mode, specs, cfg.engine.drop)
    observer, resolved, bar = _observer(cfg, run, specs, history, progress)
    engine, churn = _make_engine(cfg, specs, sim, observer.msg_bytes)
    loop = Loop(cfg, sim, state, engine, observer, bar, specs)
    run_dir = RunDir(out_dir, overwrite=overwrite, resume=_resume is not None) if out_dir is not None else None
    if cfg.checkpoint_every:
        saver = AsyncCheckpointer if cfg.engine.mode == "async" else Checkpointer
        loop.ckpt = saver(cfg, run, sim, engine, churn, observer, history, out_dir)
    if _resume is not None:
        loop.state = loop.ckpt.restore(_resume)
        bar.update(observer.restored[0][-1]["round"])
    outcome: dict[str, Any] = {"status": "interrupted"}
    with stop_on_signals() as signals:
        try:
            observer.open(out_dir, run_dir, resolved)
            if _resume is None:
                loop.measure(state.params, 0, 0.0, None, True, 0, churn.online(0.0) if churn is not None else None)
            loop.run()
            outcome["status"] = "diverged" if observer.diverged else "completed"
        except Diverged:
            outcome["status"] = "diverged"
        except BaseException as err:
            recorder = observer.recorder
            outcome.update(failure_fields(err, recorder.history if recorder is not None else []))
            if outcome["status"] != "diverged":
                raise
        finally:
            signals.hold()  # a second signal must not cut the clean-up short
            bar.close()
            summary = observer.finish(outcome, engine.env.now, engine.events, loop.params, run_dir)
    recorder = observer.recorder
    return Result(resolved, recorder.history, summary, loop.params, run.is_byz, run.G, out_dir, timing=recorder.timing)


def _observer(cfg: RunConfig, run: Any, specs: dict, history: StaleModels | None, progress: bool):
    """The run's observer (metrics and records), its resolved config and its progress bar."""
    churning = specs["churn"].active
    columns = metric_columns(run, churning=churning, asynchronous=cfg.engine.mode == "async")
    resolved = resolved_config(cfg, run.G, run.is_byz, run.gossip, run.adversary, run.f, run.n, run.d, run.report)
    if run.privacy is not None:
        resolved["privacy"].update(run.privacy.used())
    bar = tqdm(total=cfg.train.rounds, desc="rounds", unit="round", disable=not progress or None, leave=False)
    msg_bytes = run.d * run.params.element_size()
    return RunObserver(run, columns, msg_bytes=msg_bytes, churning=churning, history=history, bar=bar), resolved, bar


class Loop:
    """The engine loop of one run: it holds the current :class:`~p2probust.state.SimState` and
    advances it with the step functions, round by round (synchronous) or instant by instant
    (asynchronous: :class:`~p2probust.async_kernel.AsyncKernel` holds the working tensors)."""

    def __init__(self, cfg: RunConfig, sim: Simulation, state: SimState, engine: Any, observer: RunObserver, bar: Any,
                 specs: dict):
        self.cfg, self.sim, self.state, self.engine, self.observer, self.bar = cfg, sim, state, engine, observer, bar
        t = cfg.train
        self.schedule = LRSchedule(t.lr, t.lr_schedule, t.lr_decay, t.lr_step, t.lr_offset, t.lr_milestones)
        self.flood = int(specs["timing_attack"].value) if specs["timing_attack"].kind == "flood" else 1
        self.ckpt: Checkpointer | AsyncCheckpointer | None = None  # AsyncCheckpointer in async mode
        self.ak: AsyncKernel | None = None

    @property
    def params(self):
        """The current models ``[n, d]`` (the asynchronous engine's working tensor while it runs)."""
        return self.ak.params if self.ak is not None else self.state.params

    def measure(self, params, rnd: int, now: float, lr: float | None, evaluate: bool, messages: int, online=None) -> None:
        self.observer.observe(params, rnd, now, lr, evaluate, messages, online)

    def run(self) -> None:
        if self.cfg.engine.mode != "async":
            self.engine.run(on_plan=self.on_plan)
            return
        cfg, engine = self.cfg, self.engine
        self.ak = AsyncKernel(self.sim, self.state, self.sim.wiring.idx.new_tensor(engine.s.idx),
                              dynamic=engine.s.dynamics is not None, schedule=self.schedule, measure=self.measure,
                              eval_every=cfg.eval_every, rounds=cfg.train.rounds, duration=cfg.engine.duration, bar=self.bar)
        if self.ckpt is not None:  # an AsyncCheckpointer: restores the kernel's part, writes between instants
            self.ckpt.attach(self.ak, self.state)
        self.state = run_async(engine, self.ak, cfg)
        self.ak = None

    def on_plan(self, plan: RoundPlan) -> None:
        """One synchronous round: the step function, the flood's extra messages, the observer, the checkpoint."""
        lr = self.schedule(plan.round)
        self.state, sent = sync_round(self.sim, self.state, plan, lr, donate=True)  # nothing else holds it
        if self.flood > 1 and not self.sim.silent:  # a crashed node floods nothing
            sent += (self.flood - 1) * _byzantine_sends(self.sim, plan)
        done = plan.round + 1
        evaluate = done % self.cfg.eval_every == 0 or done == self.cfg.train.rounds or plan.last
        self.measure(self.state.params, done, plan.end, lr, evaluate, sent, plan.online)
        if self.ckpt is not None:
            self.ckpt.after_round(self.state, plan.last)
        self.bar.update(1)


def _make_engine(cfg: RunConfig, specs: dict, sim: Simulation, msg_bytes: int):
    """The run's engine (synchronous rounds or the event engine) and its churn schedule (or None);
    every random time comes from the ``engine`` stream."""
    n, rng_engine = sim.wiring.n, numpy_stream(cfg.seed, "engine")
    timing = RoundTiming(
        compute_time=specs["compute_time"].mean, latency=specs["latency"].mean, local_steps=cfg.train.local_steps,
        message_bytes=msg_bytes, bandwidth=cfg.engine.bandwidth,
    )
    compute = ComputeModel.build(specs["compute_time"], cfg.train.local_steps, specs["stragglers"], n, rng_engine)
    links = LinkModel(specs["latency"], cfg.engine.bandwidth, cfg.engine.drop, msg_bytes)
    churn = ChurnSchedule(specs["churn"], n, rng_engine) if specs["churn"].active else None
    dynamics = EdgeSampler(specs["dynamics"], n) if specs["dynamics"].kind != "static" else None
    if cfg.engine.mode == "async":
        return make_async_engine(cfg, specs, sim, compute, links, churn, dynamics, rng_engine), churn
    src, dst = sim.wiring.edges()
    network = SyncNetwork(compute, links, src, dst, to_numpy(sim.wiring.is_byzantine), rng_engine, churn, dynamics,
                          specs["timing_attack"])
    return SyncEngine(cfg.train.rounds, timing, network=network, duration=cfg.engine.duration), churn


def _byzantine_sends(sim: Simulation, plan: RoundPlan) -> int:
    """Messages sent by Byzantine nodes in a synchronous round (flooding multiplies them)."""
    byz = sim.wiring.cache.get("byz_np")
    if byz is None:
        byz = sim.wiring.cache["byz_np"] = to_numpy(sim.wiring.is_byzantine)
    senders = plan.src if plan.src is not None else sim.wiring.edges()[0]
    alive = byz[senders] if plan.online is None else byz[senders] & plan.online[senders]
    return int(alive.sum())


_SHORT = {
    "rounds": "train.rounds", "lr": "train.lr", "momentum": "train.momentum", "nodes": "topology.nodes",
    "topology": "topology.name", "byzantine": "byzantine.count", "alpha": "rule.alpha",
    "task": "data.task", "partition": "data.partition",
}
