"""Adversarial graphs and placements from the robust-gossip literature.

Topologies (registered by name):

- ``"two-cliques"`` (dumbbell): two cliques joined by one bridge edge;
- ``"two-worlds"``: two cliques joined by ``h`` cross edges;
- ``"ring-of-cliques"``: ``cliques`` cliques of ``size`` nodes, consecutive cliques joined by one edge.

The placements these attacks call for (``"eigenvector"``, ``"cut"``) live with the others in
:mod:`p2probust.topology.placement`; this module adds the graph transform :func:`attach_byzantine`, which gives *every honest node exactly b
Byzantine neighbours* by adding ``b`` new Byzantine vertices per honest node (the setting of the
robust gossip papers). It changes the graph, so it is not a placement: a run asks for it with
``byzantine.placement = "attach"`` and ``byzantine.count = b`` (see :func:`attach_placement`).

References
----------
.. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
   ClippedGossip", arXiv:2202.01545, 2022 (dumbbell, attached Byzantine nodes).
.. [2] R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine robust
   gossip", ICML 2025 (two worlds, b Byzantine neighbours per honest node).
.. [3] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization with
   robust aggregation rules", IEEE TSP 2023.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import networkx as nx
import torch

from p2probust.registry import register_placement, register_topology
from p2probust.topology._seeds import Seed
from p2probust.topology.errors import PlacementError, TopologyError

__all__ = [
    "ATTACH",
    "attach_byzantine",
    "ring_of_cliques_graph",
    "two_cliques_graph",
    "two_worlds_graph",
]

#: The placement name that asks :func:`p2probust.simulate` for :func:`attach_byzantine`.
ATTACH = "attach"


def _check_int(value: object, minimum: int, what: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise TopologyError(f"{what} = {value!r} must be an integer >= {minimum}")
    return int(value)


def _two_cliques(n: int, h: int, name: str) -> nx.Graph:
    n = _check_int(n, 4, f"{name} n")
    a = n // 2
    G = nx.complete_graph(a)
    G.add_edges_from((u, v) for u in range(a, n) for v in range(u + 1, n))
    if not 1 <= h <= a * (n - a):
        raise TopologyError(f"{name} h = {h} cross edges must be between 1 and {a * (n - a)} for n = {n}")
    # cross edges i -- a + i first (a perfect matching from the bridge outwards), then the rest
    pairs = [(a - 1 - i, a + i) for i in range(min(a, n - a))]
    if h > len(pairs):
        seen = set(pairs)
        pairs += [(u, v) for u in range(a - 1, -1, -1) for v in range(a, n) if (u, v) not in seen]
    G.add_edges_from(pairs[:h])
    return G


@register_topology("two-cliques", "dumbbell: two cliques of n/2 nodes joined by one bridge edge")
def two_cliques_graph(n: int, *, seed: Seed = None) -> nx.Graph:
    """Two cliques (dumbbell) joined by a single bridge.

    Parameters
    ----------
    n : int
        Number of nodes, at least 4: the first clique holds ``0 .. n//2 - 1``, the second the rest.
    seed : ignored
        The graph is deterministic.

    Returns
    -------
    networkx.Graph
        The bridge joins ``n//2 - 1`` and ``n//2``. The spectral gap is ``O(1/n^2)``: gossip mixes
        the two halves slowly, which dissensus and spectral attacks exploit.

    Examples
    --------
    >>> two_cliques_graph(8).number_of_edges()
    13
    """
    return _two_cliques(n, 1, "two-cliques")


@register_topology("two-worlds", "two cliques of n/2 nodes joined by h cross edges (default h = 1)")
def two_worlds_graph(n: int, *, h: int = 1, seed: Seed = None) -> nx.Graph:
    """Two cliques ("two worlds") joined by ``h`` cross edges.

    Parameters
    ----------
    n : int
        Number of nodes, at least 4 (halves as in :func:`two_cliques_graph`).
    h : int, default 1
        Number of cross edges, ``1 <= h <= (n//2) (n - n//2)``. They form a matching
        ``n//2 - 1 - i -- n//2 + i`` first, then connect the remaining pairs in a fixed order.
    seed : ignored

    Returns
    -------
    networkx.Graph
        With ``h = 1`` it is the dumbbell; larger ``h`` widens the bottleneck.
    """
    h = _check_int(h, 1, "two-worlds h")
    return _two_cliques(n, h, "two-worlds")


@register_topology("ring-of-cliques", "cliques of `size` nodes on a ring, neighbouring cliques joined by one edge")
def ring_of_cliques_graph(n: int | None = None, *, cliques: int | None = None, size: int | None = None, seed: Seed = None) -> nx.Graph:
    """A ring of ``cliques`` cliques of ``size`` nodes (networkx's ``ring_of_cliques``).

    Parameters
    ----------
    n : int, optional
        Total number of nodes; with only ``n``, ``size = 4`` and ``cliques = n / 4``.
    cliques : int, optional
        Number of cliques, at least 2.
    size : int, optional
        Nodes per clique, at least 2.
    seed : ignored

    Returns
    -------
    networkx.Graph
        Clique ``c`` holds nodes ``c * size .. (c + 1) * size - 1``.
    """
    if cliques is None and size is None:
        size = 4
    if n is not None:
        n = _check_int(n, 4, "ring-of-cliques n")
        if cliques is None:
            cliques = n // size if size and n % size == 0 else None
        if size is None:
            size = n // cliques if n % cliques == 0 else None
        if cliques is None or size is None or cliques * size != n:
            raise TopologyError(f"ring-of-cliques n = {n} must equal cliques × size, got cliques = {cliques}, size = {size}")
    cliques = _check_int(cliques, 2, "ring-of-cliques cliques")
    size = _check_int(size, 2, "ring-of-cliques size")
    return nx.convert_node_labels_to_integers(nx.ring_of_cliques(cliques, size), ordering="sorted")


def attach_byzantine(G: nx.Graph, b: int) -> tuple[nx.Graph, torch.Tensor]:
    """Give every node of ``G`` exactly ``b`` Byzantine neighbours by adding new vertices.

    Parameters
    ----------
    G : networkx.Graph on the nodes ``0 .. n-1`` (all honest)
    b : int
        Byzantine neighbours per honest node, ``b >= 0``.

    Returns
    -------
    (networkx.Graph, BoolTensor [n (1 + b)])
        ``G'`` keeps ``G``'s nodes and edges; node ``n + i b + j`` (``j < b``) is a new Byzantine
        vertex whose only neighbour is honest node ``i``. The mask is True on the new vertices.

    Examples
    --------
    >>> G2, byz = attach_byzantine(nx.cycle_graph(4), 2)
    >>> G2.number_of_nodes(), int(byz.sum()), G2.degree(0)
    (12, 8, 4)
    """
    b = _check_int(b, 0, "attach b")
    n = G.number_of_nodes()
    if set(G.nodes()) != set(range(n)):
        raise TopologyError(f"attach_byzantine needs nodes labelled 0..{n - 1}")
    H = nx.Graph()
    H.add_nodes_from(range(n * (1 + b)))
    H.add_edges_from(G.edges())
    H.add_edges_from((i, n + i * b + j) for i in range(n) for j in range(b))
    mask = torch.zeros(n * (1 + b), dtype=torch.bool)
    mask[n:] = True
    return H, mask


@register_placement(ATTACH, "b = count new Byzantine vertices attached to every honest node (changes the graph)")
def attach_placement(G: nx.Graph, count: int, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """Placeholder entry so ``"attach"`` is listed and validated; :func:`p2probust.simulate` sees
    this name and calls :func:`attach_byzantine` (which adds vertices) instead of placing on ``G``.

    Raises
    ------
    PlacementError
        Always, when called as an ordinary placement: the graph must be transformed first.
    """
    raise PlacementError(
        f"placement {ATTACH!r} adds {count} Byzantine vertices per honest node; use attach_byzantine(G, b) "
        "or simulate(), not place_byzantine()"
    )
