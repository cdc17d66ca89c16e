"""Custom topologies: Python files and graph files, and the one entry point that builds any graph.

A custom topology is either

- a Python file exposing ``build(n, *, seed) -> networkx.Graph`` (see ``topologies/*.py``), or
- a graph file: ``.json`` (networkx node-link data), ``.graphml``, or an edge list
  (``.txt``, ``.edgelist``, ``.edges``, ``.csv``; one edge ``u v`` or ``u,v`` per line, ``#``
  starts a comment, extra columns such as weights are ignored).

Whatever the source, node labels are renumbered ``0 .. n-1``: in sorted order when the labels
sort (integer-like strings sort as integers, so ``"n2"`` is not an issue for ``2`` vs ``10``),
otherwise in the order the file lists them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import networkx as nx

from p2probust.registry import UnknownNameError, topologies
from p2probust.topology._seeds import Seed
from p2probust.topology.errors import TopologyError

__all__ = ["GRAPH_SUFFIXES", "TOPOLOGY_SUFFIXES", "load_topology", "is_topology_path", "build_topology"]

#: Suffixes of graph files that :func:`load_topology` reads.
GRAPH_SUFFIXES = (".json", ".graphml", ".txt", ".edgelist", ".edges", ".csv")
#: Every suffix that marks a custom topology (graph files and Python files).
TOPOLOGY_SUFFIXES = (".py",) + GRAPH_SUFFIXES

_CSV_HEADER_WORDS = {"source", "target", "src", "dst", "from", "to", "u", "v", "node1", "node2"}
_INT_RE = re.compile(r"[+-]?\d+")


def is_topology_path(value: str | os.PathLike) -> bool:
    """Whether ``value`` names a topology file rather than a registered topology.

    True when it ends in one of :data:`TOPOLOGY_SUFFIXES` or contains a path separator.
    """
    if isinstance(value, os.PathLike):
        return True
    text = str(value)
    return text.lower().endswith(TOPOLOGY_SUFFIXES) or "/" in text or os.sep in text


def _normalize_labels(G: nx.Graph) -> nx.Graph:
    """A simple undirected ``nx.Graph`` with nodes ``0 .. n-1`` (see the module docstring)."""
    H = nx.Graph()
    H.add_nodes_from(G.nodes(data=True))
    H.add_edges_from(G.edges())
    labels = list(H.nodes())
    if labels and all(isinstance(x, str) and _INT_RE.fullmatch(x.strip()) for x in labels):
        mapping = {x: int(x) for x in labels}
        if len(set(mapping.values())) == len(labels):
            H = nx.relabel_nodes(H, mapping)
    try:
        sorted(H.nodes())
        ordering = "sorted"
    except TypeError:
        ordering = "default"
    H = nx.convert_node_labels_to_integers(H, ordering=ordering)
    # Canonical order: nodes 0..n-1, edges (u, v) with u < v in sorted order.
    out = nx.Graph(H.graph)
    out.add_nodes_from(sorted(H.nodes(data=True), key=lambda item: item[0]))
    out.add_edges_from(sorted((min(u, v), max(u, v)) for u, v in H.edges()))
    return out


def _accepted(func: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The items of ``params`` that ``func``'s signature accepts by keyword."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return dict(params)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(params)
    ok = {name for name, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in params.items() if k in ok}


def _import_file(path: Path) -> Any:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"p2probust_custom_topology_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TopologyError(f"cannot import topology file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        sys.modules.pop(module_name, None)
        raise _script_error(path, err) from None
    return module


def _script_error(path: Path, err: BaseException) -> TopologyError:
    """One line for an error raised by a topology script: its file and line, and what it raised."""
    if isinstance(err, SyntaxError) and err.filename and Path(err.filename).resolve() == path.resolve():
        return TopologyError(f"topology file {path}, line {err.lineno}: syntax error: {err.msg}")
    line = "?"
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == path.resolve():
            line = lineno  # the innermost line of the script itself
    what = f"called sys.exit({err.code!r})" if isinstance(err, SystemExit) else f"{type(err).__name__}: {err}"
    return TopologyError(f"topology file {path}, line {line}: {what}")


def _load_python(path: Path, n: int | None, seed: Seed, params: dict[str, Any]) -> nx.Graph:
    if n is None:
        raise TopologyError(f"topology file {path} is a Python builder; give the number of nodes n")
    # a topology script is code: say which file runs, even under --quiet (see the README's security note)
    logging.getLogger("p2probust").warning(f"running topology script {path.resolve()}")
    module = _import_file(path)
    build = getattr(module, "build", None)
    if not callable(build):
        raise TopologyError(f"topology file {path} must define build(n, *, seed) -> networkx.Graph")
    try:
        G = build(n, **_accepted(build, {"seed": seed, **params}))
    except (Exception, SystemExit) as err:
        raise _script_error(path, err) from None
    if not isinstance(G, nx.Graph):
        raise TopologyError(f"build() in {path} returned {type(G).__name__}, expected a networkx.Graph")
    return _normalize_labels(G)


def _read_node_link(path: Path) -> nx.Graph:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TopologyError(f"topology file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or "nodes" not in data:
        raise TopologyError(f"topology file {path} must hold networkx node-link data with a 'nodes' list")
    edge_key = "edges" if "edges" in data else "links"
    G = nx.Graph()
    if not isinstance(data["nodes"], list):
        raise TopologyError(f"topology file {path}: 'nodes' must be a list, got {type(data['nodes']).__name__}")
    for node in data["nodes"]:
        if isinstance(node, dict) and "id" not in node:
            raise TopologyError(f"topology file {path}: each entry of 'nodes' needs an 'id', got {node!r}")
        G.add_node(node["id"] if isinstance(node, dict) else node)
    for edge in data.get(edge_key, []):
        try:
            u, v = (edge["source"], edge["target"]) if isinstance(edge, dict) else edge[:2]
        except (KeyError, TypeError, ValueError):
            raise TopologyError(
                f"topology file {path}: each entry of {edge_key!r} needs 'source' and 'target', got {edge!r}"
            ) from None
        G.add_edge(u, v)
    return G


def _read_edge_list(path: Path) -> nx.Graph:
    G = nx.Graph()
    first = True
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = [t.strip() for t in re.split(r"[,\s]+", line) if t.strip()]
        if first and {t.lower() for t in tokens[:2]} <= _CSV_HEADER_WORDS:
            first = False
            continue
        first = False
        if len(tokens) < 2:
            raise TopologyError(f"topology file {path}, line {lineno}: expected an edge 'u v', got {raw.strip()!r}")
        G.add_edge(tokens[0], tokens[1])
    return G


def _read_graph_file(path: Path) -> nx.Graph:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_node_link(path)
    if suffix == ".graphml":
        try:
            return nx.read_graphml(path)
        except Exception as err:  # xml ParseError, networkx errors on malformed keys
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TopologyError(f"topology file {path} is not valid GraphML: {text}") from None
    return _read_edge_list(path)


def load_topology(path: str | os.PathLike, n: int | None = None, *, seed: Seed = None, **params: Any) -> nx.Graph:
    """Load a custom topology from a Python file or a graph file.

    Parameters
    ----------
    path : str or path-like
        A ``.py`` file exposing ``build(n, *, seed) -> networkx.Graph``, or a graph file
        (``.json`` node-link, ``.graphml``, ``.txt`` / ``.edgelist`` / ``.edges`` / ``.csv`` edge list).
    n : int, optional
        Number of nodes. Required for Python files; for graph files, checked against the file.
    seed : int, numpy.random.Generator or None
        Passed to ``build`` (graph files ignore it).
    **params
        Passed to ``build`` when its signature accepts them; ignored otherwise.

    Returns
    -------
    networkx.Graph
        A simple undirected graph on the nodes ``0 .. n-1``.

    Raises
    ------
    TopologyError
        Missing file, unknown suffix, unreadable file, missing ``n`` for a Python file, or a node
        count that differs from ``n``.

    Notes
    -----
    Directed and multi-graphs are read as simple undirected graphs; self-loops are kept so that
    :func:`~p2probust.topology.checks.validate_graph` can report them.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TOPOLOGY_SUFFIXES:
        raise TopologyError(f"topology file {path} has unknown suffix {suffix!r}; use one of {', '.join(TOPOLOGY_SUFFIXES)}")
    if not path.is_file():
        raise TopologyError(f"topology file {path} does not exist")
    if suffix == ".py":
        G = _load_python(path, n, seed, params)
    else:
        G = _normalize_labels(_read_graph_file(path))
    if G.number_of_nodes() == 0:
        raise TopologyError(f"topology file {path} holds no nodes or edges; a topology needs at least 2 nodes joined by edges")
    if n is not None and G.number_of_nodes() != n:
        raise TopologyError(f"topology file {path} gives {G.number_of_nodes()} nodes but n = {n} was asked for")
    return G


