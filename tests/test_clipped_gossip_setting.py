"""Settings of ClippedGossip's dumbbell (He, Karimireddy, Jaggi 2022) and the tutorial's server runs:
heavy-ball momentum, the class-groups partition, max-degree weights, RFA, the dropout CNN, and the
two reproductions built on them."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from p2probust.aggregators import RFA
from p2probust.cli import main
from p2probust.config import ConfigError, from_dict
from p2probust.data import DataError, pad_partition
from p2probust.data.class_groups import class_groups_partition
from p2probust.local import LocalTrainer
from p2probust.models import DropoutCNN, LinearRegression, num_parameters
from p2probust.topology import NeighbourTable, two_cliques_graph


# --- heavy-ball momentum ------------------------------------------------------------------------

def _lsq_trainer(form: str):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, generator=g)
    table, lengths = pad_partition([np.arange(8)])
    return LocalTrainer(LinearRegression(3), x, y, table, lengths, loss="mse", batch_size=8, sampling="slice",
                        momentum_form=form), x, y


@pytest.mark.parametrize("form", ["heavy-ball", "dampened"])
def test_momentum_forms_by_hand(form):
    # full-batch least squares: ∇f(θ) = Xᵀ(Xθ − y)/B; two steps from m = 0 with β = 0.9, γ = 0.1
    trainer, x, y = _lsq_trainer(form)
    theta0 = torch.tensor([[0.5, -1.0, 2.0]])
    grad = lambda th: x.T @ (x @ th - y) / 8  # noqa: E731
    beta, lr, nodes = 0.9, 0.1, torch.arange(1)
    gen = torch.Generator().manual_seed(1)
    p1, m1 = trainer.step(theta0, torch.zeros_like(theta0), nodes, lr, beta, gen)
    p2, m2 = trainer.step(p1, m1, nodes, lr, beta, gen)
    g1 = grad(theta0[0])
    if form == "heavy-ball":  # m ← βm + g (SGDMWorker: buf.mul_(β).add_(grad)), θ ← θ − γm
        e1 = g1
        e2 = beta * e1 + grad(theta0[0] - lr * e1)
    else:  # m ← βm + (1 − β)g
        e1 = (1 - beta) * g1
        e2 = beta * e1 + (1 - beta) * grad(theta0[0] - lr * e1)
    assert torch.allclose(m1[0], e1, atol=1e-6) and torch.allclose(m2[0], e2, atol=1e-6)
    assert torch.allclose(p2[0], theta0[0] - lr * e1 - lr * e2, atol=1e-6)


def test_heavy_ball_equals_torch_sgd_without_dampening():
    trainer, x, y = _lsq_trainer("heavy-ball")
    ref = LinearRegression(3)
    theta = torch.tensor([[0.3, 0.2, -0.4]])
    torch.nn.utils.vector_to_parameters(theta[0].clone(), ref.parameters())
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.8, dampening=0.0)
    m, gen = torch.zeros_like(theta), torch.Generator().manual_seed(0)
    for _ in range(4):
        theta, m = trainer.step(theta, m, torch.arange(1), 0.05, 0.8, gen)
        opt.zero_grad()
        (0.5 * ((ref(x) - y) ** 2).mean()).backward()
        opt.step()
    assert torch.allclose(theta[0], torch.nn.utils.parameters_to_vector(ref.parameters()).detach(), atol=1e-6)


def test_momentum_form_errors():
    with pytest.raises(ConfigError, match="train.momentum_form.*'nesterov'.*dampened or heavy-ball"):
        from_dict({"train": {"momentum_form": "nesterov"}})
    with pytest.raises(ValueError, match="momentum_form = 'x'"):
        _lsq_trainer("x")
    res = CliRunner().invoke(main, ["run", "--momentum-form", "nesterov", "--rounds", "1"])
    assert res.exit_code == 2 and "nesterov" in res.output


# --- class-groups partition ---------------------------------------------------------------------

def test_class_groups_gives_each_clique_five_classes():
    labels = np.repeat(np.arange(10), 40)
    parts = class_groups_partition(labels, 20, seed=3, groups=2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(400))  # disjoint and covering
    for i, p in enumerate(parts):
        assert set(labels[p].tolist()) <= (set(range(5)) if i < 10 else set(range(5, 10)))
        assert p.size == 20
    assert set(labels[np.concatenate(parts[:10])].tolist()) == set(range(5))
    again = class_groups_partition(labels, 20, seed=3, groups=2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    # three groups of 7, 7, 6 nodes over classes {0..3}, {4..6}, {7..9} (np.array_split)
    three = class_groups_partition(labels, 20, seed=0, groups=3)
    assert set(labels[np.concatenate(three[14:])].tolist()) == {7, 8, 9}
    assert set(labels[np.concatenate(three[:7])].tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("groups,match", [(0, "groups = 0"), (11, "at most min"), (True, "groups = True")])
def test_class_groups_errors(groups, match):
    with pytest.raises(DataError, match=match):
        class_groups_partition(np.repeat(np.arange(10), 5), 20, seed=0, groups=groups)
    with pytest.raises(ConfigError, match="data.groups"):
        from_dict({"data": {"groups": 0}})


# --- max-degree weights -------------------------------------------------------------------------

def test_max_degree_weights_are_the_authors_dumbbell():
    # epfml Dumbbell(q = 10, qb = 0, r = 0): w = 1/(q + 1) on every edge, the rest on the diagonal
    q = 10
    W = np.zeros((2 * q, 2 * q))
    for i in range(q):
        for j in range(i + 1, q):
            W[i, j] = W[j, i] = W[i + q, j + q] = W[j + q, i + q] = 1 / (q + 1)
    W[0, 2 * q - 1] = W[2 * q - 1, 0] = 1 / (q + 1)
    W += np.diag(1 - W.sum(1))
    # ours joins 9 -- 10 instead of 0 -- 19: relabel theirs by the isomorphism i -> 9 - i, q + i -> 19 - i... per clique
    perm = np.r_[np.arange(q)[::-1], np.arange(q, 2 * q)[::-1]]
    table = NeighbourTable.from_graph(two_cliques_graph(2 * q), weights="max-degree", dtype=torch.float64)
    ours = table.dense_weights().numpy()
    np.testing.assert_allclose(ours, W[np.ix_(perm, perm)], atol=1e-12)
    assert ours[0, 0] == pytest.approx(2 / 11) and ours[9, 9] == pytest.approx(1 / 11)


# --- RFA (smoothed Weiszfeld) -------------------------------------------------------------------

def _authors_rfa(inputs, T, nu):
    """Transcription of epfml codes/aggregator.py ``smoothed_weiszfeld`` with ``z = 0``, α = 1/m."""
    alphas = [1 / len(inputs)] * len(inputs)
    z = torch.zeros_like(inputs[0])
    for _ in range(T):
        betas = [a / max(float((z - w).norm()), nu) for a, w in zip(alphas, inputs)]
        z = sum(w * b for w, b in zip(inputs, betas)) / sum(betas)
    return z


def test_rfa_matches_the_authors_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, generator=g, dtype=torch.float64) * 3 + 1
    x[1, 2] = x[1, 3] + 0.01  # two inputs closer than nu: the smoothing matters
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2, 4:] = False  # a node with 4 inputs (padding ignored)
    out = RFA(T=8, nu=0.1).batched(x, mask, torch.zeros(4, dtype=torch.long))
    for i in range(4):
        ref = _authors_rfa([x[i, j] for j in range(6) if mask[i, j]], 8, 0.1)
        assert torch.allclose(out[i], ref, atol=1e-10)
    one = RFA(T=1, start="mean")(x[0], mask[0], torch.tensor(0))
    d = (x[0] - x[0].mean(0)).norm(dim=1).clamp_min(0.1)
    assert torch.allclose(one, (x[0] / d[:, None]).sum(0) / (1 / d).sum(), atol=1e-12)


def test_rfa_ignores_unreadable_inputs_and_bad_params():
    x = torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [1.0, 0.0]])
    assert torch.allclose(RFA()(x, torch.ones(3, dtype=torch.bool), torch.tensor(1)), torch.tensor([1.0, 0.0]))
    for kw, match in (({"T": 0}, "rfa T = 0"), ({"nu": -1.0}, "rfa nu = -1"), ({"start": "x"}, "rfa start = 'x'")):
        with pytest.raises(ValueError, match=match):
            RFA(**kw)


# --- the dropout CNN ------------------------------------------------------------------------------

def test_dropout_cnn_shape_and_masks():
    model = DropoutCNN()
    assert num_parameters(model) == 1_199_882  # their Net: 320 + 18,496 + 1,179,776 + 1,290
    x = torch.randn(3, 784, generator=torch.Generator().manual_seed(0))
    ones = (torch.ones(3, 64, 1, 1), torch.ones(3, 128))
    assert torch.allclose(model(x, ones), model(x))  # keep-all masks = evaluation mode
    dead = (torch.ones(3, 64, 1, 1), torch.zeros(3, 128))
    assert torch.allclose(model(x, dead), model.fc2.bias.expand(3, 10))  # hidden mask after fc1's ReLU
    m1, m2 = DropoutCNN.draw_masks(2, 500, torch.Generator().manual_seed(1))
    assert m1.shape == (2, 500, 64, 1, 1) and m2.shape == (2, 500, 128)
    assert torch.equal(m1.unique(), torch.tensor([0.0, 1 / 0.75])) and set(m2.unique().tolist()) == {0.0, 2.0}
    assert abs(float((m1 == 0).float().mean()) - 0.25) < 0.01 and abs(float((m2 == 0).float().mean()) - 0.5) < 0.01


def test_dropout_cnn_gradients_come_from_the_run_stream():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 784, generator=g), torch.arange(8) % 10
    table, lengths = pad_partition([np.arange(4), np.arange(4, 8)])
    trainer = LocalTrainer(DropoutCNN(), x, y, table, lengths, loss="cross_entropy", batch_size=4, sampling="slice")
    theta = torch.nn.utils.parameters_to_vector(DropoutCNN().parameters()).detach().expand(2, -1).clone()
    nodes = torch.arange(2)
    a = trainer.gradients(theta, nodes, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global generator plays no part
    b = trainer.gradients(theta, nodes, torch.Generator().manual_seed(5))
    c = trainer.gradients(theta, nodes, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # node 0's gradient equals a module-level reference with the same masks
    gen = torch.Generator().manual_seed(5)
    samples = trainer.sampler(nodes, gen)
    m1, m2 = DropoutCNN.draw_masks(2, 4, gen)
    ref = DropoutCNN()
    torch.nn.utils.vector_to_parameters(theta[0].clone(), ref.parameters())
    torch.nn.functional.cross_entropy(ref(x[samples[0]], (m1[0], m2[0])), y[samples[0]]).backward()
    ref_grad = torch.cat([p.grad.reshape(-1) for p in ref.parameters()])
    assert torch.allclose(a[0], ref_grad, atol=1e-5)


# --- the reproductions' settings ------------------------------------------------------------------

def test_clipped_gossip_cells_hold_the_authors_settings():
    from p2probust.reproduce import REPRODUCTIONS
    from p2probust.reproduce.training import cell_config

    cfg = REPRODUCTIONS["clipped-gossip"].settings("full")["dumbbell"]
    assert (cfg["rounds"], cfg["eval_every"]) == (900, 30)
    rules = {r["label"]: cell_config(cfg["base"], {**r["keys"], **cfg["partitions"]["non-iid"]}) for r in cfg["rules"]}
    gm = rules["GM (8 Weiszfeld iterations)"]
    assert (gm.rule.name, dict(gm.rule.params)) == ("rfa", {"T": 8, "nu": 0.1})
    assert rules["TM b = 1"].rule.tolerance == 1 and dict(rules["SCClip τ = 1"].rule.params) == {"tau": 1.0}
    t = gm.train
    assert (t.lr, t.momentum, t.momentum_form, t.batch_size, t.order) == (0.01, 0.9, "heavy-ball", 32, "step-then-gossip")
    assert (gm.topology.name, gm.topology.nodes, gm.topology.weights) == ("two-cliques", 20, "max-degree")
    assert (gm.data.partition, gm.data.groups, gm.data.test_fraction, gm.data.split_seed) == ("class-groups", 2, 0.2, 0)
    paper = {r["label"]: r["paper"] for r in cfg["rules"]}
    assert paper["Gossip"] == {"iid": 96.43, "non-iid": 93.65, "clique1": 69.01, "clique2": 75.61}


def test_clipped_gossip_claims_follow_the_numbers():
    from p2probust.reproduce import REPRODUCTIONS
    from p2probust.reproduce.clipped_gossip import claims

    cfg = REPRODUCTIONS["clipped-gossip"].settings("smoke")["dumbbell"]

    def fake(c1, c2, acc):
        return [{"clique1": c1, "clique2": c2, "accuracy": acc}]

    labels = [r["label"] for r in cfg["rules"]]
    good = {("non-iid", lab): fake(0.7, 0.72, 0.93) for lab in labels[:2]}
    good.update({("non-iid", lab): fake(0.5, 0.48, 0.88) for lab in labels[2:]})
    assert all("**holds**" in line for line in claims(cfg, good))
    bad = dict(good)
    bad["non-iid", labels[3]] = fake(0.75, 0.74, 0.95)
    assert all("**does not hold**" in line for line in claims(cfg, bad))


def test_group_accuracy_is_the_clique_average_model(tmp_path):
    from p2probust.reproduce.training import cached_run, cell_config, group_accuracy
    from p2probust.simulation import simulate

    cfg = cell_config({"topology": {"name": "two-cliques", "nodes": 6}, "data": {"task": "digits"}, "byzantine": {"count": 0},
                       "train": {"rounds": 2}}, {"seed": 1})
    row = cached_run(cfg, tmp_path, "a", group_accuracy(cfg, {"left": [0, 1, 2]}))
    res = simulate(cfg)
    from p2probust.data.setup import build_task
    from p2probust.metrics import Evaluator

    task = build_task(cfg)
    ev = Evaluator(task.make_model(), task.dataset.x_test, task.dataset.y_test, loss=task.loss, classification=True)
    assert row["left"] == pytest.approx(ev.model_metrics(res.params[:3].mean(0))["accuracy"])
    assert row["accuracy"] == pytest.approx(res.final("accuracy")) and (tmp_path / "runs" / "a.json").is_file()
    assert cached_run(cfg, tmp_path, "a")["wall_seconds"] == row["wall_seconds"]  # read back, not rerun
    assert math.isfinite(row["accuracy"]) and nx.is_connected(two_cliques_graph(6))


def test_cli_flags_reach_the_config():
    import json

    res = CliRunner().invoke(main, ["run", "--dry-run", "--topology", "two-cliques", "--nodes", "20", "--byzantine", "0",
                                    "--weights", "max-degree", "--partition", "class-groups", "--groups", "2",
                                    "--momentum", "0.9", "--momentum-form", "heavy-ball", "--rule", "rfa"])
    assert res.exit_code == 0, res.output
    text = res.output.split("resolved configuration:")[1]
    conf = json.loads(text[: text.index("\n  }\n") + 4])  # the indented JSON block
    assert conf["topology"]["weights"] == "max-degree" and conf["data"]["groups"] == 2
    assert (conf["data"]["partition"], conf["train"]["momentum_form"], conf["rule"]["name"]) == ("class-groups", "heavy-ball", "rfa")
    bad = CliRunner().invoke(main, ["run", "--weights", "max", "--rounds", "1"])
    assert bad.exit_code == 2 and "max-degree" in bad.output


def test_paper_curves_end_at_the_published_table():
    from p2probust.reproduce import REPRODUCTIONS
    from p2probust.reproduce.clipped_gossip import paper_curves

    curves = paper_curves()
    for rule in REPRODUCTIONS["clipped-gossip"].settings("full")["dumbbell"]["rules"]:
        for key, non_iid, group in (("iid", False, "global"), ("non-iid", True, "global"),
                                    ("clique1", True, "clique 1"), ("clique2", True, "clique 2")):
            xs, ys = curves[rule["curve"], non_iid, group]
            assert xs[-1] == 900 and len(xs) == 30 and ys[-1] == pytest.approx(rule["paper"][key], abs=0.006)
