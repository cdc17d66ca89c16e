"""The state of the asynchronous engine as data: save it between two instants, rebuild an engine
that continues from it (checkpoint and resume, issue 15).

Between two instants (every event in simpy's queue lies after ``now``) the engine's state is:

* simpy's queue: one entry ``(time, priority, insertion id)`` per pending event, of five kinds —
  a node process's timeout (wake, offline wait, compute), the churn process's timeout, a ``wait``
  clock timeout (with its nodes), a ``wait`` clock delivery instant (:meth:`AsyncEngine._arm`),
  a drain of the engine's own queue of node events (:mod:`~p2probust.engine.deferred`); and the
  next insertion id. That own queue is saved as it is, with its next insertion number. simpy orders events by time, then priority, then insertion id, so
  putting the same entries back with the same ids, and continuing the id counter from the same
  value, reproduces the order of every later event exactly;
* each node process's phase and next wake-up time (:mod:`~p2probust.engine.node_process`): a
  node's pending event is put back carrying the node and its callback (``done``-phase nodes wait
  for a fresh untriggered event, as the ``wait`` clock's nodes did);
* the messages in flight, the snapshot handles' reference counts, the deliveries not yet handed
  to the kernels, each slot's latest handle, who is online, waiting or has fresh messages, the
  epidemic inboxes' slot assignment (in insertion order: eviction follows it), the counters, the
  churn process's last change and the engine's random stream.

A compute or aggregate flush always runs within its own instant, so none is pending then.
Everything is numpy arrays and JSON-able scalars; :mod:`p2probust.checkpoint_async` stores them.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import numpy as np
import simpy

from .inflight import Deliveries
from .node_process import DONE, ENDED

NODE, CHURN, WAIT_TIMEOUT, DELIVER, DRAIN = range(5)  # kinds of pending events
_COLUMNS = ("dst", "slot", "src", "sent_at", "handle")


class NotBetweenInstants(RuntimeError):
    """The engine is in the middle of an instant (its state is not only data there)."""


def engine_state(engine) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, scalars)``: the state of ``engine`` between two instants (see the module)."""
    env = engine.env
    if engine.stepping or engine._compute_batch or engine._agg_batch or env.peek() <= env.now:
        raise NotBetweenInstants(f"the engine is within the instant {env.now}; save it between instants")
    arrays = _queue(engine)
    eid = next(env._eid)
    env._eid = itertools.count(eid)  # taking the next id must not change anything
    arrive, flight = engine._flight.state()
    pending = Deliveries.concat(engine._pending)
    arrays.update(phase=np.array(engine._phase, dtype=np.int64), wake=np.array(engine._wake, dtype=np.float64), online=engine.online, waiting=engine._waiting,
                  slot_handle=engine._slot_handle, flight_arrive=arrive)
    arrays.update({f"flight_{c}": getattr(flight, c) for c in _COLUMNS})
    arrays.update({f"pending_{c}": getattr(pending, c) for c in _COLUMNS})
    arrays["handle_refs"], arrays["handle_live"] = engine._handles.state()
    if engine._fresh is not None:
        arrays["fresh"] = engine._fresh
    sets = engine._fresh_sets
    arrays["fresh_node"] = np.repeat(np.arange(len(sets)), [len(x) for x in sets]).astype(np.int64)
    arrays["fresh_src"] = np.array([src for x in sets for src in sorted(x)], dtype=np.int64)
    slots = engine._dyn_slots  # ordered: the least recently written sender first
    arrays["dyn_node"] = np.repeat(np.arange(len(slots)), [len(x) for x in slots]).astype(np.int64)
    arrays["dyn_src"] = np.array([src for x in slots for src in x], dtype=np.int64)
    arrays["dyn_slot"] = np.array([sl for x in slots for sl in x.values()], dtype=np.int64)
    scalars = {"now": float(env.now), "eid": eid, "seq": engine._seq, "events": engine.events, "activations": engine.activations,
               "messages": engine.messages, "round": engine.round, "armed": engine._armed,
               "last_change": engine._last_change, "rng": engine.s.rng.bit_generator.state}
    return {k: np.ascontiguousarray(v).copy() for k, v in arrays.items()}, scalars


