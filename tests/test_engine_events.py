"""The engine alone (no torch): event counts, determinism, churn schedules, torch-free imports."""

from __future__ import annotations

import subprocess
import sys

import networkx as nx
import numpy as np

from p2probust.engine import ChurnSchedule, ChurnSpec, ComputeModel, LinkModel, RoundTiming, SyncEngine, SyncNetwork
from p2probust.engine import specs as sp
from p2probust.engine.events import AsyncEngine, AsyncSetup, reverse_slots


class CountingKernel:
    """Stands in for the torch kernels: records what the engine hands over."""

    def __init__(self):
        self.log = []

    def compute(self, nodes, handles, round):
        self.log.append(("c", tuple(nodes.tolist())))

    def aggregate(self, nodes, deliveries, now):
        self.log.append(("a", round(now, 12), tuple(nodes.tolist()), tuple(deliveries.src.tolist())))

    def progress(self, r, now, messages, online):
        return False


def _setup(G, latency="uniform:low=0.001,high=0.01", seed=0, **kw):
    n = G.number_of_nodes()
    A = nx.to_numpy_array(G, nodelist=range(n), dtype=bool)
    k = int(A.sum(1).max())
    idx = np.repeat(np.arange(n)[:, None], k, 1)
    mask = np.zeros((n, k), dtype=bool)
    for i in range(n):
        nb = np.flatnonzero(A[i])
        idx[i, : nb.size], mask[i, : nb.size] = nb, True
    rng = np.random.default_rng(seed)
    comp = ComputeModel.build(sp.Dist("const", 0.01), 1, sp.StragglerSpec(), n, rng)
    ones = np.ones(n, dtype=bool)
    return AsyncSetup(idx, mask, np.zeros(n, dtype=bool), ones, ones, comp, LinkModel(sp.parse_dist(latency)),
                      kw.pop("clock", sp.ClockSpec()), rng, **kw)


class SentCounter(CountingKernel):
    def __init__(self):
        super().__init__()
        self.sent = 0

    def progress(self, r, now, messages, online):
        self.sent += messages
        return False


def _async_events_and_messages_per_round(G, rounds=6):
    eng, kernel = AsyncEngine(_setup(G), rounds), SentCounter()
    eng.run(kernel)
    return eng.events / rounds, kernel.sent / rounds


def test_async_events_do_not_grow_with_edges_sync_is_constant():
    """Messages are not simpy events: an async round costs the nodes' clock events whatever the
    degree, while the messages sent are two per edge."""
    n = 40
    graphs = [nx.random_regular_graph(d, n, seed=1) for d in (2, 4, 8, 16)]
    edges = np.array([G.number_of_edges() for G in graphs])
    events, sent = np.array([_async_events_and_messages_per_round(G) for G in graphs]).T
    assert np.array_equal(sent, 2 * edges)
    assert np.all(events == events[0]) and events[0] < 1.25 * n  # a completion per node and round, two flushes, process starts
    for rounds in (5, 50):
        eng = SyncEngine(rounds, RoundTiming())
        eng.run(lambda r, now: None)
        assert eng.events <= rounds + 3  # O(1) per round, whatever the graph


def test_same_seed_same_event_sequence():
    G = nx.random_regular_graph(4, 30, seed=2)
    logs = []
    for seed in (5, 5, 6):
        kernel = CountingKernel()
        eng = AsyncEngine(_setup(G, "lognormal:mean=0.005,sigma=0.5", seed=seed, clock=sp.parse_clock("poisson:rate=80"),
                                 churn=ChurnSchedule(ChurnSpec(up=0.05, down=0.02), 30, np.random.default_rng(seed))), 4)
        eng.run(kernel)
        logs.append(kernel.log)
    assert logs[0] == logs[1] and logs[0] != logs[2]


def test_synchronous_round_waits_for_the_slowest_message():
    G = nx.cycle_graph(10)
    s = _setup(G, "uniform:low=0.0,high=0.1")
    src, dst = s.idx[s.mask], np.nonzero(s.mask)[0]
    net = SyncNetwork(s.compute, s.links, src, dst, np.zeros(10, dtype=bool), np.random.default_rng(0))
    plans = []
    SyncEngine(20, RoundTiming(), network=net).run(on_plan=lambda p: plans.append(p))
    durations = np.array([p.end - p.start for p in plans])
    assert np.all(durations > 0.01) and np.all(durations <= 0.11)
    assert durations.std() > 0  # random latency → random round length (max of 20 draws)
    limited = []
    SyncEngine(10_000, RoundTiming(), network=net, duration=0.5).run(on_plan=lambda p: limited.append(p))
    assert limited[-1].last and limited[-1].end <= 0.5 and len(limited) < 10_000


def test_churn_schedule_statistics_and_scripted_outage():
    sched = ChurnSchedule(ChurnSpec(up=9.0, down=1.0), 2000, np.random.default_rng(0))
    fractions = [sched.advance(t).mean() for t in np.arange(50.0, 200.0, 5.0)]
    assert abs(np.mean(fractions) - 0.9) < 0.02  # stationary availability up / (up + down)
    out = ChurnSchedule(ChurnSpec(outages=((3, 1.0, 2.0),)), 5, np.random.default_rng(0))
    assert out.advance(0.5)[3] and not out.advance(1.5)[3] and out.advance(2.0)[3]
    crash = ChurnSchedule(ChurnSpec(crash=0.5, crash_time=1.0), 100, np.random.default_rng(0))
    assert crash.advance(50.0).sum() == 50  # crash-stop nodes never return
    join = ChurnSchedule(ChurnSpec(join=0.2, join_time=1.0), 100, np.random.default_rng(0))
    assert join.advance(0.0).sum() == 80 and join.advance(100.0).sum() == 100


def test_reverse_slots():
    G = nx.random_regular_graph(3, 12, seed=0)
    s = _setup(G)
    rev = reverse_slots(s.idx, s.mask)
    for i, j in zip(*np.nonzero(s.mask)):
        assert s.idx[s.idx[i, j], rev[i, j]] == i


def test_engine_modules_import_no_torch():
    """DESIGN 2.1: each engine module, imported alone in a fresh interpreter, leaves torch unloaded."""
    import pkgutil

    import p2probust.engine as e

    for m in pkgutil.iter_modules(e.__path__):
        code = ("import sys, types, pathlib\n"
                f"root = pathlib.Path({str(__import__('pathlib').Path(e.__file__).parents[1])!r})\n"
                "pkg = types.ModuleType('p2probust'); pkg.__path__ = [str(root)]; sys.modules['p2probust'] = pkg\n"
                f"import p2probust.engine.{m.name}\nprint('torch' in sys.modules)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False", (m.name, out.stderr)
