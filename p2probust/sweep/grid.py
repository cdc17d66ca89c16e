"""A sweep's grid file: a base run configuration plus lists of values to combine.

A grid file is a run TOML (the same tables and keys as ``p2probust run --config``) with::

    seeds = 3                      # or a list [0, 1, 2]: every point runs once per seed
    batch = true                   # the seeds of a point run as one batched simulation (default)

    [grid]                         # lists over any config keys, dotted as on the command line
    "rule.name" = ["trimmed-mean", "median"]
    "attack.name" = ["sign-flip", "alie"]
    "byzantine.count" = [1, 2]

    [[include]]                    # extra points (not in the product), each a table of keys
    "rule.name" = "ios"
    "attack.name" = "sign-flip"

    [[exclude]]                    # product points that match every key of an entry are dropped
    "rule.name" = "median"
    "byzantine.count" = 2

Nested tables (``[grid.rule] name = [...]``) are read as dotted keys. Every point is validated
before anything runs: unknown keys, empty lists, components or component parameters that do not
exist are one-line errors.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..config import ConfigError, RunConfig, from_dict, load_toml

SWEEP_KEYS = ("grid", "include", "exclude", "seeds", "batch")
MAX_RUNS = 10_000


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the grid values that define it, its full config, and its id."""

    values: dict[str, Any]  #: dotted key → value, ``seed`` included
    config: RunConfig

    @property
    def run_id(self) -> str:
        return run_id(self.config)


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring)."""

    base: dict[str, Any]
    axes: dict[str, list[Any]]
    seeds: list[int]
    include: list[dict[str, Any]]
    exclude: list[dict[str, Any]]
    batch: bool = True  #: run the seeds of a point as one batched simulation where possible

    @property
    def keys(self) -> list[str]:
        """The config keys that vary, in file order, then ``seed``."""
        extra = [k for entry in self.include for k in entry if k not in self.axes]
        return list(dict.fromkeys([*self.axes, *extra, "seed"]))

    def points(self, max_runs: int = MAX_RUNS) -> list[Point]:
        """Every run, validated: the product of the axes minus exclusions, plus inclusions, × seeds."""
        combos = [dict(zip(self.axes, values)) for values in itertools.product(*self.axes.values())]
        combos = [c for c in combos if not any(_matches(c, ex) for ex in self.exclude)]
        combos += [dict(entry) for entry in self.include]
        total = len(combos) * len(self.seeds)
        if total == 0:
            raise ConfigError("the grid expands to zero runs (every point is excluded); check [[exclude]]")
        if total > max_runs:
            raise ConfigError(f"the grid expands to {total} runs, more than --max-runs {max_runs}; "
                              f"shrink the grid or raise --max-runs")
        out: list[Point] = []
        for combo in combos:
            for seed in self.seeds:
                values = {**combo, "seed": seed}
                out.append(Point(values, _config(self.base, values)))
        return out


def run_id(cfg: RunConfig) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of the resolved config (``out`` excluded):
    the same run always has the same id and folder, whatever grid it came from."""
    data = cfg.to_dict()
    data.pop("out", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file."""
    data = load_toml(path)
    grid = _flatten(_table(data.get("grid", {}), "[grid]"))
    seeds = _seeds(data.get("seeds", grid.pop("seeds", 1)))
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(f"[grid] {key} = {values!r} must be a list of values")
        if not values:
            raise ConfigError(f"[grid] {key} is an empty list; give at least one value")
    include = [_flatten(_table(e, "[[include]]")) for e in _entries(data.get("include", []), "include")]
    exclude = [_flatten(_table(e, "[[exclude]]")) for e in _entries(data.get("exclude", []), "exclude")]
    for entry in exclude:
        unknown = [k for k in entry if k not in grid]
        if unknown:
            raise ConfigError(f"[[exclude]] key {unknown[0]!r} is not a [grid] key; grid keys: {', '.join(grid) or 'none'}")
    base = {k: v for k, v in data.items() if k not in SWEEP_KEYS}
    batch = data.get("batch", True)
    if not isinstance(batch, bool):
        raise ConfigError(f"batch = {batch!r} is invalid; expected true or false")
    return Grid(base, grid, seeds, include, exclude, batch)


def _config(base: Mapping[str, Any], values: Mapping[str, Any]) -> RunConfig:
    """The run config of one point; unknown keys and bad values are one-line errors naming the key."""
    from ..config.run import _merge, _nest  # the same merge as command-line overrides

    try:
        cfg = from_dict(_merge(base, _nest(dict(values))))
    except ConfigError as err:
        raise ConfigError(f"grid point {_short(values)}: {err}") from None
    _check_components(cfg, values)
    return cfg


def _check_components(cfg: RunConfig, values: Mapping[str, Any]) -> None:
    """Build the rule and attack (cheap) and check the task's parameters, so that a typo in a grid
    fails before the first run instead of in the middle of a sweep."""
    from .. import registry
    from ..gossip.registry import make_rule

    try:
        make_rule(cfg.rule.name, alpha=cfg.rule.alpha, **dict(cfg.rule.params))
        registry.attacks.create(cfg.attack.name, **dict(cfg.attack.params))
        registry.check_params(registry.tasks.get(cfg.data.task).factory, dict(cfg.data.params), f"task {cfg.data.task!r}")
    except ValueError as err:
        raise ConfigError(f"grid point {_short(values)}: {err}") from None


def _short(values: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + "}"


def _matches(point: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(point.get(k) == v for k, v in entry.items())


def _seeds(value: Any) -> list[int]:
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise ConfigError(f"seeds = {value!r} is invalid; expected a number of seeds (3) or a list ([0, 1, 2])")
    seeds = list(range(value)) if isinstance(value, int) else value
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds = {value!r} is invalid; expected a count >= 1 or a non-empty list of integers >= 0")
    return seeds


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of keys, got {value!r}")
    return dict(value)


def _entries(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"[[{name}]] must be an array of tables, got {value!r}")
    return value


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"rule": {"name": [..]}}`` → ``{"rule.name": [..]}`` (dotted keys stay as they are)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{full}."))
        else:
            out[full] = value
    return out
