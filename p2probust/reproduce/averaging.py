r"""Robust averaging without learning: iterate a gossip rule on fixed initial values under attack.

The averaging task of Gaucher, Dieuleveut and Hendrikx (ICML 2025): honest nodes start from
values :math:`x_i^0 \in \mathbb{R}^d` and only gossip (no local step); every honest node has
exactly ``f`` Byzantine neighbours (new vertices, :func:`~p2probust.topology.attach_byzantine`);
the error after ``t`` steps is the authors' "Average loss"

.. math:: \mathrm{MSE}_t = \frac{1}{d} \sum_{i \in H} \|x_i^t - \bar x^0_H\|^2,

the distance of the honest values to the mean of the *initial* honest values (summed over nodes,
averaged over coordinates: ``((params - target)**2).sum(dim=0).mean()`` in their
``PeerToPeerSparseAVG.py``).

The harness reuses the simulator's pieces unchanged: the neighbour table, the rule object (bound
to the table, as :func:`p2probust.simulate` does) and the attack object run through
:func:`p2probust.step.sync_round` with no local step, one batched call per step.

Weights follow the authors' ``topology.py`` (``CommunicationNetwork``): ``"metropolis"`` gives an
honest edge :math:`1/(\max(d_i, d_j) + 1 + f)` (honest degrees) and each Byzantine edge of node
``i`` the largest honest weight of ``i``; ``"unit"`` gives every edge weight 1. The robust-sum
rules' step :math:`\eta = 1/\lambda_{\max}` is taken on the weighted *honest* Laplacian, as their
``communication_step`` (``eta_graph="honest"``).

Reference: R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine
robust gossip", ICML 2025 (arXiv:2410.10418); code renaudgaucher/Byzantine-Robust-Gossip
(``reproduce_averaging0.py``, ``reproduce_averaging1.py``, ``topology.py``).
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import torch

from ..attacks.base import AbstractAttack
from ..attacks.spectral import SpectralHeterogeneity, fiedler_vector
from ..engine.sync import RoundPlan
from ..state import Simulation
from ..step import sync_round
from ..wiring import Wiring, tolerance_cap
from ..topology import NeighbourTable
from ..topology.adversarial import attach_byzantine

WEIGHTS = ("metropolis", "unit")


def gaucher_two_worlds(n: int, h: int) -> nx.Graph:
    """The authors' two worlds: cliques ``0..n//2-1`` and ``n//2..n-1``; node ``i`` of the first
    joined to ``n//2 + (i + k) mod (n//2)`` for ``k < h`` (``topology.py``, ``two_worlds``)."""
    if n < 4 or not 1 <= h <= n // 2:
        raise ValueError(f"two worlds needs n >= 4 and 1 <= h <= n//2, got n = {n}, h = {h}")
    half = n // 2
    G = nx.union(nx.complete_graph(half), nx.relabel_nodes(nx.complete_graph(n - half), lambda v: v + half))
    G.add_edges_from((i, (i + k) % half + half) for i in range(half) for k in range(h))
    return G


