"""Built-in communication graphs, registered by name for TOML files and the CLI.

Every builder has the same factory signature ``f(n, *, seed=None, **params) -> nx.Graph`` and
returns a simple, undirected, connected graph on the nodes ``0 .. n-1``. Random builders resample
until the graph is connected and give up, with a one-line :class:`TopologyError`, after a fixed
number of tries.

Examples
--------
>>> from p2probust.topology import torus_graph
>>> G = torus_graph(16)
>>> sorted({d for _, d in G.degree()})
[4]
"""

from __future__ import annotations

import math
import numbers

import networkx as nx

from p2probust.registry import register_topology
from p2probust.topology._seeds import Seed, as_int_seed, numpy_rng
from p2probust.topology.errors import TopologyError

__all__ = [
    "ring_graph",
    "torus_graph",
    "random_regular_graph",
    "erdos_renyi_graph",
    "small_world_graph",
    "complete_graph",
    "server_graph",
]

#: How many times the random builders resample before giving up on connectivity.
MAX_TRIES = 100


def _check_n(n: object, minimum: int, name: str) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TopologyError(f"{name} needs an integer number of nodes n, got {n!r}")
    if n < minimum:
        raise TopologyError(f"{name} needs n >= {minimum} nodes, got n = {n}")
    return int(n)


def _relabel(G: nx.Graph) -> nx.Graph:
    """Nodes 0..n-1 in sorted order of the original labels, as a plain ``nx.Graph``."""
    return nx.convert_node_labels_to_integers(nx.Graph(G), ordering="sorted")


def _sample_connected(draw, seed: Seed, max_tries: int, failure: str) -> nx.Graph:
    """The first connected ``draw(s)`` over ``max_tries`` sampler seeds ``s`` drawn from ``seed``.

    Raises :class:`TopologyError` with the message ``failure`` when every sample is disconnected.
    """
    rng = numpy_rng(seed)
    for _ in range(max_tries):
        G = draw(int(rng.integers(2**31)))
        if nx.is_connected(G):
            return G
    raise TopologyError(failure)


@register_topology("ring", "cycle: node i talks to i-1 and i+1 (mod n)")
def ring_graph(n: int, *, seed: Seed = None) -> nx.Graph:
    """Ring (cycle) of ``n`` nodes.

    Parameters
    ----------
    n : int
        Number of nodes, at least 3.
    seed : int, numpy.random.Generator or None
        Ignored (the ring is deterministic); accepted for the uniform builder signature.

    Returns
    -------
    networkx.Graph
        Node ``i`` is joined to ``(i - 1) % n`` and ``(i + 1) % n``; every degree is 2.

    Notes
    -----
    The ring is the slowest-mixing connected regular graph: its spectral gap shrinks as
    ``O(1/n^2)``, which makes it the standard worst case for decentralized averaging.
    """
    n = _check_n(n, 3, "ring")
    return nx.cycle_graph(n)


def _torus_shape(n: int) -> tuple[int, int] | None:
    """``(r, c)`` with ``r * c == n``, ``3 <= r <= c``, ``r`` as close to ``sqrt(n)`` as possible."""
    for r in range(math.isqrt(n), 2, -1):
        if n % r == 0 and n // r >= 3:
            return r, n // r
    return None


def _nearest_torus_sizes(n: int) -> list[int]:
    below = next((m for m in range(n - 1, 8, -1) if _torus_shape(m)), None)
    above = next(m for m in range(max(n + 1, 9), 2 * n + 10) if _torus_shape(m))
    return [m for m in (below, above) if m is not None]


