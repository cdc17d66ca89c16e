"""Checkpoint and resume (issue 15): ``checkpoint_every = K`` writes the state of a run
to ``checkpoint.pt`` in its run folder every K rounds; :func:`resume` continues it so that
``metrics.csv`` ends up identical, byte for byte, to the file of an uninterrupted run.

The file is written atomically (temporary file, ``fsync``, rename) and in a safe format: a dict of
tensors plus one JSON string (``torch.load(path, weights_only=True)`` reads it; nothing is
unpickled but tensors, strings and numbers). It holds

* the :class:`~p2probust.state.SimState`: ``params``, ``momentum`` ``[n, d]``, the round and the
  states of the ``batches`` and ``attack`` torch generators (:meth:`Simulation.capture`);
* every other random state: the privacy noise
  generator, torch generators inside the rule (e.g. bucketing), the ``engine`` numpy generator;
* the round, the simulated time and the engine's next round plan (its online nodes, edges and
  delivered messages, already drawn when the round ends), the churn processes' state;
* the attack's memory and the rule's (:func:`object_memory`), the privacy accountant's step
  counts, the epoch sampler's permutations, the replay attack's history of mean models;
* the observer's rows so far (for ``summary.json``'s final and best values) and divergence.

Everything else (graph, data, partition, initial models, the wiring caches) is rebuilt from the
config, which is deterministic in the seed; the state above then overwrites what the rebuild drew.
The engine's part is the :attr:`SimState.engine <p2probust.state.SimState>` slot: the synchronous
engine's (:func:`sync_engine_state`) is written by :class:`Checkpointer`; the asynchronous engine's
(processes, queue, messages in flight, snapshots, the inbox buffer) by
:class:`~p2probust.checkpoint_async.AsyncCheckpointer`, which overrides the three engine hooks
:meth:`Checkpointer.engine_meta`, :meth:`Checkpointer.engine_from` and :meth:`Checkpointer.resume_engine`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._version import __version__
from .rundir import write_atomic
from .state import SimState

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
            current.set_state(value.cpu())  # a generator state is a CPU byte tensor, whatever the run's device
        else:
            setattr(owner, name, value)


def _ours(value: Any) -> bool:
    return type(value).__module__.startswith("p2probust.") and hasattr(value, "__dict__")


class Checkpointer:
    """Saves and restores the state of one run: the :class:`~p2probust.state.SimState` the loop
    hands it (its engine slot: the synchronous engine's here), plus what the rule, the attack, the
    privacy accountant, the sampler, the replay history and the observer remember."""

    def __init__(self, cfg, run, sim, engine, churn, observer, history, path: Path | None):
        self.cfg, self.run, self.sim, self.engine = cfg, run, sim, engine
        self.churn, self.observer, self.history, self.path = churn, observer, history, path

    def after_round(self, state: SimState, last: bool) -> None:
        """Write the checkpoint of ``state`` when it is due (not after the last round)."""
        every = self.cfg.checkpoint_every
        if self.path is not None and every and state.round % every == 0 and not last:
            self.write(self.sim.capture(state, engine=sync_engine_state(self.engine, self.churn)))

    def write(self, st: SimState) -> None:
        """Write the checkpoint of a captured state ``st`` atomically into the run folder."""
        buf = io.BytesIO()
        torch.save(self.state(st), buf)
        write_atomic(self.path / FILE, buf.getvalue())

    def state(self, st: SimState) -> dict[str, Any]:
        """The file's content for a captured state ``st`` (generator states and engine state filled)."""
        sim, run, eng = self.sim, self.run, st.engine
        tensors: dict[str, Tensor] = {
            "params": st.params, "momentum": st.momentum,
            "gen.batches": st.rng["batches"], "gen.attack": st.rng["attack"],
        }
        for key, obj in (("attack", sim.adversary), ("rule", sim.gossip)):
            tensors.update({f"{key}.{p}": v for p, v in object_memory(obj).items() if isinstance(v, Tensor)})
        meta: dict[str, Any] = {
            "round": st.round, **self.engine_meta(eng, tensors),
            "attack": _plain(object_memory(sim.adversary)), "rule": _plain(object_memory(sim.gossip)),
            "rows": self.observer.recorder.history, "timing": self.observer.recorder.timing,
            "diverged": self.observer.diverged,
        }
        if run.privacy is not None:
            tensors["privacy.generator"], tensors["privacy.steps"] = run.privacy.generator.get_state(), run.privacy.steps
        sampler = sim.trainer.sampler
        if getattr(sampler, "kind", None) == "epoch":
            tensors["sampler.perm"], tensors["sampler.cursor"] = sampler.perm, sampler.cursor
        if eng["churn"] is not None:
            meta["churn_now"] = eng["churn"][0]
            tensors["churn.up"], tensors["churn.next"] = map(torch.from_numpy, eng["churn"][1:])
        if self.history is not None:
            meta["history_times"] = self.history.times
            tensors["history.models"] = torch.stack(self.history.models)
        meta.update(config=self.cfg.to_dict(), config_json=_config_hash(self.path), format=FORMAT, version=__version__)
        return {"tensors": {k: v.detach().cpu().clone() for k, v in tensors.items()}, "meta": json.dumps(meta)}

    def restore(self, ckpt: dict[str, Any]) -> SimState:
        """Overwrite the freshly built run's memory with ``ckpt`` (from :func:`load`); the state to continue from."""
        sim, run, observer = self.sim, self.run, self.observer
        tensors, meta = ckpt["tensors"], json.loads(ckpt["meta"])
        dev = sim.wiring.idx.device  # generator states, engine arrays and bookkeeping stay on the CPU
        tensors = {k: v if k.startswith(_CPU_STATE) else v.to(dev) for k, v in tensors.items()}
        churn = None
        if self.churn is not None:
            churn = meta["churn_now"], tensors["churn.up"].numpy(), tensors["churn.next"].numpy()
        eng = {**self.engine_from(meta, tensors), "churn": churn}
        state = SimState(tensors["params"].to(dev), tensors["momentum"].to(dev), meta["round"], meta["now"],
                         rng={"batches": tensors["gen.batches"], "attack": tensors["gen.attack"]}, engine=eng)
        sim.restore(state)
        for key, obj in (("attack", sim.adversary), ("rule", sim.gossip)):
            memory = {**meta[key], **{k[len(key) + 1:]: v for k, v in tensors.items() if k.startswith(f"{key}.")}}
            restore_memory(obj, memory)
        if run.privacy is not None:
            run.privacy.generator.set_state(tensors["privacy.generator"])
            run.privacy.steps = tensors["privacy.steps"]
        if "sampler.perm" in tensors:
            sim.trainer.sampler.perm, sim.trainer.sampler.cursor = tensors["sampler.perm"], tensors["sampler.cursor"]
        if self.history is not None:
            self.history.times = list(meta["history_times"])
            self.history.models = list(tensors["history.models"].unbind(0))
        self.resume_engine(eng)
        observer.diverged = list(meta["diverged"])
        observer.restored = (meta["rows"], meta["timing"])
        return state

    # --- the engine's part (the synchronous engine here; overridden for the asynchronous one) ---
    def engine_meta(self, eng: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
        """The file's part of the engine slot ``eng``: JSON scalars returned (``now`` and ``events``
        among them), arrays added to ``tensors`` (the churn state is written by :meth:`state`)."""
        return {"now": eng["now"], "events": eng["events"], "engine_rng": eng["rng"],
                "plan": _plan_meta(eng["plan"], tensors)}

    def engine_from(self, meta: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
        """The engine slot (less its churn state) back from what :meth:`engine_meta` wrote."""
        return {"now": meta["now"], "events": meta["events"], "rng": meta["engine_rng"],
                "plan": _plan_from(meta["plan"], tensors)}

    def resume_engine(self, eng: dict[str, Any]) -> None:
        """Put the engine slot ``eng`` back into the freshly built engine and churn schedule."""
        resume_sync_engine(self.engine, self.churn, eng)


def sync_engine_state(engine, churn) -> dict[str, Any]:
    """The synchronous engine's state, for :attr:`SimState.engine <p2probust.state.SimState>`: the
    simulated time, its event count, the ``engine`` stream's state, the next round's plan (already
    drawn when a round ends) and the churn processes' state (None without churn)."""
    rng = engine.network.rng.bit_generator.state if engine.network is not None else None
    return {"now": float(engine.env.now), "events": engine.events, "rng": rng, "plan": engine.next_plan,
            "churn": churn_state(churn)}


def churn_state(churn) -> tuple | None:
    """The churn processes' state ``(now, up, next toggle)`` (copies; None without churn)."""
    return None if churn is None else (churn.now, churn.up_state.copy(), churn.next_toggle.copy())


def resume_churn(churn, state: tuple | None) -> None:
    """Put :func:`churn_state`'s ``state`` back into a freshly built churn schedule."""
    if state is not None:
        churn.now, churn.up_state, churn.next_toggle = state


def resume_sync_engine(engine, churn, state: dict[str, Any]) -> None:
    """Put :func:`sync_engine_state`'s ``state`` back into a freshly built engine and churn schedule."""
    resume_churn(churn, state["churn"])
    if state["rng"] is not None:
        engine.network.rng.bit_generator.state = state["rng"]
    engine.resume_at(state["plan"], state["now"], state["events"])


#: checkpoint entries that stay on the CPU when restored onto another device (the asynchronous
#: engine's arrays and the inbox buffer's bookkeeping too; the buffer moves its pool itself)
_CPU_STATE = ("gen.", "privacy.generator", "churn.", "plan.", "engine.", "inbox.")


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
