"""Benchmark of the event-driven network: events per second and node-rounds per second of
asynchronous vs synchronous gossip on a 10-regular graph.

    python benchmarks/bench_engine.py [--nodes 1000] [--rounds 12] [--split]

Prints a markdown table. Target: async reaches at least a third of sync's node-rounds per second.
Node-rounds per second count the rounds themselves (``wall_s`` of ``timing.csv`` between logged rounds), not the
set-up or the final evaluation, which would flatter the slower mode. ``--split`` runs each
asynchronous variant once more under cProfile and prints where a round's time goes (cumulative
times of the kernels' entry points; the engine is the rest of the event loop; cProfile's overhead
inflates Python-heavy parts, the engine most).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import networkx as nx
import numpy as np

import p2probust as pr
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


#: (label, file, function): cumulative times read from the profile
SPLIT = [
    ("local steps", "p2probust/step.py", "local_step"),
    ("snapshots of sent models", "network_state.py", "store"),
    ("deliveries into the inbox buffer", "network_state.py", "deliver"),
    ("attack (crafted messages)", "p2probust/state.py", "craft"),
    ("rule (aggregate and mix)", "p2probust/step.py", "mix_rows"),
    ("metrics and logging", "async_kernel.py", "progress"),
]
_KERNEL_CALLS = [("async_kernel.py", name) for name in ("compute", "aggregate", "progress")]


def _cumulative(stats: dict, file: str, name: str) -> float:
    return sum(v[3] for (path, _, fn), v in stats.items() if fn == name and path.endswith(file))


def split(cfg) -> tuple[int, list[tuple[str, float]]]:
    """Run ``cfg`` under cProfile; return its rounds and (component, seconds) of the event loop."""
    prof = cProfile.Profile()
    prof.enable()
    res = pr.simulate(cfg)
    prof.disable()
    stats = pstats.Stats(prof).stats
    loop = _cumulative(stats, "engine/events.py", "run")
    kernels = sum(_cumulative(stats, f, n) for f, n in _KERNEL_CALLS)
    parts = [(label, _cumulative(stats, f, n)) for label, f, n in SPLIT]
    parts.append(("engine (node events, sends, delivery queue)", loop - kernels))
    parts.append(("kernel glue (masks, tolerances, buffer reads)", kernels - sum(t for _, t in parts[:-1])))
    return max(res.summary["rounds_done"], 1), parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=12,
                    help="rounds per run; 2 .. R-1 are timed (an asynchronous run's first rounds also fill the inboxes)")
    ap.add_argument("--split", action="store_true", help="profile the async runs and print where a round's time goes")
    args = ap.parse_args()
    n, R = args.nodes, args.rounds
    base = pr.RunConfig().replace(**{
        "topology.name": "random-regular", "topology.nodes": n, "topology.degree": 10, "byzantine.count": n // 20,
        "train.rounds": R, "eval_every": 10**6, "attack.name": "gaussian",
    })
    rows = []
    pr.simulate(base.replace(**{"train.rounds": 1, "engine.mode": "async"}))  # warm-up: imports, data, compiled kernel
    events, wall = engine_only(n, R, "lognormal:mean=0.005,sigma=0.5")
    rows.append(("engine only, async, lognormal latency", f"{events / R:,.0f} events/round",
                 f"{events / wall:,.0f} events/s", "—"))
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
    splits = []
    for label, extra in variants:
        cfg = base.replace(**{"engine.mode": "async", **extra})
        res = pr.simulate(cfg)
        rate = honest / per_round(res)
        rows.append((label, f"{res.summary['simpy_events'] / max(res.summary['rounds_done'], 1):,.0f} events/round",
                     f"{rate:,.0f} node-rounds/s", f"{rate / sync_rate:.2f}"))
        if args.split:
            splits.append((label, *split(cfg)))
    print(f"n = {n}, 10-regular, {n // 20} Byzantine (gaussian), trimmed mean, digits, {R} rounds\n")
    print("| run | per round | throughput | async / sync |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for label, rounds, parts in splits:
        total = sum(t for _, t in parts)
        print(f"\n{label}: {1000 * total / rounds:.0f} ms per round under cProfile\n")
        print("| part | ms per round | share |")
        print("|---|---|---|")
        for name, t in parts:
            print(f"| {name} | {1000 * t / rounds:.1f} | {100 * t / total:.0f}% |")


if __name__ == "__main__":
    main()
