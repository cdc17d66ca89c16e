"""The options of ``p2probust run``, generated from the config dataclasses.

Each field of :class:`~p2probust.config.RunConfig` (and of its parts) that is an option carries a
:class:`~p2probust.config.base.Flag` in its metadata (:func:`~p2probust.config.base.option`): its
help, and its flag when that is not ``--`` + the field's name. The rest comes from the dataclass:
the default shown in ``--help``, the value's type, and the choices of a ``Literal[...]``
annotation (the same tuple the validation and the implementing module use). Options appear in the
order of the fields, part by part. A field without an option says how it is reached instead
(:func:`~p2probust.config.base.no_flag`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, NamedTuple

import click

from .config import RunConfig
from .config.base import Flag
from .config.run import _PARTS
from .typecheck import choices, field_type


class RunOption(NamedTuple):
    """One generated option: flag, dotted config key, click type, help (without the default)."""

    flag: str
    key: str
    type: Any
    help: str
    default: Any  #: what ``--help`` shows; None, "" or () shows nothing
    names: str | None  #: registry family listed in the help
    is_list: bool  #: a comma-separated list of integers


def config_leaves() -> list[tuple[str, type, dataclasses.Field]]:
    """``(dotted key, owning dataclass, field)`` for every leaf of a RunConfig, in field order."""
    out = []
    for top in dataclasses.fields(RunConfig):
        if top.name in _PARTS:
            cls = _PARTS[top.name]
            out.extend((f"{top.name}.{f.name}", cls, f) for f in dataclasses.fields(cls))
        else:
            out.append((top.name, RunConfig, top))
    return out


def _click_type(hint: Any, flag: Flag) -> tuple[Any, bool]:
    """The click type of a field annotated ``hint``, and whether it is a list (``tuple[int, ...]``,
    given as comma-separated integers): a ``Literal`` is a choice; a union of types is text."""
    allowed = choices(hint)
    if allowed is not None:
        return click.Choice(list(allowed)), False
    if flag.type is not None:
        return flag.type, False
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    args = tuple(a for a in args if a is not type(None))
    if len(args) == 1 and typing.get_origin(args[0]) is tuple:
        return str, True
    return (args[0] if len(args) == 1 and args[0] in (int, float, str) else str), False


def _build() -> list[RunOption]:
    defaults = RunConfig()
    out = []
    for key, cls, f in config_leaves():
        flag = f.metadata.get("cli")
        if not isinstance(flag, Flag):
            continue
        typ, is_list = _click_type(field_type(cls, f.name), flag)
        obj: Any = defaults
        for part in key.split("."):
            obj = getattr(obj, part)
        shown = flag.shown if obj is None else obj
        out.append(RunOption(flag.name or "--" + f.name.replace("_", "-"), key, typ, flag.help,
                             ",".join(map(str, shown)) if isinstance(shown, tuple) else shown, flag.names, is_list))
    return out


RUN_OPTIONS: list[RunOption] = _build()


class _ConfigOption(click.Option):
    """An option whose help lists a registry's names, filled in when the help is shown (so that
    plugins are loaded only then, never for a plain run)."""

    def __init__(self, *args: Any, names: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.names = names

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if not (self.names and self.help and "{names}" in self.help):
            return super().get_help_record(ctx)
        template = self.help  # filled afresh each time: names registered later appear too
        self.help = template.replace("{names}", ", ".join(registry_names(self.names)))
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = template


def registry_names(family: str) -> list[str]:
    """The names registered in ``family`` (built-ins, registered on importing p2probust, and plugins)."""
    from . import registry

    return getattr(registry, family).names()


def run_options(func: Callable) -> Callable:
    """Decorate ``p2probust run`` with one option per :data:`RUN_OPTIONS` row; each passes its
    value (or None when not given) as the keyword ``key`` with ``__`` for ``.``."""
    for opt in reversed(RUN_OPTIONS):
        help_text = opt.help
        if opt.default not in (None, "", ()):
            help_text = f"{help_text}  [default: {opt.default}]"
        func = click.option(opt.flag, opt.key.replace(".", "__"), cls=_ConfigOption, names=opt.names, type=opt.type,
                            default=None, help=help_text)(func)
    return func


def overrides_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """Dotted-key overrides from the values given to the generated options (lists parsed)."""
    by_key = {opt.key: opt for opt in RUN_OPTIONS}
    overrides: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None:
            continue
        opt = by_key[name.replace("__", ".")]
        if opt.is_list:
            try:
                value = tuple(int(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ValueError(f"{opt.flag} {value!r} must be comma-separated integers") from None
        overrides[opt.key] = value
    return overrides
