"""The compiled inbox delivery (p2probust.jit.inbox) and snapshot bookkeeping (p2probust.jit.engine)
against the numpy passes."""

from __future__ import annotations

import numpy as np
import pytest

import p2probust
from p2probust.engine.inflight import Deliveries


@pytest.mark.skipif(not p2probust.jit.available(), reason="numba cannot be imported here")
def test_compiled_delivery_leaves_the_tables_of_the_numpy_pass(monkeypatch):
    """The compiled pass (message by message) and the numpy pass (the latest per slot, then one
    scatter per column) leave the same slot tables; it flags at least the nodes the numpy pass does."""
    import torch

    from p2probust.jit import inbox as jit_inbox
    from p2probust.network_state import InboxBuffer

    rng = np.random.default_rng(3)
    n, k = 30, 4
    idx = torch.as_tensor(rng.integers(0, n, (n, k)))
    bufs = [InboxBuffer(idx, 2, torch.float32) for _ in range(2)]
    for _ in range(6):
        m = int(rng.integers(0, 60))
        dl = Deliveries(rng.integers(0, n, m), rng.integers(0, k, m), rng.integers(0, 5, m), rng.random(m),
                        rng.integers(-1, 50, m))
        flags = []
        for compiled, buf in zip((True, False), bufs):
            monkeypatch.setattr(jit_inbox, "usable", lambda compiled=compiled: compiled)
            buf.deliver(dl)
            flags.append(set(buf.take_changed().tolist()))
        for name in ("has", "crafted", "sender"):
            assert torch.equal(getattr(bufs[0], name), getattr(bufs[1], name))
        assert np.array_equal(bufs[0].sent_at, bufs[1].sent_at) and np.array_equal(bufs[0].handle, bufs[1].handle)
        assert flags[0] >= flags[1]
    with pytest.raises(IndexError, match="outside the inbox table"):
        monkeypatch.setattr(jit_inbox, "usable", lambda: True)
        bufs[0].deliver(Deliveries(np.array([n]), np.array([0]), np.array([1]), np.array([0.0]), np.array([1])))


@pytest.mark.skipif(not p2probust.jit.available(), reason="numba cannot be imported here")
def test_compiled_bookkeeping_keeps_the_counts_of_the_numpy_pass():
    """Snapshots sent to several recipients, some copied (flood) to one slot, delivered in batches:
    the compiled pass leaves the slots' handles, reference counts and in-use flags of the numpy pass."""
    from p2probust.engine.inflight import Handles
    from p2probust.jit import engine as jit_engine

    rng = np.random.default_rng(7)
    n, k = 20, 3
    books = [(Handles(), np.full((n, k), -1, dtype=np.int64)) for _ in range(2)]
    in_flight = []
    for step in range(12):
        m = int(rng.integers(1, 8))  # snapshots of this step, each sent to a few slots, some twice
        for (h, _) in books:
            handles = h.alloc(m)
        msgs = [(int(rng.integers(0, n)), int(rng.integers(0, k)), int(hd)) for hd in handles
                for _ in range(int(rng.integers(0, 4)))]
        msgs += [(d, s, -1) for d, s in zip(rng.integers(0, n, 3).tolist(), rng.integers(0, k, 3).tolist())]  # crafted
        carried = np.array([hd for _, _, hd in msgs], dtype=np.int64)
        for (h, _) in books:
            h.hold(handles, carried)
        in_flight += msgs
        rng.shuffle(in_flight)
        cut = int(rng.integers(0, len(in_flight) + 1))
        arrived, in_flight = in_flight[:cut], in_flight[cut:]
        dl = Deliveries(*(np.array([x[c] for x in arrived], dtype=np.int64) for c in (0, 1)), np.zeros(cut, dtype=np.int64),
                        np.zeros(cut), np.array([x[2] for x in arrived], dtype=np.int64))
        for compiled, (h, slot_handle) in zip((jit_engine, None), books):
            h.keep_latest(dl, slot_handle, compiled)
        (a, sa), (b, sb) = books
        assert np.array_equal(sa, sb) and np.array_equal(a.refs, b.refs) and np.array_equal(a._live, b._live)
    holders = np.concatenate([books[0][1].ravel(), [hd for _, _, hd in in_flight]]).astype(np.int64)
    assert np.array_equal(books[0][0].refs, np.bincount(holders[holders >= 0], minlength=books[0][0].refs.size))


@pytest.mark.skipif(not p2probust.jit.available(), reason="numba cannot be imported here")
def test_snapshots_stored_in_one_pass_equal_the_gather_and_scatter(monkeypatch):
    import torch

    from p2probust.jit import inbox as jit_inbox
    from p2probust.network_state import InboxBuffer

    g = torch.Generator().manual_seed(0)
    params = torch.randn(12, 5, generator=g)
    params[3, 1] = float("nan")
    pools = []
    for compiled in (True, False):
        monkeypatch.setattr(jit_inbox, "usable", lambda compiled=compiled: compiled)
        buf = InboxBuffer(torch.zeros(12, 2, dtype=torch.long), 5, torch.float32)
        buf.store(np.array([0, 7, 30]), params, torch.tensor([3, 11, 0]))  # handle 30 grows the pool
        pools.append(buf.pool)
    assert torch.equal(pools[0].view(torch.int32), pools[1].view(torch.int32))
    assert torch.equal(pools[0][7], params[11]) and pools[0][1:7].abs().sum() == 0
