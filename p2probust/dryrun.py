"""``p2probust run --dry-run``: what a run would be, without running it.

Builds the graph, the Byzantine placement and the task's data set (all small), never the node
state, and prints the resolved configuration, a graph summary and the memory estimate.
"""

from __future__ import annotations

import json
from typing import Any

from .config import RunConfig
from .memory import available_bytes, estimate_run, human, parse_size
from .topology import NeighbourTable


def describe_run(cfg: RunConfig) -> list[str]:
    """Lines describing the run ``cfg`` would make (see the module docstring)."""
    from .build import place
    from .data.setup import build_task

    G, is_byz, report = place(cfg)
    table = NeighbourTable.from_graph(G, weights=cfg.topology.weights)
    task = build_task(cfg)
    memory = estimate_run(cfg, task, table)
    degrees = table.degree.float()
    lines = ["resolved configuration:"]
    lines += ["  " + line for line in json.dumps(_plain(cfg), indent=2).splitlines()]
    lines += [
        f"graph: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges, degree min {int(degrees.min())} "
        f"/ mean {float(degrees.mean()):.3g} / max {int(degrees.max())}",
        *report.lines(),
        f"data: {task.dataset.x_train.shape[0]} training and {task.dataset.x_test.shape[0]} test samples",
        *memory.lines(),
    ]
    cap = parse_size(cfg.max_memory, allow_auto=True)
    limit = f"{human(available_bytes())} available" if cap is None else f"--max-memory {human(cap)}"
    verdict = "fits" if memory.total <= (available_bytes() if cap is None else cap) else "does NOT fit"
    lines.append(f"memory: {verdict} ({limit})")
    lines.append(_device_line(cfg.device))
    return lines


def _device_line(name: str) -> str:
    """Where the run would compute, and whether this machine has it (the run would stop if not)."""
    from .device import resolve

    try:
        resolve(name)
    except ValueError as err:
        return f"device: {name} is NOT usable here: {str(err).split('is not available: ', 1)[-1]}"
    return f"device: {name} (available here)"


def _plain(cfg: RunConfig) -> dict[str, Any]:
    out = cfg.to_dict()
    out["engine"] = {k: (str(v) if isinstance(v, float) and v in (float("inf"),) else v) for k, v in out["engine"].items()}
    return out