def build_topology(name_or_path: str | os.PathLike, n: int | None, *, seed: Seed = None, **params: Any) -> nx.Graph:
    """Build a registered topology by name, or load a custom one from a file.

    Parameters
    ----------
    name_or_path : str or path-like
        A registered name (``"ring"``, ``"torus"``, ``"random-regular"``, ...) or a path
        (see :func:`is_topology_path`).
    n : int or None
        Number of nodes (``None`` only for graph files, which then decide it).
    seed : int, numpy.random.Generator or None
        Seed for random builders.
    **params
        Builder parameters (``degree``, ``p``, ``k``, ``beta``, ...). Each builder receives only the
        parameters its signature accepts; the rest are ignored, so one parameter dict can serve
        every builder.

    Returns
    -------
    networkx.Graph
        A graph on the nodes ``0 .. n-1``.
    """
    if is_topology_path(name_or_path):
        return load_topology(name_or_path, n, seed=seed, **params)
    name = str(name_or_path)
    try:
        entry = topologies.get(name)
    except UnknownNameError as err:
        raise UnknownNameError(f"{err}; or give a topology file ({', '.join(TOPOLOGY_SUFFIXES)})") from None
    G = topologies.create(name, **_accepted(entry.factory, {"n": n, "seed": seed, **params}))
    if not isinstance(G, nx.Graph):
        raise TopologyError(f"topology {name!r} returned {type(G).__name__}, expected a networkx.Graph")
    if n is not None and G.number_of_nodes() != n:
        raise TopologyError(f"topology {name!r} built {G.number_of_nodes()} nodes but n = {n} was asked for")
    return G
