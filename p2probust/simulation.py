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
import math
import time
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from tqdm.auto import tqdm

from . import registry
from .attacks.base import AbstractAttack
from .build import default_out_dir, place, resolved_config  # noqa: F401  (default_out_dir: public here too)
from .config import RunConfig
from .data.setup import build_partition, build_task
from .async_kernel import StaleModels, make_async_engine, run_async
from .engine import ChurnSchedule, ComputeModel, EdgeSampler, LinkModel, RoundPlan, RoundTiming, SyncEngine, SyncNetwork
from .kernels import Kernels
from .gossip.mixing import AggregateAndMix
from .gossip.registry import as_rule, make_rule
from .local import LocalTrainer, LRSchedule
from .memory import estimate_run
from .metrics import Evaluator, consensus_distance, evaluation_sample, honest_objective
from .privacy.setup import privacy_from_config
from .models import ParamSpec, init_stacked
from .node_recorder import NodeRecorder
from .recorder import Recorder
from .result import Result
from .rng import numpy_stream, torch_stream
from .rundir import RunDir
from .signals import stop_on_signals
from .status import Diverged, close_run_dir, failure_fields, honest_models_finite
from .topology import NeighborTable

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

    # --- topology and placement -------------------------------------------------------------
    G, is_byz, report = place(cfg, graph)
    n = G.number_of_nodes()
    for line in report.lines():
        (log.warning if line.lower().startswith("warning") else log.info)(line)
    table = NeighborTable.from_graph(G, weights=cfg.topology.weights)
    honest = ~is_byz

    # --- task, data, model ------------------------------------------------------------------
    task = build_task(cfg)
    ds = task.dataset
    parts, part_table, lengths = build_partition(cfg, task, honest)
    estimate_run(cfg, task, table).check(cfg.max_memory)
    model = task.make_model()
    spec = ParamSpec.from_module(model)
    d = spec.dim
    t = cfg.train
    params = init_stacked(task.make_model, n, generator=torch_stream(seed, "init"), same=t.init == "shared",
                          scheme=t.init_scheme, scale=t.init_scale)
    momentum = torch.zeros_like(params)

    # --- rule, tolerance, attack ------------------------------------------------------------
    gossip = as_rule(rule, alpha=cfg.rule.alpha) if rule is not None else make_rule(
        cfg.rule.name, alpha=cfg.rule.alpha, **dict(cfg.rule.params)
    )
    gossip = gossip.bind(table, is_byz)
    byz_counts = table.byzantine_counts(is_byz)
    if cfg.rule.tolerance == "oracle":
        f = byz_counts.clone()
    else:
        f = torch.full((n,), int(cfg.rule.tolerance), dtype=torch.long)
    gossip.check_tolerance(table.degree, torch.where(honest, f, torch.zeros_like(f)))
    adversary = attack if attack is not None else registry.attacks.create(cfg.attack.name, **dict(cfg.attack.params))
    if not isinstance(adversary, AbstractAttack):
        raise TypeError(f"attack must be an attack object, got {adversary!r}")
    if isinstance(gossip, AggregateAndMix):  # protocol-following Byzantine nodes cap their own f
        f = torch.where(honest, f, torch.minimum(f, gossip.aggregator.max_tolerance(table.degree + 1)))

    actors = torch.arange(n) if adversary.follows_protocol else torch.nonzero(honest).squeeze(1)
    if adversary.follows_protocol and cfg.data.split_among == "honest" and bool(is_byz.any()):
        raise ValueError(f"data.split_among = 'honest' gives Byzantine nodes no data, but attack {cfg.attack.name!r} trains on it; use 'all'")
    if cfg.engine.mode == "async" and t.order != "step-then-gossip":
        raise ValueError(f"train.order = {t.order!r} is for synchronous rounds; engine.mode 'async' supports step-then-gossip only")

    privacy = privacy_from_config(cfg, lengths, honest, torch_stream(seed, "noise"))  # None unless [privacy] is on
    trainer = LocalTrainer(
        model, ds.x_train, ds.y_train, part_table, lengths, loss=task.loss, batch_size=cfg.train.batch_size,
        flipped=is_byz if adversary.flips_labels else None, num_classes=ds.num_classes,
        weight_decay=t.weight_decay, sampling=t.sampling, privacy=privacy, momentum_form=t.momentum_form,
    )
    node_points, eval_rows = evaluation_sample(cfg, honest, ds.x_test.shape[0])
    evaluator = Evaluator(model, ds.x_test, ds.y_test, loss=task.loss, classification=task.classification,
                          node_points=node_points)
    honest_parts = parts if cfg.data.split_among == "honest" else [parts[i] for i in torch.nonzero(honest).squeeze(1).tolist()]
    optimum = task.optimum(honest_parts)
    objective = honest_objective(model, spec, task.loss, ds.x_train, ds.y_train, part_table[honest], lengths[honest])
    schedule = LRSchedule(t.lr, t.lr_schedule, t.lr_decay, t.lr_step, t.lr_offset, t.lr_milestones)
    specs = cfg.engine.specs()
    history = StaleModels() if specs["timing_attack"].kind == "replay" else None
    kern = Kernels(
        params, momentum, table, is_byz, f, actors, trainer, gossip, adversary, cfg.train.local_steps,
        cfg.train.momentum, torch_stream(seed, "batches"), torch_stream(seed, "attack"), ds.num_classes,
        oracle=cfg.rule.tolerance == "oracle",
        replay=history.replay_fn(specs["timing_attack"].value) if history is not None else None,
        jit=cfg.jit, order=t.order,
    )

    # --- recorder ---------------------------------------------------------------------------
    churning = specs["churn"].active
    columns = ["round", "time", "lr", "consensus_distance", "loss"]
    if task.classification:
        columns += ["accuracy", "node_acc_mean", "node_acc_min", "node_acc_max"]
    if optimum is not None:
        columns += ["dist_to_opt", "loss_gap"]
    if churning or cfg.engine.mode == "async":
        columns += ["online"]
    if churning:
        columns += ["offline_distance"]
    columns += [c for c in adversary.report_columns if c not in columns]  # per-round values the attack reports
    columns += ["messages", "bytes"] + (["epsilon"] if privacy is not None else [])
    resolved = resolved_config(cfg, G, is_byz, gossip, adversary, f, n, d, report)
    if privacy is not None:
        resolved["privacy"].update(privacy.used())
    nodes: NodeRecorder | None = None  # per-node recording (off by default), built once the folder is claimed
    shown: dict[str, str] = {}  # progress bar postfix: latest accuracy (or distance to optimum) and consensus
    msg_bytes = d * params.element_size()
    start = time.perf_counter()
    diverged: list[int] = []  # the first round at which an honest model was non-finite

    def measure(rnd: int, now: float, lr: float | None, evaluate: bool, messages: int, online=None) -> None:
        params = kern.params
        alive = honest if online is None else honest & torch.from_numpy(online)
        if not bool(alive.any()):
            alive = honest  # nobody honest online: report on all honest nodes
        theta_bar = params[alive].mean(0)
        if history is not None:
            history.record(now, theta_bar)
        row: dict[str, Any] = {c: None for c in columns}
        cd = consensus_distance(params, alive)
        finite = honest_models_finite(params, alive, cd)
        row.update(round=rnd, time=now, lr=lr, consensus_distance=cd)
        row.update(messages=messages, bytes=messages * msg_bytes)
        if privacy is not None:  # the honest node that took the most local steps (all equal in sync rounds)
            row["epsilon"] = privacy.epsilon(honest)
        if rnd > 0 and adversary.report_columns:
            row.update({c: v for c, v in adversary.report().items() if c in adversary.report_columns})
        if "online" in row:
            row["online"] = int(alive.sum()) if online is not None else int(honest.sum())
        if churning and online is not None and bool((honest & ~alive).any()):
            row["offline_distance"] = float(((params[honest & ~alive] - theta_bar) ** 2).sum(1).mean())
        if not finite:  # a non-finite model has no accuracy: the row says NaN, not a stale value
            row.update({c: float("nan") for c in _EVAL_COLUMNS if c in row})
        elif evaluate:
            row.update(evaluator.model_metrics(theta_bar))
            if task.classification:
                rows = alive if eval_rows is None or not bool((alive & eval_rows).any()) else alive & eval_rows
                acc = evaluator.node_accuracies(params[rows])
                row.update(node_acc_mean=float(acc.mean()), node_acc_min=float(acc.min()), node_acc_max=float(acc.max()))
        if optimum is not None:
            theta_star, loss_star = optimum
            row["dist_to_opt"] = float(((theta_bar - theta_star.to(theta_bar.dtype)) ** 2).sum())
            row["loss_gap"] = objective(theta_bar) - loss_star
        if row["loss"] is not None and not math.isfinite(row["loss"]):
            row["loss"] = float("nan")
        recorder.log(row, wall_s=time.perf_counter() - start)
        if nodes is not None:
            nodes.observe(rnd, now, params, theta_bar, online, evaluate)
        shown.update({k: f"{row[c]:.4g}" for k, c in (("acc", "accuracy"), ("opt", "dist_to_opt"), ("cd", "consensus_distance"))
                      if row.get(c) is not None})
        bar.set_postfix(shown, refresh=False)
        if not finite and not diverged:
            diverged.append(rnd)
            if cfg.on_diverge == "stop":
                raise Diverged(rnd)

    rounds = cfg.train.rounds
    bar = tqdm(total=rounds, desc="rounds", unit="round", disable=not progress or None, leave=False)
    rng_engine = numpy_stream(seed, "engine")
    timing = RoundTiming(
        compute_time=specs["compute_time"].mean, latency=specs["latency"].mean, local_steps=cfg.train.local_steps,
        message_bytes=msg_bytes, bandwidth=cfg.engine.bandwidth,
    )
    compute = ComputeModel.build(specs["compute_time"], cfg.train.local_steps, specs["stragglers"], n, rng_engine)
    links = LinkModel(specs["latency"], cfg.engine.bandwidth, cfg.engine.drop, msg_bytes)
    churn = ChurnSchedule(specs["churn"], n, rng_engine) if churning else None
    dynamics = EdgeSampler(specs["dynamics"], n) if specs["dynamics"].kind != "static" else None
    flood = int(specs["timing_attack"].value) if specs["timing_attack"].kind == "flood" else 1
    byz_np = is_byz.numpy()

    def on_plan(plan: RoundPlan) -> None:
        lr = schedule(plan.round)
        sent = kern.sync_round(plan, lr)
        if flood > 1 and not kern.silent:  # a crashed node floods nothing
            sent += (flood - 1) * _byzantine_sends(kern, plan, byz_np)
        done = plan.round + 1
        measure(done, plan.end, lr, done % cfg.eval_every == 0 or done == rounds or plan.last, sent, plan.online)
        bar.update(1)

    if cfg.engine.mode == "async":
        engine = make_async_engine(cfg, specs, kern, compute, links, churn, dynamics, rng_engine, honest)
    else:
        src, dst = kern.static_edges.edges()
        network = SyncNetwork(compute, links, src, dst, byz_np, rng_engine, churn, dynamics, specs["timing_attack"])
        engine = SyncEngine(rounds, timing, network=network, duration=cfg.engine.duration)
    run_dir = RunDir(out_dir, overwrite=overwrite) if out_dir is not None else None
    outcome: dict[str, Any] = {"status": "interrupted"}
    recorder: Recorder | None = None
    with stop_on_signals() as signals:
        try:
            if run_dir is not None:
                run_dir.write_json("config.json", resolved)
            recorder = Recorder(out_dir, columns)
            nodes = NodeRecorder.build(cfg, out_dir, G, is_byz, evaluator)
            measure(0, 0.0, None, True, 0, churn.online(0.0) if churn is not None else None)
            if cfg.engine.mode == "async":
                run_async(engine, kern, schedule, measure, cfg, bar)
            else:
                engine.run(on_plan=on_plan)
            outcome["status"] = "diverged" if diverged else "completed"
        except Diverged:
            outcome["status"] = "diverged"
        except BaseException as err:
            outcome.update(failure_fields(err, recorder.history if recorder is not None else []))
            if outcome["status"] != "diverged":
                raise
        finally:
            signals.hold()  # a second signal must not cut the clean-up short
            bar.close()
            if recorder is not None:
                recorder.close()
            if nodes is not None:
                try:
                    nodes.close()
                except OSError as err:
                    log.error(f"could not write nodes.npz: {err.strerror or err}")
            if diverged or outcome.get("diverged_round") is not None:
                outcome.setdefault("diverged_round", diverged[0] if diverged else None)
                outcome.setdefault("diverged_reason", "an honest model became NaN or ±inf")
            summary = {
                **outcome,
                **(recorder.summary() if recorder is not None else {"final": {}, "best": {}}),
                "wall_s": time.perf_counter() - start,
                "rounds_done": recorder.history[-1]["round"] if recorder is not None and recorder.history else 0,
                "simulated_s": float(engine.env.now),
                "simpy_events": engine.events,
                "n": n,
                "honest": int(honest.sum()),
                "d": d,
            }
            if privacy is not None:
                summary["privacy"] = privacy.summary(honest)
            if run_dir is not None:
                close_run_dir(run_dir, summary, kern.params, is_byz)
    timing = recorder.timing
    return Result(resolved, recorder.history, summary, kern.params, is_byz, G, out_dir, timing=timing)


def _byzantine_sends(kern: Kernels, plan: RoundPlan, byz_np: np.ndarray) -> int:
    """Messages sent by Byzantine nodes in a synchronous round (flooding multiplies them)."""
    if plan.src is not None:
        senders = plan.src
    else:
        senders = kern.static_edges.edges()[0]
    alive = byz_np[senders] if plan.online is None else byz_np[senders] & plan.online[senders]
    return int(alive.sum())


_EVAL_COLUMNS = ("loss", "accuracy", "node_acc_mean", "node_acc_min", "node_acc_max")

_SHORT = {
    "rounds": "train.rounds", "lr": "train.lr", "momentum": "train.momentum", "nodes": "topology.nodes",
    "topology": "topology.name", "byzantine": "byzantine.count", "alpha": "rule.alpha",
    "task": "data.task", "partition": "data.partition",
}
