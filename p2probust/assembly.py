"""Building one run's pieces from its config (issue 15's ``build``): :func:`assemble` returns every
per-run object a round and its metrics need, before any engine, trainer or recorder exists.

:func:`~p2probust.simulate` assembles one run and wires it; a batched sweep
(:mod:`p2probust.batched`) assembles one run per seed exactly the same way and joins them, so that
each replica holds the same graph, placement, partition, initial models, tolerances and evaluation
sample as its separate run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch
from torch import Tensor

from . import registry
from .attacks.base import AbstractAttack
from .build import place
from .config import RunConfig
from .data.setup import build_partition, build_task
from .device import resolve as resolve_device
from .gossip.registry import as_rule, make_rule
from .local import LocalTrainer
from .memory import estimate_run
from .metrics import Evaluator, evaluation_sample, honest_objective
from .models import ParamSpec, init_stacked
from .privacy.setup import privacy_from_config
from .rng import torch_stream
from .topology import NeighbourTable
from .wiring import configured_tolerance

log = logging.getLogger("p2probust")


@dataclass
class RunParts:
    """One run's wired pieces (node state not yet advanced).

    ``G`` the graph (``n`` nodes), ``is_byz``/``honest`` ``[n]`` masks, ``table`` its
    :class:`~p2probust.topology.NeighbourTable`, ``part_table``/``lengths`` the padded partition,
    ``params``/``momentum`` ``[n, d]``, ``gossip`` the rule bound to ``table``, ``f`` ``[n]`` the
    tolerance of each node's rule, ``actors`` the nodes that run the protocol, ``evaluator`` with
    ``eval_rows`` (the honest nodes whose accuracy is measured; None: all), ``optimum`` and
    ``objective`` (tasks with a known optimum), ``privacy`` (None unless ``[privacy]`` is on).
    """

    cfg: RunConfig
    G: nx.Graph
    is_byz: Tensor
    report: Any
    table: NeighbourTable
    task: Any
    parts: list
    part_table: Tensor
    lengths: Tensor
    model: torch.nn.Module
    params: Tensor
    momentum: Tensor
    gossip: Any
    f: Tensor
    adversary: AbstractAttack
    actors: Tensor
    privacy: Any
    evaluator: Evaluator
    eval_rows: Tensor | None
    optimum: Any
    objective: Any

    @property
    def n(self) -> int:
        return int(self.is_byz.numel())

    @property
    def honest(self) -> Tensor:
        return ~self.is_byz

    @property
    def d(self) -> int:
        return int(self.params.shape[1])


def assemble(cfg: RunConfig, graph: nx.Graph | None = None, rule: Any = None, attack: AbstractAttack | None = None,
             task: Any = None) -> RunParts:
    """Every per-run piece of ``cfg`` (``graph``, ``rule``, ``attack``: objects instead of the
    configured ones; ``task``: an already built task of the same ``[data]`` config).

    The set-up (graph, placement, data, partition, initial models, evaluation sample) is made on
    the CPU whatever torch's default device is; every tensor a round uses is then moved once to
    ``cfg.device`` (:mod:`p2probust.device`), where the rule is bound and the evaluator built."""
    device = resolve_device(cfg.device)
    with torch.device("cpu"):  # set-up on the CPU: same graph, data and initial models on every device
        G, is_byz, report, table, task, parts, part_table, lengths, model, params = _setup(cfg, graph, task)
        n, honest = G.number_of_nodes(), ~is_byz
        node_points, eval_rows = evaluation_sample(cfg, honest, task.dataset.x_test.shape[0])
        honest_parts = parts if cfg.data.split_among == "honest" else [parts[i] for i in torch.nonzero(honest).squeeze(1).tolist()]
        optimum = task.optimum(honest_parts)
    is_byz, part_table, lengths, params, node_points, eval_rows = (
        None if x is None else x.to(device) for x in (is_byz, part_table, lengths, params, node_points, eval_rows))
    table, task, model, honest = table.to(device), task.to(device), model.to(device), ~is_byz
    optimum = None if optimum is None else (optimum[0].to(device), optimum[1])
    ds, t = task.dataset, cfg.train
    gossip, f, adversary = _rule_and_attack(cfg, table, is_byz, rule, attack)
    actors = torch.arange(n, device=device) if adversary.follows_protocol else torch.nonzero(honest).squeeze(1)
    if adversary.follows_protocol and cfg.data.split_among == "honest" and bool(is_byz.any()):
        raise ValueError(f"data.split_among = 'honest' gives Byzantine nodes no data, but attack {cfg.attack.name!r} trains on it; use 'all'")
    if cfg.engine.mode == "async" and t.order != "step-then-gossip":
        raise ValueError(f"train.order = {t.order!r} is for synchronous rounds; engine.mode 'async' supports step-then-gossip only")
    # None unless [privacy] is on
    privacy = privacy_from_config(cfg, lengths, honest, torch_stream(cfg.seed, "noise", device))
    evaluator = Evaluator(model, ds.x_test, ds.y_test, loss=task.loss, classification=task.classification,
                          node_points=node_points)
    spec = ParamSpec.from_module(model)
    objective = honest_objective(model, spec, task.loss, ds.x_train, ds.y_train, part_table[honest], lengths[honest])
    return RunParts(cfg, G, is_byz, report, table, task, parts, part_table, lengths, model, params,
                    torch.zeros_like(params), gossip, f, adversary, actors, privacy, evaluator, eval_rows,
                    optimum, objective)


def _setup(cfg: RunConfig, graph: nx.Graph | None, task: Any):
    """The CPU part of :func:`assemble`: graph and placement, neighbour table, task, partition,
    memory check, model template and initial models (the ``init`` stream)."""
    G, is_byz, report = place(cfg, graph)
    for line in report.lines():
        (log.warning if line.lower().startswith("warning") else log.info)(line)
    table = NeighbourTable.from_graph(G, weights=cfg.topology.weights)
    task = task if task is not None else build_task(cfg)  # a given task may already be on the device
    parts, part_table, lengths = build_partition(cfg, task, ~is_byz)
    estimate_run(cfg, task, table).check(cfg.max_memory)
    t = cfg.train
    params = init_stacked(task.make_model, G.number_of_nodes(), generator=torch_stream(cfg.seed, "init"),
                          same=t.init == "shared", scheme=t.init_scheme, scale=t.init_scale)
    return G, is_byz, report, table, task, parts, part_table, lengths, task.make_model(), params


def _rule_and_attack(cfg: RunConfig, table: NeighbourTable, is_byz: Tensor, rule: Any, attack: Any):
    """The rule bound to the graph, the tolerance ``f [n]`` of each node's rule, and the attack."""
    gossip = as_rule(rule, alpha=cfg.rule.alpha) if rule is not None else make_rule(
        cfg.rule.name, alpha=cfg.rule.alpha, **dict(cfg.rule.params)
    )
    gossip = gossip.bind(table, is_byz)
    f = configured_tolerance(cfg.rule.tolerance, table, is_byz, gossip)
    adversary = attack if attack is not None else registry.attacks.create(cfg.attack.name, **dict(cfg.attack.params))
    if not isinstance(adversary, AbstractAttack):
        raise TypeError(f"attack must be an attack object, got {adversary!r}")
    return gossip, f, adversary


def make_trainer(run: RunParts, sampler: Any = None, *, part_table: Tensor | None = None,
                 lengths: Tensor | None = None, flipped: Tensor | None = None) -> LocalTrainer:
    """The batched local step of ``run`` (a batched simulation passes the joined partition,
    Byzantine mask and per-replica ``sampler``)."""
    cfg, ds, t = run.cfg, run.task.dataset, run.cfg.train
    is_byz = run.is_byz if flipped is None else flipped
    return LocalTrainer(
        run.model, ds.x_train, ds.y_train, run.part_table if part_table is None else part_table,
        run.lengths if lengths is None else lengths, loss=run.task.loss, batch_size=cfg.train.batch_size,
        flipped=is_byz if run.adversary.flips_labels else None, num_classes=ds.num_classes,
        weight_decay=t.weight_decay, sampling=t.sampling, privacy=run.privacy, sampler=sampler,
        momentum_form=t.momentum_form,
    )
