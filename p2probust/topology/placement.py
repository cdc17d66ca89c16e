"""Byzantine placement: which vertices of the graph are Byzantine.

Strategies are registered by name and share one signature,
``f(G, count, *, seed=None, nodes=None) -> BoolTensor[n]``:

- ``"random"``: ``count`` nodes drawn uniformly without replacement (seeded);
- ``"list"``: exactly the nodes given in ``nodes``;
- ``"degree"``: the ``count`` highest-degree nodes, ties broken by lowest id;
- ``"betweenness"``: the ``count`` most central nodes by betweenness, ties by lowest id;
- ``"eigenvector"``: the ``count`` most central nodes by eigenvector centrality, ties by lowest id;
- ``"cut"``: nodes on the cut between the graph's two communities (the Fiedler sign cut).

(``"attach"``, which adds Byzantine vertices, is a graph transform: see
:func:`p2probust.topology.adversarial.attach_byzantine`.)

:func:`place_byzantine` validates the count and dispatches; :func:`placement_report` summarizes how
exposed the honest nodes are.
"""

from __future__ import annotations

import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
import numpy as np
import torch
from scipy.sparse.linalg import eigsh

from p2probust.registry import UnknownNameError, placements, register_placement
from p2probust.topology._seeds import Seed, numpy_rng
from p2probust.topology.checks import as_bool_array
from p2probust.topology.errors import PlacementError
from p2probust.topology.spectral import DENSE_LIMIT

__all__ = [
    "random_placement",
    "list_placement",
    "degree_placement",
    "betweenness_placement",
    "eigenvector_placement",
    "cut_placement",
    "place_byzantine",
    "PlacementReport",
    "placement_report",
]


