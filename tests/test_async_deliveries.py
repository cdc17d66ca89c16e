"""Per-message semantics of the asynchronous engine's delivery queue, against times computed by hand.

Messages are not simpy events; these tests pin what one event per message used to guarantee:
each message's own delay (latency + transfer + timing attack), its own drop draw, delivery at the
first aggregation at or after its arrival, arrival order with ties in send order, loss when the
recipient is offline at the arrival instant, and the order of the engine stream's draws.
"""

from __future__ import annotations

import numpy as np
from p2probust.engine import ChurnSchedule, ChurnSpec, ComputeModel, LinkModel
from p2probust.engine import specs as sp
from p2probust.engine.events import AsyncEngine, AsyncSetup
from p2probust.engine.inflight import Deliveries, Handles, InFlight

# a 4-cycle 0-1-2-3-0; slot s of node i receives from IDX[i, s]
IDX = np.array([[1, 3], [0, 2], [1, 3], [0, 2]])


class Recorder:
    def __init__(self):
        self.aggregations = []  # (now, nodes, [(dst, slot, src, sent_at, handle), ...])
        self.handles = {}

    def compute(self, nodes, handles, round):
        self.handles.update(zip(handles.tolist(), nodes.tolist()))

    def aggregate(self, nodes, dl, now):
        msgs = list(zip(dl.dst.tolist(), dl.slot.tolist(), dl.src.tolist(), dl.sent_at.tolist(), dl.handle.tolist()))
        self.aggregations.append((now, nodes.tolist(), msgs))

    def progress(self, r, now, messages, online):
        return False


def _engine(rng, *, drop=0.0, latency="uniform:low=0.001,high=0.015", factor=(1, 1, 1, 1), attack="none", churn=None,
            rounds=2):
    comp = ComputeModel(sp.Dist("const", 0.01), 1, np.array(factor, dtype=float))
    links = LinkModel(sp.parse_dist(latency), bandwidth=1000.0, drop=drop, message_bytes=2)  # transfer 0.002 s
    byz = np.array([False, False, False, True])
    setup = AsyncSetup(IDX, np.ones_like(IDX, dtype=bool), byz, ~byz, ~byz, comp, links, sp.ClockSpec(), rng,
                       churn=churn, timing_attack=sp.parse_timing_attack(attack))
    return AsyncEngine(setup, rounds)


def _slot(dst, src):
    return int(np.flatnonzero(IDX[dst] == src)[0])


def test_delivery_times_drops_and_draw_order_by_hand():
    """Node 2 is a 2× straggler, node 3 Byzantine with a 0.004 s delay attack. Draws, in order:
    t = 0.01: node 3 sends (2 delays, 2 drops), then the flush of nodes 0, 1 (4 delays, then 4
    drops); t = 0.02: node 2's completion was scheduled first, then 0, 1, 3: node 3 sends, then the
    flush of 0, 1, 2 (6 delays, then 6 drops); t = 0.03: node 3, then the flush of 0, 1 — and the
    aggregation at 0.03 completes round 2 (7 activations of 3 counted nodes)."""
    seed = 11
    eng, rec = _engine(np.random.default_rng(seed), drop=0.3, factor=(1, 1, 2, 1), attack="delay:seconds=0.004"), Recorder()
    eng.run(rec)
    rng = np.random.default_rng(seed)
    sends = [(0.01, [3]), (0.01, [0, 1]), (0.02, [3]), (0.02, [0, 1, 2]), (0.03, [3]), (0.03, [0, 1])]
    expected = []  # (arrival, send order, dst, slot, src, sent_at)
    for t, senders in sends:
        pairs = [(i, int(j)) for i in senders for j in IDX[i]]
        delay = rng.uniform(0.001, 0.015, len(pairs)) + 2 / 1000.0
        kept = rng.random(len(pairs)) >= 0.3
        for (i, j), dl, ok in zip(pairs, delay, kept):
            if ok:
                expected.append((t + (dl + 0.004 if i == 3 else dl), len(expected), j, _slot(j, i), i, t))
    assert [a[0] for a in rec.aggregations] == [0.01, 0.02, 0.03]
    assert [a[1] for a in rec.aggregations] == [[0, 1], [0, 1, 2], [0, 1]]
    lo = -np.inf
    for now, _, got in rec.aggregations:
        want = sorted(m for m in expected if lo < m[0] <= now)
        assert [(d, s, src, at) for d, s, src, at, _ in got] == [m[2:] for m in want]
        assert all((h == -1) == (src == 3) for _, _, src, _, h in got)
        lo = now
    assert len(expected) < 14 + 4 + 2  # some messages were dropped ...
    assert any(m[0] > 0.03 for m in expected)  # ... and some are still in flight at the end
    assert eng.in_flight == sum(m[0] > 0.03 for m in expected)
    assert sum(len(a[2]) for a in rec.aggregations) == sum(m[0] <= 0.03 for m in expected)


