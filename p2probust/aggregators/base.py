"""The aggregator and pre-aggregator contracts, and :func:`chain` to compose them.

An **aggregator** maps a masked set of ``m`` vectors to one vector, written for one node::

    agg(x: [m, d], mask: [m], f: []) -> [d]

``mask[j]`` says whether slot ``j`` holds a real vector (padding slots may hold anything and must
not influence the output); ``f`` is the tolerance, the number of Byzantine vectors to expect among
the real ones (a 0-d integer tensor, so that it can differ per node under ``vmap``).

A **pre-aggregator** maps a masked set to a masked set of the same capacity::

    pre(x: [m, d], mask: [m], f: []) -> ([m, d], [m])

Both are lifted over a leading node axis by :meth:`batched`, which defaults to
``torch.func.vmap`` of the one-node call; a rule may override it with a hand-batched form that
computes the same thing faster (the conformance tests check the two agree).

Composition follows optax's ``chain``: ``chain(NNM(), TrimmedMean())`` is itself an aggregator
whose ``repr`` reads like the expression that built it, so logs and ``config.json`` show the
pipeline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch
from torch import Tensor


class ToleranceError(ValueError):
    """A rule was asked to tolerate more Byzantine inputs than it can (e.g. 2f >= m for CWTM)."""


class AbstractAggregator(ABC):
    """Set of vectors → one vector; the abstract base class of every aggregator.

    A subclass must implement :meth:`__call__`, the rule at one node,
    ``(x [m, d], mask [m], f []) -> [d]``: padding rows (``mask`` False) hold arbitrary values
    and must not change the output; ``f`` is a 0-d integer tensor. Everything else has a default:
    :meth:`batched` (``[n, m, d], [n, m], [n] -> [n, d]``, ``vmap`` of the one-node call; override
    it with a faster form computing the same values), :meth:`max_tolerance` (``m − 1``) and the
    class flags below. Register it by name with :func:`p2probust.registry.register_aggregator`
    or, from another package, with an entry point in the group ``p2probust.aggregators``; every
    aggregator is then also a gossip rule (aggregate-and-mix). A subclass that misses
    :meth:`__call__` cannot be instantiated (``TypeError``).
    """

    #: False only for rules that offer no robustness (the plain mean); the conformance suite
    #: then skips the malformed-input checks.
    robust: bool = True
    #: True once tests/test_batched.py shows that a batched simulation gives byte-identical
    #: per-seed metrics with it (see :mod:`p2probust.batched`); unverified components run separately
    replica_safe: bool = False
    #: True when the output is coordinate-wise inside the honest inputs' bounding box whenever at
    #: most f inputs are malformed (checked by the conformance suite).
    coordinatewise: bool = False
    #: True when slot 0 is special: the node's own model, the centre of self-centred clipping
    #: (as :class:`~p2probust.gossip.AggregateAndMix` arranges); permutations then keep slot 0.
    anchored: bool = False
    #: True for randomized rules, which then offer ``reseeded()`` (a copy restarting its generator).
    randomized: bool = False
    #: False when identical inputs are not returned unchanged (static clipping moves them).
    fixed_point: bool = True

    @abstractmethod
    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        """``[m, d], [m], [] -> [d]``: the rule at one node."""

    def batched(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        """``[n, m, d], [n, m], [n] -> [n, d]``: the one-node rule lifted over nodes."""
        return torch.func.vmap(self.__call__)(x, mask, f)

    def max_tolerance(self, m: Tensor) -> Tensor:
        """Largest f the rule accepts with ``m`` real inputs (elementwise over a tensor of m)."""
        return m - 1

    def check_tolerance(self, m: Tensor, f: Tensor) -> None:
        """Raise :class:`ToleranceError` when some node's ``f`` exceeds :meth:`max_tolerance`."""
        bad = (f > self.max_tolerance(m)) | (f < 0)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ToleranceError(
                f"{self!r} cannot tolerate f = {int(f[i])} among {int(m[i])} inputs "
                f"(set index {i}); it allows 0 <= f <= {int(self.max_tolerance(m[i]))}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AbstractPreAggregator(ABC):
    """Set of vectors → set of vectors (same capacity), e.g. NNM, bucketing, clipping.

    A subclass must implement :meth:`__call__`, ``(x [m, d], mask [m], f []) -> ([m, d], [m])`` at
    one node; :meth:`batched` (``vmap``) and :meth:`output_count` (``m``) have defaults. Entry-point
    group: ``p2probust.preaggregators``; use it in a rule name ``pre+aggregator``.
    """

    #: True when every output vector is a convex combination of input vectors (NNM, bucketing).
    in_hull: bool = False
    anchored: bool = False
    randomized: bool = False
    fixed_point: bool = True
    #: as :attr:`AbstractAggregator.replica_safe`
    replica_safe: bool = False

    @abstractmethod
    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        """``[m, d], [m], [] -> ([m, d], [m])``: the pre-aggregation at one node."""

    def batched(self, x: Tensor, mask: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        """``[n, m, d], [n, m], [n] -> ([n, m, d], [n, m])``."""
        return torch.func.vmap(self.__call__)(x, mask, f)

    def output_count(self, m: Tensor) -> Tensor:
        """Number of real vectors out of ``m`` real inputs (``m`` except for bucketing)."""
        return m

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Chain(AbstractAggregator):
    """Pre-aggregators applied in order, then one aggregator: ``agg ∘ pre_p ∘ … ∘ pre_1``."""

    def __init__(self, pre: Sequence[AbstractPreAggregator], aggregator: AbstractAggregator):
        self.pre = tuple(pre)
        self.aggregator = aggregator
        self.robust = aggregator.robust
        self.coordinatewise = aggregator.coordinatewise and all(p.in_hull for p in self.pre)
        self.anchored = any(p.anchored for p in (*self.pre, aggregator))
        self.randomized = any(p.randomized for p in (*self.pre, aggregator))
        self.fixed_point = all(p.fixed_point for p in (*self.pre, aggregator))

    def reseeded(self) -> "Chain":
        """A copy whose randomized parts restart their generators."""
        fresh = [p.reseeded() if p.randomized else p for p in (*self.pre, self.aggregator)]
        return Chain(fresh[:-1], fresh[-1])

    def __call__(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        for p in self.pre:
            x, mask = p(x, mask, f)
        return self.aggregator(x, mask, f)

    def batched(self, x: Tensor, mask: Tensor, f: Tensor) -> Tensor:
        for p in self.pre:
            x, mask = p.batched(x, mask, f)
        return self.aggregator.batched(x, mask, f)

    def max_tolerance(self, m: Tensor) -> Tensor:
        for p in self.pre:
            m = p.output_count(m)
        return self.aggregator.max_tolerance(m)

    def __repr__(self) -> str:
        return "chain(" + ", ".join(repr(p) for p in (*self.pre, self.aggregator)) + ")"


def chain(*parts: AbstractPreAggregator | AbstractAggregator) -> Chain:
    """Compose pre-aggregators and a final aggregator: ``chain(NNM(), CoordinateWiseMedian())``."""
    if not parts or not isinstance(parts[-1], AbstractAggregator):
        raise TypeError("chain(...) needs an aggregator as its last part")
    for p in parts[:-1]:
        if not isinstance(p, AbstractPreAggregator):
            raise TypeError(f"chain(...): {p!r} is not a pre-aggregator; only the last part aggregates")
    return Chain(parts[:-1], parts[-1])


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of the real rows: ``[..., m, d], [..., m] -> [..., d]`` (padding never read)."""
    count = mask.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype)).sum(-2) / count
