"""The run configuration: frozen dataclasses, TOML loading, one-line validation errors.

A :class:`RunConfig` has one part per concern. A TOML file uses one table per part; keys of the
``[attack]`` and ``[rule]`` tables other than the documented ones are that component's parameters::

    seed = 3
    eval_every = 10

    [topology]
    name = "torus"          # or a path to a .py / .json / .graphml / edge-list file
    nodes = 64

    [byzantine]
    count = 6
    placement = "random"    # random | list | degree

    [attack]
    name = "gaussian"
    sigma = 1.0             # parameter of the attack

    [rule]
    name = "trimmed-mean"
    alpha = 0.5
    tolerance = "oracle"    # or an integer

    [data]
    task = "digits-mlp"
    partition = "dirichlet"
    dirichlet_alpha = 0.1

    [train]
    rounds = 200
    lr = 0.1
    momentum = 0.9
    weight_decay = 0.0      # λ: g ← ∇f + λθ, then momentum
    sampling = "uniform"    # or "epoch" (without replacement), "slice" (contiguous)
    init = "shared"         # or "per-node"; init_scheme = "torch" | "normal" | "zero"
    order = "step-then-gossip"  # or "gossip-then-step"

    [engine]
    compute_time = 0.01
    latency = 0.005         # or "lognormal:mean=0.05,sigma=0.5", "uniform:low=0.01,high=0.1"
    mode = "sync"           # or "async" (with clock = "poisson:rate=50", "wait:k=3", ...)
    bandwidth = "10MB/s"
    drop = 0.05
    churn = "up=50,down=5"
    stragglers = "0.1x5"
    duration = "300s"

    [record]
    every = 5               # per-node values every 5 rounds into nodes.npz (0: off)
    max_nodes = 1000        # beyond this, a seeded sample of nodes

    [privacy]               # DP-SGD at every node (off unless epsilon, clip or noise_multiplier is set)
    epsilon = 2.0           # target ε: σ is calibrated for train.rounds × train.local_steps steps
    delta = 1e-5
    clip = 1.0
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
import math
import os
from pathlib import Path
from typing import Any, Mapping

from .typecheck import check_int_list, check_types


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key, the value and what is allowed."""


Params = tuple[tuple[str, Any], ...]


def _params(value: Mapping[str, Any] | Params | None) -> Params:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), v) for k, v in items))


DEFAULT_NODES = 16  #: n of built-in topologies and Python builders when ``topology.nodes`` is not set


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
    weights: str = "metropolis"  #: mixing weights of the neighbour table: metropolis | uniform
    params: Params = ()  #: other builder parameters, e.g. two-worlds ``h``, ring-of-cliques ``size``

    def __post_init__(self) -> None:
        check_types(self, "topology")
        object.__setattr__(self, "params", _params(self.params))
        _require(self.nodes is None or self.nodes >= 2, "topology.nodes", self.nodes, "an integer >= 2")
        _require(self.degree >= 1, "topology.degree", self.degree, "an integer >= 1")
        _require(0 < self.p <= 1, "topology.p", self.p, "a probability in (0, 1]")
        _require(self.k >= 2, "topology.k", self.k, "an integer >= 2")
        _require(0 <= self.beta <= 1, "topology.beta", self.beta, "a probability in [0, 1]")
        _require(self.weights in ("metropolis", "uniform"), "topology.weights", self.weights, "metropolis or uniform")


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
    split_among: str = "all"  #: all | honest (Byzantine nodes hold no data, as in the IOS code)
    normalize: str = "auto"  #: pixel inputs: auto | mnist | unit | symmetric | none
    params: Params = ()  #: task parameters, e.g. digits-mlp ``hidden``, least-squares ``dim``

    def __post_init__(self) -> None:
        from .data.normalize import NORMALIZATIONS

        check_types(self, "data")
        object.__setattr__(self, "params", _params(self.params))
        _require(self.dirichlet_alpha > 0, "data.dirichlet_alpha", self.dirichlet_alpha, "a concentration > 0")
        _require(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "a fraction in (0, 1)")
        _require(self.shards_per_node >= 1, "data.shards_per_node", self.shards_per_node, "an integer >= 1")
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
    weight_decay: float = 0.0  #: λ of g ← ∇f + λθ (before momentum, as torch.optim.SGD)
    batch_size: int = 32
    sampling: str = "uniform"  #: uniform (with replacement) | epoch (without, reshuffled per node) | slice
    local_steps: int = 1
    init: str = "shared"  #: shared (one model for all nodes) | per-node (independent draws)
    init_scheme: str = "torch"  #: torch (U(±s/√fan_in)) | normal (s·N(0,1)) | zero
    init_scale: float = 1.0  #: s of init_scheme
    order: str = "step-then-gossip"  #: or gossip-then-step (D-PSGD: x ← Agg(x) − γ∇f(x))

    def __post_init__(self) -> None:
        from .models import INIT_SCHEMES

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
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "an integer >= 1")
        _require(self.local_steps >= 1, "train.local_steps", self.local_steps, "an integer >= 1")