def test_equal_arrivals_keep_send_order_and_flood_copies_leave_one_microsecond_apart():
    """Constant latency 0.003 + transfer 0.002: everything sent at 0.01 arrives at 0.015 and is
    delivered at the aggregation of 0.02 in send order: Byzantine node 3 sends at its completion
    event, before the flush of nodes 0, 1, 2; its flood copies k = 1, 2 arrive k µs later."""
    eng, rec = _engine(np.random.default_rng(0), latency="0.003", attack="flood:copies=3"), Recorder()
    eng.run(rec)
    assert rec.aggregations[0][2] == []  # nothing has arrived at 0.01
    now, _, got = rec.aggregations[1]
    assert now == 0.02 and all(at == 0.01 for *_, at, _ in got)
    honest = [(i, int(j)) for i in (0, 1, 2) for j in IDX[i]]
    assert [(src, dst) for dst, _, src, _, _ in got] == [(3, 0), (3, 2)] + honest + [(3, 0), (3, 2)] * 2
    assert all(slot == _slot(dst, src) for dst, slot, src, _, _ in got)


def _offline_run(seed):
    churn = ChurnSchedule(ChurnSpec(outages=((1, 0.014, 0.05),)), 4, np.random.default_rng(0))
    eng, rec = _engine(np.random.default_rng(seed), latency="uniform:low=0.001,high=0.005", churn=churn, rounds=3), Recorder()
    eng.run(rec)
    return [m for a in rec.aggregations for m in a[2] if m[0] == 1]


def test_messages_to_an_offline_node_are_lost_at_their_arrival():
    """Node 1 is down during [0.014, 0.05). At 0.01 node 3 sends 2 messages (to 0, 2), then the flush
    of nodes 0, 1, 2 sends 6 (0→1, 0→3, 1→0, 1→2, 2→1, 2→3), each arriving at 0.01 + U(0.001,
    0.005) + 0.002: the two to node 1 are delivered if they arrive before 0.014, else lost; node 1
    sends nothing while down and everything later to it is lost."""
    outcomes = set()
    for seed in (0, 3, 20):
        rng = np.random.default_rng(seed)
        rng.uniform(0.001, 0.005, 2)  # node 3's two delays
        arrive = 0.01 + (rng.uniform(0.001, 0.005, 6) + 2 / 1000.0)
        want = sorted((arrive[e], src) for e, src in ((0, 0), (4, 2)) if arrive[e] < 0.014)
        got = [(d, sl, src, at) for d, sl, src, at, _ in _offline_run(seed)]
        assert got == [(1, _slot(1, src), src, 0.01) for _, src in want]
        outcomes.add(len(want))
    assert outcomes == {0, 1, 2}  # the seeds cover: both lost, one delivered, both delivered


