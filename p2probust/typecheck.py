"""Type checks of config values against the dataclass annotations, with one-line errors.

TOML and Python callers can put any value in any key; a wrong type must fail at once with the key
named (``topology.nodes = '9' must be an integer``), never deep inside a run, and never be read
as something else (``"12"`` as the list ``[1, 2]``, ``true`` as the seed 1, ``2.5`` as a count).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list",
          Mapping: "a table", type(None): "absent (none)"}


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def choices(hint: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` annotation allows (the one list of a choice), else None."""
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def field_type(cls: type, name: str) -> Any:
    """The annotation of the field ``name`` of the dataclass ``cls``, resolved."""
    return _hints(cls)[name]


def _allowed(hint: Any) -> tuple[type, ...] | None:
    """The classes a value of type ``hint`` may be, or None when anything goes."""
    if hint is Any:
        return None
    if choices(hint) is not None:
        return tuple(dict.fromkeys(type(c) for c in choices(hint)))
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: list[type] = []
        for arg in typing.get_args(hint):
            sub = _allowed(arg)
            if sub is None:
                return None
            out.extend(sub)
        return tuple(out)
    if origin is tuple or hint is tuple:
        return (tuple, list)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return (Mapping,)
    if hint is None or hint is type(None):
        return (type(None),)
    return (hint,) if isinstance(hint, type) else None


def _describe(allowed: tuple[type, ...]) -> str:
    names = [_NAMES.get(t, t.__name__) for t in allowed if t is not list]
    return " or ".join(dict.fromkeys(names))


def check_types(obj: Any, part: str | None = None, skip: tuple[str, ...] = ("params",)) -> None:
    """Raise a one-line ``ConfigError`` for any field of the dataclass ``obj`` whose value does not
    match its annotation, or is not one of a ``Literal[...]``'s values; an integer given for a
    ``float`` field becomes a float (TOML writes ``lr = 1`` for 1.0). Booleans are never accepted as numbers."""
    from .config import ConfigError
    from .config.base import or_list

    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        allowed = _allowed(hints[f.name])
        if allowed is None:
            continue
        key = f"{part}.{f.name}" if part else f.name
        allowed_values = choices(hints[f.name])
        if allowed_values is not None and (isinstance(value, bool) or value not in allowed_values):
            raise ConfigError(f"{key} = {value!r} is invalid; expected {or_list(allowed_values)}")
        is_bool = isinstance(value, bool)
        if is_bool and bool not in allowed:
            raise ConfigError(f"{key} = {value!r} is invalid; expected {_describe(allowed)}")
        if not is_bool and isinstance(value, int) and float in allowed and int not in allowed:
            object.__setattr__(obj, f.name, float(value))
            continue
        if not isinstance(value, allowed):
            raise ConfigError(f"{key} = {value!r} is invalid; expected {_describe(allowed)}")


def check_int_list(value: Any, key: str) -> tuple[int, ...]:
    """A list of integers (node ids), as a tuple; a string, floats or booleans are errors."""
    from .config import ConfigError

    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} = {value!r} is invalid; expected a list of integers, e.g. [0, 5]")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} = {list(value)!r} is invalid: {v!r} is not an integer node id")
    return tuple(value)
