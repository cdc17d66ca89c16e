"""The gossip-rule contract and the one place where one-node rules are lifted over nodes.

A gossip rule turns a node's own model and its inbox into its new model, written for one node::

    rule(own: [d], inbox: [k, d], mask: [k], weights: [k], f: []) -> [d]

``inbox[j]`` is the message in neighbour slot ``j`` (``mask[j]`` False for padding, whose content is
arbitrary), ``weights[j]`` the mixing weight of that link (Metropolis–Hastings by default) and
``f`` the tolerance at this node (oracle: its true number of Byzantine neighbours; or a declared
integer). :meth:`AbstractGossipRule.batched` applies it to ``[n, ...]`` stacks; the default is
:func:`lift`, a ``torch.func.vmap`` of the one-node call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

OneNodeRule = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def lift(rule: OneNodeRule) -> OneNodeRule:
    """Lift a one-node rule over a leading node axis: ``[n, d], [n, k, d], [n, k], [n, k], [n] -> [n, d]``."""
    return torch.func.vmap(rule, in_dims=(0, 0, 0, 0, 0))


class AbstractGossipRule(ABC):
    """Own model + inbox → new own model; the abstract base class of every gossip rule.

    A subclass must implement :meth:`__call__`, the rule at one node,
    ``(own [d], inbox [k, d], mask [k], weights [k], f []) -> [d]`` (padding slots, ``mask``
    False, hold arbitrary values and must not change the output). Everything else has a default:
    :meth:`batched` (``[n, d], [n, k, d], [n, k], [n, k], [n] -> [n, d]``, :func:`lift` of the
    one-node call), :meth:`bind` and :meth:`for_nodes` (``self``), :meth:`check_tolerance`
    (accepts every f) and the class flags below. Register it with
    :func:`p2probust.registry.register_rule` (the factory takes ``alpha``) or, from another
    package, with an entry point in the group ``p2probust.rules``. A subclass that misses
    :meth:`__call__` cannot be instantiated (``TypeError``).
    """

    #: False only for non-robust rules (plain gossip / mean), exempt from malformed-input checks.
    robust: bool = True
    #: True if row i of :meth:`batched` depends only on row i of the inputs, so the simulator may
    #: call it on blocks of nodes (for cache locality and bounded memory). Rules that identify
    #: nodes by row position (e.g. oracle ClippedGossip after ``bind``) set it False.
    row_independent: bool = True
    #: True once tests/test_batched.py shows that a batched simulation gives byte-identical
    #: per-seed metrics with it (see :mod:`p2probust.batched`); unverified components run separately
    replica_safe: bool = False
    #: name of the gossip rate attribute, for logs
    alpha: float = 1.0

    @abstractmethod
    def __call__(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        """``[d], [k, d], [k], [k], [] -> [d]``: the new model of one node."""

    def batched(self, own: Tensor, inbox: Tensor, mask: Tensor, weights: Tensor, f: Tensor) -> Tensor:
        """The rule for every node at once; defaults to :func:`lift` of :meth:`__call__`."""
        return lift(self.__call__)(own, inbox, mask, weights, f)

    def bind(self, table, is_byzantine: Tensor) -> "AbstractGossipRule":
        """Called once before a run with the :class:`~p2probust.topology.NeighbourTable` and the
        Byzantine mask; rules that need graph-level constants (e.g. a step size 1/λ_max of the
        weighted Laplacian) return a configured copy. The default returns ``self``."""
        return self

    def for_nodes(self, nodes: Tensor) -> "AbstractGossipRule":
        """The rule for a batched call whose rows are the nodes ``nodes [a]``, in that order.

        Rules whose rows are independent return ``self``; a rule bound to the graph that needs to
        know which node a row is (oracle ClippedGossip) returns a copy matched to ``nodes``, so that
        calls on a subset of nodes (async batches, churn, an attack's ``evaluate_rule``) give the
        rows of the full call: ``rule.for_nodes(nodes).batched(...)``."""
        return self

    def check_tolerance(self, degree: Tensor, f: Tensor) -> None:
        """Raise :class:`~p2probust.aggregators.base.ToleranceError` if some node's f is impossible."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g})"
