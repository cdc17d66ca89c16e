"""Two cliques joined by a single bridge edge: the classic bottleneck for gossip.

Use it as ``topology = "topologies/two_cliques.py"`` in a TOML file or ``--topology`` on the CLI.
"""

import networkx as nx


def build(n, *, seed=None):
    """Two cliques of ``n // 2`` and ``n - n // 2`` nodes joined by one edge.

    Parameters
    ----------
    n : int
        Number of nodes, at least 4.
    seed : ignored
        The graph is deterministic.

    Returns
    -------
    networkx.Graph
        Nodes ``0 .. a-1`` form the first clique (``a = n // 2``), ``a .. n-1`` the second, and the
        bridge joins ``a - 1`` to ``a``. Its spectral gap is ``O(1/n^2)``: one Byzantine node on the
        bridge can cut the honest nodes in two.
    """
    if n < 4:
        raise ValueError(f"two_cliques needs n >= 4 nodes, got n = {n}")
    a = n // 2
    G = nx.complete_graph(a)
    G.add_edges_from((u, v) for u in range(a, n) for v in range(u + 1, n))
    G.add_edge(a - 1, a)
    return G
