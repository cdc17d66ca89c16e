"""Checkpoint and resume (issue 15): ``checkpoint_every = K`` writes the state of a synchronous run
to ``checkpoint.pt`` in its run folder every K rounds; :func:`resume` continues it so that
``metrics.csv`` ends up identical, byte for byte, to the file of an uninterrupted run.

The file is written atomically (temporary file, ``fsync``, rename) and in a safe format: a dict of
tensors plus one JSON string (``torch.load(path, weights_only=True)`` reads it; nothing is
unpickled but tensors, strings and numbers). It holds

* ``params``, ``momentum`` ``[n, d]``;
* every random state: the ``batches`` and ``attack`` torch generators, the privacy noise
  generator, torch generators inside the rule (e.g. bucketing), the ``engine`` numpy generator;
* the round, the simulated time and the engine's next round plan (its online nodes, edges and
  delivered messages, already drawn when the round ends), the churn processes' state;
* the attack's memory and the rule's (:func:`object_memory`), the privacy accountant's step
  counts, the epoch sampler's permutations, the replay attack's history of mean models;
* the observer's rows so far (for ``summary.json``'s final and best values) and divergence.

Everything else (graph, data, partition, initial models, the wiring caches) is rebuilt from the
config, which is deterministic in the seed; the state above then overwrites what the rebuild drew.
The asynchronous engine's state (processes, queue, messages in flight, snapshots) is saved by
:class:`~p2probust.checkpoint_async.AsyncCheckpointer`, which overrides :meth:`Checkpointer.engine_state`
and :meth:`Checkpointer.engine_restore`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .rundir import write_atomic

FILE = "checkpoint.pt"
#: bumped when the layout of the file changes
FORMAT = 1


class CheckpointError(ValueError):
    """A run folder that cannot be resumed (one line: the folder, why, and what to do)."""


def object_memory(obj: Any, prefix: str = "") -> dict[str, Any]:
    """What a rule or attack object remembers between rounds, by attribute path: every
    ``torch.Generator`` (its state) anywhere in its tree of p2probust objects, and every private
    attribute (``_name``) holding a tensor, a number, a string or None (e.g. :class:`Mimic`'s
    running mean and direction). Private attributes of other types are caches, rebuilt on use."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        path = f"{prefix}{name}"
        if isinstance(value, torch.Generator):
            out[path] = value.get_state()
        elif name.startswith("_") and (value is None or isinstance(value, (Tensor, bool, int, float, str))):
            out[path] = value
        elif _ours(value):
            out.update(object_memory(value, f"{path}."))
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if _ours(item):
                    out.update(object_memory(item, f"{path}.{i}."))
    return out


def restore_memory(obj: Any, memory: dict[str, Any]) -> None:
    """Put back what :func:`object_memory` returned."""
    for path, value in memory.items():
        *parents, name = path.split(".")
        owner = obj
        for p in parents:
            owner = owner[int(p)] if isinstance(owner, (tuple, list)) else getattr(owner, p)
        current = getattr(owner, name, None)
        if isinstance(current, torch.Generator):
            current.set_state(value)
        else:
            setattr(owner, name, value)


def _ours(value: Any) -> bool:
    return type(value).__module__.startswith("p2probust.") and hasattr(value, "__dict__")


