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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, registry
from .aggregators.base import AbstractAggregator
from .attacks.base import AbstractAttack, AttackContext
from .config import RunConfig
from .data.partition import pad_partition
from .engine import RoundTiming, SyncEngine
from .gossip.mixing import AggregateAndMix
from .gossip.registry import as_rule, make_rule
from .local import LocalTrainer, LRSchedule
from .metrics import Evaluator, consensus_distance
from .models import ParamSpec, init_stacked
from .recorder import Recorder
from .rng import numpy_stream, torch_stream
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
    """

    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    params: torch.Tensor
    is_byzantine: torch.Tensor
    graph: nx.Graph
    out_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> list[tuple[int, float]]:
        """``[(round, value), ...]`` of the rounds where ``name`` was measured."""
        return [(r["round"], r[name]) for r in self.history if r.get(name) is not None]

    def final(self, name: str) -> float:
        """Last measured value of ``name``."""
        values = self.metric(name)
        if not values:
            raise KeyError(f"metric {name!r} was never measured; measured: {sorted(self.history[-1])}")
        return values[-1][1]


def default_out_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    topo = Path(cfg.topology.name).stem
    return Path("runs") / f"{stamp}-{topo}-{cfg.rule.name}-{cfg.attack.name}-s{cfg.seed}"


def _graph(cfg: RunConfig, graph: nx.Graph | None) -> nx.Graph:
    if graph is not None:
        return nx.convert_node_labels_to_integers(graph, ordering="sorted" if _sortable(graph) else "default")
    t = cfg.topology
    n = None if is_topology_path(t.name) and not t.name.endswith(".py") else t.nodes
    return build_topology(
        t.name, n, seed=int(numpy_stream(cfg.seed, "graph").integers(2**31)), degree=t.degree, p=t.p, k=t.k, beta=t.beta
    )


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
        Run folder; overrides ``config.out``. Without either, nothing is written.
    progress : bool
        Show a progress bar of rounds (tqdm; hidden when stderr is not a terminal).
    **overrides
        Dotted config keys, e.g. ``simulate(**{"train.rounds": 20})`` or ``rounds=20`` for the
        common ones (``rounds``, ``seed``, ``nodes``, ``byzantine``, ``alpha``, ``lr``).

    Returns
    -------
    Result

    Examples
    --------
    >>> import p2probust as pr
    >>> res = pr.simulate(pr.RunConfig(), rounds=5)        # doctest: +SKIP
    >>> res.final("accuracy")                              # doctest: +SKIP
    """
    cfg = config if config is not None else RunConfig()
    if overrides:
        cfg = cfg.replace(**{_SHORT.get(k, k): v for k, v in overrides.items()})
    out_dir = Path(out) if out is not None else (Path(cfg.out) if cfg.out else None)
    seed = cfg.seed

    # --- topology and placement -------------------------------------------------------------
    G = _graph(cfg, graph)
    n = G.number_of_nodes()
    if cfg.byzantine.count >= n:
        raise ValueError(f"byzantine count {cfg.byzantine.count} must be smaller than the number of nodes {n}")
    is_byz = place_byzantine(
        G, cfg.byzantine.count, cfg.byzantine.placement,
        seed=int(numpy_stream(seed, "placement").integers(2**31)), nodes=list(cfg.byzantine.nodes) or None,
    )
    validate_graph(G, is_byz)
    report = placement_report(G, is_byz)
    for line in report.lines():
        (log.warning if line.lower().startswith("warning") else log.info)(line)
    table = NeighborTable.from_graph(G, weights=cfg.topology.weights)
    honest = ~is_byz

    # --- task, data, model ------------------------------------------------------------------
    task = registry.tasks.create(
        cfg.data.task, data_dir=cfg.data.data_dir, test_fraction=cfg.data.test_fraction, split_seed=cfg.data.split_seed
    )
    ds = task.dataset
    part_params = {"alpha": cfg.data.dirichlet_alpha} if cfg.data.partition == "dirichlet" else {}
    parts = registry.partitions.create(
        cfg.data.partition, labels=np.asarray(task.partition_labels), n=n,
        seed=int(numpy_stream(seed, "partition").integers(2**31)), **part_params,
    )
    part_table, lengths = pad_partition(parts)
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
    act_idx, act_mask, act_w, act_f = table.idx[actors], table.mask[actors], table.weights[actors], f[actors]
    rows, slots = torch.nonzero(act_mask & is_byz[act_idx], as_tuple=True)
    senders, recipients = act_idx[rows, slots], actors[rows]

    trainer = LocalTrainer(
        model, ds.x_train, ds.y_train, part_table, lengths, loss=task.loss, batch_size=cfg.train.batch_size,
        flipped=is_byz if adversary.flips_labels else None, num_classes=ds.num_classes,
    )
    evaluator = Evaluator(model, ds.x_test, ds.y_test, loss=task.loss, classification=task.classification)
    honest_parts = [parts[i] for i in torch.nonzero(honest).squeeze(1).tolist()]
    optimum = task.optimum(honest_parts)
    objective = _honest_objective(model, spec, task.loss, ds.x_train, ds.y_train, part_table[honest], lengths[honest])
    schedule = LRSchedule(cfg.train.lr, cfg.train.lr_schedule, cfg.train.lr_decay, cfg.train.lr_step)
    gen_batches, gen_attack = torch_stream(seed, "batches"), torch_stream(seed, "attack")

    # --- recorder ---------------------------------------------------------------------------
    columns = ["round", "time", "lr", "consensus_distance", "loss"]
    if task.classification:
        columns += ["accuracy", "node_acc_mean", "node_acc_min", "node_acc_max"]
    if optimum is not None:
        columns += ["dist_to_opt", "loss_gap"]
    columns += ["messages", "bytes", "wall_s"]
    resolved = _resolved_config(cfg, G, is_byz, gossip, adversary, f, n, d, report)
    recorder = Recorder(out_dir, columns)
    recorder.write_json("config.json", resolved)
    messages = int(table.mask.sum())
    start = time.perf_counter()

    def measure(rnd: int, now: float, lr: float | None, evaluate: bool) -> None:
        theta_bar = params[honest].mean(0)
        row: dict[str, Any] = {c: None for c in columns}
        row.update(round=rnd, time=now, lr=lr, consensus_distance=consensus_distance(params, honest))
        row.update(messages=messages if rnd else 0, bytes=messages * d * params.element_size() if rnd else 0)
        if evaluate:
            row.update(evaluator.model_metrics(theta_bar))
            if task.classification:
                acc = evaluator.node_accuracies(params[honest])
                row.update(node_acc_mean=float(acc.mean()), node_acc_min=float(acc.min()), node_acc_max=float(acc.max()))
        if optimum is not None:
            theta_star, loss_star = optimum
            row["dist_to_opt"] = float(((theta_bar - theta_star.to(theta_bar.dtype)) ** 2).sum())
            row["loss_gap"] = objective(theta_bar) - loss_star
        row["wall_s"] = time.perf_counter() - start
        if row["loss"] is not None and not math.isfinite(row["loss"]):
            row["loss"] = float("nan")
        recorder.log(row)

    rounds = cfg.train.rounds
    bar = tqdm(total=rounds, desc="rounds", unit="round", disable=not progress or None, leave=False)

    def on_round(r: int, now: float) -> None:
        nonlocal params, momentum
        lr = schedule(r)
        for _ in range(cfg.train.local_steps):
            params, momentum = trainer.step(params, momentum, actors, lr, cfg.train.momentum, gen_batches)
        inbox = params[act_idx]  # [a, k, d]
        if rows.numel():
            ctx = AttackContext(
                params=params, is_byzantine=is_byz, idx=table.idx, mask=table.mask, senders=senders,
                recipients=recipients, slots=slots, round=r, generator=gen_attack, rule=gossip,
                num_classes=ds.num_classes, weights=table.weights, tolerance=f,
            )
            crafted = adversary.craft(ctx)
            if crafted.shape != (rows.numel(), d):
                raise ValueError(f"{adversary!r} returned messages of shape {tuple(crafted.shape)}, expected {(rows.numel(), d)}")
            inbox = inbox.index_put((rows, slots), crafted.to(params.dtype))
        new = gossip.batched(params[actors], inbox, act_mask, act_w, act_f)
        params = params.index_copy(0, actors, new)
        done = r + 1
        measure(done, now, lr, evaluate=done % cfg.eval_every == 0 or done == rounds)
        bar.update(1)

    status = "interrupted"
    engine = SyncEngine(rounds, RoundTiming(
        compute_time=cfg.engine.compute_time, latency=cfg.engine.latency, local_steps=cfg.train.local_steps,
        message_bytes=d * params.element_size(), bandwidth=cfg.engine.bandwidth,
    ))
    try:
        measure(0, 0.0, None, evaluate=True)
        engine.run(on_round)
        status = "completed"
    finally:
        bar.close()
        recorder.close()
        summary = {
            "status": status,
            **recorder.summary(),
            "wall_s": time.perf_counter() - start,
            "rounds_done": recorder.history[-1]["round"] if recorder.history else 0,
            "simpy_events": engine.events,
            "n": n,
            "honest": int(honest.sum()),
            "d": d,
        }
        recorder.write_json("summary.json", summary)
    return Result(resolved, recorder.history, summary, params, is_byz, G, out_dir)


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
