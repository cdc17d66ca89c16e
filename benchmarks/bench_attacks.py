"""Cost of each attack inside one round kernel: gather + craft + trimmed-mean gossip.

Setting (issue 4): n = 1000 nodes on a random 10-regular graph, 10% Byzantine (random placement,
seed 0), d = 650 parameters (the digits logistic regression), coordinate-wise trimmed-mean
aggregate-and-mix with the oracle tolerance. For every registered attack (default parameters) the
kernel

    inbox = params[idx]; inbox[Byzantine slots] = attack.craft(ctx); rule.batched(...)

is timed over ``--repeats`` rounds (the fastest is kept, as in ``timeit``) after one warm-up round (which, for the spectral attack, computes
and caches the Fiedler vector). The baseline "(no craft)" is the same kernel without the attack
step, re-measured next to every attack so that the cost ratio holds on a busy machine. Honest
node-rounds per second = honest nodes / seconds per round.

    python benchmarks/bench_attacks.py                # markdown table on stdout
    python benchmarks/bench_attacks.py --n 200 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import networkx as nx
import torch

from p2probust import registry
from p2probust.aggregators import TrimmedMean
from p2probust.attacks import AttackContext
from p2probust.gossip import AggregateAndMix
from p2probust.topology import NeighbourTable, place_byzantine
from p2probust.wiring import Wiring, tolerance_cap


def setup(n: int, d: int, degree: int, device: str = "cpu"):
    G = nx.random_regular_graph(degree, n, seed=0)
    byz = place_byzantine(G, n // 10, "random", seed=0)
    table = NeighbourTable.from_graph(G)
    f = table.byzantine_counts(byz)
    table = NeighbourTable(*(t.to(device) for t in (table.idx, table.mask, table.weights, table.self_weight, table.degree)))
    params = torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(device)
    rule = AggregateAndMix(TrimmedMean(), alpha=1.0)
    byz, f = byz.to(device), f.to(device)
    actors = torch.nonzero(~byz).squeeze(1)
    return G, byz, table, params, rule, f, actors


def kernel(attack, byz, table, params, rule, f, actors, generator):
    idx, mask, w, act_f = table.idx[actors], table.mask[actors], table.weights[actors], f[actors]
    inbox = params[idx]
    if attack is not None and not attack.sends:  # crash: Byzantine slots absent, f capped as the simulator does
        mask = mask & ~byz[idx]
        act_f = Wiring.of_table(table, byz, f, actors, cap=tolerance_cap(rule)).tolerance(actors, mask)
    elif attack is not None:
        rows, slots = torch.nonzero(mask & byz[idx], as_tuple=True)
        ctx = AttackContext(
            params=params, is_byzantine=byz, idx=table.idx, mask=table.mask, senders=idx[rows, slots],
            recipients=actors[rows], slots=slots, round=0, generator=generator, rule=rule, num_classes=10,
            weights=table.weights, tolerance=f,
        )
        inbox = inbox.index_put((rows, slots), attack.craft(ctx).to(params.dtype))
    return rule.batched(params[actors], inbox, mask, w, act_f)


def time_attack(attack, setup_args, repeats: int) -> float:
    _, byz, table, params, rule, f, actors = setup_args
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if params.is_cuda else (lambda: None)
    kernel(attack, byz, table, params, rule, f, actors, gen)  # warm-up (caches, allocator)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        kernel(attack, byz, table, params, rule, f, actors, gen)
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--d", type=int, default=650)
    parser.add_argument("--degree", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    s = setup(args.n, args.d, args.degree, args.device)
    honest = int((~s[1]).sum())
    base = time_attack(None, s, args.repeats)
    print(f"n = {args.n}, random {args.degree}-regular, {args.n // 10} Byzantine, d = {args.d}, "
          f"trimmed-mean gossip (oracle f), torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"fastest of {args.repeats} rounds\n")
    print("| attack | knowledge | ms / round | honest node-rounds / s | cost vs. no craft |")
    print("|---|---|---:|---:|---:|")
    print(f"| (no craft) | – | {base * 1e3:.1f} | {honest / base:,.0f} | 1.00× |")
    for entry in registry.attacks:
        attack = entry.factory()
        t = time_attack(attack, s, args.repeats)
        near = time_attack(None, s, args.repeats)  # the baseline measured right next to it
        print(f"| {entry.name} | {attack.knowledge} | {t * 1e3:.1f} | {honest / t:,.0f} | {t / near:.2f}× |")


if __name__ == "__main__":
    main()