@dataclass(frozen=True)
class EngineConfig:
    """The simulated network (seconds, bytes per second); specs are parsed by :mod:`p2probust.engine.specs`.

    ``compute_time`` and ``latency`` are seconds or distributions (``lognormal:mean=0.05,sigma=0.5``,
    ``uniform:low=..,high=..``, ``exponential:mean=..``); ``bandwidth`` is bytes/s or ``10MB/s``;
    ``mode`` is ``sync`` (rounds) or ``async`` (each node on its own ``clock``); ``duration`` stops
    the run at a simulated time (``300s``; 0: stop after ``train.rounds``).
    """

    compute_time: float | str = 0.01
    latency: float | str = 0.005
    bandwidth: float = float("inf")
    mode: str = "sync"  #: sync | async
    clock: str = "periodic"  #: async wake-ups: periodic[:period=P,jitter=J] | poisson:rate=R | wait:k=K[,timeout=T]
    drop: float = 0.0  #: probability that a message is lost
    churn: str | Mapping[str, Any] = "none"  #: none | up=50,down=5[,crash=..,crash_time=..][,join=..,join_time=..]
    stragglers: str = "none"  #: FRACTIONxFACTOR, e.g. 0.1x5
    duration: float = 0.0  #: stop at this simulated time in seconds (0: after train.rounds)
    timing_attack: str = "none"  #: none | delay:seconds=S | replay:lag=SECONDS | flood:copies=C
    dynamics: str = "static"  #: static | random-regular:degree=D | epidemic:s=S (a new graph every round)
    tick: float = 0.0  #: async: wake-ups are rounded up to multiples of tick seconds, to batch them (0: exact)

    def __post_init__(self) -> None:
        from .engine import specs

        def parse(key: str, fn, value):
            try:
                return fn(value)
            except ValueError as err:
                raise ConfigError(f"engine.{key}: {err}") from None

        for key in ("compute_time", "latency"):
            dist = parse(key, lambda v, k=key: specs.parse_dist(v, k.replace("_", " ")), getattr(self, key))
            if dist.kind == "const":
                object.__setattr__(self, key, dist.a)
        object.__setattr__(self, "bandwidth", parse("bandwidth", specs.parse_bandwidth, self.bandwidth))
        object.__setattr__(self, "duration", parse("duration", specs.parse_duration, self.duration))
        _require(self.mode in ("sync", "async"), "engine.mode", self.mode, "sync or async")
        _require(isinstance(self.drop, (int, float)) and 0 <= self.drop < 1, "engine.drop", self.drop, "a probability in [0, 1)")
        _require(isinstance(self.tick, (int, float)) and self.tick >= 0, "engine.tick", self.tick, "seconds >= 0")
        if isinstance(self.churn, Mapping):
            object.__setattr__(self, "churn", dict(self.churn))
        for key, fn in (("clock", specs.parse_clock), ("churn", specs.parse_churn), ("stragglers", specs.parse_stragglers),
                        ("timing_attack", specs.parse_timing_attack), ("dynamics", specs.parse_dynamics)):
            parse(key, fn, getattr(self, key))
        check_types(self, "engine")

    def specs(self) -> dict[str, Any]:
        """The parsed specification objects, by key."""
        from .engine import specs as sp

        return {
            "compute_time": sp.parse_dist(self.compute_time), "latency": sp.parse_dist(self.latency),
            "clock": sp.parse_clock(self.clock), "churn": sp.parse_churn(self.churn),
            "stragglers": sp.parse_stragglers(self.stragglers), "timing_attack": sp.parse_timing_attack(self.timing_attack),
            "dynamics": sp.parse_dynamics(self.dynamics),
        }


