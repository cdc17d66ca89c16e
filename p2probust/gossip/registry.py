"""Rule names: gossip rules registered by name, and every registered aggregator as aggregate-and-mix."""

from __future__ import annotations

from typing import Any

from .. import registry
from ..aggregators.base import AbstractAggregator
from .base import AbstractGossipRule
from .mixing import AggregateAndMix, Gossip


@registry.register_rule("gossip", "plain gossip θ_i − α Σ_j (θ_i − θ_j), unit weights (not robust)")
def _plain_gossip(alpha: float = 1.0) -> Gossip:
    return Gossip(alpha, weighted=False)


@registry.register_rule("mh-gossip", "gossip with Metropolis–Hastings weights (doubly stochastic; not robust)")
def _mh_gossip(alpha: float = 1.0) -> Gossip:
    return Gossip(alpha, weighted=True)


def make_rule(name: str, *, alpha: float = 1.0, **params: Any) -> AbstractGossipRule:
    """Build the gossip rule ``name``: a registered gossip rule, or ``AggregateAndMix`` around a
    registered aggregator of that name (so every aggregator is usable as a rule)."""
    if name in registry.rules:
        return registry.rules.create(name, alpha=alpha, **params)
    if name in registry.aggregators:
        return AggregateAndMix(registry.aggregators.create(name, **params), alpha)
    known = sorted(set(registry.rules.names()) | set(registry.aggregators.names()))
    raise registry.UnknownNameError(f"unknown rule {name!r}; choose one of: {', '.join(known)}")


def as_rule(obj: Any, *, alpha: float = 1.0) -> AbstractGossipRule:
    """Accept a gossip rule or an aggregator object (wrapped in aggregate-and-mix with ``alpha``)."""
    if isinstance(obj, AbstractGossipRule):
        return obj
    if isinstance(obj, AbstractAggregator):
        return AggregateAndMix(obj, alpha)
    raise TypeError(f"rule must be a gossip rule or an aggregator, got {obj!r}")
