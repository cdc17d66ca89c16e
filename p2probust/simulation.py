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

import inspect
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, registry
from .attacks.base import AbstractAttack
from .config import DEFAULT_NODES, RunConfig
from .data.partition import pad_partition
from .async_kernel import StaleModels, make_async_engine, run_async
from .engine import ChurnSchedule, ComputeModel, EdgeSampler, LinkModel, RoundPlan, RoundTiming, SyncEngine, SyncNetwork
from .kernels import Kernels
from .gossip.mixing import AggregateAndMix
from .gossip.registry import as_rule, make_rule
from .local import LocalTrainer, LRSchedule
from .memory import estimate, estimate_run
from .metrics import Evaluator, consensus_distance
from .privacy.setup import privacy_from_config
from .models import ParamSpec, init_stacked
from .recorder import Recorder
from .rng import numpy_stream, torch_stream
from .rundir import RunDir, default_run_dir
from .signals import stop_on_signals
from .status import Diverged, honest_models_finite, is_overflow
from .topology import NeighborTable, build_topology, is_topology_path, place_byzantine, placement_report, validate_graph

log = logging.getLogger("p2probust")


@dataclass(frozen=True)
class Result:
    """What a run returns.

    Attributes
    ----------
    config : dict
        The fully resolved configuration (as written to ``config.json``).
    history : list of dict
        One row per logged round (``round`` 0 is the initial state); evaluation columns are
        ``None`` on rounds without evaluation.
    summary : dict
        Final and best values, wall time, status (as written to ``summary.json``).
    params : Tensor [n, d]
        Final stacked parameters of every node.
    is_byzantine : BoolTensor [n]
    graph : networkx.Graph
    out_dir : Path or None
    timing : list of dict
        Wall-clock seconds since set-up at each logged round (``timing.csv``); kept out of
        ``history`` so that ``metrics.csv`` is reproducible byte for byte.
    """

    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    params: torch.Tensor
    is_byzantine: torch.Tensor
    graph: nx.Graph
    out_dir: Path | None = None
    timing: list[dict[str, Any]] = field(default_factory=list)  #: ``[{"round", "wall_s"}]``, as timing.csv

    def metric(self, name: str) -> list[tuple[int, float]]:
        """``[(round, value), ...]`` of the rounds where ``name`` was measured."""
        return [(r["round"], r[name]) for r in self.history if r.get(name) is not None]

    def final(self, name: str) -> float:
        """Last measured value of ``name``."""
        values = self.metric(name)
        if not values:
            raise KeyError(f"metric {name!r} was never measured; measured: {sorted(self.history[-1])}")
        return values[-1][1]


def default_out_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    """A new, empty, uniquely named folder under ``root`` for a run of ``cfg``:
    ``<time to the ms>-<topology>-<rule>-<attack>-s<seed>-<config hash>[-N]`` (see :mod:`p2probust.rundir`)."""
    parts = [Path(cfg.topology.name).stem, cfg.rule.name.replace("+", "_"), cfg.attack.name, f"s{cfg.seed}"]
    return default_run_dir(parts, cfg.to_dict(), root)


def _graph(cfg: RunConfig, graph: nx.Graph | None) -> nx.Graph:
    if graph is not None:
        return nx.convert_node_labels_to_integers(graph, ordering="sorted" if _sortable(graph) else "default")
    t = cfg.topology
    n = t.nodes
    if n is None and not (is_topology_path(t.name) and not t.name.endswith(".py")):
        n = DEFAULT_NODES
    if n is not None:  # refuse before building a graph that cannot fit
        estimate_graph_only(n, t.degree).check(cfg.max_memory)
    extra = dict(t.params)
    if extra and not is_topology_path(t.name):
        accepted = inspect.signature(registry.topologies.get(t.name).factory).parameters
        unknown = [key for key in extra if key not in accepted or key in ("n", "seed")]
        if unknown:
            allowed = ", ".join(k for k in accepted if k not in ("n", "seed")) or "none"
            raise ValueError(f"topology {t.name!r} has no parameter {unknown[0]!r}; its parameters: {allowed}")
    return build_topology(
        t.name, n, seed=int(numpy_stream(cfg.seed, "graph").integers(2**31)),
        **{"degree": t.degree, "p": t.p, "k": t.k, "beta": t.beta, **extra},
    )


