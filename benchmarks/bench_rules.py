"""Speed of every gossip rule and aggregator: node-rounds per second of one batched rule call.

Setting (issue 3): n = 1000 nodes, k = 11 neighbour slots (all real), d = 650 (the digits
logistic regression) and d = 9610 (a small MLP) in one run, float32, tolerance f = 2 at every node
(lowered to what a rule allows), two of each node's messages replaced by far outliers. Every
registered gossip rule and every registered aggregator (as aggregate-and-mix) plus a few chains is
timed: after one warm-up call, the fastest of ``--repeats`` calls of ``rule.batched`` (as in
``timeit``); node-rounds per second = n / seconds. The plain mean is the reference: the ratio
column is (mean's time) / (rule's time) at the same d, so it holds on a busy machine.
Rows ``trimmed-mean [jit]`` and ``median [jit]`` time the compiled kernel the simulator uses for
these two rules (:mod:`p2probust.jit.rank_mean`) on the same inboxes, read in place.

    python benchmarks/bench_rules.py                         # markdown table on stdout
    python benchmarks/bench_rules.py --n 100 --d 650 --rules mean,trimmed-mean,krum
"""

from __future__ import annotations

import argparse
import time

import torch

from p2probust import jit, registry
from p2probust.gossip import make_rule
from p2probust.jit import rank_mean as jit_rank_mean

JIT_ROWS = {"trimmed-mean [jit]": "trimmed-mean", "median [jit]": "median"}

CHAINS = ("nnm+trimmed-mean", "nnm+median", "arc+trimmed-mean", "bucketing+median")


def all_rules() -> list[str]:
    names = ["mean"] + [a for a in registry.aggregators.names() if a != "mean"] + list(CHAINS)
    return names + [r for r in registry.rules.names() if r not in names]


def inputs(n: int, k: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(n, d, generator=g)
    msgs = own.unsqueeze(1) + 0.1 * torch.randn(n, k, d, generator=g)
    msgs[:, -2:] = 100.0 * torch.randn(n, 2, d, generator=g)  # two far outliers per node
    mask = torch.ones(n, k, dtype=torch.bool)
    weights = torch.full((n, k), 1.0 / (k + 1))
    return own, msgs, mask, weights


def tolerance(rule, degree: torch.Tensor, want: int) -> torch.Tensor:
    agg = getattr(rule, "aggregator", None)
    for f in range(want, -1, -1):
        ff = torch.full_like(degree, f)
        if agg is not None and not bool((agg.max_tolerance(degree + 1) >= f).all()):
            continue
        try:
            rule.check_tolerance(degree, ff)
        except ValueError:
            continue
        return ff
    return torch.zeros_like(degree)


class CompiledRankMean:
    """``batched`` of aggregate-and-mix with a rank-mean aggregator, through the compiled kernel
    (own models as ``params`` rows, the inbox slots as extra rows), as the simulator calls it."""

    def __init__(self, rule):
        self.rule = rule

    def batched(self, own, msgs, mask, weights, f):
        return jit_rank_mean.mix_inboxes(self.rule, own, torch.arange(own.shape[0]), msgs, mask, f)


def time_rule(rule, own, msgs, mask, weights, f, repeats: int) -> float:
    rule.batched(own, msgs, mask, weights, f)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = rule.batched(own, msgs, mask, weights, f)
        best = min(best, time.perf_counter() - t0)
        assert torch.isfinite(out).all(), f"{rule!r} produced a non-finite output"
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--k", type=int, default=11)
    ap.add_argument("--d", default="650,9610", help="comma-separated dimensions")
    ap.add_argument("--f", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rules", default=None, help="comma-separated rule names (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.rules.split(",") if args.rules else all_rules()
    if names[0] != "mean":
        names = ["mean"] + [x for x in names if x != "mean"]
    if jit.available():
        for row, base in JIT_ROWS.items():
            if base in names and row not in names:
                names.insert(names.index(base) + 1, row)
    dims = [int(v) for v in args.d.split(",")]
    results: dict[str, dict[int, float]] = {name: {} for name in names}
    for d in dims:
        own, msgs, mask, weights = inputs(args.n, args.k, d)
        degree = mask.sum(1)
        for name in names:
            rule = make_rule(JIT_ROWS.get(name, name))
            f = tolerance(rule, degree, args.f)
            if name in JIT_ROWS:
                rule = CompiledRankMean(rule)
            results[name][d] = time_rule(rule, own, msgs, mask, weights, f, args.repeats)
            del rule
    print(f"n = {args.n}, k = {args.k}, f = {args.f} (or the rule's maximum), float32, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}\n")
    head = "| rule | " + " | ".join(f"d={d} node-rounds/s | d={d} × mean" for d in dims) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(dims)))
    for name in names:
        cells = []
        for d in dims:
            t = results[name][d]
            cells += [f"{args.n / t:,.0f}", f"{results['mean'][d] / t:.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
