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

Both report the median time per round (robust to other load on a shared machine). Both run with
torch's default thread count (printed; the loop's per-node calls are too small to use a second
thread) and ``OMP_WAIT_POLICY=PASSIVE`` (p2probust is imported before torch on both sides: with
spinning OpenMP workers the loop's many tiny calls crawl on a busy machine; ``--loop-wait default``
imports torch first on the loop's side instead, torch's own policy, which serves the loop best on a
quiet machine; ``--loop-wait one-thread`` runs the loop on one torch thread, with no worker to
wake: the README gives all three), in their own subprocess, which also reports its peak resident memory (``ru_maxrss``).

The split of a p2probust round (local step, attack, gather + rule, metrics, record, other) comes
from the engine's own phase timers (:mod:`p2probust.profiling`), averaged over the timed run;
``evaluation`` is what an evaluated round adds. Above n = 20,000 the run is issue 15's large
setting (the configured random 10-regular graph, ``blobs`` with 250,000 samples, 1,000 Byzantine
nodes, trimmed mean; no loop reference) and the split table also gives its set-up time, from
process start (imports included) to the first round.

    python benchmarks/bench_round.py                 # n = 100, 1000, 10000
    python benchmarks/bench_round.py --sizes 1000 --rounds 20 --repeats 2
    python benchmarks/bench_round.py --sizes 100000 --rounds 5
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time

T0 = time.perf_counter()  # process start: the large setting counts imports in its set-up time

DEGREE = 10
LARGE = 20_000  #: above this n: the issue-15 large setting (set-up time, no loop reference)
ROUND_PHASES = ("local step", "attack", "gather + rule")


def _config(n: int, rounds: int):
    import p2probust as pr

    cfg = pr.RunConfig().replace(**{
        "topology.nodes": n, "data.task": "blobs", "byzantine.count": n // 10 if n <= LARGE else 1000,
        "train.rounds": rounds, "eval_every": 10**9, "train.lr": 0.1,
    })
    if n <= LARGE:
        return cfg
    # the issue-15 setting: the configured random 10-regular graph (no graph object held by the
    # caller), blobs with 250,000 samples, 1,000 Byzantine nodes, trimmed mean
    return cfg.replace(**{"topology.name": "random-regular", "topology.degree": DEGREE,
                          "data.params": {"num_samples": 250_000}, "rule.name": "trimmed-mean"})


def bench_p2probust(n: int, rounds: int) -> dict:
    """Honest node-rounds/s (median over the plain rounds) and the per-phase split (ms per round)."""
    import networkx as nx

    import p2probust as pr
    from p2probust.profiling import phase_times

    graph = nx.random_regular_graph(DEGREE, n, seed=0)
    pr.simulate(_config(n, 2), graph=graph)  # loads (or compiles) the kernels: not part of the timing
    with phase_times() as split:
        res = pr.simulate(_config(n, rounds + 2), graph=graph)
    return {"rate": _rate(res), "round_s": _round_s(res), **_split(split, rounds + 2, _round_s(res))}


def _round_s(res) -> float:
    wall = [r["wall_s"] for r in res.timing]
    return statistics.median(b - a for a, b in zip(wall[1:-2], wall[2:-1]))  # rounds 2 .. R-1: no evaluation inside


def _rate(res) -> float:
    return int((~res.is_byzantine).sum()) / _round_s(res)


def _split(split, rounds: int, round_s: float) -> dict:
    """ms per round of each phase (the engine's own timers, :mod:`p2probust.profiling`): the
    round's phases are summed over its ``rounds`` rounds and averaged; metrics and record also run
    at round 0, evaluation at round 0 and the last round, so those are per call. ``other``: the
    median round minus the phases (engine, bookkeeping; can absorb the mean-vs-median gap)."""
    per_round = {k: split.seconds[k] / (rounds if k in ROUND_PHASES else split.calls[k]) * 1e3 for k in split.seconds}
    evaluation = per_round.pop("evaluation", 0.0)
    per_round["other"] = max(0.0, round_s * 1e3 - sum(per_round.values()))
    return {"split_ms": per_round, "evaluation_ms": evaluation}