def estimate_graph_only(n: int, degree: int):
    """The part of the memory estimate known before the graph exists (one parameter per node)."""
    return estimate(n=n, k=degree, d=1, batch=1, local=1, activations=0, edges=n * degree / 2)


def place(cfg: RunConfig, graph: nx.Graph | None = None):
    """The run's graph (``graph`` or the configured topology), its Byzantine nodes and the
    placement report: ``(G, is_byz [n] bool, PlacementReport)``; validated, nothing else built."""
    G = _graph(cfg, graph)
    n = G.number_of_nodes()
    if n == 0:
        raise ValueError("the graph has no nodes; a topology needs at least 2 nodes joined by edges")
    if cfg.byzantine.count >= n and cfg.byzantine.placement != "attach":  # attach: count is per honest node
        raise ValueError(f"byzantine.count = {cfg.byzantine.count} is invalid; expected fewer Byzantine nodes than nodes (n = {n})")
    if cfg.byzantine.placement == "attach":  # attacks issue: add `count` Byzantine vertices per honest node
        from .topology.adversarial import attach_byzantine

        G, is_byz = attach_byzantine(G, cfg.byzantine.count)
    else:
        is_byz = place_byzantine(
            G, cfg.byzantine.count, cfg.byzantine.placement,
            seed=int(numpy_stream(cfg.seed, "placement").integers(2**31)), nodes=list(cfg.byzantine.nodes) or None,
        )
    validate_graph(G, is_byz)
    return G, is_byz, placement_report(G, is_byz)


