"""Barbell: two cliques joined by a path (networkx ``barbell_graph``).

Use it as ``topology = "topologies/barbell.py"`` in a TOML file or ``--topology`` on the CLI.
"""

import networkx as nx


def build(n, *, seed=None):
    """Two cliques of ``m = max(2, n // 3)`` nodes joined by a path of ``n - 2 m`` nodes.

    Parameters
    ----------
    n : int
        Number of nodes, at least 4 (with 4 nodes the path is empty and the cliques share an edge).
    seed : ignored
        The graph is deterministic.

    Returns
    -------
    networkx.Graph
        ``networkx.barbell_graph(m, n - 2 m)``: nodes ``0 .. m-1`` are the left clique, then the
        path, then the right clique. Every path node is a cut vertex, so Byzantine nodes on the
        path disconnect the honest subgraph.
    """
    if n < 4:
        raise ValueError(f"barbell needs n >= 4 nodes, got n = {n}")
    m = max(2, n // 3)
    return nx.barbell_graph(m, n - 2 * m)
