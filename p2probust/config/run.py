"""The whole run configuration, and reading it from TOML tables and dotted overrides."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping

from ..typecheck import check_types
from .base import ConfigError, _params, _require, option
from .engine import EngineConfig
from .observe import PrivacyConfig, RecordConfig
from .parts import AttackConfig, ByzantineConfig, DataConfig, RuleConfig, TopologyConfig, TrainConfig


JitMode = Literal["auto", "on", "off"]  #: compiled kernels: auto (large calls), on, off (see p2probust.jit)
OnDiverge = Literal["stop", "continue"]


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
    seed: int = option(0, "run seed")
    eval_every: int = option(10, "evaluate test accuracy every this many rounds")
    #: per-node accuracies on at most this many honest nodes (a seeded sample beyond it; 0: all)
    eval_nodes: int = option(
        1000, "per-node accuracy on a seeded sample of this many honest nodes when there are more (0: all)")
    #: ... and on at most this many test points (a seeded sample beyond it; 0: all); the averaged model uses all
    eval_points: int = option(
        10_000, "per-node accuracy on a seeded sample of this many test points when there are more (0: all)")
    out: str | None = option(
        None, "run folder, must be new or empty [default: runs/<time.ms>-<topology>-<rule>-<attack>-s<seed>-<hash>]")
    #: compiled, gather-fused kernel for median / trimmed-mean rules (numba): auto (large calls), on, off
    jit: JitMode = option(
        "auto", "compiled kernel for median/trimmed-mean gossip (numba; same results): auto uses it on large rounds")
    #: where the run computes: "cpu", "cuda" or "cuda:N" (see p2probust.device)
    device: str = option(
        "cpu", "where the run computes: cpu, cuda or cuda:N (GPU N); the compiled kernels (--jit) run on cpu only")
    #: when an honest model becomes NaN or ±inf: "stop" the run (status "diverged") or "continue"
    on_diverge: OnDiverge = option(
        "stop", "when an honest model becomes NaN/inf: stop the run (status diverged, exit 3) or continue")
    #: memory the run may use: "auto" (what the machine has available), a size ("8GB") or "inf"
    max_memory: str = option("auto", "refuse runs estimated above this: auto (available memory), a size (8GB) or inf")
    #: write the run's state to checkpoint.pt in its folder every this many rounds (0: never)
    checkpoint_every: int = option(
        0, "write the run's state to checkpoint.pt every this many rounds (0: never), for --resume")

    def __post_init__(self) -> None:
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        check_types(self, None, skip=tuple(_PARTS))
        if isinstance(self.out, str) and self.out.startswith("~"):
            object.__setattr__(self, "out", str(Path(self.out).expanduser()))
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        from ..memory import parse_size

        try:
            parse_size(self.max_memory, allow_auto=True)
        except ValueError as err:
            raise ConfigError(f"max_memory: {err}") from None
        from ..device import check_form

        problem = check_form(self.device)
        if problem is not None:
            raise ConfigError(problem)
        _require(not (self.jit == "on" and self.device != "cpu"), "jit", self.jit,
                 f"'auto' or 'off' with device {self.device!r} (the compiled kernels read CPU memory; auto uses torch there)")
        _require(self.eval_every >= 1, "eval_every", self.eval_every, "an integer >= 1")
        _require(self.eval_nodes >= 0, "eval_nodes", self.eval_nodes, "an integer >= 0 (0: every honest node)")
        _require(self.eval_points >= 0, "eval_points", self.eval_points, "an integer >= 0 (0: every test point)")
        _require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, "an integer >= 0 (0: no checkpoints)")
        _require(not (self.checkpoint_every and self.record.every), "checkpoint_every", self.checkpoint_every,
                 "0 with per-node recording ([record] nodes; nodes.npz is not checkpointed)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (params as tables)."""
        out = dataclasses.asdict(self)
        for part in _OPEN_PARTS:
            out[part]["params"] = dict(getattr(self, part).params)
        out["byzantine"]["nodes"] = list(self.byzantine.nodes)
        out["train"]["lr_milestones"] = list(self.train.lr_milestones)
        if not self.privacy.enabled:  # non-DP runs keep the config (and its hash) they had before [privacy]
            del out["privacy"]
        if self.device == "cpu":  # CPU runs keep the config (and its hash) they had before device existed
            del out["device"]
        if not self.checkpoint_every:  # runs without checkpoints keep the config (and its hash) they had before
            del out["checkpoint_every"]
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
