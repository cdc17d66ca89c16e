"""The one place where the pieces are wired: ``simulate(config) -> Result``.

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
import numpy as np
from tqdm.auto import tqdm

from .assembly import assemble, make_trainer
from .attacks.base import AbstractAttack
from .checkpoint import Checkpointer
from .checkpoint_async import AsyncCheckpointer
from .build import default_out_dir, resolved_config  # noqa: F401  (default_out_dir: public here too)
from .config import RunConfig
from .async_kernel import StaleModels, make_async_engine, run_async
from .engine import ChurnSchedule, ComputeModel, EdgeSampler, LinkModel, RoundPlan, RoundTiming, SyncEngine, SyncNetwork
from .kernels import Kernels
from .local import LRSchedule
from .observer import RunObserver, metric_columns
from .result import Result
from .rng import numpy_stream, torch_stream
from .rundir import RunDir
from .shared_inbox import check_server
from .signals import stop_on_signals
from .status import Diverged, failure_fields

log = logging.getLogger("p2probust")


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
    seed = cfg.seed
    if cfg.checkpoint_every and any(obj is not None for obj in (graph, rule, attack)):
        raise ValueError("checkpoint_every needs a run built from its config alone (no graph, rule or attack objects), so that it can be rebuilt to resume")
    run = assemble(cfg, graph, rule, attack)
    G, is_byz, n, d, params, adversary = run.G, run.is_byz, run.n, run.d, run.params, run.adversary
    honest, privacy, t = run.honest, run.privacy, cfg.train
    trainer = make_trainer(run)
    schedule = LRSchedule(t.lr, t.lr_schedule, t.lr_decay, t.lr_step, t.lr_offset, t.lr_milestones)
    specs = cfg.engine.specs()
    server = cfg.topology.name == "server" and graph is None  # a graph object replaces the configured topology
    if server:
        check_server(run.gossip, cfg.engine.mode, specs, cfg.engine.drop)
    history = StaleModels() if specs["timing_attack"].kind == "replay" else None
    kern = Kernels(
        params, run.momentum, run.table, is_byz, run.f, run.actors, trainer, run.gossip, adversary, t.local_steps,
        t.momentum, torch_stream(seed, "batches"), torch_stream(seed, "attack"), run.task.dataset.num_classes,
        oracle=cfg.rule.tolerance == "oracle",
        replay=history.replay_fn(specs["timing_attack"].value) if history is not None else None,
        jit=cfg.jit, order=t.order, server=server,
    )

    # --- recorder ---------------------------------------------------------------------------
    churning = specs["churn"].active
    columns = metric_columns(run, churning=churning, asynchronous=cfg.engine.mode == "async")
    resolved = resolved_config(cfg, G, is_byz, run.gossip, adversary, run.f, n, d, run.report)
    if privacy is not None:
        resolved["privacy"].update(privacy.used())
    msg_bytes = d * params.element_size()
    rounds = cfg.train.rounds
    bar = tqdm(total=rounds, desc="rounds", unit="round", disable=not progress or None, leave=False)
    observer = RunObserver(run, columns, msg_bytes=msg_bytes, churning=churning, history=history, bar=bar)

    def measure(rnd: int, now: float, lr: float | None, evaluate: bool, messages: int, online=None) -> None:
        observer.observe(kern.params, rnd, now, lr, evaluate, messages, online)

    engine, churn = _make_engine(cfg, specs, kern, msg_bytes, honest)
    flood = int(specs["timing_attack"].value) if specs["timing_attack"].kind == "flood" else 1
    byz_np = is_byz.numpy()

    def on_plan(plan: RoundPlan) -> None:
        lr = schedule(plan.round)
        sent = kern.sync_round(plan, lr)
        if flood > 1 and not kern.silent:  # a crashed node floods nothing
            sent += (flood - 1) * _byzantine_sends(kern, plan, byz_np)
        done = plan.round + 1
        measure(done, plan.end, lr, done % cfg.eval_every == 0 or done == rounds or plan.last, sent, plan.online)
        if ckpt is not None:
            ckpt.after_round(done, plan.last)
        bar.update(1)

    run_dir = RunDir(out_dir, overwrite=overwrite, resume=_resume is not None) if out_dir is not None else None
    saver = AsyncCheckpointer if cfg.engine.mode == "async" else Checkpointer
    ckpt = saver(cfg, run, kern, engine, churn, observer, history, out_dir) if cfg.checkpoint_every else None
    if _resume is not None:
        ckpt.restore(_resume)
        bar.update(observer.restored[0][-1]["round"])
    outcome: dict[str, Any] = {"status": "interrupted"}
    with stop_on_signals() as signals:
        try:
            observer.open(out_dir, run_dir, resolved)
            if _resume is None:
                measure(0, 0.0, None, True, 0, churn.online(0.0) if churn is not None else None)
            if cfg.engine.mode == "async":
                run_async(engine, kern, schedule, measure, cfg, bar, ckpt)
            else:
                engine.run(on_plan=on_plan)
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
            summary = observer.finish(outcome, engine.env.now, engine.events, kern.params, run_dir)
    recorder = observer.recorder
    return Result(resolved, recorder.history, summary, kern.params, is_byz, G, out_dir, timing=recorder.timing)


def _make_engine(cfg: RunConfig, specs: dict, kern: Kernels, msg_bytes: int, honest):
    """The run's engine (synchronous rounds or the event engine) and its churn schedule (or None);
    every random time comes from the ``engine`` stream."""
    n, rng_engine = kern.table.n, numpy_stream(cfg.seed, "engine")
    timing = RoundTiming(
        compute_time=specs["compute_time"].mean, latency=specs["latency"].mean, local_steps=cfg.train.local_steps,
        message_bytes=msg_bytes, bandwidth=cfg.engine.bandwidth,
    )
    compute = ComputeModel.build(specs["compute_time"], cfg.train.local_steps, specs["stragglers"], n, rng_engine)
    links = LinkModel(specs["latency"], cfg.engine.bandwidth, cfg.engine.drop, msg_bytes)
    churn = ChurnSchedule(specs["churn"], n, rng_engine) if specs["churn"].active else None
    dynamics = EdgeSampler(specs["dynamics"], n) if specs["dynamics"].kind != "static" else None
    if cfg.engine.mode == "async":
        return make_async_engine(cfg, specs, kern, compute, links, churn, dynamics, rng_engine, honest), churn
    src, dst = kern.static_edges.edges()
    network = SyncNetwork(compute, links, src, dst, kern.is_byzantine.numpy(), rng_engine, churn, dynamics,
                          specs["timing_attack"])
    return SyncEngine(cfg.train.rounds, timing, network=network, duration=cfg.engine.duration), churn


def _byzantine_sends(kern: Kernels, plan: RoundPlan, byz_np: np.ndarray) -> int:
    """Messages sent by Byzantine nodes in a synchronous round (flooding multiplies them)."""
    if plan.src is not None:
        senders = plan.src
    else:
        senders = kern.static_edges.edges()[0]
    alive = byz_np[senders] if plan.online is None else byz_np[senders] & plan.online[senders]
    return int(alive.sum())


_SHORT = {
    "rounds": "train.rounds", "lr": "train.lr", "momentum": "train.momentum", "nodes": "topology.nodes",
    "topology": "topology.name", "byzantine": "byzantine.count", "alpha": "rule.alpha",
    "task": "data.task", "partition": "data.partition",
}
