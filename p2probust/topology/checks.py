"""Checks that a graph can carry a robust decentralized learning run.

Robust gossip can only drive the honest nodes to agreement when the honest nodes can reach one
another without relaying through Byzantine nodes, so :func:`validate_graph` checks the *honest
subgraph* (the graph induced by the honest nodes), not just the whole graph.
"""

from __future__ import annotations

from typing import Any, Sequence

import networkx as nx
import numpy as np
import torch

from p2probust.topology.errors import TopologyError

__all__ = ["validate_graph", "as_bool_array"]


def as_bool_array(is_byzantine: Any, n: int) -> np.ndarray:
    """``is_byzantine`` (BoolTensor, numpy array or sequence of bools, length ``n``) as a numpy bool array."""
    if isinstance(is_byzantine, torch.Tensor):
        arr = is_byzantine.detach().cpu().numpy()
    else:
        arr = np.asarray(is_byzantine)
    if arr.shape != (n,):
        raise TopologyError(f"is_byzantine must have shape ({n},) for a graph of {n} nodes, got {tuple(arr.shape)}")
    if arr.dtype != np.bool_:
        raise TopologyError(f"is_byzantine must be a boolean mask, got dtype {arr.dtype}")
    return arr


def _first(items: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def validate_graph(G: nx.Graph, is_byzantine: Any = None) -> None:
    """Raise :class:`TopologyError` unless ``G`` is usable for a run with the given Byzantine nodes.

    Parameters
    ----------
    G : networkx.Graph
        The communication graph.
    is_byzantine : BoolTensor[n], numpy bool array or sequence of bool, optional
        Which nodes are Byzantine; ``None`` means all nodes are honest.

    Raises
    ------
    TopologyError
        With a one-line message, for the first problem found, in this order: a directed graph; an
        empty graph (no nodes or no edges); nodes not labelled ``0 .. n-1``; a self-loop (one
        offending node is named); no honest node; an honest node with no neighbours at all; a
        disconnected honest subgraph (the number of components is given, and an honest node whose
        neighbours are all Byzantine is named if there is one).

    Notes
    -----
    Connectivity of the honest subgraph is necessary, not sufficient: robust aggregation also needs
    each honest node to have enough honest neighbours (see
    :func:`~p2probust.topology.placement.placement_report`).
    """
    if G.is_directed():
        raise TopologyError("topology must be an undirected graph, got a directed one")
    n = G.number_of_nodes()
    if n == 0:
        raise TopologyError("topology is empty: it has no nodes")
    if G.number_of_edges() == 0:
        raise TopologyError(f"topology has {n} nodes but no edges")
    if set(G.nodes()) != set(range(n)):
        bad = next((u for u in G.nodes() if not (isinstance(u, (int, np.integer)) and 0 <= u < n)), None)
        raise TopologyError(
            f"topology nodes must be labelled 0..{n - 1}, found node {bad!r}; "
            "use networkx.convert_node_labels_to_integers"
        )
    loop = next(iter(nx.nodes_with_selfloops(G)), None)
    if loop is not None:
        raise TopologyError(f"topology has a self-loop at node {loop}; remove self-loops (a node always keeps its own value)")
    byz = np.zeros(n, dtype=bool) if is_byzantine is None else as_bool_array(is_byzantine, n)
    honest = [int(i) for i in np.flatnonzero(~byz)]
    if not honest:
        raise TopologyError(f"all {n} nodes are Byzantine; at least one node must be honest")
    lonely = [i for i in honest if G.degree(i) == 0]
    if lonely:
        raise TopologyError(f"honest node {lonely[0]} has no neighbours ({len(lonely)} such nodes: {_first(lonely)})")
    H = G.subgraph(honest)
    if not nx.is_connected(H):
        count = nx.number_connected_components(H)
        cut_off = [i for i in honest if H.degree(i) == 0]
        detail = f"; honest node {cut_off[0]} has only Byzantine neighbours" if cut_off else ""
        raise TopologyError(
            f"honest subgraph is disconnected: {count} components among {len(honest)} honest nodes{detail}"
        )
