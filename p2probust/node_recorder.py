r"""Per-node recording: every ``K`` rounds, one row of per-node values into ``nodes.npz``.

An observer of the run (it never changes the state). At round ``t`` with ``t % K == 0`` (and at
the last round) it stores, for every recorded node ``i``:

* ``distance[t, i]`` :math:`= \lVert\theta_i - \bar\theta_H\rVert^2`, with :math:`\bar\theta_H`
  the mean of the online honest nodes (the same mean as ``consensus_distance``, which is the
  average of ``distance`` over those nodes);
* ``loss[t, i]``, ``accuracy[t, i]``: node ``i``'s own model on the test set, on rounds that are
  also evaluation rounds (``eval_every``); NaN elsewhere (accuracy NaN on regression tasks);
* ``online[t, i]``: whether the node was online (churn); always true without churn.

The file (``numpy.savez_compressed``) holds arrays ``round [T]``, ``time [T]`` (simulated seconds),
``nodes [m]`` (recorded node ids, ascending), ``byzantine [m]``, ``distance / loss / accuracy
[T, m]`` float32 and ``online [T, m]`` bool, plus ``n`` (all nodes) and ``every``. Size is
bounded: at most ``max_nodes`` nodes are recorded; beyond that, a seeded sample (stream
``"record"`` of the run seed) that keeps every Byzantine node first. About ``13·T·m`` bytes
before compression. The file is written when the run ends, also when it is interrupted.

With recording on, the run folder also gets ``graph.json`` (edge list, Byzantine ids, the torus
grid shape when known), so that ``p2probust animate`` can redraw the graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from .device import from_numpy, to_numpy
from .rng import numpy_stream

__all__ = ["NodeRecorder", "graph_record", "load_nodes", "parse_record_spec", "sample_nodes"]


def parse_record_spec(text: str) -> dict[str, int]:
    """``"every=5,max_nodes=200"`` (or just ``"5"``) → ``{"record.every": 5, "record.max_nodes": 200}``."""
    out: dict[str, int] = {}
    for item in (p.strip() for p in str(text).split(",") if p.strip()):
        key, _, value = item.rpartition("=")
        key = key.strip() or "every"
        if key not in ("every", "max_nodes"):
            raise ValueError(f"--record-nodes key {key!r} is unknown; allowed: every, max_nodes (e.g. every=5,max_nodes=200)")
        try:
            out[f"record.{key}"] = int(value)
        except ValueError:
            raise ValueError(f"--record-nodes {key}={value!r} must be an integer") from None
    if not out:
        raise ValueError(f"--record-nodes {text!r} is empty; expected every=K[,max_nodes=M]")
    return out


def sample_nodes(is_byzantine: np.ndarray, max_nodes: int, seed: int) -> np.ndarray:
    """Ids of the recorded nodes: all if ``n <= max_nodes``, else Byzantine ones first, then a
    seeded uniform sample of honest ones; ascending ``int64 [min(n, max_nodes)]``."""
    n = is_byzantine.shape[0]
    if n <= max_nodes:
        return np.arange(n)
    byz = np.flatnonzero(is_byzantine)[:max_nodes]
    honest = np.flatnonzero(~is_byzantine)
    rng = numpy_stream(seed, "record")
    picked = rng.choice(honest, size=max_nodes - byz.size, replace=False)
    return np.sort(np.concatenate([byz, picked]))


def graph_record(G: nx.Graph, is_byzantine: np.ndarray, topology: str, params: dict[str, Any]) -> dict[str, Any]:
    """What ``graph.json`` holds: ``n``, ``edges``, ``byzantine``, ``topology`` and ``grid`` (torus ``[r, c]``)."""
    n = G.number_of_nodes()
    grid = None
    if topology == "torus":
        from .topology.builders import _torus_shape

        rows = params.get("rows")
        grid = [int(rows), n // int(rows)] if rows else (list(_torus_shape(n)) if _torus_shape(n) else None)
    return {"n": n, "topology": topology, "grid": grid,
            "byzantine": np.flatnonzero(is_byzantine).tolist(), "edges": [[int(u), int(v)] for u, v in G.edges()]}


class NodeRecorder:
    """Buffers per-node rows in memory and writes ``nodes.npz`` on :meth:`close`.

    Parameters
    ----------
    out_dir : Path or None
        Run folder (None: keep in memory only, see :meth:`arrays`).
    nodes : ndarray [m]
        Recorded node ids.
    is_byzantine : ndarray [n] bool
    every : int
        Record rounds that are multiples of ``every``, and round ``last``.
    last : int
        The run's last round.
    evaluator : Evaluator or None
        Gives per-node test loss / accuracy on evaluation rounds (None: NaN).
    """

    def __init__(self, out_dir: Path | None, nodes: np.ndarray, is_byzantine: np.ndarray, every: int, last: int,
                 evaluator: Any = None, chunk: int = 64):
        self.out_dir, self.every, self.last, self.chunk = out_dir, every, last, chunk
        self.nodes = np.asarray(nodes, dtype=np.int64)
        self.rows: Tensor | None = None  # the recorded nodes on the run's device (set at the first round)
        self.is_byzantine = np.asarray(is_byzantine, dtype=bool)
        self.evaluator = evaluator
        self._outputs = None
        if evaluator is not None:
            model, spec, x = evaluator.model, evaluator.spec, evaluator.x
            self._outputs = torch.func.vmap(lambda theta: torch.func.functional_call(model, spec.unflatten(theta), (x,)))
        self.buf: dict[str, list] = {k: [] for k in ("round", "time", "distance", "loss", "accuracy", "online")}

    @classmethod
    def build(cls, cfg, out_dir: Path | None, G: nx.Graph, is_byzantine: Tensor, evaluator: Any) -> "NodeRecorder | None":
        """The recorder of a run (None when ``cfg.record.every == 0``); writes ``graph.json``."""
        if cfg.record.every == 0:
            return None
        byz = to_numpy(is_byzantine).astype(bool)
        nodes = sample_nodes(byz, cfg.record.max_nodes, cfg.seed)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            record = graph_record(G, byz, Path(cfg.topology.name).stem, dict(cfg.topology.params))
            (Path(out_dir) / "graph.json").write_text(json.dumps(record))
        return cls(out_dir, nodes, byz, cfg.record.every, cfg.train.rounds, evaluator)

    def observe(self, rnd: int, now: float, params: Tensor, theta_bar: Tensor, online: np.ndarray | None,
                evaluate: bool) -> None:
        """Record round ``rnd`` if it is due: ``params [n, d]``, ``theta_bar [d]``, ``online [n]`` or None."""
        if rnd % self.every and rnd != self.last:
            return
        with torch.no_grad():
            if self.rows is None or self.rows.device != params.device:
                self.rows = from_numpy(self.nodes, params.device)
            mine = params.index_select(0, self.rows)
            dist = (mine.double() - theta_bar.double()).pow_(2).sum(1)
            loss, acc = self._evaluate(mine) if evaluate and self._outputs is not None else (None, None)
        m = self.nodes.shape[0]
        nan = np.full(m, np.nan, dtype=np.float32)
        self.buf["round"].append(rnd)
        self.buf["time"].append(now)
        self.buf["distance"].append(to_numpy(dist).astype(np.float32))
        self.buf["loss"].append(nan if loss is None else loss)
        self.buf["accuracy"].append(nan if acc is None else acc)
        self.buf["online"].append(np.ones(m, dtype=bool) if online is None else np.asarray(online, dtype=bool)[self.nodes])

    def _evaluate(self, mine: Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Test loss ``[m]`` and accuracy ``[m]`` (None on regression) of each recorded node's model."""
        ev, losses, accs = self.evaluator, [], []
        y = ev.y
        for start in range(0, mine.shape[0], self.chunk):
            out = self._outputs(mine[start : start + self.chunk])  # [b, N, C] or [b, N]
            if ev.loss == "cross_entropy":
                b = out.shape[0]
                per = torch.nn.functional.cross_entropy(out.flatten(0, 1), y.repeat(b), reduction="none")
                losses.append(per.view(b, -1).mean(1))
            else:
                losses.append((0.5 * (out - y) ** 2).flatten(1).mean(1))
            if ev.classification:
                accs.append((out.argmax(-1) == y).double().mean(1))
        loss = to_numpy(torch.cat(losses)).astype(np.float32)
        return loss, (to_numpy(torch.cat(accs)).astype(np.float32) if accs else None)

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded arrays, as written to ``nodes.npz``."""
        m = self.nodes.shape[0]
        out = {"round": np.asarray(self.buf["round"], dtype=np.int64), "time": np.asarray(self.buf["time"], dtype=np.float64)}
        for key, dtype in (("distance", np.float32), ("loss", np.float32), ("accuracy", np.float32), ("online", bool)):
            out[key] = np.stack(self.buf[key]).astype(dtype) if self.buf[key] else np.zeros((0, m), dtype=dtype)
        out.update(nodes=self.nodes, byzantine=self.is_byzantine[self.nodes], n=np.int64(self.is_byzantine.shape[0]),
                   every=np.int64(self.every))
        return out

    def close(self) -> None:
        """Write ``nodes.npz`` (once; nothing without a run folder)."""
        if self.out_dir is not None and self.buf is not None:
            np.savez_compressed(Path(self.out_dir) / "nodes.npz", **self.arrays())


def load_nodes(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Read ``nodes.npz`` of a run folder (one-line error when the run was not recorded)."""
    path = Path(run_dir) / "nodes.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} has no nodes.npz: run it with --record-nodes every=K (TOML [record] every = K)")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
