"""What every config part shares: the error type, component parameters, one-line checks."""

from __future__ import annotations

from typing import Any, Mapping


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key, the value and what is allowed."""


Params = tuple[tuple[str, Any], ...]


def _params(value: Mapping[str, Any] | Params | None) -> Params:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), v) for k, v in items))


DEFAULT_NODES = 16  #: n of built-in topologies and Python builders when ``topology.nodes`` is not set


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is invalid; expected {allowed}")
