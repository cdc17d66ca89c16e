"""The parts of a run: topology, Byzantine nodes, attack, rule, data, training."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..typecheck import check_int_list, check_types
from .base import ConfigError, Params, _params, _require


@dataclass(frozen=True)
class TopologyConfig:
    """The communication graph: a registered builder name or a path to a custom topology."""

    name: str = "torus"
    #: number of nodes n; None: 16 for built-in topologies, the file's own count for graph files
    nodes: int | None = None
    degree: int = 4  #: random-regular degree
    p: float = 0.3  #: Erdős–Rényi edge probability
    k: int = 4  #: Watts–Strogatz nearest neighbours
    beta: float = 0.1  #: Watts–Strogatz rewiring probability
    weights: str = "metropolis"  #: mixing weights of the neighbour table: metropolis | uniform | max-degree
    params: Params = ()  #: other builder parameters, e.g. two-worlds ``h``, ring-of-cliques ``size``

    def __post_init__(self) -> None:
        check_types(self, "topology")
        object.__setattr__(self, "params", _params(self.params))
        _require(self.nodes is None or self.nodes >= 2, "topology.nodes", self.nodes, "an integer >= 2")
        _require(self.degree >= 1, "topology.degree", self.degree, "an integer >= 1")
        _require(0 < self.p <= 1, "topology.p", self.p, "a probability in (0, 1]")
        _require(self.k >= 2, "topology.k", self.k, "an integer >= 2")
        _require(0 <= self.beta <= 1, "topology.beta", self.beta, "a probability in [0, 1]")
        _require(self.weights in ("metropolis", "uniform", "max-degree"), "topology.weights", self.weights,
                 "metropolis, uniform or max-degree")


@dataclass(frozen=True)
class ByzantineConfig:
    """How many Byzantine nodes and where: ``random``, an explicit ``list``, or highest ``degree``."""

    count: int = 2
    placement: str = "random"
    nodes: tuple[int, ...] = ()  #: explicit node ids for placement "list"

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

    name: str = "sign-flip"
    params: Params = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _params(self.params))


@dataclass(frozen=True)
class RuleConfig:
    """The gossip rule by name, its gossip rate α, its tolerance, and its parameters."""

    name: str = "trimmed-mean"
    alpha: float = 1.0
    tolerance: int | str = "oracle"  #: "oracle" (true Byzantine count per node) or a declared integer
    params: Params = ()

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

    task: str = "digits"
    data_dir: str | None = None
    partition: str = "iid"
    dirichlet_alpha: float = 1.0
    test_fraction: float = 0.2
    split_seed: int = 0  #: fixed train/test split, independent of the run seed
    shards_per_node: int = 2  #: k of the ``shards`` partition
    groups: int = 2  #: G of the ``class-groups`` partition (G blocks of nodes, each with its block of classes)
    split_among: str = "all"  #: all | honest (Byzantine nodes hold no data, as in the IOS code)
    normalize: str = "auto"  #: pixel inputs: auto | mnist | unit | symmetric | none
    params: Params = ()  #: task parameters, e.g. digits-mlp ``hidden``, least-squares ``dim``

    def __post_init__(self) -> None:
        from ..data.normalize import NORMALIZATIONS

        check_types(self, "data")
        object.__setattr__(self, "params", _params(self.params))
        _require(self.dirichlet_alpha > 0, "data.dirichlet_alpha", self.dirichlet_alpha, "a concentration > 0")
        _require(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "a fraction in (0, 1)")
        _require(self.shards_per_node >= 1, "data.shards_per_node", self.shards_per_node, "an integer >= 1")
        _require(self.groups >= 1, "data.groups", self.groups, "an integer >= 1")
        _require(self.split_among in ("all", "honest"), "data.split_among", self.split_among, "all or honest")
        _require(self.normalize in NORMALIZATIONS, "data.normalize", self.normalize, " | ".join(NORMALIZATIONS))


@dataclass(frozen=True)
class TrainConfig:
    """Local training: rounds, learning-rate schedule, local momentum, weight decay, batch size and
    sampling, local steps, initialisation, and the order of the local step and the gossip step."""

    rounds: int = 100
    lr: float = 0.5
    lr_schedule: str = "constant"  #: constant | inv-sqrt | step | multistep (see local.LRSchedule)
    lr_decay: float = 0.5  #: factor γ of the step and multistep schedules
    lr_step: int = 50  #: rounds between decays of the step schedule
    lr_offset: float = 1.0  #: b of inv-sqrt: lr / √(t + b), t the round from 0
    lr_milestones: tuple[int, ...] = ()  #: rounds where multistep multiplies the lr by γ
    momentum: float = 0.0  #: β of m ← βm + (1−β)g
    momentum_form: str = "dampened"  #: dampened (m ← βm + (1−β)g) | heavy-ball (m ← βm + g, no dampening)
    weight_decay: float = 0.0  #: λ of g ← ∇f + λθ (before momentum, as torch.optim.SGD)
    batch_size: int = 32
    sampling: str = "uniform"  #: uniform (with replacement) | epoch (without, reshuffled per node) | slice
    local_steps: int = 1
    init: str = "shared"  #: shared (one model for all nodes) | per-node (independent draws)
    init_scheme: str = "torch"  #: torch (U(±s/√fan_in)) | normal (s·N(0,1)) | zero
    init_scale: float = 1.0  #: s of init_scheme
    order: str = "step-then-gossip"  #: or gossip-then-step (D-PSGD: x ← Agg(x) − γ∇f(x))

    def __post_init__(self) -> None:
        from ..models import INIT_SCHEMES

        object.__setattr__(self, "lr_milestones", check_int_list(self.lr_milestones, "train.lr_milestones"))
        check_types(self, "train")
        _require(self.rounds >= 1, "train.rounds", self.rounds, "an integer >= 1")
        _require(0 < self.lr < math.inf, "train.lr", self.lr, "a finite learning rate > 0")
        _require(
            self.lr_schedule in ("constant", "inv-sqrt", "step", "multistep"),
            "train.lr_schedule", self.lr_schedule, "constant, inv-sqrt, step or multistep",
        )
        _require(self.lr_offset > 0, "train.lr_offset", self.lr_offset, "b > 0")
        _require(list(self.lr_milestones) == sorted(set(self.lr_milestones)) and all(m >= 1 for m in self.lr_milestones),
                 "train.lr_milestones", self.lr_milestones, "increasing rounds >= 1")
        _require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "λ >= 0")
        _require(self.sampling in ("uniform", "epoch", "slice"), "train.sampling", self.sampling, "uniform, epoch or slice")
        _require(self.init in ("shared", "per-node"), "train.init", self.init, "shared or per-node")
        _require(self.init_scheme in INIT_SCHEMES, "train.init_scheme", self.init_scheme, ", ".join(INIT_SCHEMES))
        _require(self.init_scale > 0, "train.init_scale", self.init_scale, "a scale > 0")
        _require(self.order in ("step-then-gossip", "gossip-then-step"), "train.order", self.order,
                 "step-then-gossip or gossip-then-step")
        _require(0 < self.lr_decay <= 1, "train.lr_decay", self.lr_decay, "a factor in (0, 1]")
        _require(self.lr_step >= 1, "train.lr_step", self.lr_step, "an integer >= 1")
        _require(0 <= self.momentum < 1, "train.momentum", self.momentum, "β in [0, 1)")
        _require(self.momentum_form in ("dampened", "heavy-ball"), "train.momentum_form", self.momentum_form,
                 "dampened or heavy-ball")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
        _require(self.local_steps >= 1, "train.local_steps", self.local_steps, "an integer >= 1")