def bench_large(n: int, rounds: int, t0: float) -> dict:
    """Set-up time (from process start, imports included), round time, evaluation time, peak memory."""
    import p2probust as pr
    from p2probust.profiling import phase_times

    with phase_times() as split:
        res = pr.simulate(_config(n, rounds + 2))
    total = time.perf_counter() - t0
    return {"rate": _rate(res), "setup_s": total - res.timing[-1]["wall_s"], "round_s": _round_s(res),
            **_split(split, rounds + 2, _round_s(res))}


def bench_loop(n: int, rounds: int, wait: str = "passive") -> float:
    if wait in ("passive", "one-thread"):
        importlib.import_module("p2probust")  # first, as on the p2probust side: torch's OpenMP workers wait passively
    import networkx as nx
    import torch

    if wait == "one-thread":
        torch.set_num_threads(1)  # no worker to wake or spin: the loop's tiny calls on one thread
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
    if args.child == "loop":
        out = {"rate": bench_loop(args.n, args.rounds, args.loop_wait)}
    elif args.n > LARGE:
        out = bench_large(args.n, args.rounds, T0)
    else:
        out = bench_p2probust(args.n, args.rounds)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(kind: str, n: int, rounds: int, loop_wait: str = "passive") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--n", str(n), "--rounds", str(rounds), "--loop-wait", loop_wait],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds of p2probust")
    parser.add_argument("--ref-rounds", type=int, default=3, help="timed rounds of the loop reference")
    parser.add_argument("--ref-max-n", type=int, default=1000, help="largest n for the (slow) loop reference")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side per size, interleaved (one row each)")
    parser.add_argument("--loop-wait", choices=["passive", "default", "one-thread"], default="passive",
                        help="OpenMP wait policy of the loop reference: passive (as p2probust sets it; "
                             "best for the loop on a busy machine), default (torch imported first, "
                             "its own policy: spinning workers, best for the loop on a quiet machine) "
                             "or one-thread (torch.set_num_threads(1): no worker at all)")
    parser.add_argument("--child", choices=["p2probust", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import os

    import torch

    print(f"random {DEGREE}-regular graph, logistic regression (d = 650), trimmed-mean gossip, 10% Byzantine "
          f"(1,000 above n = {LARGE:,}); torch {torch.__version__}, {torch.get_num_threads()} threads; loop OpenMP wait policy: {args.loop_wait}; "
          f"load average {os.getloadavg()[0]:.2f} at start\n")
    print("| n | p2probust node-rounds/s | loop node-rounds/s | speed-up | p2probust peak memory |")
    print("|---:|---:|---:|---:|---:|")
    splits = []
    for n in args.sizes:
        for _ in range(args.repeats):
            fast = run_child("p2probust", n, args.rounds)
            splits.append((n, fast))
            if n <= args.ref_max_n and n <= LARGE:
                ref = run_child("loop", n, args.ref_rounds, args.loop_wait)
                ref_s, ratio = f"{ref['rate']:,.0f}", f"{fast['rate'] / ref['rate']:.0f}×"
            else:
                ref_s, ratio = "—", "—"
            print(f"| {n:,} | {fast['rate']:,.0f} | {ref_s} | {ratio} | {fast['peak_mb']:,.0f} MB |", flush=True)
    print_split(splits)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


def print_split(splits: list[tuple[int, dict]]) -> None:
    """Where a round's time goes, per run (ms per round; the engine's own phase timers)."""
    phases = ["local step", "attack", "gather + rule", "metrics", "record", "other"]
    print("\nsplit of a round (ms; metrics = consensus distance, honest mean and the row; "
          "evaluation = what an evaluated round adds):\n")
    print("| n | round | " + " | ".join(phases) + " | evaluation | set-up |")
    print("|---:|---:|" + "---:|" * (len(phases) + 2))
    for n, res in splits:
        ms = res["split_ms"]
        cells = [f"{ms.get(p, 0.0):,.2f}" for p in phases]
        setup = f"{res['setup_s']:.1f} s" if "setup_s" in res else "—"
        print(f"| {n:,} | {res['round_s'] * 1e3:,.2f} | " + " | ".join(cells) + f" | {res['evaluation_ms']:,.1f} | {setup} |")


if __name__ == "__main__":
    main()
