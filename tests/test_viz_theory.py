"""Theory overlays: G², μ and W checked against closed forms; the floor and the envelope hold where they must."""

from __future__ import annotations

import csv
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import p2probust as pr  # noqa: E402
from p2probust import registry  # noqa: E402
from p2probust.config import RunConfig  # noqa: E402
from p2probust.plots import plot_metric, plot_theory  # noqa: E402
from p2probust.rng import numpy_stream  # noqa: E402
from p2probust.viz.theory import gossip_envelope, honest_mixing_matrix, theory_floor  # noqa: E402


def _column(run, name):
    with open(run / "metrics.csv", newline="") as fh:
        return np.array([float(r[name]) for r in csv.DictReader(fh)])


@pytest.fixture(scope="module")
def server_run(tmp_path_factory):
    """Complete graph, α = 1: every honest node aggregates all models (a parameter server), large batches."""
    out = tmp_path_factory.mktemp("server")
    cfg = RunConfig().replace(**{
        "data.task": "least-squares", "topology.name": "complete", "topology.nodes": 10, "byzantine.count": 2,
        "data.partition": "dirichlet", "data.dirichlet_alpha": 0.5, "train.lr": 0.1, "train.batch_size": 512,
        "train.rounds": 80, "eval_every": 1000,
    })
    pr.simulate(cfg, out=out)
    return out, cfg


def test_heterogeneity_and_strong_convexity_match_the_closed_form(server_run):
    out, cfg = server_run
    th = theory_floor(out)
    # independent reference: L_i(θ) = |D_i|⁻¹ Σ ½(x·θ − y)², ∇L_i = X_iᵀ(X_iθ − y_i)/|D_i|, ∇²L_H = mean_i X_iᵀX_i/|D_i|
    task = registry.tasks.create("least-squares")
    x, y = task.dataset.x_train.double().numpy(), task.dataset.y_train.double().numpy()
    parts = registry.partitions.create("dirichlet", labels=np.asarray(task.partition_labels), n=10, alpha=0.5,
                                       seed=int(numpy_stream(cfg.seed, "partition").integers(2**31)))
    byz = set(json.loads((out / "config.json").read_text())["byzantine"]["nodes"])
    honest = [np.asarray(parts[i]) for i in range(10) if i not in byz]
    hess = np.mean([x[p].T @ x[p] / len(p) for p in honest], axis=0)
    theta = np.linalg.solve(hess, np.mean([x[p].T @ y[p] / len(p) for p in honest], axis=0))
    grads = np.stack([x[p].T @ (x[p] @ theta - y[p]) / len(p) for p in honest])
    assert th["G2"] == pytest.approx(float((grads**2).sum(1).mean()), rel=1e-6)  # ∇L_H(θ*) = 0
    assert th["mu"] == pytest.approx(float(np.linalg.eigvalsh(hess)[0]), rel=1e-8)
    assert th["kappa"] == pytest.approx(6 * (2 / 6) * (1 + 2 / 6))  # CWTM bound, m = 10 inputs, f = 2
    assert th["floor"] == pytest.approx(th["kappa"] * th["G2"] / th["mu"] ** 2)


def test_error_floor_holds_on_the_server_equivalent_run(server_run):
    out, _ = server_run
    floor = theory_floor(out)["floor"]
    dist = _column(out, "dist_to_opt")
    assert dist[0] > 10 * floor  # the bound is not vacuous: the run starts far above it
    assert (dist[-20:] <= floor).all()  # after converging it stays under κ G² / μ²


def test_gossip_envelope_bounds_plain_gossip(tmp_path):
    # one real step (lr 0.5 at round 0) creates disagreement, then lr ≈ 0: plain Metropolis gossip only
    cfg = RunConfig().replace(**{"byzantine.count": 0, "rule.name": "mh-gossip", "rule.alpha": 0.7,
                                 "topology.name": "ring", "topology.nodes": 12, "train.rounds": 30, "eval_every": 1000,
                                 "train.lr_schedule": "step", "train.lr_step": 1, "train.lr_decay": 1e-8})
    pr.simulate(cfg, out=tmp_path)
    cd = _column(tmp_path, "consensus_distance")
    env, contraction = gossip_envelope(tmp_path, np.arange(len(cd), dtype=float), cd)
    # ring with Metropolis weights 1/3: W = I − α(I − P), eigenvalues 1 − α(1 − 1/3 − 2/3 cos(2πk/n))
    eig = 1 - 0.7 * (1 - 1 / 3 - 2 / 3 * np.cos(2 * np.pi * np.arange(1, 12) / 12))
    assert contraction == pytest.approx(np.abs(eig).max() ** 2, rel=1e-10)
    assert np.isnan(env[0]) and env[1] == cd[1]
    assert (cd[1:] <= env[1:] * (1 + 1e-6) + 1e-18).all()
    assert cd[-1] > 1e-3 * env[-1]  # and it is a real envelope, not a vacuous one


def test_honest_mixing_matrix_drops_byzantine_rows_and_stays_doubly_stochastic():
    G = nx.cycle_graph(6)
    byz = np.array([True, False, False, False, False, False])
    W = honest_mixing_matrix(G, byz, 1.0)
    assert W.shape == (5, 5) and np.allclose(W, W.T) and np.allclose(W.sum(1), 1)
    assert W[0, 1] == pytest.approx(1 / 3) and W[0, 0] == pytest.approx(2 / 3)  # node 1 lost its Byzantine link
    U = honest_mixing_matrix(G, byz, 0.3, weighted=False)  # the "gossip" rule: I − α L with unit weights
    L = nx.laplacian_matrix(G.subgraph(range(1, 6)), nodelist=range(1, 6)).toarray()
    np.testing.assert_allclose(U, np.eye(5) - 0.3 * L)


def test_plot_theory_draws_floor_and_refuses_other_metrics(server_run):
    out, _ = server_run
    fig, ax = plt.subplots()
    plot_metric([out], "dist_to_opt", ax=ax)
    (line,) = plot_theory([out], "dist_to_opt", ax=ax)
    assert line.get_ydata()[0] == pytest.approx(theory_floor(out)["floor"])
    assert line.get_color() == ax.get_lines()[0].get_color()
    with pytest.raises(ValueError, match="not 'accuracy'"):
        plot_theory([out], "accuracy", ax=ax)
    plt.close(fig)


def test_theory_needs_a_known_optimum(tmp_path):
    pr.simulate(RunConfig().replace(**{"train.rounds": 1}), out=tmp_path)
    with pytest.raises(ValueError, match="has no known optimum"):
        theory_floor(tmp_path)
