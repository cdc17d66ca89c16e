"""The parts of a run: topology, Byzantine nodes, attack, rule, data, training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..typecheck import check_int_list, check_types
from .base import DEFAULT_NODES, ConfigError, Params, _params, _require, no_flag, option

# The allowed values of each choice, in one place: the annotation, the validation (typecheck), the
# CLI's choices and the modules that implement them all read these.
Weights = Literal["metropolis", "uniform", "max-degree"]
SplitAmong = Literal["all", "honest"]
Normalization = Literal["auto", "mnist", "unit", "symmetric", "none"]
LRScheduleKind = Literal["constant", "inv-sqrt", "step", "multistep"]
Sampling = Literal["uniform", "epoch", "slice"]
Init = Literal["shared", "per-node"]
InitScheme = Literal["torch", "normal", "zero"]
Order = Literal["step-then-gossip", "gossip-then-step"]
MomentumForm = Literal["dampened", "heavy-ball"]


@dataclass(frozen=True)
class TopologyConfig:
    """The communication graph: a registered builder name or a path to a custom topology."""

    name: str = option("torus", "graph: {names}, or a path to a .py/.json/.graphml/edge-list file",
                       name="--topology", names="topologies")
    #: number of nodes n; None: 16 for built-in topologies, the file's own count for graph files
    nodes: int | None = option(None, "number of nodes n (a graph file has its own; giving another n is an error)",
                               shown=DEFAULT_NODES)
    degree: int = option(4, "degree of random-regular graphs")
    p: float = option(0.3, "edge probability of Erdős–Rényi graphs")
    k: int = option(4, "nearest neighbours of small-world graphs", name="--ws-k")  #: Watts–Strogatz k
    beta: float = option(0.1, "rewiring probability of small-world graphs", name="--ws-beta")  #: Watts–Strogatz β
    weights: Weights = option(  #: of the neighbour table
        "metropolis", "mixing weights of the links: metropolis 1/(1+max(d_i,d_j)), uniform 1, max-degree 1/(1+max degree)")
    #: other builder parameters, e.g. two-worlds ``h``, ring-of-cliques ``size``
    params: Params = no_flag((), "--topology-param KEY=VALUE")

    def __post_init__(self) -> None:
        check_types(self, "topology")
        object.__setattr__(self, "params", _params(self.params))
        _require(self.nodes is None or self.nodes >= 2, "topology.nodes", self.nodes, "an integer >= 2")
        _require(self.degree >= 1, "topology.degree", self.degree, "an integer >= 1")
        _require(0 < self.p <= 1, "topology.p", self.p, "a probability in (0, 1]")
        _require(self.k >= 2, "topology.k", self.k, "an integer >= 2")
        _require(0 <= self.beta <= 1, "topology.beta", self.beta, "a probability in [0, 1]")


@dataclass(frozen=True)
class ByzantineConfig:
    """How many Byzantine nodes and where: ``random``, an explicit ``list``, or highest ``degree``."""

    count: int = option(2, "number of Byzantine nodes", name="--byzantine")
    placement: str = option("random", "where Byzantine nodes sit: {names}", names="placements")
    #: explicit node ids for placement "list"
    nodes: tuple[int, ...] = option((), "explicit Byzantine node ids, comma separated (placement list)",
                                    name="--byzantine-nodes")

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", check_int_list(self.nodes, "byzantine.nodes"))
        check_types(self, "byzantine")
        if self.nodes and self.placement == "random":
            object.__setattr__(self, "placement", "list")
        if self.placement == "list" and self.nodes and self.count != len(self.nodes):
            if self.count == ByzantineConfig.count:  # count left at its default: take the list's length
                object.__setattr__(self, "count", len(self.nodes))
            else:
                raise ConfigError(
                    f"byzantine.count = {self.count} but byzantine.nodes lists {len(self.nodes)} nodes; make them agree"
                )
        _require(self.count >= 0, "byzantine.count", self.count, "an integer >= 0")


@dataclass(frozen=True)
class AttackConfig:
    """The attack by name, with its parameters."""

    name: str = option("sign-flip", "what Byzantine nodes send (see `p2probust list attacks`)", name="--attack")
    params: Params = no_flag((), "--attack-param KEY=VALUE")

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _params(self.params))


@dataclass(frozen=True)
class RuleConfig:
    """The gossip rule by name, its gossip rate α, its tolerance, and its parameters."""

    name: str = option("trimmed-mean", "gossip rule or aggregator (see `p2probust list rules`)", name="--rule")
    alpha: float = option(1.0, "gossip rate α in (0, 1]")
    tolerance: int | str = option(
        "oracle", "Byzantine neighbours a rule expects: 'oracle' (true count per node) or an integer")
    params: Params = no_flag((), "--rule-param KEY=VALUE")

    def __post_init__(self) -> None:
        check_types(self, "rule")
        object.__setattr__(self, "params", _params(self.params))
        _require(0 < self.alpha <= 1, "rule.alpha", self.alpha, "a gossip rate in (0, 1]")
        tol = self.tolerance
        if isinstance(tol, str) and tol != "oracle":
            try:
                tol = int(tol)
            except ValueError:
                raise ConfigError(f"rule.tolerance = {tol!r} must be 'oracle' or an integer >= 0") from None
            object.__setattr__(self, "tolerance", tol)
        if not isinstance(tol, str):
            _require(isinstance(tol, int) and tol >= 0, "rule.tolerance", tol, "'oracle' or an integer >= 0")


@dataclass(frozen=True)
class DataConfig:
    """The learning task, where its data lives, and how it is split over nodes."""

    task: str = option("digits", "learning task (see `p2probust list tasks`)")
    data_dir: str | None = option(None, "folder holding the MNIST IDX files (mnist tasks)")
    partition: str = option("iid", "how data is split over nodes: {names}", names="partitions")
    dirichlet_alpha: float = option(1.0, "concentration α of the Dirichlet partition")
    test_fraction: float = no_flag(0.2, "[data] test_fraction")
    split_seed: int = no_flag(0, "[data] split_seed")  #: fixed train/test split, independent of the run seed
    shards_per_node: int = option(2, "classes-sized shards per node of the shards partition")  #: k of ``shards``
    groups: int = option(2, "groups G of the class-groups partition (G blocks of nodes, each holding its block of classes)")
    #: Byzantine nodes hold no data with ``honest``, as in the IOS code
    split_among: SplitAmong = option("all", "nodes that hold data: all, or honest only (IOS code)")
    normalize: Normalization = option(
        "auto", "pixel normalisation: auto (mnist for MNIST, unit for digits), mnist (x/255−0.1307)/0.3081, "
        "unit x/255, symmetric 2x/255−1, none")
    #: task parameters, e.g. digits-mlp ``hidden``, least-squares ``dim``
    params: Params = no_flag((), "--task-param KEY=VALUE")

    def __post_init__(self) -> None:
        check_types(self, "data")
        object.__setattr__(self, "params", _params(self.params))
        _require(self.dirichlet_alpha > 0, "data.dirichlet_alpha", self.dirichlet_alpha, "a concentration > 0")
        _require(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "a fraction in (0, 1)")
        _require(self.shards_per_node >= 1, "data.shards_per_node", self.shards_per_node, "an integer >= 1")
        _require(self.groups >= 1, "data.groups", self.groups, "an integer >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Local training: rounds, learning-rate schedule, local momentum, weight decay, batch size and
    sampling, local steps, initialisation, and the order of the local step and the gossip step."""

    rounds: int = option(100, "number of rounds")
    lr: float = option(0.5, "learning rate")
    lr_schedule: LRScheduleKind = option(  # see local.LRSchedule
        "constant", "learning-rate schedule (round t from 0): constant η, inv-sqrt η/√(t+b), step η·γ^⌊t/s⌋, "
        "multistep η·γ^#{milestones ≤ t}")
    lr_decay: float = option(0.5, "decay factor γ of the step and multistep schedules")
    lr_step: int = option(50, "rounds s between decays of the step schedule")
    lr_offset: float = option(1.0, "b of the inv-sqrt schedule η/√(t+b)")
    lr_milestones: tuple[int, ...] = option((), "rounds of the multistep schedule, comma separated")
    momentum: float = option(0.0, "local momentum β (m ← βm + (1−β)g)")
    momentum_form: MomentumForm = option(
        "dampened", "dampened m ← βm + (1−β)g, or heavy-ball m ← βm + g (no dampening, torch.optim.SGD)")
    #: λ of g ← ∇f + λθ (before momentum, as torch.optim.SGD)
    weight_decay: float = option(0.0, "ℓ2 weight decay λ: g ← ∇f + λθ, before momentum")
    batch_size: int = option(32, "local batch size")
    sampling: Sampling = option(
        "uniform", "batches: uniform with replacement, epoch (without replacement, reshuffled per node), "
        "slice (contiguous, IOS code)")
    local_steps: int = option(1, "local SGD steps per round")
    init: Init = option("shared", "one initial model for all nodes, or one draw per node")
    init_scheme: InitScheme = option("torch", "initial law: torch U(±s/√fan_in), normal s·N(0,1), zero")
    init_scale: float = option(1.0, "scale s of the initial law")
    order: Order = option("step-then-gossip", "phases of a round: x ← Agg(x − γ∇f(x)) or x ← Agg(x) − γ∇f(x)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", check_int_list(self.lr_milestones, "train.lr_milestones"))
        check_types(self, "train")
        _require(self.rounds >= 1, "train.rounds", self.rounds, "an integer >= 1")
        _require(0 < self.lr < math.inf, "train.lr", self.lr, "a finite learning rate > 0")
        _require(self.lr_offset > 0, "train.lr_offset", self.lr_offset, "b > 0")
        _require(list(self.lr_milestones) == sorted(set(self.lr_milestones)) and all(m >= 1 for m in self.lr_milestones),
                 "train.lr_milestones", self.lr_milestones, "increasing rounds >= 1")
        _require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "λ >= 0")
        _require(self.init_scale > 0, "train.init_scale", self.init_scale, "a scale > 0")
        _require(0 < self.lr_decay <= 1, "train.lr_decay", self.lr_decay, "a factor in (0, 1]")
        _require(self.lr_step >= 1, "train.lr_step", self.lr_step, "an integer >= 1")
        _require(0 <= self.momentum < 1, "train.momentum", self.momentum, "β in [0, 1)")
        _require(self.momentum_form in ("dampened", "heavy-ball"), "train.momentum_form", self.momentum_form,
                 "dampened or heavy-ball")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
        _require(self.local_steps >= 1, "train.local_steps", self.local_steps, "an integer >= 1")
