"""Rule names: gossip rules registered by name, every registered aggregator as aggregate-and-mix,
and chains written ``pre1+pre2+aggregator`` (e.g. ``nnm+trimmed-mean``).

In a chain, ``params`` go to the final aggregator; a key ``<part>.<param>`` (e.g.
``bucketing.s = 3`` or ``clip.C = 2``) goes to the named part instead.
"""

from __future__ import annotations

from typing import Any

from .. import registry
from ..aggregators.base import AbstractAggregator, Chain, chain
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
    registered aggregator of that name (so every aggregator is usable as a rule), or a chain
    ``"pre+...+aggregator"`` of registered pre-aggregators and a final aggregator."""
    if "+" in name:
        return AggregateAndMix(make_chain(name, **params), alpha)
    if name in registry.rules:
        return registry.rules.create(name, alpha=alpha, **params)
    if name in registry.aggregators:
        return AggregateAndMix(registry.aggregators.create(name, **params), alpha)
    known = sorted(set(registry.rules.names()) | set(registry.aggregators.names()))
    raise registry.UnknownNameError(f"unknown rule {name!r}{registry.did_you_mean(name, known)}; choose one of: {', '.join(known)}")


def make_chain(spec: str, **params: Any) -> Chain:
    """Build ``chain(pre_1, ..., aggregator)`` from ``"pre_1+...+aggregator"``.

    Keys ``part.param`` go to that part; plain keys go to the aggregator.
    """
    names = [p.strip() for p in spec.split("+")]
    if len(names) < 2 or not all(names):
        raise ValueError(f"rule chain {spec!r} must look like 'pre+aggregator' (e.g. 'nnm+trimmed-mean')")
    per_part: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in params.items():
        part, _, sub = key.rpartition(".")
        target = part if part else names[-1]
        if target not in per_part:
            raise ValueError(f"rule parameter {key!r} names no part of {spec!r}; use one of: {', '.join(names)}")
        per_part[target][sub] = value
    pres = []
    for n in names[:-1]:
        if n not in registry.preaggregators:
            known = ", ".join(registry.preaggregators.names())
            hint = registry.did_you_mean(n, registry.preaggregators.names())
            raise registry.UnknownNameError(f"unknown pre-aggregator {n!r}{hint} in rule {spec!r}; choose one of: {known}")
        pres.append(registry.preaggregators.create(n, **per_part[n]))
    if names[-1] not in registry.aggregators:
        known = ", ".join(registry.aggregators.names())
        hint = registry.did_you_mean(names[-1], registry.aggregators.names())
        raise registry.UnknownNameError(f"unknown aggregator {names[-1]!r}{hint} at the end of rule {spec!r}; choose one of: {known}")
    return chain(*pres, registry.aggregators.create(names[-1], **per_part[names[-1]]))


def as_rule(obj: Any, *, alpha: float = 1.0) -> AbstractGossipRule:
    """Accept a gossip rule or an aggregator object (wrapped in aggregate-and-mix with ``alpha``)."""
    if isinstance(obj, AbstractGossipRule):
        return obj
    if isinstance(obj, AbstractAggregator):
        return AggregateAndMix(obj, alpha)
    raise TypeError(f"rule must be a gossip rule or an aggregator, got {obj!r}")
