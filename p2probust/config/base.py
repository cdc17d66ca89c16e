"""What every config part shares: the error type, component parameters, one-line checks."""

from __future__ import annotations

from dataclasses import dataclass, field
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


def or_list(choices: Any) -> str:
    """``a, b or c``: the allowed values as error messages name them."""
    words = [str(c) for c in choices]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


@dataclass(frozen=True)
class Flag:
    """How a config field appears as a ``p2probust run`` option (built by :mod:`p2probust.cli_options`).

    ``name``: the flag when it is not ``--`` + the field's name with ``-`` for ``_``; ``type``: the
    value's type on the command line when the annotation's is not it (a text parsed into a number);
    ``names``: a registry family whose names replace ``{names}`` in ``help``; ``shown``: the default
    that ``--help`` shows when the field's own default is None.
    """

    help: str
    name: str | None = None
    type: Any = None
    names: str | None = None
    shown: Any = None


def option(default: Any, help: str, **flag: Any) -> Any:
    """A dataclass field that is also a ``p2probust run`` option (see :class:`Flag`)."""
    return field(default=default, metadata={"cli": Flag(help, **flag)})


def no_flag(default: Any, reached_by: str) -> Any:
    """A dataclass field without an option of its own; ``reached_by`` says how it is set instead."""
    return field(default=default, metadata={"cli": reached_by})
