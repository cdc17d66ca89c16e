"""Kernels of the foundation: local step, closed-form gradients, the lift over nodes, metrics, recorder."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from p2probust.aggregators import CoordinateWiseMedian, Mean, TrimmedMean
from p2probust.aggregators.sorting import batcher_network, sort_masked
from p2probust.gossip import AggregateAndMix, Gossip, lift
from p2probust.local import LocalTrainer, LRSchedule, closed_form_gradients
from p2probust.metrics import Evaluator, consensus_distance
from p2probust.models import MLP, LinearRegression, LogisticRegression, ParamSpec
from p2probust.recorder import Recorder


@pytest.mark.parametrize("m", range(1, 34))
def test_pruned_batcher_network_sorts(m):
    g = torch.Generator().manual_seed(m)
    x = torch.randint(-3, 4, (m, 5), generator=g).double()  # with ties
    assert torch.equal(sort_masked(x, torch.ones(m, dtype=torch.bool)), torch.sort(x, 0).values)
    if m > 1:
        assert all(i < j < m for i, j in batcher_network(m))


def test_sort_masked_puts_padding_and_nan_last():
    x = torch.tensor([[3.0], [float("nan")], [1.0], [100.0], [-float("inf")]])
    mask = torch.tensor([True, True, True, False, True])
    s = sort_masked(x, mask).squeeze(1)
    assert s[:3].tolist() == [-float("inf"), 1.0, 3.0] and torch.isinf(s[3:]).all()


def test_tutorial_worked_example():
    """Guerraoui, Gupta, Pinot (2024), d = 2, n = 5, f = 1."""
    x = torch.tensor([[2.0, 5], [3, 6], [2, 4], [1, 5], [12, 0]])
    mask, f = torch.ones(5, dtype=torch.bool), torch.tensor(1)
    assert Mean()(x, mask, f).tolist() == [4.0, 4.0]
    assert CoordinateWiseMedian()(x, mask, f).tolist() == [2.0, 5.0]
    assert torch.allclose(TrimmedMean()(x, mask, f), torch.tensor([7 / 3, 14 / 3]))


RULES = [
    Gossip(0.5, weighted=False),
    Gossip(1.0, weighted=True),
    AggregateAndMix(Mean(), 0.7),
    AggregateAndMix(CoordinateWiseMedian(), 1.0),
    AggregateAndMix(TrimmedMean(), 0.5),
]


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_batched_rule_equals_python_loop_and_vmap(rule):
    n, k, d = 9, 6, 4
    g = torch.Generator().manual_seed(0)
    own, msgs = torch.randn(n, d, generator=g), torch.randn(n, k, d, generator=g)
    mask = torch.rand(n, k, generator=g) > 0.3
    mask[:, :2] = True
    msgs = torch.where(mask.unsqueeze(-1), msgs, torch.tensor(1e6))  # garbage in padding
    w = torch.rand(n, k, generator=g) / k
    f = torch.minimum(torch.randint(0, 2, (n,), generator=g), (mask.sum(1)) // 2)
    loop = torch.stack([rule(own[i], msgs[i], mask[i], w[i], f[i]) for i in range(n)])
    assert torch.allclose(rule.batched(own, msgs, mask, w, f), loop, atol=1e-6)
    assert torch.allclose(lift(rule.__call__)(own, msgs, mask, w, f), loop, atol=1e-6)


def test_trimmed_mean_gossip_keeps_byzantine_nan_out():
    own = torch.zeros(3)
    msgs = torch.tensor([[1.0, 1, 1], [2, 2, 2], [float("nan"), float("inf"), -float("inf")], [0.5, 0.5, 0.5]])
    mask = torch.ones(4, dtype=torch.bool)
    out = AggregateAndMix(TrimmedMean(), 1.0)(own, msgs, mask, torch.ones(4), torch.tensor(1))
    # inputs per coordinate (own 0 first): {0, 1, 2, NaN, 0.5}, {0, 1, 2, inf, 0.5}, {0, 1, 2, -inf, 0.5};
    # NaN ranks as +inf, so trimming one per side leaves {0.5, 1, 2}, {0.5, 1, 2}, {0, 0.5, 1}
    assert torch.allclose(out, torch.tensor([7 / 6, 7 / 6, 1 / 2]))


@pytest.mark.parametrize(
    "model, loss, y",
    [
        (LogisticRegression(64, 10), "cross_entropy", torch.randint(0, 10, (5, 7), generator=torch.Generator().manual_seed(1))),
        (LinearRegression(64), "mse", torch.randn(5, 7, generator=torch.Generator().manual_seed(2))),
    ],
)
def test_closed_form_gradients_equal_autodiff(model, loss, y):
    spec = ParamSpec.from_module(model)
    g = torch.Generator().manual_seed(3)
    params, x = torch.randn(5, spec.dim, generator=g), torch.randn(5, 7, 64, generator=g)
    crit = F.cross_entropy if loss == "cross_entropy" else (lambda p, t: 0.5 * ((p - t) ** 2).mean())
    auto = torch.func.vmap(torch.func.grad(
        lambda th, xb, yb: crit(torch.func.functional_call(model, spec.unflatten(th), (xb,)), yb)))(params, x, y)
    assert torch.allclose(closed_form_gradients(model, loss)(params, x, y), auto, atol=1e-5)
    assert closed_form_gradients(MLP(64, 8, 10), "cross_entropy") is None


def _trainer(flipped=None):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(40, 64, generator=g)
    y = torch.randint(0, 10, (40,), generator=g)
    table = torch.arange(40).view(4, 10)
    return LocalTrainer(LogisticRegression(64, 10), x, y, table, torch.full((4,), 10), loss="cross_entropy",
                        batch_size=8, flipped=flipped, num_classes=10)


def test_local_step_is_dampened_momentum_and_leaves_inputs_untouched():
    tr = _trainer()
    g0 = torch.Generator().manual_seed(7)
    params, mom = torch.randn(4, 650, generator=g0), torch.randn(4, 650, generator=g0)
    p0, m0 = params.clone(), mom.clone()
    nodes = torch.tensor([0, 2])
    g = tr.gradients(params, nodes, torch.Generator().manual_seed(1))
    new_p, new_m = tr.step(params, mom, nodes, 0.1, 0.9, torch.Generator().manual_seed(1))
    assert torch.equal(params, p0) and torch.equal(mom, m0)
    # float32 arithmetic in another order: compare with an absolute tolerance (values cross 0)
    assert torch.allclose(new_m[nodes], 0.9 * m0[nodes] + 0.1 * g, rtol=1e-5, atol=1e-6)
    assert torch.allclose(new_p[nodes], p0[nodes] - 0.1 * new_m[nodes], rtol=1e-5, atol=1e-6)
    assert torch.equal(new_p[[1, 3]], p0[[1, 3]])  # idle nodes untouched


def test_batches_come_from_each_nodes_own_data_and_flip_labels():
    tr = _trainer(flipped=torch.tensor([False, True, False, False]))
    xb, yb = tr.sample(torch.tensor([1]), torch.Generator().manual_seed(0))
    own_rows = tr.x[10:20]
    assert all(any(torch.equal(row, r) for r in own_rows) for row in xb[0])
    idx = [next(j for j in range(10, 20) if torch.equal(tr.x[j], row)) for row in xb[0]]
    assert yb[0].tolist() == [9 - int(tr.y[j]) for j in idx]


def test_lr_schedules():
    assert LRSchedule(0.4)(99) == 0.4
    assert LRSchedule(0.4, "inv-sqrt")(3) == pytest.approx(0.2)
    assert LRSchedule(0.4, "step", decay=0.5, step=10)(25) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="cosine"):
        LRSchedule(0.4, "cosine")


def test_consensus_distance_hand_computed():
    params = torch.tensor([[0.0, 0], [2, 0], [100, 100], [1, 3]])
    honest = torch.tensor([True, True, False, True])
    # honest mean (1, 1): squared distances 2, 2, 4 → mean 8/3
    assert consensus_distance(params, honest) == pytest.approx(8 / 3)


def test_recorder_writes_each_row_immediately(tmp_path):
    rec = Recorder(tmp_path, ["round", "accuracy", "consensus_distance"])
    rec.log({"round": 0, "accuracy": 0.1, "consensus_distance": 1.0})
    rec.log({"round": 1, "accuracy": None, "consensus_distance": 0.5})
    with open(tmp_path / "metrics.csv") as fh:  # readable before close
        rows = list(csv.DictReader(fh))
    assert rows[1] == {"round": "1", "accuracy": "", "consensus_distance": "0.5"}
    rec.log({"round": 2, "accuracy": 0.3, "consensus_distance": 0.7})
    s = rec.summary()
    assert s["final"]["accuracy"] == 0.3 and s["best"]["consensus_distance"] == {"value": 0.5, "round": 1}
    rec.close()


def test_engine_imports_no_torch():
    """DESIGN 2.1: simpy owns time; the engine package never imports torch."""
    code = (
        "import sys, importlib, pkgutil, pathlib\n"
        "import p2probust.engine as e\n"
        "for m in pkgutil.iter_modules(e.__path__): importlib.import_module('p2probust.engine.' + m.name)\n"
        "print('torch' in sys.modules)\n"
    )
    # import the engine package without running p2probust/__init__ (which imports torch)
    import p2probust

    pkg_root = str(__import__("pathlib").Path(p2probust.__file__).parents[1])
    stub = (
        "import sys, types, pathlib\n"
        f"root = pathlib.Path({pkg_root!r}) / 'p2probust'\n"
        "pkg = types.ModuleType('p2probust'); pkg.__path__ = [str(root)]; sys.modules['p2probust'] = pkg\n"
    )
    out = subprocess.run([sys.executable, "-c", stub + code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("aggregator", [CoordinateWiseMedian(), TrimmedMean(), Mean()], ids=repr)
def test_complete_graph_alpha_one_equals_the_server_aggregate(aggregator):
    """Robust D-SGD with a server = aggregate-and-mix with α = 1 on the complete graph: every node's
    new model is the server's aggregate of all n vectors (its own and the n − 1 messages)."""
    import networkx as nx

    from p2probust.topology import NeighbourTable

    n, d = 7, 5
    table = NeighbourTable.from_graph(nx.complete_graph(n))
    params = torch.randn(n, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    f = torch.full((n,), 2)
    out = AggregateAndMix(aggregator, 1.0).batched(params, params[table.idx], table.mask, table.weights.double(), f)
    server = aggregator(params, torch.ones(n, dtype=torch.bool), torch.tensor(2))
    assert torch.allclose(out, server.expand(n, d), atol=1e-12)


def test_consensus_distance_is_exactly_zero_when_honest_models_agree():
    params = torch.randn(1, 650, generator=torch.Generator().manual_seed(5)).expand(14, 650).clone()
    params[3] = 1e6  # a Byzantine row does not count
    honest = torch.ones(14, dtype=torch.bool)
    honest[3] = False
    assert consensus_distance(params, honest) == 0.0


def test_plot_metric_against_simulated_time_returns_artists(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from p2probust.plots import plot_metric

    run = {"name": "r", "columns": {"round": [0.0, 1.0, 2.0], "time": [0.0, 0.5, 1.5],
                                    "consensus_distance": [0.0, 2.0, 1.0]}}
    fig, ax = plt.subplots()
    (line,) = plot_metric([run], "consensus_distance", x="time", ax=ax)
    assert list(line.get_xdata()) == [0.5, 1.5]  # the 0 is left out on the log axis
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "simulated time (s)"
    plt.close(fig)


@pytest.mark.parametrize("model", [LogisticRegression(6, 4), MLP(6, 5, 4)])
def test_node_accuracies_equal_one_model_at_a_time(model):
    """Batched per-node accuracy (one matrix product for linear models, vmap otherwise) equals
    evaluating each node's model alone; chunks smaller than the population exercise the loop."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, 4, (50,), generator=g)
    ev = Evaluator(model, x, y, loss="cross_entropy", classification=True, chunk=3)
    params = torch.randn(7, ev.spec.dim, generator=g)
    want = torch.tensor([ev.model_metrics(theta)["accuracy"] for theta in params], dtype=torch.float64)
    assert torch.allclose(ev.node_accuracies(params), want, atol=1e-12)
