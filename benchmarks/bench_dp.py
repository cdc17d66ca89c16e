"""Cost of the DP local step against the non-DP batched step, at n = 1,000 nodes (issue 13).

One local step of every node (``LocalTrainer.step``: sample, gradients, momentum, update) timed as
the median of ``--reps`` calls after a warm-up, for

* **non-DP** — the batched step (closed form for logistic regression, ``vmap(grad)`` for the MLP);
* **DP, fixed** — the same batches, per-example gradients clipped to C = 1, Gaussian noise σ = 1;
* **DP, Poisson** — the default: Poisson batches at q = 0.5 (expected 32 of each node's 64 examples,
  padded to the largest batch of the step), clipping and noise.

Models: logistic regression on ``blobs`` (64 features, 10 classes, d = 650; target ≤ 3× the
non-DP step) and the digits MLP (64 → 64 → 10, d = 4,810; the ``digits-mlp`` default) on the same digits-sized inputs (the
bundled digits have too few samples for 1,000 nodes). Batch size 32, 64 examples per node.

    python benchmarks/bench_dp.py
    python benchmarks/bench_dp.py --nodes 1000 --reps 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _trainer(model_name: str, n: int, per_node: int, privacy):
    from p2probust.data.tasks import blobs_task
    from p2probust.local import LocalTrainer
    from p2probust.models import MLP

    task = blobs_task(num_samples=int(n * per_node / 0.8) + 10)
    ds = task.dataset
    model = task.make_model() if model_name == "logreg" else MLP(64, 64, 10)
    table = torch.arange(n * per_node).view(n, per_node)
    lengths = torch.full((n,), per_node)
    trainer = LocalTrainer(model, ds.x_train, ds.y_train, table, lengths, loss="cross_entropy", batch_size=32,
                           privacy=privacy)
    return trainer, sum(p.numel() for p in model.parameters())


MODES = ("non-DP", "DP, fixed", "DP, Poisson")


def time_steps(model_name: str, n: int, reps: int) -> tuple[dict[str, float], int]:
    """Median seconds of one local step of all ``n`` nodes per mode, and d. The modes take turns
    within each repetition, so that load from other processes hits them alike."""
    from p2probust.privacy import GaussianDP

    runs = {}
    for mode in MODES:
        privacy = None if mode == "non-DP" else GaussianDP(
            clip=1.0, noise_multiplier=1.0, sample_rate=0.5, delta=1e-5,
            sampling="fixed" if mode == "DP, fixed" else "poisson", generator=torch.Generator().manual_seed(1))
        trainer, d = _trainer(model_name, n, 64, privacy)
        params = 0.01 * torch.randn(n, d, generator=torch.Generator().manual_seed(0))
        runs[mode] = [trainer, params, torch.zeros_like(params), torch.Generator().manual_seed(2)]
    nodes = torch.arange(n)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(reps + 3):
        for mode, run in runs.items():
            trainer, params, momentum, gen = run
            start = time.perf_counter()
            run[1], run[2] = trainer.step(params, momentum, nodes, 0.1, 0.9, gen)
            if i >= 3:  # warm-up: vmap tracing, allocator
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(t) for mode, t in times.items()}, d


def main() -> None:
    parser = argparse.ArgumentParser(description="DP local step vs non-DP step")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    print(f"n = {args.nodes}, batch 32, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | d | non-DP ms | DP fixed ms (×) | DP Poisson ms (×) |")
    print("|---|---:|---:|---:|---:|")
    for model_name in ("logreg", "mlp"):
        t, d = time_steps(model_name, args.nodes, args.reps)
        base, fixed, poisson = (t[m] for m in MODES)
        print(f"| {model_name} | {d} | {base * 1e3:.1f} | {fixed * 1e3:.1f} ({fixed / base:.2f}×) | "
              f"{poisson * 1e3:.1f} ({poisson / base:.2f}×) |")


if __name__ == "__main__":
    main()