def _mask(n: int, chosen: Sequence[int] | np.ndarray) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.bool)
    out[torch.as_tensor(np.asarray(chosen, dtype=np.int64))] = True
    return out


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Ids of the ``count`` highest scores, ties broken by lowest id."""
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:count]


def _most_central(G: nx.Graph, count: int, centrality: Any) -> torch.Tensor:
    """Mask of the ``count`` nodes with the highest ``|centrality[i]|``, ties by lowest id.

    ``centrality`` maps node id to score (a dict or a networkx view). Scores are rounded to 12
    digits so that ties are resolved by id, not round-off (integer scores are unchanged).
    """
    n = G.number_of_nodes()
    scores = np.round(np.abs(np.array([centrality[i] for i in range(n)], dtype=np.float64)), 12)
    return _mask(n, _top(scores, count))


@register_placement("random", "count nodes drawn uniformly without replacement (seeded)")
def random_placement(G: nx.Graph, count: int, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """Byzantine nodes drawn uniformly at random without replacement.

    Parameters
    ----------
    G : networkx.Graph
        Graph on the nodes ``0 .. n-1``.
    count : int
        Number of Byzantine nodes.
    seed : int, numpy.random.Generator or None
        The same seed gives the same nodes.
    nodes : None
        Unused; part of the uniform signature.

    Returns
    -------
    BoolTensor [n]
    """
    n = G.number_of_nodes()
    return _mask(n, numpy_rng(seed).choice(n, size=count, replace=False))


@register_placement("list", "exactly the nodes given in nodes=")
def list_placement(G: nx.Graph, count: int | None, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """Byzantine nodes given explicitly.

    Parameters
    ----------
    G : networkx.Graph
        Graph on the nodes ``0 .. n-1``.
    count : int or None
        Must equal ``len(nodes)`` when given.
    seed : ignored
    nodes : sequence of int
        Distinct node ids in ``[0, n-1]``.

    Returns
    -------
    BoolTensor [n]
    """
    n = G.number_of_nodes()
    if nodes is None:
        raise PlacementError("placement 'list' needs nodes=[...], the ids of the Byzantine nodes")
    ids = list(nodes)
    for i in ids:
        if not isinstance(i, numbers.Integral) or isinstance(i, bool) or not 0 <= i < n:
            raise PlacementError(f"byzantine node {i!r} is not a node id in [0, {n - 1}]")
    dup = next((i for i, c in Counter(int(i) for i in ids).items() if c > 1), None)
    if dup is not None:
        raise PlacementError(f"byzantine node {dup} is listed more than once")
    if count is not None and count != len(ids):
        raise PlacementError(f"byzantine count {count} does not match the {len(ids)} nodes listed")
    return _mask(n, [int(i) for i in ids])


@register_placement("degree", "the highest-degree nodes (ties by lowest id)")
def degree_placement(G: nx.Graph, count: int, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """The ``count`` nodes of highest degree, ties broken by lowest id.

    Parameters
    ----------
    G : networkx.Graph on the nodes ``0 .. n-1``
    count : int
    seed, nodes : ignored (deterministic)

    Returns
    -------
    BoolTensor [n]

    Notes
    -----
    Hubs reach the most honest nodes, so this is the adversary's natural choice on scale-free or
    star-like graphs.
    """
    return _most_central(G, count, G.degree)


@register_placement("betweenness", "the most central nodes by betweenness (ties by lowest id)")
def betweenness_placement(G: nx.Graph, count: int, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """The ``count`` nodes of highest betweenness centrality, ties broken by lowest id.

    Exact betweenness (deterministic) costs ``O(n m)``; fine for a few thousand nodes. The
    parameters and return value are those of :func:`degree_placement`.

    References
    ----------
    .. [1] U. Brandes, "A faster algorithm for betweenness centrality", J. Math. Sociology 25 (2001).
    """
    return _most_central(G, count, nx.betweenness_centrality(G))


@register_placement("eigenvector", "the most central nodes by eigenvector centrality (ties by lowest id)")
def eigenvector_placement(G: nx.Graph, count: int, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """The ``count`` nodes of highest eigenvector centrality, ties broken by lowest id.

    Computed with numpy's dense eigensolver (:func:`networkx.eigenvector_centrality_numpy`),
    rounded to 12 digits so that ties are resolved by id, not round-off. The parameters and
    return value are those of :func:`degree_placement`.

    References
    ----------
    .. [1] P. Bonacich, "Power and centrality: a family of measures", American Journal of Sociology 92 (1987).
    """
    return _most_central(G, count, nx.eigenvector_centrality_numpy(G, max_iter=1000))


@register_placement("cut", "nodes on the cut between two communities (Fiedler sign cut), most cut edges first")
def cut_placement(G: nx.Graph, count: int, *, seed: Seed = None, nodes: Sequence[int] | None = None) -> torch.Tensor:
    """Byzantine nodes on the boundary between the graph's two communities.

    The two communities are the sign classes of the Fiedler vector of ``G``'s Laplacian (ties at 0
    go to the positive side); nodes are ranked by how many of their edges cross the cut, then by
    how close their Fiedler entry is to 0, then by id. Placed there, Byzantine nodes sit on the
    bottleneck that the honest models must cross to agree. The parameters and return value are
    those of :func:`degree_placement` (the strategy is deterministic).

    References
    ----------
    .. [1] M. Fiedler, "A property of eigenvectors of nonnegative symmetric matrices and its
       application to graph theory", Czechoslovak Mathematical Journal 25 (1975).
    """
    n = G.number_of_nodes()
    L = nx.laplacian_matrix(G, nodelist=range(n), weight=None).astype(np.float64)
    if n <= DENSE_LIMIT:
        v = np.linalg.eigh(L.toarray())[1][:, 1]
    else:
        vals, vecs = eigsh(L.tocsc(), k=2, sigma=-1e-3, which="LM", v0=np.random.default_rng(0).standard_normal(n))
        v = vecs[:, np.argsort(vals)[1]]
    side = v >= 0
    crossing = np.zeros(n)
    for u, w in G.edges():
        if side[u] != side[w]:
            crossing[u] += 1
            crossing[w] += 1
    order = np.lexsort((np.arange(n), np.round(np.abs(v), 12), -crossing))
    return _mask(n, order[:count])


def place_byzantine(
    G: nx.Graph,
    count: int | None,
    strategy: str = "random",
    *,
    seed: Seed = None,
    nodes: Sequence[int] | None = None,
) -> torch.Tensor:
    """Choose the Byzantine nodes of ``G``.

    Parameters
    ----------
    G : networkx.Graph
        Graph on the nodes ``0 .. n-1``.
    count : int or None
        Number of Byzantine nodes, ``0 <= count <= n - 1``. May be None with ``strategy="list"``
        (then ``len(nodes)``).
    strategy : str, default "random"
        A registered placement name (``"random"``, ``"list"``, ``"degree"``, ``"betweenness"``).
    seed : int, numpy.random.Generator or None
        Seed for random strategies.
    nodes : sequence of int, optional
        Node ids, for ``strategy="list"`` only.

    Returns
    -------
    BoolTensor [n]
        True at the Byzantine nodes; exactly ``count`` are True.

    Raises
    ------
    PlacementError
        Bad count, unknown strategy, ``nodes`` with another strategy, or a bad node list.
    """
    n = G.number_of_nodes()
    if count is None:
        if strategy != "list" or nodes is None:
            raise PlacementError("byzantine count is required unless strategy 'list' is given nodes=[...]")
        count = len(nodes)
    if not isinstance(count, numbers.Integral) or isinstance(count, bool) or not 0 <= count <= n - 1:
        raise PlacementError(f"byzantine count {count!r} must be between 0 and n-1 = {n - 1}")
    count = int(count)
    if nodes is not None and strategy != "list":
        raise PlacementError(f"nodes= is only used by placement 'list', not by {strategy!r}")
    try:
        placements.get(strategy)
    except UnknownNameError as err:
        raise PlacementError(str(err)) from None
    out = placements.create(strategy, G=G, count=count, seed=seed, nodes=nodes)
    if not isinstance(out, torch.Tensor) or out.dtype != torch.bool or tuple(out.shape) != (n,):
        raise PlacementError(f"placement {strategy!r} must return a BoolTensor of shape ({n},)")
    if int(out.sum()) != count:
        raise PlacementError(f"placement {strategy!r} chose {int(out.sum())} nodes, expected {count}")
    return out


@dataclass(frozen=True)
class PlacementReport:
    """How exposed the honest nodes are to the Byzantine ones.

    Attributes
    ----------
    n : int
        Number of nodes.
    byzantine : list[int]
        Ids of the Byzantine nodes, ascending.
    byzantine_neighbors : dict[int, int]
        For each honest node, its number of Byzantine neighbours.
    at_risk : list[int]
        Honest nodes (with at least one neighbour) where at least half of the neighbours are
        Byzantine: no robust rule can protect them from a coordinated attack.
    """

    n: int
    byzantine: list[int]
    byzantine_neighbors: dict[int, int]
    at_risk: list[int]

    def lines(self) -> list[str]:
        """A short human-readable report, one string per line."""
        hist = Counter(self.byzantine_neighbors.values())
        parts = ", ".join(f"{b}: {c} node{'s' if c != 1 else ''}" for b, c in sorted(hist.items()))
        out = [
            f"byzantine nodes: {len(self.byzantine)} of {self.n}",
            f"byzantine neighbours per honest node: {parts}",
        ]
        if self.at_risk:
            shown = ", ".join(str(i) for i in self.at_risk[:10])
            more = f", ... ({len(self.at_risk) - 10} more)" if len(self.at_risk) > 10 else ""
            out.append(
                f"warning: {len(self.at_risk)} honest node(s) have at least half of their neighbours "
                f"Byzantine: {shown}{more}"
            )
        return out


def placement_report(G: nx.Graph, is_byzantine: Any) -> PlacementReport:
    """Count the Byzantine neighbours of every honest node.

    Parameters
    ----------
    G : networkx.Graph
        Graph on the nodes ``0 .. n-1``.
    is_byzantine : BoolTensor[n], numpy bool array or sequence of bool

    Returns
    -------
    PlacementReport
    """
    n = G.number_of_nodes()
    byz = as_bool_array(is_byzantine, n)
    counts: dict[int, int] = {}
    at_risk: list[int] = []
    for i in range(n):
        if byz[i]:
            continue
        nbrs = list(G.neighbors(i))
        b = int(sum(bool(byz[j]) for j in nbrs))
        counts[i] = b
        if nbrs and 2 * b >= len(nbrs):
            at_risk.append(i)
    return PlacementReport(
        n=n,
        byzantine=[int(i) for i in np.flatnonzero(byz)],
        byzantine_neighbors=counts,
        at_risk=at_risk,
    )