class Checkpointer:
    """Saves and restores the state of one synchronous run (the objects :func:`simulate` wired)."""

    def __init__(self, cfg, run, kern, engine, churn, observer, history, path: Path | None):
        self.cfg, self.run, self.kern, self.engine = cfg, run, kern, engine
        self.churn, self.observer, self.history, self.path = churn, observer, history, path

    def after_round(self, done: int, last: bool) -> None:
        """Write the checkpoint after round ``done`` when it is due (not after the last round)."""
        every = self.cfg.checkpoint_every
        if self.path is not None and every and done % every == 0 and not last:
            buf = io.BytesIO()
            torch.save(self.state(done), buf)
            write_atomic(self.path / FILE, buf.getvalue())

    def state(self, done: int) -> dict[str, Any]:
        kern, run = self.kern, self.run
        tensors: dict[str, Tensor] = {
            "params": kern.params, "momentum": kern.momentum,
            "gen.batches": kern.gen_batches.get_state(), "gen.attack": kern.gen_attack.get_state(),
        }
        for key, obj in (("attack", kern.adversary), ("rule", kern.gossip)):
            tensors.update({f"{key}.{p}": v for p, v in object_memory(obj).items() if isinstance(v, Tensor)})
        meta: dict[str, Any] = {
            "round": done, **self.engine_state(tensors),
            "attack": _plain(object_memory(kern.adversary)), "rule": _plain(object_memory(kern.gossip)),
            "rows": self.observer.recorder.history, "timing": self.observer.recorder.timing,
            "diverged": self.observer.diverged,
        }
        if run.privacy is not None:
            tensors["privacy.generator"], tensors["privacy.steps"] = run.privacy.generator.get_state(), run.privacy.steps
        sampler = kern.trainer.sampler
        if getattr(sampler, "kind", None) == "epoch":
            tensors["sampler.perm"], tensors["sampler.cursor"] = sampler.perm, sampler.cursor
        if self.churn is not None:
            meta["churn_now"] = self.churn.now
            tensors["churn.up"], tensors["churn.next"] = map(torch.from_numpy, (self.churn.up_state, self.churn.next_toggle))
        if self.history is not None:
            meta["history_times"] = self.history.times
            tensors["history.models"] = torch.stack(self.history.models)
        meta.update(config=self.cfg.to_dict(), config_json=_config_hash(self.path), format=FORMAT, version=__version__)
        return {"tensors": {k: v.detach().clone() for k, v in tensors.items()}, "meta": json.dumps(meta)}

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Overwrite the freshly built run's state with ``ckpt`` (from :func:`load`)."""
        kern, run, observer = self.kern, self.run, self.observer
        tensors, meta = ckpt["tensors"], json.loads(ckpt["meta"])
        kern.params, kern.momentum = tensors["params"], tensors["momentum"]
        kern.gen_batches.set_state(tensors["gen.batches"])
        kern.gen_attack.set_state(tensors["gen.attack"])
        for key, obj in (("attack", kern.adversary), ("rule", kern.gossip)):
            memory = {**meta[key], **{k[len(key) + 1:]: v for k, v in tensors.items() if k.startswith(f"{key}.")}}
            restore_memory(obj, memory)
        if run.privacy is not None:
            run.privacy.generator.set_state(tensors["privacy.generator"])
            run.privacy.steps = tensors["privacy.steps"]
        if "sampler.perm" in tensors:
            kern.trainer.sampler.perm, kern.trainer.sampler.cursor = tensors["sampler.perm"], tensors["sampler.cursor"]
        if self.churn is not None:
            self.churn.now = meta["churn_now"]
            self.churn.up_state, self.churn.next_toggle = tensors["churn.up"].numpy(), tensors["churn.next"].numpy()
        if self.history is not None:
            self.history.times = list(meta["history_times"])
            self.history.models = list(tensors["history.models"].unbind(0))
        self.engine_restore(tensors, meta)
        observer.diverged = list(meta["diverged"])
        observer.restored = (meta["rows"], meta["timing"])

    def engine_state(self, tensors: dict[str, Tensor]) -> dict[str, Any]:
        """The engine's part of the checkpoint: JSON scalars returned, arrays added to ``tensors``
        (the synchronous engine: its clock, random stream and next round plan)."""
        engine = self.engine
        return {"now": float(engine.env.now), "events": engine.events,
                "engine_rng": engine.network.rng.bit_generator.state if engine.network is not None else None,
                "plan": _plan_meta(engine.next_plan, tensors)}

    def engine_restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Put back what :meth:`engine_state` saved."""
        engine = self.engine
        if meta["engine_rng"] is not None:
            engine.network.rng.bit_generator.state = meta["engine_rng"]
        engine.resume_at(_plan_from(meta["plan"], tensors), meta["now"], meta["events"])


def _plain(memory: dict[str, Any]) -> dict[str, Any]:
    """The JSON part of an object's memory (tensors and generator states travel as tensors)."""
    return {k: v for k, v in memory.items() if not isinstance(v, Tensor)}


