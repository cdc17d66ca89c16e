"""Checkpoint and resume of asynchronous runs (issue 15): a resumed run writes a metrics.csv
identical byte for byte to the uninterrupted run's (filecmp), and ends with the same models."""

from __future__ import annotations

import filecmp
import json

import networkx as nx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import p2probust as pr
from p2probust.checkpoint import FILE
from p2probust.cli import main
from p2probust.engine import ComputeModel, LinkModel
from p2probust.engine import specs as sp
from p2probust.engine.events import AsyncEngine, AsyncSetup, Deliveries
from p2probust.engine.events_state import NotBetweenInstants, engine_state
from p2probust.network_state import InboxBuffer
from test_checkpoint import _interrupted_copy, interrupt_and_resume, kill_after_checkpoint_and_resume  # shared with sync

#: momentum, an attack with memory (mimic's running mean and direction), a rule with state
#: (bucketing's generator), epoch sampling (the sampler's permutations), latency and drops
MEMORY = {"engine.mode": "async", "train.momentum": 0.9, "attack.name": "mimic", "rule.name": "bucketing+trimmed-mean",
          "train.sampling": "epoch", "train.rounds": 11, "eval_every": 3,
          "engine.latency": "exponential:mean=0.01", "engine.drop": 0.1}
#: ties: compute completions rounded to a tick, so many events share an instant and the order of
#: simpy's insertion ids decides the order of the clock draws (resuming with other ids fails)
TICK = {"engine.clock": "periodic:period=0.02,jitter=0.3", "engine.compute_time": "exponential:mean=0.005",
        "engine.tick": 0.01}


@pytest.mark.parametrize("extra", [
    TICK,
    {"engine.clock": "poisson:rate=100", "engine.tick": 0.002},  # node events in the engine's own queue
    {"engine.clock": "poisson:rate=50", "engine.churn": "up=0.2,down=0.05,crash=0.1,crash_time=0.1"},
    {"engine.clock": "wait:k=2,timeout=0.05", "engine.timing_attack": "flood:copies=3"},
    {"engine.clock": "wait:k=2,timeout=0.05", "engine.dynamics": "epidemic:s=3", "engine.timing_attack": "replay:lag=0.05",
     "privacy.clip": 1.0, "privacy.noise_multiplier": 1.0, "train.sampling": "uniform"},
], ids=["periodic-tick", "poisson-deferred", "poisson-churn", "wait-flood", "wait-epidemic-replay-dp"])
def test_resumed_async_run_writes_the_uninterrupted_metrics(tmp_path, extra):
    reference, resumed, b = interrupt_and_resume(pr.RunConfig().replace(**{**MEMORY, **extra}), tmp_path)
    assert json.loads(torch.load(b / FILE, weights_only=True)["meta"])["round"] == 8
    assert resumed.summary["simpy_events"] == reference.summary["simpy_events"]


def test_async_checkpoint_is_safe_and_written_between_instants(tmp_path):
    pr.simulate(pr.RunConfig().replace(**MEMORY, **TICK, checkpoint_every=5), out=tmp_path / "a")
    ckpt = torch.load(tmp_path / "a" / FILE, weights_only=True)
    meta, tensors = json.loads(ckpt["meta"]), ckpt["tensors"]
    assert meta["round"] == 10 and len(meta["rows"]) == 11
    now = meta["now"]
    assert now == meta["rows"][-1]["time"]  # saved in the instant of the last row, once it is over
    assert bool((tensors["engine.queue_time"] > now).all())  # every pending event lies later
    queue = tensors["engine.queue"]
    assert len(set(queue[:, 3].tolist())) == queue.shape[0] and int(queue[:, 3].max()) < meta["async"]["eid"]
    assert tensors["inbox.pool"].shape[1] == tensors["params"].shape[1] and bool(tensors["momentum"].any())
    assert {"attack._mu", "gen.batches", "engine.flight_arrive", "engine.handle_refs"} <= set(tensors)


