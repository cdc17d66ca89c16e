"""Names → factories, so TOML files and the CLI can refer to components by name.

Each family (topologies, placements, tasks, partitions, rules, aggregators, attacks) has one
:class:`Registry`. Components register themselves with a decorator::

    @register_aggregator("trimmed-mean", "coordinate-wise trimmed mean (drop f per side)")
    class TrimmedMean(AbstractAggregator): ...

Third-party packages add components through entry points in the group
``p2probust.<family>`` (for example ``p2probust.aggregators``); each entry point names a factory
and is registered under the entry point's name the first time the family is looked up.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator


class UnknownNameError(ValueError):
    """A name that is not registered in a family; the message lists the known names."""


class PluginError(ValueError):
    """A plugin's entry point that cannot be loaded; the message names the plugin and its group."""


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, factory and one-line description."""

    name: str
    factory: Callable[..., Any]
    description: str


class Registry:
    """A family of named factories, filled by decorators and by package entry points."""

    def __init__(self, family: str, singular: str | None = None):
        self.family = family
        self.singular = singular or family.rstrip("s")
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    def register(self, name: str, description: str = "") -> Callable[[Callable], Callable]:
        """Decorator registering ``factory`` under ``name`` (lower case, words joined by ``-``)."""

        def decorate(factory: Callable) -> Callable:
            self.add(name, factory, description)
            return factory

        return decorate

    def add(self, name: str, factory: Callable, description: str = "") -> None:
        if name in self._entries and self._entries[name].factory is not factory:
            raise ValueError(f"{self.family} name {name!r} is already registered")
        if not description:
            doc = (getattr(factory, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name, factory, description)

    @property
    def group(self) -> str:
        """The entry-point group of plugins for this family: ``p2probust.<family>``."""
        return f"p2probust.{self.family}"

    def _load_plugins(self) -> None:
        """Register every entry point of :attr:`group` not registered yet (a built-in name wins).

        A plugin that fails to load raises :class:`PluginError` (one line naming it and the
        group); the next lookup tries again."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                factory = ep.load()
            except Exception as err:  # any failure inside third-party code: one line, not a traceback
                self._plugins_loaded = False
                reason = str(err).splitlines()[0] if str(err) else ""
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value!r} in group {self.group!r}) failed to load: "
                    f"{type(err).__name__}{': ' + reason if reason else ''}"
                ) from err
            if not callable(factory):
                self._plugins_loaded = False
                raise PluginError(f"plugin {ep.name!r} (entry point {ep.value!r} in group {self.group!r}) "
                                  f"is {factory!r}, not a class or function")
            self.add(ep.name, factory)

    def get(self, name: str) -> Entry:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise UnknownNameError(
                f"unknown {self.singular} {name!r}{did_you_mean(name, self._entries)}; choose one of: {known}"
            ) from None

    def create(self, name: str, /, **params: Any) -> Any:
        """Build the component ``name`` with keyword ``params``; an unknown parameter or a value of
        the wrong type gives a one-line error naming it (and the valid parameters)."""
        entry = self.get(name)
        check_params(entry.factory, params, f"{self.singular} {name!r}")
        try:
            return entry.factory(**params)
        except TypeError as err:
            raise ValueError(f"bad parameters for {self.singular} {name!r}: {err}") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        self._load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))


def did_you_mean(name: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_params(factory: Callable[..., Any], params: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` (one line) when ``params`` holds a key ``factory`` does not take, or a
    text where the parameter's default is a number or a flag (``scale=abc``)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    accepted = {k: p for k, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        unknown = []
    else:
        unknown = [k for k in params if k not in accepted]
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ValueError(f"{what} has no parameter {unknown[0]!r}{did_you_mean(unknown[0], accepted)}; its parameters: {valid}")
    for key, value in params.items():
        default = accepted[key].default if key in accepted else inspect.Parameter.empty
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{what} parameter {key} = {value!r} is invalid; expected true or false")
        if isinstance(default, numbers.Real) and not isinstance(default, bool) and (
                isinstance(value, (str, bool)) or value is None):
            raise ValueError(f"{what} parameter {key} = {value!r} is invalid; expected a number (default {default!r})")


#: The families, in the order ``p2probust list`` shows them; plugins use the entry-point group
#: ``p2probust.<family>`` (e.g. ``p2probust.aggregators``).
FAMILIES = ("topologies", "placements", "tasks", "partitions", "rules", "aggregators", "preaggregators", "attacks")

topologies = Registry("topologies", "topology")
placements = Registry("placements")
tasks = Registry("tasks")
partitions = Registry("partitions")
rules = Registry("rules")
aggregators = Registry("aggregators")
preaggregators = Registry("preaggregators", "pre-aggregator")
attacks = Registry("attacks")

register_topology = topologies.register
register_placement = placements.register
register_task = tasks.register
register_partition = partitions.register
register_rule = rules.register
register_aggregator = aggregators.register
register_preaggregator = preaggregators.register
register_attack = attacks.register