def attacked_table(G: nx.Graph, f: int, weights: str) -> tuple[NeighbourTable, torch.Tensor]:
    """``G`` (honest, nodes ``0..n-1``) with ``f`` Byzantine vertices attached to every node, and
    the authors' weights; returns ``(table, is_byzantine [n (1 + f)])``."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights = {weights!r} must be one of: {', '.join(WEIGHTS)}")
    H, is_byz = attach_byzantine(G, f)
    table = NeighbourTable.from_graph(H, weights="uniform", dtype=torch.float64)
    if weights == "metropolis":
        deg = torch.tensor([G.degree(v) for v in range(G.number_of_nodes())] + [0] * int(is_byz.sum()))
        byz_slot = is_byz[table.idx] & table.mask
        honest_slot = table.mask & ~byz_slot & ~is_byz.unsqueeze(1)
        w = torch.where(honest_slot, 1.0 / (torch.maximum(deg.unsqueeze(1), deg[table.idx]) + 1 + f).double(),
                        torch.zeros((), dtype=torch.float64))
        top = w.max(dim=1, keepdim=True).values
        w = torch.where(byz_slot, top.expand_as(w), w)
        w = torch.where(is_byz.unsqueeze(1) & table.mask, torch.ones((), dtype=torch.float64), w)
        table = dataclasses.replace(table, weights=w, self_weight=1.0 - w.sum(1))
    return table, is_byz


def initial_values(n: int, d: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """``[n, d]`` float64: :math:`N(0, I_d)`, plus ``shift`` on the first coordinate for the first
    ``n // 2`` nodes and minus it for the others (the paper's two-sided start; ``shift = 0``: no split)."""
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    x[: n // 2, 0] += shift
    x[n // 2:, 0] -= shift
    return x


class ReplicaSpectral(SpectralHeterogeneity):
    r"""The spectral attack on ``r`` disjoint copies (replicas) of one graph, each attacked as if alone.

    Replica ``q`` holds honest nodes ``q h .. (q + 1) h - 1``. Each replica's Byzantine message is
    :math:`\theta_i + c_i u_i \sum_{j \in H_q} u_j \theta_j` with ``u`` the Fiedler vector of one
    copy's honest graph (the union's Laplacian has an ``r``-dimensional null space, so its own
    second eigenvector would pull whole replicas apart instead); ``c_i`` is line-searched per
    recipient as in :class:`~p2probust.attacks.SpectralHeterogeneity`, which this only re-aims.
    """

    def __init__(self, base: SpectralHeterogeneity, u: torch.Tensor, replicas: int):
        super().__init__(factor=base.factor, evals=base.evals, weights=base.weights)
        self.u, self.replicas = u, replicas  # u: [h] float64, one copy's honest Fiedler vector

    def direction(self, ctx):
        h = self.u.numel()
        theta = ctx.params[: h * self.replicas].reshape(self.replicas, h, -1)
        split = torch.einsum("j,rjd->rd", self.u.to(theta.dtype), theta)  # [r, d]
        i = ctx.recipients
        return self.u.to(theta.dtype)[i % h].unsqueeze(1) * split[i // h]


def run_averaging(G: nx.Graph, f: int, rule, attack: AbstractAttack, *, d: int = 5, steps: int = 100,
                  shift: float = 0.0, weights: str = "metropolis", seeds=(0,),
                  stop_above: float = float("inf")) -> np.ndarray:
    """Iterate ``rule`` for ``steps`` steps on the honest graph ``G`` with ``f`` Byzantine neighbours
    per node sending ``attack``'s messages; return the ``[len(seeds), steps + 1]`` MSE curves
    (step 0 first), one per seed.

    The seeds run together, as disjoint replicas of ``G`` in one batched state (replica ``q``
    starts from :func:`initial_values` drawn with ``seeds[q]``); each replica is measured against
    its own honest mean. Rules and the dissensus attack act per node, so replicas do not interact;
    the spectral attack is re-aimed per replica (:class:`ReplicaSpectral`).

    ``rule`` is an unbound gossip rule object (e.g. ``make_rule("cs-plus", eta_graph="honest")``);
    a rule that cannot tolerate ``f`` at some node raises ``ValueError`` before any step.
    Once every replica's error exceeds ``stop_above`` times its start (or is not finite) the rules
    have broken down: the run stops and the rest of those curves is ``inf``.
    """
    seeds = [int(s) for s in seeds]
    r, h = len(seeds), G.number_of_nodes()
    union = nx.disjoint_union_all([G] * r) if r > 1 else G
    table, is_byz = attacked_table(union, f, weights)
    if r > 1 and isinstance(attack, SpectralHeterogeneity):
        one, one_byz = attacked_table(G, f, weights)
        w = None if attack.weights == "uniform" else one.weights
        attack = ReplicaSpectral(attack, fiedler_vector(one.idx, one.mask, one_byz, w)[:h], r)
    params = torch.zeros(table.n, d, dtype=torch.float64)
    params[: r * h] = torch.cat([initial_values(h, d, shift, torch.Generator().manual_seed(s)) for s in seeds])
    target = params[: r * h].reshape(r, h, d).mean(1, keepdim=True)
    f_all = torch.where(is_byz, torch.zeros((), dtype=torch.long), table.byzantine_counts(is_byz))
    gossip = rule.bind(table, is_byz)
    gossip.check_tolerance(table.degree, f_all)
    wiring = Wiring.of_table(table, is_byz, f_all, torch.arange(r * h), silent=not getattr(attack, "sends", True),
                             cap=tolerance_cap(gossip))
    sim = Simulation(wiring, None, gossip, attack, local_steps=0, beta=0.0,
                     gen_batches=torch.Generator().manual_seed(seeds[0]),
                     gen_attack=torch.Generator().manual_seed(seeds[0] + 1), num_classes=0, dtype=params.dtype, jit="off")
    state = sim.state(params)
    curves = np.full((r, steps + 1), np.inf)
    curves[:, 0] = mse(state.params[: r * h].reshape(r, h, d), target)
    for t in range(steps):
        state = sync_round(sim, state, RoundPlan(round=t, start=float(t), end=float(t + 1)), 0.0)[0]
        curves[:, t + 1] = mse(state.params[: r * h].reshape(r, h, d), target)
        if not (curves[:, t + 1] <= stop_above * curves[:, 0]).any():
            break
    return curves


def mse(x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """The authors' error ``((x - target)**2).sum(0).mean()`` per replica: ``x [r, h, d]``,
    ``target [r, 1, d]`` -> ``[r]``."""
    return ((x - target) ** 2).sum(1).mean(1).numpy()
