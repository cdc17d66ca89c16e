r"""Theory overlays for a saved run: the robust error floor and the plain-gossip consensus envelope.

**Error floor** (tasks with a known optimum, e.g. ``least-squares``). An aggregator ``F`` is
:math:`(f, \kappa)`-robust when :math:`\|F(x) - \bar x_G\|^2 \le \kappa\,\frac1{|G|}\sum_{i\in G}
\|x_i-\bar x_G\|^2` for every honest subset ``G`` (Allouah et al., AISTATS 2023; Guerraoui, Gupta,
Pinot, *Robust Machine Learning: Distributed Methods for Safe AI*, Springer 2024, ch. 4). Let the
honest nodes agree on :math:`\theta` and send :math:`\theta - \eta\nabla L_i(\theta)`: their spread
is :math:`\eta^2 G^2(\theta)`, :math:`G^2(\theta) = \frac1{|H|}\sum_{i\in H}\|\nabla L_i(\theta) -
\nabla L_H(\theta)\|^2`. A fixed point of robust gradient descent then has :math:`\eta^2\|\nabla
L_H(\theta)\|^2 \le \kappa\,\eta^2 G^2(\theta)`, and :math:`\mu`-strong convexity
(:math:`\|\nabla L_H(\theta)\| \ge \mu\|\theta-\theta^\star\|`) gives the floor

.. math:: \|\bar\theta_H - \theta^\star\|^2 \;\lesssim\; \frac{\kappa\, G^2(\theta^\star)}{\mu^2},

the distance form of the :math:`\mathcal O(\kappa G^2/\mu)` loss floor of robust D-GD under
strong convexity (Allouah et al. 2023; the book, ch. 4), with :math:`G^2` measured at
:math:`\theta^\star` as the heterogeneity constant (it varies with :math:`\theta` on least squares,
so the line is first-order accurate near the optimum). It is a bound for the server setting:
the complete graph with :math:`\alpha = 1` and deterministic (large-batch) gradients (the test
checks a run there); on sparse graphs it is a reference level only (the decentralized error also
depends on the graph). ``κ`` is the known
bound of :func:`p2probust.robustness.kappa_bound` (trimmed mean, median) with ``m`` = degree + 1
inputs and ``f`` = the Byzantine neighbours a node declares or has (the worst honest node),
else the largest empirical κ of :func:`p2probust.robustness.kappa_table` (``p2probust kappa``).

**Gossip envelope.** For a symmetric doubly stochastic mixing matrix ``W`` on the honest nodes,
:math:`\|(W - J)x\| \le \rho\|x - \bar x\|` with :math:`\rho = \|W - J\|_2`, :math:`J = \mathbf 1
\mathbf 1^\top/|H|`; so plain gossip contracts the consensus distance by :math:`1-\gamma = \rho^2`
per round, :math:`\Xi_t \le (1-\gamma)^{t-t_0}\Xi_{t_0}` (the spectral-gap parameter ``p`` of
Koloskova et al., "A unified theory of decentralized SGD with changing topology and local
updates", ICML 2020: their expected consensus rate, :math:`\mathbb E\|XW - \bar X\|_F^2 \le
(1-p)\|X - \bar X\|_F^2`, which a fixed symmetric ``W`` meets with :math:`p = 1 - \rho^2`).
``W = I − α L_w`` is the run's gossip step restricted to honest nodes:
Metropolis–Hastings weights ``w_ij = 1/(1+max(d_i, d_j))`` (full-graph degrees, as the neighbour
table), or unit weights for the ``gossip`` rule and for ``topology.weights = "uniform"``. The envelope starts
at ``t0``, the first round with a positive consensus distance (nodes start from one model); local
steps and attacks push the measured curve above it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch

from ..config import RunConfig, from_dict
from ..data.partition import pad_partition
from ..data.setup import build_partition, build_task
from ..models import ParamSpec

__all__ = ["gossip_envelope", "honest_mixing_matrix", "run_kappa", "theory_floor"]


def _config(resolved: dict[str, Any]) -> RunConfig:
    """The RunConfig of a resolved ``config.json`` (resolved-only keys dropped)."""
    parts = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    data: dict[str, Any] = {}
    for key, value in resolved.items():
        if isinstance(value, dict) and key in parts:
            known = {f.name for f in dataclasses.fields(type(getattr(RunConfig(), key)))}
            data[key] = {k: v for k, v in value.items() if k in known}
        elif key in parts:
            data[key] = value
    data["byzantine"] = {"count": len(resolved["byzantine"]["nodes"]), "nodes": resolved["byzantine"]["nodes"]}
    return from_dict(data)


def _load(run_dir: str | Path) -> tuple[RunConfig, dict, np.ndarray, nx.Graph]:
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run folder: it has no config.json")
    resolved = json.loads(path.read_text())
    cfg = _config(resolved)
    n = int(resolved["topology"]["nodes"])
    byz = np.zeros(n, dtype=bool)
    byz[resolved["byzantine"]["nodes"]] = True
    gpath = run_dir / "graph.json"
    if gpath.is_file():
        G = nx.Graph()
        G.add_nodes_from(range(n))
        G.add_edges_from(map(tuple, json.loads(gpath.read_text())["edges"]))
    else:
        from ..build import _graph

        G = _graph(cfg, None)
    return cfg, resolved, byz, G


def honest_mixing_matrix(G: nx.Graph, byzantine: np.ndarray, alpha: float, *, weighted: bool = True) -> np.ndarray:
    """``[h, h]`` symmetric ``W = I − α L_w`` of the honest subgraph (rows sum to 1)."""
    n = G.number_of_nodes()
    A = nx.to_numpy_array(G, nodelist=range(n))
    if weighted:
        deg = A.sum(1)
        A = A / (1.0 + np.maximum(deg[:, None], deg[None, :]))
    h = np.flatnonzero(~byzantine)
    A = A[np.ix_(h, h)]
    return np.eye(len(h)) - alpha * (np.diag(A.sum(1)) - A)


def gossip_envelope(run_dir: str | Path, rounds: np.ndarray, consensus: np.ndarray) -> tuple[np.ndarray, float]:
    """``Ξ_{t0} (1−γ)^{t−t0}`` at ``rounds`` (NaN before ``t0``) and ``1 − γ = ρ²``, from the run's graph and α."""
    cfg, _, byz, G = _load(run_dir)
    weighted = cfg.rule.name != "gossip" and cfg.topology.weights in ("metropolis", "max-degree")  # "gossip": unit weights
    W = honest_mixing_matrix(G, byz, cfg.rule.alpha, weighted=weighted)
    h = W.shape[0]
    rho = float(np.linalg.norm(W - np.full((h, h), 1.0 / h), 2))
    positive = np.flatnonzero(np.isfinite(consensus) & (consensus > 0))
    if positive.size == 0:
        return np.full(len(rounds), np.nan), rho**2
    t0 = positive[0]
    env = consensus[t0] * rho ** (2.0 * (rounds - rounds[t0]))
    return np.where(np.arange(len(rounds)) >= t0, env, np.nan), rho**2