def _queue(engine) -> dict[str, np.ndarray]:
    """simpy's queue as columns ``kind, node, time, priority, eid`` (+ the nodes of wait timeouts)."""
    churn = engine._churn_proc
    churn_target = churn.target if churn is not None and churn.is_alive else None
    rows, timeout_nodes = [], []
    for t, prio, eid, ev in engine.env._queue:
        if ev.callbacks == [engine._on_event]:
            kind, node = NODE, ev.node
        elif ev is churn_target:
            kind, node = CHURN, -1
        elif ev.callbacks == [engine._wait_timeout]:
            kind, node = WAIT_TIMEOUT, len(timeout_nodes)
            timeout_nodes.append(np.asarray(ev._value, dtype=np.int64))
        elif ev.callbacks == [engine._deliver_due]:
            kind, node = DELIVER, -1
        elif ev.callbacks == [engine._drain]:
            kind, node = DRAIN, -1
        else:
            raise NotBetweenInstants(f"an unknown event is pending at {t} (priority {prio}); cannot save the engine")
        rows.append((kind, node, prio, eid, t))
    table = np.array([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4)
    alive = np.flatnonzero(np.array(engine._phase) != ENDED)
    later_time, later_seq, later_node = engine.queued() if engine._later is not None else (np.zeros(0), np.zeros(0, dtype=np.int64),
                                                                                           np.zeros(0, dtype=np.int64))
    waited = set(alive.tolist()) - {int(i) for i in table[table[:, 0] == NODE, 1]} - set(later_node.tolist())
    if any(engine._phase[i] != DONE for i in waited):
        raise NotBetweenInstants("a node process waits for an event that is not in the queue; cannot save the engine")
    lengths = [x.size for x in timeout_nodes]
    return {"queue": table, "queue_time": np.array([r[4] for r in rows], dtype=np.float64),
            "later_time": later_time.astype(np.float64), "later_seq": later_seq.astype(np.int64), "later_node": later_node.astype(np.int64),
            "timeout_nodes": np.concatenate(timeout_nodes) if timeout_nodes else np.zeros(0, dtype=np.int64),
            "timeout_len": np.array(lengths, dtype=np.int64)}


def restore_engine(engine, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
    """Make a freshly built ``engine`` (same setup, :meth:`~AsyncEngine.run` not called yet)
    continue from :func:`engine_state`'s ``(arrays, scalars)``."""
    env = engine.env
    env._now = scalars["now"]
    engine.s.rng.bit_generator.state = scalars["rng"]
    for name in ("events", "activations", "messages", "round"):
        setattr(engine, name, int(scalars[name]))
    engine._armed, engine._last_change = float(scalars["armed"]), float(scalars["last_change"])
    engine.online, engine._waiting = arrays["online"].copy(), arrays["waiting"].copy()
    engine._slot_handle = arrays["slot_handle"].copy()
    engine._flight.restore(arrays["flight_arrive"], Deliveries(*(arrays[f"flight_{c}"] for c in _COLUMNS)))
    pending = Deliveries(*(arrays[f"pending_{c}"] for c in _COLUMNS))
    engine._pending = [pending] if len(pending) else []
    engine._handles.restore(arrays["handle_refs"], arrays["handle_live"])
    if engine._fresh is not None:
        engine._fresh = arrays["fresh"].copy()
    for i, src in zip(arrays["fresh_node"].tolist(), arrays["fresh_src"].tolist()):
        engine._fresh_sets[i].add(src)
    for i, src, sl in zip(arrays["dyn_node"].tolist(), arrays["dyn_src"].tolist(), arrays["dyn_slot"].tolist()):
        engine._dyn_slots[i][src] = sl
    if "later_node" in arrays and engine._later is not None:  # the node events in the engine's own queue
        engine.restore_queued(arrays["later_time"].copy(), arrays["later_seq"].copy(), arrays["later_node"].copy())
        engine._seq = int(scalars["seq"])
        engine._phase, engine._wake = arrays["phase"].copy(), arrays["wake"].copy()
    else:  # every node event in simpy's queue (as a version before the engine's own queue saved it)
        engine._init_deferred(False)
        engine._phase, engine._wake = arrays["phase"].tolist(), arrays["wake"].tolist()
    _rebuild_queue(engine, arrays)
    env._eid = itertools.count(int(scalars["eid"]))
    engine.resumed = True


def _rebuild_queue(engine, arrays: dict[str, np.ndarray]) -> None:
    """Push every saved event back with its time, priority and id (a node's carrying the node
    and its callback); restart the churn process."""
    env = engine.env
    ends = np.cumsum(arrays["timeout_len"])
    churn_event = None
    for (kind, node, prio, eid), t in zip(arrays["queue"].tolist(), arrays["queue_time"].tolist()):
        ev = simpy.Event(env)
        ev._ok, ev._value = True, None
        if kind == NODE:
            ev.node = node
            ev.callbacks.append(engine._on_event)
        elif kind == CHURN:
            churn_event = ev
        elif kind == DRAIN:
            engine._drains.add(t)
            ev.callbacks.append(engine._drain)
        elif kind == WAIT_TIMEOUT:
            ev._value = arrays["timeout_nodes"][ends[node] - arrays["timeout_len"][node]:ends[node]].copy()
            ev.callbacks.append(engine._wait_timeout)
        else:
            ev.callbacks.append(engine._deliver_due)
        heapq.heappush(env._queue, (t, prio, eid, ev))
    for i in np.flatnonzero(np.array(engine._phase) == DONE).tolist():
        engine._wait_done(i)
    if churn_event is not None:
        engine._churn_proc = env.process(engine._churn(churn_event))
    while env.peek() <= env.now:  # start the churn process: it waits for its event again
        env.step()
