"""The compiled inbox delivery (p2probust.jit.inbox) against the numpy pass."""

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