def _sortable(graph: nx.Graph) -> bool:
    try:
        sorted(graph.nodes)
        return True
    except TypeError:
        return False


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
    task = registry.tasks.create(
        cfg.data.task, data_dir=cfg.data.data_dir, test_fraction=cfg.data.test_fraction, split_seed=cfg.data.split_seed,
        **dict(cfg.data.params),
    )
    ds = task.dataset
    part_params = {"alpha": cfg.data.dirichlet_alpha} if cfg.data.partition == "dirichlet" else {}
    parts = registry.partitions.create(
        cfg.data.partition, labels=np.asarray(task.partition_labels), n=n,
        seed=int(numpy_stream(seed, "partition").integers(2**31)), **part_params,
    )
    part_table, lengths = pad_partition(parts)
    estimate_run(cfg, task, table).check(cfg.max_memory)
    model = task.make_model()
    spec = ParamSpec.from_module(model)
    d = spec.dim
    params = init_stacked(task.make_model, n, generator=torch_stream(seed, "init"))
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

    privacy = privacy_from_config(cfg, lengths, honest, torch_stream(seed, "noise"))  # None unless [privacy] is on
    trainer = LocalTrainer(
        model, ds.x_train, ds.y_train, part_table, lengths, loss=task.loss, batch_size=cfg.train.batch_size,
        flipped=is_byz if adversary.flips_labels else None, num_classes=ds.num_classes, privacy=privacy,
    )
    evaluator = Evaluator(model, ds.x_test, ds.y_test, loss=task.loss, classification=task.classification)
    honest_parts = [parts[i] for i in torch.nonzero(honest).squeeze(1).tolist()]
    optimum = task.optimum(honest_parts)
    objective = _honest_objective(model, spec, task.loss, ds.x_train, ds.y_train, part_table[honest], lengths[honest])
    schedule = LRSchedule(cfg.train.lr, cfg.train.lr_schedule, cfg.train.lr_decay, cfg.train.lr_step)
    specs = cfg.engine.specs()
    history = StaleModels() if specs["timing_attack"].kind == "replay" else None
    kern = Kernels(
        params, momentum, table, is_byz, f, actors, trainer, gossip, adversary, cfg.train.local_steps,
        cfg.train.momentum, torch_stream(seed, "batches"), torch_stream(seed, "attack"), ds.num_classes,
        oracle=cfg.rule.tolerance == "oracle",
        replay=history.replay_fn(specs["timing_attack"].value) if history is not None else None,
        jit=cfg.jit,
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
    resolved = _resolved_config(cfg, G, is_byz, gossip, adversary, f, n, d, report)
    if privacy is not None:
        resolved["privacy"].update(privacy.used())
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
                acc = evaluator.node_accuracies(params[alive])
                row.update(node_acc_mean=float(acc.mean()), node_acc_min=float(acc.min()), node_acc_max=float(acc.max()))
        if optimum is not None:
            theta_star, loss_star = optimum
            row["dist_to_opt"] = float(((theta_bar - theta_star.to(theta_bar.dtype)) ** 2).sum())
            row["loss_gap"] = objective(theta_bar) - loss_star
        if row["loss"] is not None and not math.isfinite(row["loss"]):
            row["loss"] = float("nan")
        recorder.log(row, wall_s=time.perf_counter() - start)
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

    status = "interrupted"
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
            measure(0, 0.0, None, True, 0, churn.online(0.0) if churn is not None else None)
            if cfg.engine.mode == "async":
                run_async(engine, kern, schedule, measure, cfg, bar)
            else:
                engine.run(on_plan=on_plan)
            outcome["status"] = "diverged" if diverged else "completed"
        except Diverged:
            outcome["status"] = "diverged"
        except BaseException as err:
            outcome.update(_failure(err, recorder.history if recorder is not None else []))
            if outcome["status"] != "diverged":
                raise
        finally:
            signals.hold()  # a second signal must not cut the clean-up short
            bar.close()
            if recorder is not None:
                recorder.close()
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
                _close_run_dir(run_dir, summary, kern.params, is_byz)
    timing = recorder.timing
    return Result(resolved, recorder.history, summary, kern.params, is_byz, G, out_dir, timing=timing)


def _failure(err: BaseException, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary fields of a run that raised ``err``."""
    from .recorder import RecordError
    from .signals import Interrupted

    done = history[-1]["round"] if history else 0
    if is_overflow(err):  # e.g. --lr 1e300: the numbers left the representable range
        return {"status": "diverged", "diverged_round": done + 1, "diverged_reason": f"overflow ({err})"}
    if isinstance(err, Interrupted):
        return {"status": "interrupted", "stopped_by": err.name}
    if isinstance(err, KeyboardInterrupt):
        return {"status": "interrupted", "stopped_by": "SIGINT"}
    reason = str(err) if isinstance(err, RecordError) else f"{type(err).__name__}: {err}"
    return {"status": "failed", "error": reason}


def _close_run_dir(run_dir: RunDir, summary: dict[str, Any], params: torch.Tensor, is_byz: torch.Tensor) -> None:
    """Write ``summary.json`` and the final parameters atomically, then unlock the folder. A write
    that fails (disk full) is reported in one line, not raised over the run's own outcome."""
    from .rundir import write_atomic

    try:
        buf = io.BytesIO()
        torch.save({"params": params.detach().cpu(), "is_byzantine": is_byz.cpu()}, buf)
        write_atomic(run_dir.path / "params.pt", buf.getvalue())
        run_dir.write_json("summary.json", summary)
    except OSError as err:
        log.error(f"could not write the run's summary to {run_dir.path}: {err.strerror or err}")
    finally:
        run_dir.release()


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


def _honest_objective(model, spec, loss: str, x, y, table, lengths):
    """Average over honest nodes of their local training loss, at one flat model ``theta [d]``."""

    @torch.no_grad()
    def objective(theta: torch.Tensor) -> float:
        out = torch.func.functional_call(model, spec.unflatten(theta), (x,))
        if loss == "cross_entropy":
            per_sample = torch.nn.functional.cross_entropy(out, y, reduction="none")
        else:
            per_sample = 0.5 * (out - y) ** 2
        per_sample = per_sample.double()
        valid = torch.arange(table.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        node_loss = torch.where(valid, per_sample[table], 0.0).sum(1) / lengths
        return float(node_loss.mean())

    return objective


def _resolved_config(cfg, G, is_byz, gossip, adversary, f, n, d, report) -> dict[str, Any]:
    out = cfg.to_dict()
    out["topology"]["nodes"] = n
    out["topology"]["edges"] = G.number_of_edges()
    out["byzantine"]["nodes"] = torch.nonzero(is_byz).squeeze(1).tolist()
    out["rule"]["repr"] = repr(gossip)
    out["rule"]["tolerance_used"] = (
        "oracle (true Byzantine count per node)" if cfg.rule.tolerance == "oracle" else f"declared f = {cfg.rule.tolerance}"
    )
    out["attack"]["repr"] = repr(adversary)
    out["attack"]["knowledge"] = adversary.knowledge
    out["byzantine"]["neighbors_per_honest_node"] = report.byzantine_neighbors
    out["byzantine"]["at_risk"] = report.at_risk
    out["parameters"] = d
    out["version"] = __version__
    return out