@register_topology("torus", "2-D periodic lattice r x c (r*c = n, r, c >= 3); every degree is 4")
def torus_graph(n: int, *, seed: Seed = None, rows: int | None = None) -> nx.Graph:
    """Two-dimensional torus: an ``r x c`` grid with wrap-around edges.

    Parameters
    ----------
    n : int
        Number of nodes; must factor as ``r * c`` with ``r, c >= 3``.
    seed : int, numpy.random.Generator or None
        Ignored (the torus is deterministic); accepted for the uniform builder signature.
    rows : int, optional
        Number of rows ``r``. By default ``r`` is the divisor of ``n`` closest to ``sqrt(n)``
        (16 -> 4 x 4, 64 -> 8 x 8, 24 -> 4 x 6).

    Returns
    -------
    networkx.Graph
        Node ``i * c + j`` sits at row ``i``, column ``j`` and is joined to its four neighbours
        modulo the grid size; every degree is 4.

    Raises
    ------
    TopologyError
        When ``n`` does not factor so; the message lists the nearest valid sizes.

    Notes
    -----
    With ``r, c >= 3`` the four neighbours are distinct, so the graph is simple and 4-regular.
    """
    n = _check_n(n, 1, "torus")
    if rows is None:
        shape = _torus_shape(n)
        if shape is None:
            nearest = ", ".join(str(m) for m in _nearest_torus_sizes(n))
            raise TopologyError(
                f"torus needs n = r*c with r, c >= 3; {n} does not factor so; nearest valid sizes: {nearest}"
            )
        r, c = shape
    else:
        if not isinstance(rows, numbers.Integral) or isinstance(rows, bool) or rows < 3 or n % rows or n // rows < 3:
            raise TopologyError(
                f"torus rows = {rows!r} must divide n = {n} with rows >= 3 and n / rows >= 3"
            )
        r, c = int(rows), n // int(rows)
    return _relabel(nx.grid_2d_graph(r, c, periodic=True))


@register_topology("random-regular", "uniform random d-regular graph, resampled until connected")
def random_regular_graph(
    n: int, degree: int = 4, *, seed: Seed = None, max_tries: int = MAX_TRIES
) -> nx.Graph:
    """Uniformly random ``degree``-regular graph on ``n`` nodes, resampled until connected.

    Parameters
    ----------
    n : int
        Number of nodes, at least 3.
    degree : int, default 4
        Degree of every node; ``1 <= degree < n`` and ``n * degree`` even.
    seed : int, numpy.random.Generator or None
        Seed of the sampler; the same seed gives the same graph.
    max_tries : int, default 100
        How many graphs to draw before giving up on connectivity.

    Returns
    -------
    networkx.Graph
        A connected graph where every node has exactly ``degree`` neighbours.

    Notes
    -----
    For ``degree >= 3`` a random regular graph is connected (indeed an expander) with probability
    tending to one, so resampling almost never happens.

    References
    ----------
    .. [1] A. Steger and N. Wormald, "Generating random regular graphs quickly",
       Combinatorics, Probability and Computing 8 (1999).
    """
    n = _check_n(n, 3, "random-regular")
    if not isinstance(degree, numbers.Integral) or isinstance(degree, bool) or not 1 <= degree < n:
        raise TopologyError(f"random-regular degree must be an integer in [1, n-1] = [1, {n - 1}], got {degree!r}")
    if (n * degree) % 2:
        raise TopologyError(f"random-regular needs n * degree even; n = {n} and degree = {degree} give {n * degree}")
    G = _sample_connected(
        lambda s: nx.random_regular_graph(int(degree), n, seed=s), seed, max_tries,
        f"random-regular graph with n = {n}, degree = {degree} was disconnected in all "
        f"max_tries = {max_tries} samples; use degree >= 3",
    )
    return _relabel(G)