def run_kappa(cfg: RunConfig, G: nx.Graph, byz: np.ndarray) -> float:
    """κ of the run's rule at its worst honest node (see the module docstring)."""
    from ..gossip.registry import make_rule
    from ..robustness import kappa_bound, kappa_table

    A = nx.to_numpy_array(G, nodelist=range(G.number_of_nodes()))
    honest = ~byz
    m = A.sum(1).astype(int)[honest] + 1
    b = (A[:, byz].sum(1).astype(int))[honest]
    f = b if cfg.rule.tolerance == "oracle" else np.full_like(b, int(cfg.rule.tolerance))
    pairs = sorted({(int(mi), int(fi)) for mi, fi in zip(m, f) if fi > 0})
    if not pairs:
        return 0.0  # no Byzantine neighbour and f = 0: the rule is the mean of honest inputs
    rule = make_rule(cfg.rule.name, alpha=cfg.rule.alpha, **dict(cfg.rule.params))
    agg = getattr(rule, "aggregator", None)
    kappas = []
    for mi, fi in pairs:
        bound = kappa_bound(cfg.rule.name, mi, fi)
        if bound is None:
            if agg is None:
                raise ValueError(f"rule {cfg.rule.name!r} is not an aggregator: no κ for its floor")
            bound = max(r["max"] for r in kappa_table(agg, cfg.rule.name, m=mi, f=fi, seed=0))
        kappas.append(bound)
    return float(max(kappas))


def theory_floor(run_dir: str | Path, *, kappa: float | None = None) -> dict[str, float]:
    """``{"kappa", "G2", "mu", "floor"}`` with ``floor = κ G²(θ*) / μ²`` for a run on a task with a known optimum."""
    cfg, resolved, byz, G = _load(run_dir)
    task = build_task(cfg)  # the run's own task and partition, as simulate() built them
    honest = torch.from_numpy(~np.asarray(byz, dtype=bool))
    parts, _, _ = build_partition(cfg, task, honest)
    honest_parts = parts if cfg.data.split_among == "honest" else [parts[i] for i in np.flatnonzero(honest.numpy())]
    optimum = task.optimum(honest_parts)
    if optimum is None:
        raise ValueError(f"task {cfg.data.task!r} has no known optimum; --theory needs one (e.g. --task least-squares)")
    theta_star = optimum[0].double()
    table, lengths = pad_partition(honest_parts)
    g2, mu = _heterogeneity_and_mu(task, theta_star, table, lengths)
    k = run_kappa(cfg, G, byz) if kappa is None else float(kappa)
    return {"kappa": k, "G2": g2, "mu": mu, "floor": k * g2 / mu**2}


def _heterogeneity_and_mu(task, theta_star: torch.Tensor, table: torch.Tensor, lengths: torch.Tensor) -> tuple[float, float]:
    """``G²(θ*) = (1/|H|) Σ_i ‖∇L_i(θ*) − ∇L_H(θ*)‖²`` and ``μ = λ_min(∇²L_H(θ*))``, batched over nodes."""
    model = task.make_model().double()
    spec = ParamSpec.from_module(model)
    x, y = task.dataset.x_train.double(), task.dataset.y_train.double()

    def sample_loss(theta, xs, ys):
        out = torch.func.functional_call(model, spec.unflatten(theta), (xs.unsqueeze(0),)).squeeze(0)
        return 0.5 * ((out - ys) ** 2).sum()

    per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=(None, 0, 0))(theta_star, x, y)  # [N, d]
    valid = torch.arange(table.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # [h, L]
    node_grads = torch.where(valid.unsqueeze(-1), per_sample[table], 0.0).sum(1) / lengths.unsqueeze(1).double()
    g2 = float(((node_grads - node_grads.mean(0)) ** 2).sum(1).mean())
    weights = torch.zeros(x.shape[0], dtype=torch.float64)  # F = Σ_s w_s loss_s, w_s = Σ_i [s ∈ D_i] / (|D_i| |H|)
    weights.index_add_(0, table[valid], (1.0 / lengths.double()).unsqueeze(1).expand_as(valid)[valid] / len(lengths))

    def objective(theta):
        return (weights * torch.func.vmap(sample_loss, in_dims=(None, 0, 0))(theta, x, y)).sum()

    hess = torch.func.jacrev(torch.func.jacrev(objective))(theta_star)  # reverse over reverse: no forward-mode AD
    return g2, float(torch.linalg.eigvalsh(hess)[0])
