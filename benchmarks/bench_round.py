"""Honest node-rounds per second of a full simulated round, against a per-node-object loop.

Setting (issue 2): random 10-regular graph, logistic regression on digits-sized inputs (the
``blobs`` task: 64 features, 10 classes, d = 650, 16,000 training samples so that 10,000 nodes
each hold some), coordinate-wise trimmed-mean gossip with the oracle tolerance,
10% Byzantine nodes sending sign-flipped models, batch size 32.

* **p2probust** — ``p2probust.simulate`` itself (stacked ``[n, d]`` parameters, batched gradients,
  sorting-network order statistics); the time per round is read from the ``wall_s`` column of ``timing.csv`` between
  round 1 and the last round before the final evaluation.
* **loop reference** — what per-node-object simulators do: one ``nn.Module`` and optimizer per
  node, a Python loop over nodes for the local step, and a loop over nodes that stacks each
  neighbourhood and trims it with ``torch.sort``. Measured in the same run, so the ratio is
  meaningful on any machine.

Both report the median time per round (robust to other load on a shared machine).

Each size runs in its own subprocess, which also reports its peak resident memory.

    python benchmarks/bench_round.py                 # n = 100, 1000, 10000
    python benchmarks/bench_round.py --sizes 1000 --rounds 20
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

DEGREE = 10


def bench_p2probust(n: int, rounds: int) -> float:
    import networkx as nx

    import p2probust as pr

    graph = nx.random_regular_graph(DEGREE, n, seed=0)
    cfg = pr.RunConfig().replace(**{
        "topology.nodes": n, "data.task": "blobs", "byzantine.count": n // 10, "train.rounds": rounds + 2, "eval_every": 10**9, "train.lr": 0.1,
    })
    res = pr.simulate(cfg, graph=graph)
    wall = [r["wall_s"] for r in res.timing]
    honest = int((~res.is_byzantine).sum())
    per_round = statistics.median(b - a for a, b in zip(wall[1:-2], wall[2:-1]))  # rounds 2 .. R-1: no evaluation inside
    return honest / per_round


def bench_loop(n: int, rounds: int) -> float:
    import networkx as nx
    import torch
    import torch.nn.functional as F
    from torch import nn

    from p2probust import registry

    ds = registry.tasks.create("blobs").dataset
    graph = nx.random_regular_graph(DEGREE, n, seed=0)
    byz = set(range(0, n, 10))
    honest = [i for i in range(n) if i not in byz]
    nbrs = {i: sorted(graph.neighbors(i)) for i in range(n)}
    models = [nn.Linear(64, 10) for _ in range(n)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    parts = torch.randint(0, ds.x_train.shape[0], (n, 100))

    def flat(m):
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def one_round():
        for i in honest:  # local step, node by node
            idx = parts[i, torch.randint(0, 100, (32,))]
            opts[i].zero_grad()
            F.cross_entropy(models[i](ds.x_train[idx]), ds.y_train[idx]).backward()
            opts[i].step()
        flats = [flat(m) for m in models]
        mean_h = torch.stack([flats[i] for i in honest]).mean(0)
        new = {}
        for i in honest:  # trimmed-mean gossip, node by node
            vecs = [flats[i]] + [(-4 * mean_h if j in byz else flats[j]) for j in nbrs[i]]
            f = sum(j in byz for j in nbrs[i])
            s = torch.sort(torch.stack(vecs), 0).values
            new[i] = s[f : len(vecs) - f].mean(0)
        with torch.no_grad():
            for i, v in new.items():
                torch.nn.utils.vector_to_parameters(v, models[i].parameters())

    one_round()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        one_round()
        times.append(time.perf_counter() - start)
    return len(honest) / statistics.median(times)


def child(args) -> None:
    fn = bench_p2probust if args.child == "p2probust" else bench_loop
    rate = fn(args.n, args.rounds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rate": rate, "peak_mb": peak_mb}))


def run_child(kind: str, n: int, rounds: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--n", str(n), "--rounds", str(rounds)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds of p2probust")
    parser.add_argument("--ref-rounds", type=int, default=3, help="timed rounds of the loop reference")
    parser.add_argument("--ref-max-n", type=int, default=1000, help="largest n for the (slow) loop reference")
    parser.add_argument("--child", choices=["p2probust", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import torch

    print(f"random {DEGREE}-regular graph, logistic regression (d = 650), trimmed-mean gossip, 10% Byzantine; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| n | p2probust node-rounds/s | loop node-rounds/s | speed-up | p2probust peak memory |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        fast = run_child("p2probust", n, args.rounds)
        if n <= args.ref_max_n:
            ref = run_child("loop", n, args.ref_rounds)
            ref_s, ratio = f"{ref['rate']:,.0f}", f"{fast['rate'] / ref['rate']:.0f}×"
        else:
            ref_s, ratio = "—", "—"
        print(f"| {n:,} | {fast['rate']:,.0f} | {ref_s} | {ratio} | {fast['peak_mb']:,.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
