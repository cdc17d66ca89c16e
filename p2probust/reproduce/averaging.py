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
:class:`p2probust.kernels.Kernels` with no local step, one batched call per step.

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
from ..engine.sync import RoundPlan
from ..kernels import Kernels
from ..topology import NeighborTable
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


def attacked_table(G: nx.Graph, f: int, weights: str) -> tuple[NeighborTable, torch.Tensor]:
    """``G`` (honest, nodes ``0..n-1``) with ``f`` Byzantine vertices attached to every node, and
    the authors' weights; returns ``(table, is_byzantine [n (1 + f)])``."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights = {weights!r} must be one of: {', '.join(WEIGHTS)}")
    H, is_byz = attach_byzantine(G, f)
    table = NeighborTable.from_graph(H, weights="uniform", dtype=torch.float64)
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


def run_averaging(G: nx.Graph, f: int, rule, attack: AbstractAttack, *, d: int = 5, steps: int = 100,
                  shift: float = 0.0, weights: str = "metropolis", seed: int = 0,
                  stop_above: float = float("inf")) -> np.ndarray:
    """Iterate ``rule`` for ``steps`` steps on the honest graph ``G`` with ``f`` Byzantine neighbours
    per node sending ``attack``'s messages; return the ``[steps + 1]`` MSE curve (step 0 first).

    ``rule`` is an unbound gossip rule object (e.g. ``make_rule("cs-plus", eta_graph="honest")``);
    a rule that cannot tolerate ``f`` at some node raises ``ValueError`` before any step.
    Non-finite values propagate into the curve (``inf``/``nan``) rather than raising. Once the
    error exceeds ``stop_above × MSE_0`` (or is not finite) the run has broken down: it stops and
    the rest of the curve is ``inf``.
    """
    n_h = G.number_of_nodes()
    table, is_byz = attacked_table(G, f, weights)
    n = table.n
    gen = torch.Generator().manual_seed(seed)
    params = torch.zeros(n, d, dtype=torch.float64)
    params[:n_h] = initial_values(n_h, d, shift, gen)
    target = params[:n_h].mean(0)
    f_all = torch.where(is_byz, torch.zeros((), dtype=torch.long), table.byzantine_counts(is_byz))
    gossip = rule.bind(table, is_byz)
    gossip.check_tolerance(table.degree, f_all)
    kern = Kernels(params, torch.zeros_like(params), table, is_byz, f_all, torch.arange(n_h), None, gossip, attack,
                   local_steps=0, beta=0.0, gen_batches=torch.Generator().manual_seed(seed),
                   gen_attack=torch.Generator().manual_seed(seed + 1), num_classes=0, jit="off")
    curve = np.empty(steps + 1)
    curve[0] = mse(kern.params[:n_h], target)
    for t in range(steps):
        kern.sync_round(RoundPlan(round=t, start=float(t), end=float(t + 1)), 0.0)
        curve[t + 1] = mse(kern.params[:n_h], target)
        if not curve[t + 1] <= stop_above * curve[0]:
            curve[t + 1:] = np.inf
            break
    return curve


def mse(x: torch.Tensor, target: torch.Tensor) -> float:
    """The authors' error: ``((x - target)**2).sum(0).mean()`` for honest values ``x [h, d]``."""
    return float(((x - target) ** 2).sum(0).mean())
