"""Spectral diagnostics of a topology: how fast gossip mixes and how large a step is stable.

All functions are deterministic: dense eigensolvers up to :data:`DENSE_LIMIT` nodes, and ARPACK
(``scipy.sparse.linalg.eigsh``) with a fixed start vector above it.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from p2probust.topology.table import NeighbourTable

__all__ = ["DENSE_LIMIT", "laplacian_max_eigenvalue", "algebraic_connectivity", "spectral_gap"]

#: Largest n for which dense eigensolvers are used.
DENSE_LIMIT = 2000


def _weight_matrix(table: NeighbourTable) -> sp.csr_array:
    """Sparse float64 ``[n, n]`` matrix of the table's slot weights (no diagonal)."""
    mask = table.mask.numpy()
    rows = np.nonzero(mask)[0]
    cols = table.idx.numpy()[mask]
    vals = table.weights.double().numpy()[mask]
    return sp.csr_array((vals, (rows, cols)), shape=(table.n, table.n))


def _start_vector(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n)


def _top_deflated(matvec, n: int, *, which: str) -> float:
    """Extreme eigenvalue of the symmetric operator ``P A P`` (``P`` removes the mean), by ARPACK."""

    def deflated(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        y = matvec(x - x.mean())
        return y - y.mean()

    op = LinearOperator((n, n), matvec=deflated, dtype=np.float64)
    vals = eigsh(op, k=1, which=which, v0=_start_vector(n), tol=1e-10, return_eigenvectors=False)
    return float(vals[0])


def laplacian_max_eigenvalue(table: NeighbourTable) -> float:
    """Largest eigenvalue of the weighted Laplacian ``L = diag(W 1) - W`` of the table's weights.

    Parameters
    ----------
    table : NeighbourTable
        Its slot weights define ``W`` (padding has weight 0).

    Returns
    -------
    float
        ``lambda_max(L)``. With uniform weights this is the largest Laplacian eigenvalue of the
        graph: 4 for an even ring, ``2 d`` for a bipartite ``d``-regular graph, at most ``2 d_max``.

    Notes
    -----
    A gossip step ``x <- x - eta L x`` is stable for ``eta < 2 / lambda_max(L)``.
    """
    W = _weight_matrix(table)
    L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    if table.n <= DENSE_LIMIT:
        return float(np.linalg.eigvalsh(L.toarray())[-1])
    vals = eigsh(L.tocsr(), k=1, which="LA", v0=_start_vector(table.n), return_eigenvectors=False)
    return float(vals[-1])


def algebraic_connectivity(G: nx.Graph) -> float:
    """Second-smallest eigenvalue of the (unweighted) Laplacian of ``G``: the Fiedler value.

    Parameters
    ----------
    G : networkx.Graph
        Undirected graph.

    Returns
    -------
    float
        ``lambda_2(L)``; 0 exactly when ``G`` is disconnected (up to round-off).

    References
    ----------
    .. [1] M. Fiedler, "Algebraic connectivity of graphs", Czechoslovak Mathematical Journal 23 (1973).
    """
    n = G.number_of_nodes()
    if n < 2:
        return 0.0
    L = nx.laplacian_matrix(G, nodelist=sorted(G.nodes()), weight=None).astype(np.float64).tocsr()
    if n <= DENSE_LIMIT:
        return float(np.linalg.eigvalsh(L.toarray())[1])
    # lambda_2(L) = c - lambda_max(P (cI - L) P), P the projection orthogonal to the ones vector
    # (L 1 = 0) and c = 2 d_max >= lambda_max(L), so cI - L is positive semi-definite on range(P).
    c = 2.0 * float(L.diagonal().max())
    return c - _top_deflated(lambda x: c * x - L @ x, n, which="LA")


def spectral_gap(table: NeighbourTable) -> float:
    """``1 - |lambda_2|`` of the table's mixing matrix (slot weights plus ``self_weight`` diagonal).

    Parameters
    ----------
    table : NeighbourTable
        Built with Metropolis–Hastings weights, its full matrix is symmetric and doubly stochastic.

    Returns
    -------
    float
        One minus the largest eigenvalue modulus away from the consensus direction (the ones
        vector, an eigenvector of eigenvalue 1 since every row sums to 1); for a symmetric
        stochastic matrix that is the second-largest eigenvalue modulus. Plain gossip contracts
        the distance to the average by ``1 - gap`` per step; 0 means no mixing (a disconnected
        graph).

    Notes
    -----
    With uniform weights the "mixing matrix" is not stochastic and the number is not a gap.

    References
    ----------
    .. [1] S. Boyd, A. Ghosh, B. Prabhakar and D. Shah, "Randomized gossip algorithms",
       IEEE Transactions on Information Theory 52 (2006).
    """
    n = table.n
    if n < 2:
        return 1.0
    W = (_weight_matrix(table) + sp.diags(table.self_weight.double().numpy())).tocsr()
    if n <= DENSE_LIMIT:
        dense = W.toarray() - 1.0 / n  # W 1 = 1: remove the consensus direction
        return float(1.0 - np.abs(np.linalg.eigvalsh(dense)).max())
    return float(1.0 - abs(_top_deflated(lambda x: W @ x, n, which="LM")))