@register_topology("erdos-renyi", "G(n, p) random graph, resampled until connected")
def erdos_renyi_graph(
    n: int, p: float = 0.3, *, seed: Seed = None, max_tries: int = MAX_TRIES
) -> nx.Graph:
    """Erdős–Rényi ``G(n, p)`` graph, resampled until connected.

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.
    p : float, default 0.3
        Probability of each edge, in ``(0, 1]``.
    seed, max_tries
        As in :func:`random_regular_graph`.

    Returns
    -------
    networkx.Graph
        A connected sample of ``G(n, p)`` (that is, ``G(n, p)`` conditioned on connectivity).

    Raises
    ------
    TopologyError
        When no connected sample was drawn in ``max_tries`` tries.

    Notes
    -----
    ``G(n, p)`` is connected with high probability once ``p > ln(n) / n`` [1]_.

    References
    ----------
    .. [1] P. Erdős and A. Rényi, "On the evolution of random graphs", 1960.
    """
    n = _check_n(n, 2, "erdos-renyi")
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0 < p <= 1:
        raise TopologyError(f"erdos-renyi edge probability p must be in (0, 1], got {p!r}")
    return _sample_connected(
        lambda s: nx.gnp_random_graph(n, float(p), seed=s), seed, max_tries,
        f"erdos-renyi graph with n = {n}, p = {p} was disconnected in all max_tries = {max_tries} "
        f"samples; use p > ln(n)/n = {math.log(n) / n:.3g} (ideally a few times larger)",
    )


@register_topology("small-world", "connected Watts-Strogatz ring lattice with rewiring")
def small_world_graph(
    n: int, k: int = 4, beta: float = 0.1, *, seed: Seed = None, max_tries: int = MAX_TRIES
) -> nx.Graph:
    """Connected Watts–Strogatz small-world graph.

    Parameters
    ----------
    n : int
        Number of nodes, at least 3.
    k : int, default 4
        Each node starts joined to its ``k // 2`` nearest neighbours on each side of a ring;
        ``2 <= k < n``.
    beta : float, default 0.1
        Probability of rewiring each edge, in ``[0, 1]``.
    seed, max_tries
        As in :func:`random_regular_graph`.

    Returns
    -------
    networkx.Graph
        A connected graph with ``n * (k // 2)`` edges.

    References
    ----------
    .. [1] D. J. Watts and S. H. Strogatz, "Collective dynamics of 'small-world' networks",
       Nature 393 (1998).
    """
    n = _check_n(n, 3, "small-world")
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 2 <= k < n:
        raise TopologyError(f"small-world k must be an integer in [2, n-1] = [2, {n - 1}], got {k!r}")
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not 0 <= beta <= 1:
        raise TopologyError(f"small-world rewiring probability beta must be in [0, 1], got {beta!r}")
    try:
        G = nx.connected_watts_strogatz_graph(n, int(k), float(beta), tries=max_tries, seed=as_int_seed(seed))
    except nx.NetworkXError:
        raise TopologyError(
            f"small-world graph with n = {n}, k = {k}, beta = {beta} was disconnected in all "
            f"max_tries = {max_tries} samples; use a larger k or a smaller beta"
        ) from None
    return G


@register_topology("complete", "every node talks to every other node")
def complete_graph(n: int, *, seed: Seed = None) -> nx.Graph:
    """Complete graph on ``n`` nodes.

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.
    seed : int, numpy.random.Generator or None
        Ignored (deterministic); accepted for the uniform builder signature.

    Returns
    -------
    networkx.Graph
        Every pair of distinct nodes is joined; every degree is ``n - 1``.

    Notes
    -----
    Gossip on the complete graph with Metropolis–Hastings weights averages in one step, so it is
    the decentralized counterpart of a parameter server.
    """
    n = _check_n(n, 2, "complete")
    return nx.complete_graph(n)


@register_topology("server", "parameter server: n clients send to one server that aggregates once per round and broadcasts")
def server_graph(n: int, *, seed: Seed = None) -> nx.Graph:
    """The wiring of a parameter server with ``n`` clients: the complete graph on the clients.

    The server is not a vertex: it sees every client's message, which is the closed inbox (own
    model + all neighbours) of any vertex of the complete graph. Choosing the name ``server`` also
    makes the simulator aggregate once per round and broadcast the result to every client
    (:mod:`p2probust.shared_inbox`), instead of one aggregation per node.
    """
    return nx.complete_graph(_check_n(n, 2, "server"))
