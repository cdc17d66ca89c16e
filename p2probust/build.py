"""Building a run's pieces from its config, before any node state exists: its folder name, its
graph and Byzantine nodes (:func:`place`), and the resolved config written to ``config.json``.
Used by :func:`~p2probust.simulate`, ``run --dry-run`` and sweeps."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import networkx as nx
import torch

from . import registry
from ._version import __version__
from .config import DEFAULT_NODES, RunConfig
from .memory import estimate
from .rng import numpy_stream
from .rundir import default_run_dir
from .topology import build_topology, is_topology_path, place_byzantine, placement_report, validate_graph


def default_out_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    """A new, empty, uniquely named folder under ``root`` for a run of ``cfg``:
    ``<time to the ms>-<topology>-<rule>-<attack>-s<seed>-<config hash>[-N]`` (see :mod:`p2probust.rundir`)."""
    parts = [Path(cfg.topology.name).stem, cfg.rule.name.replace("+", "_"), cfg.attack.name, f"s{cfg.seed}"]
    return default_run_dir(parts, cfg.to_dict(), root)


def _graph(cfg: RunConfig, graph: nx.Graph | None) -> nx.Graph:
    if graph is not None:
        return nx.convert_node_labels_to_integers(graph, ordering="sorted" if _sortable(graph) else "default")
    t = cfg.topology
    n = t.nodes
    if n is None and not (is_topology_path(t.name) and not t.name.endswith(".py")):
        n = DEFAULT_NODES
    if n is not None:  # refuse before building a graph that cannot fit
        estimate_graph_only(n, t.degree).check(cfg.max_memory)
    extra = dict(t.params)
    if extra and not is_topology_path(t.name):
        accepted = inspect.signature(registry.topologies.get(t.name).factory).parameters
        unknown = [key for key in extra if key not in accepted or key in ("n", "seed")]
        if unknown:
            allowed = ", ".join(k for k in accepted if k not in ("n", "seed")) or "none"
            raise ValueError(f"topology {t.name!r} has no parameter {unknown[0]!r}; its parameters: {allowed}")
    return build_topology(
        t.name, n, seed=int(numpy_stream(cfg.seed, "graph").integers(2**31)),
        **{"degree": t.degree, "p": t.p, "k": t.k, "beta": t.beta, **extra},
    )


def estimate_graph_only(n: int, degree: int):
    """The part of the memory estimate known before the graph exists (one parameter per node)."""
    return estimate(n=n, k=degree, d=1, batch=1, local=1, activations=0, edges=n * degree / 2)


def place(cfg: RunConfig, graph: nx.Graph | None = None):
    """The run's graph (``graph`` or the configured topology), its Byzantine nodes and the
    placement report: ``(G, is_byz [n] bool, PlacementReport)``; validated, nothing else built."""
    G = _graph(cfg, graph)
    n = G.number_of_nodes()
    if n == 0:
        raise ValueError("the graph has no nodes; a topology needs at least 2 nodes joined by edges")
    if cfg.byzantine.count >= n and cfg.byzantine.placement != "attach":  # attach: count is per honest node
        raise ValueError(f"byzantine.count = {cfg.byzantine.count} is invalid; expected fewer Byzantine nodes than nodes (n = {n})")
    if cfg.byzantine.placement == "attach":  # attacks issue: add `count` Byzantine vertices per honest node
        from .topology.adversarial import attach_byzantine

        G, is_byz = attach_byzantine(G, cfg.byzantine.count)
    else:
        is_byz = place_byzantine(
            G, cfg.byzantine.count, cfg.byzantine.placement,
            seed=int(numpy_stream(cfg.seed, "placement").integers(2**31)), nodes=list(cfg.byzantine.nodes) or None,
        )
    validate_graph(G, is_byz)
    return G, is_byz, placement_report(G, is_byz)


def _sortable(graph: nx.Graph) -> bool:
    try:
        sorted(graph.nodes)
        return True
    except TypeError:
        return False


def resolved_config(cfg, G, is_byz, gossip, adversary, f, n, d, report) -> dict[str, Any]:
    out = cfg.to_dict()
    out["topology"]["nodes"] = n
    out["topology"]["edges"] = G.number_of_edges()
    out["byzantine"]["nodes"] = torch.nonzero(is_byz).squeeze(1).tolist()
    out["rule"]["repr"] = repr(gossip)
    out["rule"]["tolerance_used"] = (
        "oracle (true Byzantine count per node)" if cfg.rule.tolerance == "oracle" else f"declared f = {cfg.rule.tolerance}"
    )
    out["attack"]["repr"] = repr(adversary)
    out["attack"]["knowledge"] = adversary.knowledge
    out["byzantine"]["neighbors_per_honest_node"] = report.byzantine_neighbors
    out["byzantine"]["at_risk"] = report.at_risk
    out["parameters"] = d
    out["device"] = cfg.device  # recorded for every run (the config hash leaves out the default, cpu)
    out["version"] = __version__
    return out