@dataclass(frozen=True)
class RecordConfig:
    """Per-node recording (:mod:`p2probust.node_recorder`): every ``every`` rounds (0: off), into ``nodes.npz``.

    Beyond ``max_nodes`` nodes, a seeded sample of ``max_nodes`` nodes is recorded (Byzantine nodes first).
    """

    every: int = 0
    max_nodes: int = 1000

    def __post_init__(self) -> None:
        _require(isinstance(self.every, int) and self.every >= 0, "record.every", self.every, "an integer >= 0 (0: off)")
        _require(isinstance(self.max_nodes, int) and self.max_nodes >= 1, "record.max_nodes", self.max_nodes, "an integer >= 1")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differentially private local steps (:mod:`p2probust.privacy`): on when ``epsilon``, ``clip``
    or ``noise_multiplier`` is set. ``epsilon`` is a target: σ is calibrated for it unless given."""

    epsilon: float | None = None  #: target ε (> 0) at ``delta`` after the planned steps
    delta: float = 1e-5  #: δ in (0, 1)
    clip: float | None = None  #: per-example norm bound C (default 1 when on; inf: no clipping)
    noise_multiplier: float | None = None  #: σ (noise std σC on the clipped sum); default: calibrated, or 0
    sampling: str = "poisson"  #: poisson (rate q; the accountant's assumption) | fixed (heuristic bound)
    calibration: str = "accountant"  #: accountant (dp-accounting) | tutorial (C·max{1, √(T log(1/δ))/(mε)})
    sample_rate: float | None = None  #: q; default batch_size / mean local dataset size

    def __post_init__(self) -> None:
        check_types(self, "privacy")
        eps = self.epsilon
        _require(eps is None or 0 < eps < math.inf, "privacy.epsilon", eps, "a target ε > 0 (finite)")
        _require(0 < self.delta < 1, "privacy.delta", self.delta, "δ in (0, 1)")
        _require(self.clip is None or self.clip > 0, "privacy.clip", self.clip, "a norm bound C > 0 (inf: no clipping)")
        sigma = self.noise_multiplier
        _require(sigma is None or 0 <= sigma < math.inf, "privacy.noise_multiplier", sigma, "σ >= 0 (finite)")
        _require(self.sampling in ("poisson", "fixed"), "privacy.sampling", self.sampling, "poisson or fixed")
        _require(self.calibration in ("accountant", "tutorial"), "privacy.calibration", self.calibration,
                 "accountant or tutorial")
        q = self.sample_rate
        _require(q is None or 0 < q <= 1, "privacy.sample_rate", q, "a sampling rate q in (0, 1]")
        if self.clip == math.inf and (eps is not None or (sigma or 0) > 0):
            raise ConfigError("privacy.clip = inf cannot give privacy (the noise is σ·C); set a finite clip")

    @property
    def enabled(self) -> bool:
        """Whether the local step is the DP one."""
        return self.epsilon is not None or self.clip is not None or self.noise_multiplier is not None


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Same config and seed → same metrics, bit for bit."""

    topology: TopologyConfig = field(default_factory=TopologyConfig)
    byzantine: ByzantineConfig = field(default_factory=ByzantineConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    seed: int = 0
    eval_every: int = 10
    out: str | None = None
    #: compiled, gather-fused kernel for median / trimmed-mean rules (numba): auto (large calls), on, off
    jit: str = "auto"
    #: when an honest model becomes NaN or ±inf: "stop" the run (status "diverged") or "continue"
    on_diverge: str = "stop"
    #: memory the run may use: "auto" (what the machine has available), a size ("8GB") or "inf"
    max_memory: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        check_types(self, None, skip=tuple(_PARTS))
        if isinstance(self.out, str) and self.out.startswith("~"):
            object.__setattr__(self, "out", str(Path(self.out).expanduser()))
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _require(self.on_diverge in ("stop", "continue"), "on_diverge", self.on_diverge, "stop or continue")
        from .memory import parse_size

        try:
            parse_size(self.max_memory, allow_auto=True)
        except ValueError as err:
            raise ConfigError(f"max_memory: {err}") from None
        _require(self.eval_every >= 1, "eval_every", self.eval_every, "an integer >= 1")
        _require(self.jit in ("auto", "on", "off"), "jit", self.jit, "auto, on or off")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (params as tables)."""
        out = dataclasses.asdict(self)
        for part in _OPEN_PARTS:
            out[part]["params"] = dict(getattr(self, part).params)
        out["byzantine"]["nodes"] = list(self.byzantine.nodes)
        out["train"]["lr_milestones"] = list(self.train.lr_milestones)
        if not self.privacy.enabled:  # non-DP runs keep the config (and its hash) they had before [privacy]
            del out["privacy"]
        return out

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with dotted-key changes: ``cfg.replace(**{"train.rounds": 5, "seed": 1})``."""
        return from_dict(_merge(self.to_dict(), _nest(changes)))


_PARTS = {
    "topology": TopologyConfig,
    "byzantine": ByzantineConfig,
    "attack": AttackConfig,
    "rule": RuleConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "engine": EngineConfig,
    "record": RecordConfig,
    "privacy": PrivacyConfig,
}
_OPEN_PARTS = ("topology", "data", "attack", "rule")
_TOP_KEYS = {f.name for f in fields(RunConfig)} - set(_PARTS)


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build a validated :class:`RunConfig` from nested tables (as read from TOML)."""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _PARTS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{key}] must be a table of keys, got {value!r}")
            kwargs[key] = _part(key, value)
        elif key in _TOP_KEYS:
            kwargs[key] = value
        else:
            allowed = ", ".join(sorted(_TOP_KEYS | {f"[{p}]" for p in _PARTS}))
            raise ConfigError(f"unknown config key {key!r}; allowed: {allowed}")
    try:
        return RunConfig(**kwargs)
    except TypeError as err:
        raise ConfigError(str(err)) from None


def _part(name: str, table: Mapping[str, Any]):
    cls = _PARTS[name]
    known = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in table.items() if k in known}
    extra = {k: v for k, v in table.items() if k not in known}
    if extra:
        if name not in _OPEN_PARTS:
            key = next(iter(extra))
            raise ConfigError(f"unknown key {key!r} in [{name}]; allowed: {', '.join(sorted(known))}")
        kwargs["params"] = {**dict(_params(kwargs.get("params"))), **extra}
    return cls(**kwargs)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML experiment file into nested tables (validated later by :func:`from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a TOML file and apply dotted-key ``overrides`` (CLI flags win over file values)."""
    return from_dict(_merge(load_toml(path), _nest(overrides or {})))


def from_overrides(overrides: Mapping[str, Any]) -> RunConfig:
    """The default config with dotted-key ``overrides`` (``{"train.rounds": 5, "seed": 1}``)."""
    return from_dict(_nest(overrides))


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if "." in key:
            part, sub = key.split(".", 1)
            out.setdefault(part, {})[sub] = value
        else:
            out[key] = value
    return out


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key in _PARTS:  # a malformed table is an error whatever flags are given
            for side in (out.get(key), value):
                if side is not None and not isinstance(side, Mapping):
                    raise ConfigError(f"[{key}] must be a table of keys (e.g. [{key}] name = ...), got {side!r}")
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            merged = _merge(out[key], value)
            if key in _OPEN_PARTS and "params" in value:
                merged["params"] = {**dict(_params(out[key].get("params"))), **dict(_params(value["params"]))}
            out[key] = merged
        else:
            out[key] = value
    return out


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is invalid; expected {allowed}")