def test_cli_async_checkpoint_and_resume(tmp_path):
    flags = ["--mode", "async", "--clock", "poisson:rate=50", "--latency", "0.01", "--drop", "0.1",
             "--momentum", "0.9", "--attack", "mimic", "--rounds", "12", "--eval-every", "4", "-q"]
    res = CliRunner().invoke(main, ["run", *flags, "--checkpoint-every", "5", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    b = _interrupted_copy(tmp_path / "a", tmp_path / "b")
    res = CliRunner().invoke(main, ["run", "--resume", str(b), "-q"])
    assert res.exit_code == 0, res.output
    ref = CliRunner().invoke(main, ["run", *flags, "--out", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    assert filecmp.cmp(tmp_path / "ref" / "metrics.csv", b / "metrics.csv", shallow=False)
    assert json.loads((b / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_async_run_killed_by_sigkill_after_a_checkpoint_resumes_identically(tmp_path):
    kill_after_checkpoint_and_resume(
        ["--mode", "async", "--clock", "periodic:period=0.02,jitter=0.3", "--compute-time", "exponential:mean=0.005",
         "--tick", "0.01", "--latency", "exponential:mean=0.01", "--drop", "0.1", "--momentum", "0.9",
         "--attack", "mimic", "--rounds", "80", "--eval-every", "20"], tmp_path)


# --- the engine alone (no kernels): state saved between instants, a new engine continues -------


class Recording:
    """Stands in for the kernels: records every call with its arrays."""

    def __init__(self):
        self.log = []

    def compute(self, nodes, handles, round):
        self.log.append(("c", nodes.tolist(), handles.tolist(), round))

    def aggregate(self, nodes, dl, now):
        self.log.append(("a", now, nodes.tolist(), dl.dst.tolist(), dl.slot.tolist(), dl.src.tolist(),
                         dl.sent_at.tolist(), dl.handle.tolist()))

    def progress(self, r, now, messages, online):
        self.log.append(("p", r, now, messages))
        return False


def _setup(clock, seed=3):
    G = nx.random_regular_graph(4, 12, seed=1)
    n, k = 12, 4
    idx, mask = np.zeros((n, k), dtype=np.int64), np.ones((n, k), dtype=bool)
    for i in range(n):
        idx[i] = sorted(G.neighbors(i))
    byz = np.zeros(n, dtype=bool)
    byz[[2, 7]] = True
    rng = np.random.default_rng(seed)
    comp = ComputeModel.build(sp.parse_dist("exponential:mean=0.004"), 1, sp.StragglerSpec(0.25, 3.0), n, rng)
    links = LinkModel(sp.parse_dist("uniform:low=0.001,high=0.02"), drop=0.1)
    return AsyncSetup(idx, mask, byz, ~byz, ~byz, comp, links, sp.parse_clock(clock), rng, tick=0.005)


@pytest.mark.parametrize("clock", ["periodic:period=0.01,jitter=0.5", "poisson:rate=80", "wait:k=3,timeout=0.03"])
def test_engine_state_round_trip_continues_the_same_calls(clock):
    first = AsyncEngine(_setup(clock), 12)
    saved = {}

    def idle(r):
        if r == 5:
            saved["state"], saved["at"] = first.state(), len(kernel.log)

    kernel = Recording()
    first.on_idle = idle
    first.run(kernel)
    arrays, scalars = saved["state"]
    json.dumps(scalars)  # JSON-able
    setup = _setup(clock)
    setup.rng.random(7)  # the random stream, too, comes from the save
    second, again = AsyncEngine(setup, 12), Recording()
    second.restore(arrays, scalars)  # = restore_engine(second, arrays, scalars)
    second.run(again)
    assert again.log == kernel.log[saved["at"]:] and len(again.log) > 20
    assert (second.env.now, second.events, second.round) == (first.env.now, first.events, first.round)


def test_engine_state_is_refused_within_an_instant():
    eng = AsyncEngine(_setup("periodic:period=0.01"), 3)
    seen = []

    class Saver(Recording):
        def progress(self, r, now, messages, online):
            with pytest.raises(NotBetweenInstants, match="within the instant"):
                engine_state(eng)  # inside an aggregation: the instant is not over
            seen.append(r)
            return False

    eng.run(Saver())
    assert seen == [1, 2, 3]


def test_inbox_buffer_state_round_trip():
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([[1, 2], [0, 2], [0, 1]])
    buf = InboxBuffer(idx, 4, torch.float32)
    buf.store(np.array([0, 1, 5]), torch.randn(3, 4, generator=gen), torch.arange(3))  # handle 5 grows the pool
    buf.deliver(Deliveries(np.array([0, 1, 2, 0]), np.array([0, 1, 0, 0]), np.array([1, 2, 0, 1]),
                           np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, -1, 5, 1])))
    fresh = InboxBuffer(idx, 4, torch.float32)
    fresh.restore({k: v.clone() for k, v in buf.state().items()})
    for name in ("has", "crafted", "sender", "pool"):
        assert torch.equal(getattr(fresh, name), getattr(buf, name)), name
    assert np.array_equal(fresh.sent_at, buf.sent_at) and np.array_equal(fresh.handle, buf.handle)
    assert fresh.cap == buf.cap and fresh.handle[0, 0] == 1 and fresh.crafted[1, 1]
    nodes, none = np.array([0, 2]), torch.zeros(0, dtype=torch.long)
    assert torch.equal(fresh.slot_rows(nodes, none, none, None), buf.slot_rows(nodes, none, none, None))
