"""Benchmark of the event-driven network: simpy events per second, the batched-kernel share of run
time, and node-rounds per second of asynchronous vs synchronous gossip on a 10-regular graph.

    python benchmarks/bench_engine.py [--nodes 1000] [--rounds 5]

Prints a markdown table. Target: async reaches at least a third of sync's node-rounds per second.
Node-rounds per second count the rounds themselves (``wall_s`` of ``timing.csv`` between logged rounds), not the
set-up or the final evaluation, which would flatter the slower mode.
"""

from __future__ import annotations

import argparse
import time

import networkx as nx
import numpy as np

import p2probust as pr
from p2probust import async_kernel
from p2probust.engine import ComputeModel, LinkModel
from p2probust.engine import specs as sp
from p2probust.engine.events import AsyncEngine, AsyncSetup


class NullKernel:
    def compute(self, nodes, handles, round):
        pass

    def aggregate(self, nodes, deliveries, now):
        pass

    def progress(self, r, now, messages, online):
        return False


def engine_only(n: int, rounds: int, latency: str) -> tuple[int, float]:
    G = nx.random_regular_graph(10, n, seed=0)
    idx = np.array([sorted(G[i]) for i in range(n)])
    rng = np.random.default_rng(0)
    ones = np.ones(n, dtype=bool)
    setup = AsyncSetup(idx, np.ones_like(idx, dtype=bool), ~ones, ones, ones,
                       ComputeModel.build(sp.Dist("const", 0.01), 1, sp.StragglerSpec(), n, rng),
                       LinkModel(sp.parse_dist(latency)), sp.ClockSpec(), rng)
    eng = AsyncEngine(setup, rounds)
    t = time.perf_counter()
    eng.run(NullKernel())
    return eng.events, time.perf_counter() - t


def per_round(res) -> float:
    """Wall seconds per round over rounds 2 .. R-1 (row 0 is the initial evaluation; set-up, the first
    round's one-off work and the final evaluation are excluded), from ``res.timing`` (timing.csv)."""
    wall = [row["wall_s"] for row in res.timing]
    if len(wall) < 4:
        raise SystemExit("use --rounds 3 or more")
    return (wall[-2] - wall[1]) / (len(wall) - 3)


def timed_kernel_share(cfg):
    spent = [0.0]
    orig = {name: getattr(async_kernel.AsyncKernel, name) for name in ("compute", "aggregate")}

    def wrap(fn):
        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return inner

    for name, fn in orig.items():
        setattr(async_kernel.AsyncKernel, name, wrap(fn))
    try:
        t = time.perf_counter()
        res = pr.simulate(cfg)
        wall = time.perf_counter() - t
    finally:
        for name, fn in orig.items():
            setattr(async_kernel.AsyncKernel, name, fn)
    return res, wall, spent[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n, R = args.nodes, args.rounds
    base = pr.RunConfig().replace(**{
        "topology.name": "random-regular", "topology.nodes": n, "topology.degree": 10, "byzantine.count": n // 20,
        "train.rounds": R, "eval_every": 10**6, "attack.name": "gaussian",
    })
    rows = []
    pr.simulate(pr.RunConfig().replace(**{"train.rounds": 1}))  # warm-up: imports and data loading
    events, wall = engine_only(n, R, "lognormal:mean=0.005,sigma=0.5")
    rows.append(("engine only, async, lognormal latency", f"{events / R:,.0f} events/round",
                 f"{events / wall:,.0f} simpy events/s", "—"))
    sync = pr.simulate(base)
    honest = sync.summary["honest"]
    sync_rate = honest / per_round(sync)
    rows.append(("sync, constant latency", f"{sync.summary['simpy_events'] / R:.1f} events/round",
                 f"{sync_rate:,.0f} node-rounds/s", "1.00"))
    variants = [
        ("async, periodic clock, lognormal latency", {"engine.latency": "lognormal:mean=0.005,sigma=0.5"}),
        ("async, poisson clock (tick 2 ms), lognormal latency",
         {"engine.latency": "lognormal:mean=0.005,sigma=0.5", "engine.clock": "poisson:rate=100", "engine.tick": 0.002}),
    ]
    for label, extra in variants:
        res, wall, kernel_s = timed_kernel_share(base.replace(**{"engine.mode": "async", **extra}))
        rate = honest / per_round(res)
        rows.append((label, f"{res.summary['simpy_events'] / max(res.summary['rounds_done'], 1):,.0f} events/round, "
                     f"kernels {100 * kernel_s / wall:.0f}% of run time",
                     f"{res.summary['simpy_events'] / wall:,.0f} simpy events/s; {rate:,.0f} node-rounds/s",
                     f"{rate / sync_rate:.2f}"))
    print(f"n = {n}, 10-regular, {n // 20} Byzantine (gaussian), trimmed mean, digits, {R} rounds\n")
    print("| run | per round | throughput | async / sync |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
