"""Server-style and dense-graph rounds, side by side with a real peer: ByzFL 0.0.11's own loop.

The workload (issue 15): robust D-SGD with a parameter server, logistic regression on ``blobs``
(64 features, d = 650) at n = 15, 100 and 1,000 clients and on MNIST (``mnist-logreg``, d = 7850)
at n = 100, 10% Byzantine clients (at least one) sending sign-flipped vectors, coordinate-wise
trimmed mean with f = the Byzantine count, batch 32, lr 0.1, local momentum 0.9, the same data,
the same iid split over the honest clients, the same start model. Each side runs in its own
process and reports its median wall-clock time per round and its final test accuracy; each side
runs ``--repeats`` times, interleaved, and the fastest median is kept (a shared machine's load
then hits every side alike):

* **ByzFL** — ByzFL 0.0.11's ``Client`` / ``ByzantineClient`` / ``Server`` classes wired as its
  ``byzfl/benchmark/train.py`` does for ``DSGD``: every honest client computes a gradient on its
  next ``DataLoader`` batch (batch 32, reshuffled every epoch) and its momentum, the Byzantine
  client's ``SignFlipping`` sends minus the honest mean, the server's ``TrMean(f)`` aggregates and
  its SGD optimizer steps, and the new model is sent to every client. The model is a linear layer
  (p2probust's ``LogisticRegression``), registered in ByzFL's model table so its classes build it.
* **p2probust server** — ``topology = "server"``: one aggregation per round, broadcast.
* **p2probust complete** — the decentralized complete graph with α = 1 (every node aggregates its
  own inbox; identical inboxes are aggregated once, :mod:`p2probust.shared_inbox`).
* **before** (``--old PATH``) — the complete-graph round of the p2probust at ``PATH`` (a checkout,
  e.g. ``git worktree add /tmp/before <commit>``), timed in the same run; fewer rounds (it is slow).

Not the same algorithm on both sides in one respect: p2probust's clients send models and ByzFL's
send gradients, so the sign flip is ``−(honest mean model)`` here and ``−(honest mean gradient)``
there (see the README's "Attacks on models, not gradients"); the honest computation is the same.
p2probust samples batches with ``train.sampling = "epoch"`` (without replacement, reshuffled per
epoch, as a shuffled ``DataLoader``), from its own random stream, so accuracies agree only in
distribution.

ByzFL's package imports its benchmark runner (``byzfl.benchmark``: torchvision and seaborn, for
downloads and plots this script does not use); where that cannot be imported, a placeholder stands
in for that subpackage only. This script installs nothing: without ``byzfl`` (``pip install --no-deps
byzfl==0.0.11``) it says so and times the p2probust side only.

    python benchmarks/bench_peer.py                            # the table of the README
    python benchmarks/bench_peer.py --settings blobs:100 --rounds 20 --old /tmp/before
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETTINGS = ("blobs:15", "blobs:100", "blobs:1000", "mnist-logreg:100")
TASKS = {"blobs": "blobs", "mnist-logreg": "mnist-logreg"}


def config(task: str, n: int, topology: str, rounds: int, data_dir: str | None):
    import p2probust as pr

    return pr.RunConfig().replace(**{
        "topology.name": topology, "topology.nodes": n, "byzantine.count": max(1, n // 10), "data.task": task,
        "data.data_dir": data_dir if task.startswith("mnist") else None, "data.split_among": "honest",
        "train.batch_size": 32, "train.lr": 0.1, "train.momentum": 0.9, "train.sampling": "epoch", "train.rounds": rounds,
        "train.init": "shared", "rule.name": "trimmed-mean", "rule.alpha": 1.0, "rule.tolerance": "oracle",
        "attack.name": "sign-flip", "attack.params": {"scale": 1.0, "reference": "global"}, "eval_every": 10**9, "seed": 0,
    })


def bench_p2probust(task: str, n: int, topology: str, rounds: int, data_dir: str | None) -> dict:
    import p2probust as pr

    res = pr.simulate(config(task, n, topology, rounds + 2, data_dir))
    wall = [r["wall_s"] for r in res.timing]
    per_round = statistics.median(b - a for a, b in zip(wall[1:-2], wall[2:-1]))  # no evaluation inside
    return {"s_per_round": per_round, "accuracy": res.history[-1]["accuracy"], "d": res.summary["d"],
            "module": pr.__file__}


def import_byzfl():
    """``byzfl``, with a placeholder for its ``byzfl.benchmark`` subpackage if that cannot be
    imported (it needs torchvision and seaborn, for downloads and plots this script does not use);
    None without byzfl."""
    if importlib.util.find_spec("byzfl") is None:
        return None
    try:
        import byzfl
    except ImportError:
        for name in [m for m in sys.modules if m == "byzfl" or m.startswith("byzfl.")]:
            del sys.modules[name]
        placeholder = types.ModuleType("byzfl.benchmark")
        placeholder.__all__ = []
        sys.modules["byzfl.benchmark"] = placeholder
        import byzfl
    return byzfl


def byzfl_setting(task: str, n: int, rounds: int, data_dir: str | None):
    """The data, split, start model and test set of the p2probust run, as ByzFL objects."""
    from torch.utils.data import DataLoader, Subset, TensorDataset

    from p2probust.build import place
    from p2probust.data.setup import build_partition, build_task
    from p2probust.models import init_stacked
    from p2probust.rng import torch_stream

    cfg = config(task, n, "complete", rounds, data_dir)
    _, is_byz, _ = place(cfg, None)
    task_obj = build_task(cfg)
    ds = task_obj.dataset
    parts, _, _ = build_partition(cfg, task_obj, ~is_byz)
    t = cfg.train
    theta0 = init_stacked(task_obj.make_model, n, generator=torch_stream(cfg.seed, "init"), same=True,
                          scheme=t.init_scheme, scale=t.init_scale)[0]
    train = TensorDataset(ds.x_train, ds.y_train)
    loaders = [DataLoader(Subset(train, [int(i) for i in p]), batch_size=32, shuffle=True) for p in parts]
    test = DataLoader(TensorDataset(ds.x_test, ds.y_test), batch_size=1024, shuffle=False)
    return task_obj, theta0, loaders, test, int(is_byz.sum()), ds.num_classes


def bench_byzfl(task: str, n: int, rounds: int, data_dir: str | None) -> dict:
    importlib.import_module("p2probust")  # first, as in the p2probust children: the same OMP_WAIT_POLICY for torch

    byzfl = import_byzfl()
    if byzfl is None:
        return {"missing": True}
    import numpy as np
    import torch

    task_obj, theta0, loaders, test, b, classes = byzfl_setting(task, n, rounds, data_dir)
    template = task_obj.make_model()

    class p2probust_linear(torch.nn.Module):  # ByzFL builds models by name from its model table
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(template.linear.in_features, classes)

        def forward(self, x):
            return self.linear(x.flatten(start_dim=1))

    byzfl.fed_framework.models.p2probust_linear = p2probust_linear
    common = {"model_name": "p2probust_linear", "device": "cpu", "optimizer_name": "SGD", "learning_rate": 0.1,
              "weight_decay": 0.0, "milestones": [], "learning_rate_decay": 1.0}
    clients = [byzfl.Client({**common, "loss_name": "CrossEntropyLoss", "LabelFlipping": False, "training_dataloader": dl,
                             "momentum": 0.9, "nb_labels": classes, "store_per_client_metrics": False}) for dl in loaders]
    server = byzfl.Server({**common, "validation_loader": None, "test_loader": test,
                           "aggregator_info": {"name": "TrMean", "parameters": {"f": b}}, "pre_agg_list": []})
    byz = byzfl.ByzantineClient({"name": "SignFlipping", "f": b, "parameters": {}})
    from byzfl.utils.misc import set_random_seed

    set_random_seed(0)  # as its benchmark seeds training: the DataLoaders' shuffles
    server.set_parameters(theta0.clone())
    for client in clients:
        client.set_model_state(server.get_dict_parameters())
    times = []
    for _ in range(rounds):  # byzfl/benchmark/train.py, the DSGD branch (evaluation left out of the timing)
        start = time.perf_counter()
        losses = np.array([client.compute_gradients() for client in clients])
        honest = [client.get_flat_gradients_with_momentum() for client in clients]
        server.update_model_with_gradients(honest + byz.apply_attack(honest))
        new_model = server.get_dict_parameters()
        for client in clients:
            client.set_model_state(new_model)
        times.append(time.perf_counter() - start)
    assert np.isfinite(losses).all()
    return {"s_per_round": statistics.median(times[1:]), "accuracy": server.compute_test_accuracy(),
            "version": getattr(byzfl, "__version__", "?")}


def child(args) -> None:
    if args.child == "byzfl":
        out = bench_byzfl(args.task, args.n, args.rounds, args.data_dir)
    else:
        out = bench_p2probust(args.task, args.n, args.child, args.rounds, args.data_dir)
    print(json.dumps(out))


def run_child(kind: str, task: str, n: int, rounds: int, data_dir: str | None, old: str | None = None) -> dict:
    env = dict(os.environ)
    if old:  # the p2probust of an earlier checkout, ahead of this one on the path
        env["PYTHONPATH"] = os.pathsep.join([old] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, __file__, "--child", kind, "--task", task, "--n", str(n), "--rounds", str(rounds)]
    out = subprocess.run(cmd + (["--data-dir", data_dir] if data_dir else []), capture_output=True, text=True, env=env,
                         cwd=old or None)
    if out.returncode:
        raise RuntimeError(f"{kind} {task}:{n} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of(repeats: int, kinds: list[str], task: str, n: int, args) -> dict[str, dict]:
    """Each side ``repeats`` times, interleaved (so load hits all sides alike); per side, the run
    with the lowest median round time (as ``timeit`` keeps the best of its repeats)."""
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for kind in kinds:
            out = run_child(kind, task, n, args.rounds, args.data_dir)
            if kind not in best or out.get("s_per_round", 0) < best[kind].get("s_per_round", 0):
                best[kind] = out
    return best


def row(task: str, n: int, args) -> str:
    runs = best_of(args.repeats, ["server", "complete"] + ([] if args.no_byzfl else ["byzfl"]), task, n, args)
    server, complete, peer = runs["server"], runs["complete"], runs.get("byzfl", {"missing": True})
    cells = [f"{task} n = {n:,}", f"{server['d']:,}"]
    if peer.get("missing"):
        cells += ["—", "—"]
    else:
        cells += [f"{peer['s_per_round'] * 1e3:,.1f} ms", f"{peer['s_per_round'] / server['s_per_round']:.1f}×"]
    cells += [f"{server['s_per_round'] * 1e3:,.1f} ms", f"{complete['s_per_round'] * 1e3:,.1f} ms"]
    if args.old:
        before = run_child("complete", task, n, args.old_rounds, args.data_dir, old=args.old)
        cells += [f"{before['s_per_round'] * 1e3:,.1f} ms", f"{before['s_per_round'] / complete['s_per_round']:.1f}×"]
    accs = [peer.get("accuracy"), server["accuracy"], complete["accuracy"]]
    cells.append(" / ".join("—" if a is None else f"{100 * a:.1f}" for a in accs))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="TASK:N, TASK in blobs, mnist-logreg")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds of each side (accuracy after them)")
    parser.add_argument("--old", help="a checkout of an earlier p2probust: also time its complete-graph round")
    parser.add_argument("--old-rounds", type=int, default=3, help="timed rounds of the earlier p2probust (run once)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; the fastest median is reported")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"), help="MNIST IDX files")
    parser.add_argument("--no-byzfl", action="store_true", help="skip the ByzFL side")
    parser.add_argument("--child", choices=["byzfl", "server", "complete"], help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import torch

    have = import_byzfl() is not None and not args.no_byzfl
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          + ("ByzFL importable: its loop is timed" if have else "ByzFL not importable (pip install --no-deps byzfl==0.0.11): its columns are empty"))
    head = ["setting", "d", "ByzFL round", "speed-up (server)", "p2probust server round", "p2probust complete α = 1 round"]
    if args.old:
        head += [f"before ({args.old})", "speed-up (complete)"]
    print("\n| " + " | ".join(head + ["test accuracy % ByzFL / server / complete"]) + " |")
    print("|" + "---|" * (len(head) + 1))
    for setting in args.settings:
        task, _, n = setting.partition(":")
        if task not in TASKS or not n.isdigit():
            parser.error(f"setting {setting!r} must be TASK:N with TASK in {', '.join(TASKS)}")
        if task.startswith("mnist") and not Path(args.data_dir).is_dir():
            print(f"| {setting} | skipped: no MNIST folder at {args.data_dir} |")
            continue
        print(row(task, int(n), args), flush=True)


if __name__ == "__main__":
    main()