def _plan_meta(plan, tensors: dict[str, Tensor]) -> dict[str, Any]:
    for name in ("online", "src", "dst", "delivered"):
        value = getattr(plan, name)
        if value is not None:
            tensors[f"plan.{name}"] = torch.from_numpy(np.ascontiguousarray(value))
    return {"round": plan.round, "start": plan.start, "end": plan.end, "last": plan.last}


def _plan_from(meta: dict[str, Any], tensors: dict[str, Tensor]):
    from .engine import RoundPlan

    arrays = {name: tensors[f"plan.{name}"].numpy() if f"plan.{name}" in tensors else None
              for name in ("online", "src", "dst", "delivered")}
    return RoundPlan(meta["round"], meta["start"], meta["end"], last=meta["last"], **arrays)


def _config_hash(path: Path | None) -> str | None:
    import hashlib

    if path is None or not (path / "config.json").is_file():
        return None
    return hashlib.sha256((path / "config.json").read_bytes()).hexdigest()


def load(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The config and checkpoint of ``run_dir``, checked (:class:`CheckpointError` otherwise)."""
    from .config import ConfigError, from_dict

    path = Path(run_dir).expanduser()
    where = f"run folder {str(path)!r}"
    if not path.is_dir():
        raise CheckpointError(f"{where} does not exist; give the folder of a run started with --checkpoint-every")
    if not (path / FILE).is_file():
        raise CheckpointError(f"{where} has no {FILE}; only runs started with --checkpoint-every K can be resumed")
    summary = path / "summary.json"
    if summary.is_file():
        try:
            status = json.loads(summary.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            status = None
        if status in ("completed", "diverged"):
            raise CheckpointError(f"{where} holds a run that {'completed' if status == 'completed' else 'diverged'}; there is nothing to resume")
    try:
        ckpt = torch.load(path / FILE, weights_only=True)
        meta = json.loads(ckpt["meta"])
        fmt, version = meta["format"], meta["version"]
    except Exception as err:  # noqa: BLE001  (any unreadable file is one kind of bad input)
        raise CheckpointError(f"{where}: {FILE} is not a readable p2probust checkpoint ({type(err).__name__})") from None
    if fmt != FORMAT or version != __version__:
        raise CheckpointError(f"{where}: {FILE} was written by p2probust {version} (format {fmt}); this is {__version__} "
                              f"(format {FORMAT}); resume it with that version")
    if meta["config_json"] != _config_hash(path):
        raise CheckpointError(f"{where}: config.json changed since the checkpoint was written; restore it or start a new run")
    rows = len(meta["rows"])
    try:
        with open(path / "metrics.csv", "rb") as fh:
            present = sum(1 for _ in fh) - 1
    except OSError:
        present = -1
    if present < rows:
        raise CheckpointError(f"{where}: metrics.csv holds {max(present, 0)} rows, fewer than the checkpoint's {rows}; it cannot be resumed")
    try:
        cfg = from_dict(meta["config"])
    except ConfigError as err:
        raise CheckpointError(f"{where}: the checkpoint's config is invalid here ({err})") from None
    return cfg, ckpt


def resume(run_dir: str | Path, *, progress: bool = False):
    """Continue the run in ``run_dir`` from its last checkpoint; returns its
    :class:`~p2probust.Result` (the whole run's rows). ``metrics.csv`` is cut back to the
    checkpoint's round first, and ends identical to that of an uninterrupted run."""
    from .simulation import simulate

    cfg, ckpt = load(run_dir)
    return simulate(cfg, out=Path(run_dir).expanduser(), progress=progress, _resume=ckpt)
