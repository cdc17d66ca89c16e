r"""The spectral heterogeneity attack of Gaucher, Dieuleveut and Hendrikx (ICML 2025).

It pulls the two sides of the honest graph's sparsest cut apart: the heterogeneity that gossip
removes most slowly is the one along the Fiedler vector of the honest graph's Laplacian.
Shapes: ``craft(ctx) -> [E, d]``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext
from .decentralized import _WEIGHTS, _mixing_weights, gossip_target, search_factor
from .linesearch import check_search

#: above this many honest nodes the Fiedler vector comes from ARPACK instead of a dense solver
DENSE_LIMIT = 2000


def fiedler_vector(idx: Tensor, mask: Tensor, is_byzantine: Tensor, weights: Tensor | None = None) -> Tensor:
    r"""Unit Fiedler vector of the honest subgraph's Laplacian, as a float64 ``[n]`` (0 at Byzantine nodes).

    The eigenvector of the second-smallest eigenvalue of :math:`L_H = D_H - A_H`, :math:`A_H` the
    graph induced by the honest nodes with edge weights ``weights[i, slot]`` (symmetrised,
    :math:`(w_{ij} + w_{ji})/2`; 1 on every edge when ``None``), as ``networkx.fiedler_vector``
    on the edge-weighted honest graph in Gaucher et al.'s code. Unit Euclidean norm, the entry
    of largest magnitude (lowest index on ties) positive, so the result is deterministic.
    """
    honest = ~is_byzantine
    idx, mask, honest = idx.cpu(), mask.cpu(), honest.cpu()
    ids = torch.nonzero(honest).squeeze(1).numpy()
    h = ids.size
    out = np.zeros(is_byzantine.numel())
    if h < 2:
        return torch.from_numpy(out)
    pos = -np.ones(is_byzantine.numel(), dtype=np.int64)
    pos[ids] = np.arange(h)
    keep = (mask & honest.unsqueeze(1) & honest[idx]).numpy()
    rows = pos[np.nonzero(keep)[0]]
    cols = pos[idx.numpy()[keep]]
    w = np.ones(rows.size) if weights is None else weights.detach().cpu().double().numpy()[keep]
    A = sp.csr_array((w, (rows, cols)), shape=(h, h))
    A = (A + A.T) / 2
    L = sp.diags(np.asarray(A.sum(axis=1)).ravel()) - A
    if h <= DENSE_LIMIT:
        v = np.linalg.eigh(L.toarray())[1][:, 1]
    else:
        v0 = np.random.default_rng(0).standard_normal(h)
        vals, vecs = eigsh(L.tocsc(), k=2, sigma=-1e-3, which="LM", v0=v0)
        v = vecs[:, np.argsort(vals)[1]]
    v = v / np.linalg.norm(v)
    out[ids] = v if v[int(np.argmax(np.abs(v)))] > 0 else -v
    return torch.from_numpy(out)


@register_attack("spectral", "θ_i + c·u_i·Σ_j u_jθ_j on the honest Fiedler vector u, c line-searched (Gaucher et al. 2025)")
class SpectralHeterogeneity(AbstractAttack):
    r"""Spectral heterogeneity attack: :math:`m_{b\to i} = \theta_i + c_i\, u_i \sum_{j\in H} u_j\theta_j`.

    :math:`u` is the unit Fiedler vector of the honest subgraph's Laplacian, edge-weighted by the
    mixing weights (:func:`fiedler_vector`), so recipients on the two sides of the sparsest cut
    are pushed in opposite directions along the models' own disagreement across the cut,
    :math:`\sum_j u_j\theta_j` (zero while the honest models agree: the attack amplifies the
    heterogeneity that local steps create, it does not create it). The product
    :math:`u_i \sum_j u_j\theta_j` does not depend on the sign of :math:`u`.

    :math:`c_i \ge 0` is line-searched per recipient against the deployed rule, as in the
    authors' code (``attacks/identical_sparse.py``, ``factor=-16``: ``tools.line_maximize`` with 16
    evaluations from 0, step 1, contraction 0.8), to maximise the distance of the rule's output
    to the honest gossip target :math:`\theta_i + \alpha\sum_{j\in H} w_{ij}(\theta_j - \theta_i)`
    (:func:`~p2probust.attacks.decentralized.gossip_target`); the factor found (mean over edges)
    is reported per round in ``metrics.csv`` as ``attack_factor``. A number ``factor`` fixes
    :math:`c` instead. The Fiedler vector is computed once per wiring and cached.

    Parameters
    ----------
    factor : float or None, default None
        ``None``: line search; a number: fixed :math:`c` (may be negative).
    evals : int, default 16
        Rule evaluations of the line search.
    weights : {"table", "uniform", "rule"}, default "table"
        Edge weights of the honest Laplacian and of the gossip target: the neighbour table's
        mixing weights (the paper's weighted Laplacian), 1 per edge, or the rule's view
        (uniform for aggregate-and-mix).

    References
    ----------
    .. [1] R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine robust
       gossip", ICML 2025 (arXiv:2410.10418); code: renaudgaucher/Byzantine-Robust-Gossip.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    knowledge = "omniscient"
    report_columns = ("attack_factor",)

    def __init__(self, factor: float | None = None, evals: int = 16, weights: str = "table"):
        if factor is not None and not math.isfinite(factor):
            raise ValueError(f"factor = {factor} must be a finite number, or None for the line search")
        if weights not in _WEIGHTS:
            raise ValueError(f"weights = {weights!r} must be one of: {', '.join(_WEIGHTS)}")
        self.factor = None if factor is None else float(factor)
        self.evals = check_search(evals, 0.0, 1.0, 0.8)[0]
        self.weights = weights
        self._found: float | None = None

    def fiedler(self, ctx: AttackContext) -> Tensor:
        """``[n]`` float64: the unit Fiedler vector of ``ctx``'s (weighted) honest graph, kept in
        the wiring's cache (``ctx.wiring_cache``: computed once per graph, never compared)."""
        cache, key = ctx.wiring_cache, f"fiedler:{self.weights}"
        if cache is not None and key in cache:
            return cache[key]
        u = fiedler_vector(ctx.idx, ctx.mask, ctx.is_byzantine, _mixing_weights(ctx, self.weights))
        if cache is not None:
            cache[key] = u
        return u

    def direction(self, ctx: AttackContext) -> Tensor:
        r"""``[E, d]``: :math:`u_i \sum_{j\in H} u_j\theta_j` for each edge's recipient ``i``."""
        u = self.fiedler(ctx).to(ctx.params.device, ctx.params.dtype)
        split = u @ torch.where(ctx.is_byzantine.unsqueeze(1), torch.zeros((), dtype=u.dtype), ctx.params)
        return u[ctx.recipients].unsqueeze(1) * split

    def craft(self, ctx: AttackContext) -> Tensor:
        own, direction = ctx.params[ctx.recipients], self.direction(ctx)
        if self.factor is not None:
            self._found = self.factor
            return own + self.factor * direction
        crafted, c = search_factor(ctx, own, direction, gossip_target(ctx, self.weights), (self.evals, 0.0, 1.0, 0.8))
        self._found = float(c.double().mean()) if c.numel() else None
        return crafted

    def report(self) -> dict[str, float | None]:
        return {"attack_factor": self._found}