def test_inflight_pop_and_handles():
    q = InFlight()
    mk = lambda d: Deliveries(np.array(d), np.zeros(len(d), dtype=np.int64), np.array(d) + 10, np.zeros(len(d)),
                              np.array(d))
    q.push(np.array([0.3, 0.1, 0.2]), mk([0, 1, 2]))
    q.push(np.array([0.1, 0.5]), mk([3, 4]))
    assert q.pop(0.2).dst.tolist() == [1, 3, 2]  # by arrival, ties in send order
    assert len(q.pop(0.3, strict=True)) == 0 and len(q) == 2
    assert q.pop(0.3, strict=True, sent_before=1.0).dst.tolist() == [0]  # at t itself only if sent before
    assert q.first(np.array([False, False, False, False, True])) == 0.5
    h = Handles()
    a = h.alloc(3)
    h.hold(a, np.array([a[0], a[0], a[2]]))  # a[1] is carried by no message: free again
    assert h.in_use == 2 and h.alloc(1).tolist() == [a[1]]
    h.release(np.array([a[0], -1]))
    assert h.in_use == 3 and h.refs[a[0]] == 1


def test_a_slot_keeps_its_latest_snapshot_alive_and_nothing_else_leaks():
    """A snapshot handle lives while a message in flight carries it or it is a slot's latest message;
    at the end, the live handles are exactly those, each counted once per holder."""
    eng, rec = _engine(np.random.default_rng(5), drop=0.2, factor=(1, 3, 1, 1), rounds=6), Recorder()
    eng.run(rec)
    in_flight = eng._flight.pop(np.inf).handle
    holders = np.concatenate([eng._slot_handle.ravel(), in_flight])
    holders = holders[holders >= 0]
    refs = np.bincount(holders, minlength=eng._handles.refs.size)
    assert np.array_equal(eng._handles.refs, refs)
    assert eng._handles.in_use == np.count_nonzero(refs)
    dst, slot = np.nonzero(eng._slot_handle >= 0)  # a live handle is never reallocated: it names the slot's sender
    assert dst.size > 0 and all(rec.handles[int(eng._slot_handle[d, s])] == IDX[d, s] for d, s in zip(dst, slot))


def test_latest_per_slot_keeps_each_slots_last_message():
    from p2probust.engine.inflight import latest_per_slot

    rng = np.random.default_rng(0)
    for m in (0, 1, 7, 500):
        dst, slot = rng.integers(0, 30, m), rng.integers(0, 4, m)
        last = {}
        for pos, key in enumerate(zip(dst.tolist(), slot.tolist())):
            last[key] = pos  # a loop over the arrival order: the last one wins
        assert latest_per_slot(dst, slot, 4).tolist() == sorted(last.values())


def test_inflight_matches_a_sorted_list_through_many_pushes_and_pops():
    """Random pushes (ties included, more chunks than are kept apart) and pops (strict or not)
    against a plain list sorted by (arrival, send order)."""
    rng = np.random.default_rng(1)
    q, ref, sent = InFlight(), [], 0
    for step in range(200):
        m = int(rng.integers(0, 40))
        arrive = step * 0.01 + rng.integers(0, 6, m) * 0.005  # many equal times
        msgs = Deliveries(*(np.arange(sent, sent + m) for _ in range(3)), np.full(m, step * 0.01), np.arange(sent, sent + m))
        q.push(arrive, msgs, hold=step % 4 == 1)  # held: one chunk with the next push (or the next read)
        ref += [(a, sent + j, step * 0.01) for j, a in enumerate(arrive.tolist())]
        sent += m
        if step % 3 == 2:
            t = step * 0.01 + float(rng.integers(0, 3)) * 0.005
            strict, before = bool(rng.integers(0, 2)), step * 0.01 - 0.015
            due = sorted(x for x in ref if x[0] < t or (x[0] == t and (not strict or x[2] < before)))
            ref = [x for x in ref if x not in due]
            assert q.pop(t, strict=strict, sent_before=before if strict else -np.inf).dst.tolist() == [x[1] for x in due]
            assert len(q) == len(ref)
    arrive, rest = q.state()
    assert rest.dst.tolist() == [x[1] for x in sorted(ref)] and arrive.tolist() == [x[0] for x in sorted(ref)]

