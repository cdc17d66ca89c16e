r"""Attacks that exploit the graph: dissensus, isolation and the spectral heterogeneity attack.

They are omniscient: each message depends on the recipient's honest neighbours (and, for the
spectral attack, on the whole honest graph). Shapes: ``craft(ctx) -> [E, d]``.
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

_WEIGHTS = ("rule", "table", "uniform")
#: above this many honest nodes the Fiedler vector comes from ARPACK instead of a dense solver
DENSE_LIMIT = 2000


def _mixing_weights(ctx: AttackContext, mode: str) -> Tensor:
    """``[n, k]`` weights the recipient's rule gives its neighbours (0 on padding).

    ``"rule"``: the table weights for a weighted gossip rule, 1 for unweighted gossip and for
    aggregate-and-mix (which weighs its whole neighbourhood equally); ``"table"``: ``ctx.weights``;
    ``"uniform"``: 1 on every real slot.
    """
    if mode == "rule":
        rule = ctx.rule
        uniform = getattr(rule, "weighted", True) is False or hasattr(rule, "aggregator")
        mode = "uniform" if uniform else "table"
    if mode == "uniform":
        return ctx.mask.to(ctx.params.dtype)
    return ctx.slot_weights()


def undo_direction(ctx: AttackContext, weights: str = "rule") -> tuple[Tensor, Tensor]:
    r"""The recipient's model and the step that cancels its gossip update, per edge.

    .. math:: v_i = \frac{\sum_{j \in N_H(i)} w_{ij} (\theta_j - \theta_i)}{\sum_{b \in N_B(i)} w_{ib}}

    If every Byzantine neighbour of :math:`i` sends :math:`\theta_i - \varepsilon v_i`, the
    Byzantine part of the weighted gossip step is :math:`-\varepsilon` times its honest part.

    Returns
    -------
    (Tensor [E, d], Tensor [E, d])
        :math:`\theta_i` and :math:`v_i` for every edge's recipient ``i``.
    """
    if weights not in _WEIGHTS:
        raise ValueError(f"weights = {weights!r} must be one of: {', '.join(_WEIGHTS)}")
    r, inv = ctx.recipient_groups  # once per distinct recipient, gathered back to the edges
    w = _mixing_weights(ctx, weights)[r]  # [R, k]
    honest = ctx.honest_slots[r]
    byz = ctx.mask[r] & ctx.is_byzantine[ctx.idx[r]]
    own = ctx.params[r]
    diff = ctx.params[ctx.idx[r]] - own.unsqueeze(1)  # [R, k, d]
    zero = torch.zeros((), dtype=w.dtype)
    pull = torch.where(honest.unsqueeze(-1), w.unsqueeze(-1) * diff, zero).sum(1)
    byz_weight = torch.where(byz, w, zero).sum(1).clamp_min(torch.finfo(w.dtype).tiny)
    return own[inv], (pull / byz_weight.unsqueeze(1))[inv]


@register_attack("dissensus", "push each recipient away from its honest neighbours (He, Karimireddy, Jaggi 2022)")
class Dissensus(AbstractAttack):
    r"""Dissensus: :math:`m_{b\to i} = \theta_i - \varepsilon\, v_i` with :math:`v_i` from
    :func:`undo_direction`.

    Each recipient is pushed away from the weighted average of its honest neighbours by
    :math:`\varepsilon` times its own gossip step: with :math:`\varepsilon > 1` its update under
    plain gossip points away from its neighbours, so honest models drift apart (most at the graph's
    bottlenecks). The messages sit close to the recipient's own model, where clipping and trimming
    rules keep them.

    Parameters
    ----------
    epsilon : float, default 1.5
    weights : {"rule", "table", "uniform"}, default "rule"
        Mixing weights used in :math:`v_i` (see :func:`undo_direction`).

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
       ClippedGossip" (self-centered clipping), arXiv:2202.01545, 2022; the attack follows the
       authors' code (``DissensusWorker``: ``target_model − ε · partial_sum / byzantine_weight``).
    """

    knowledge = "omniscient"

    def __init__(self, epsilon: float = 1.5, weights: str = "rule"):
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon = {epsilon} must be a finite number")
        if weights not in _WEIGHTS:
            raise ValueError(f"weights = {weights!r} must be one of: {', '.join(_WEIGHTS)}")
        self.epsilon = float(epsilon)
        self.weights = weights

    def craft(self, ctx: AttackContext) -> Tensor:
        own, v = undo_direction(ctx, self.weights)
        return own - self.epsilon * v


@register_attack("isolation", "cancel each recipient's gossip update, keeping it where it is (Wu et al. 2023)")
class Isolation(AbstractAttack):
    r"""Isolation: :math:`m_{b\to i} = \theta_i - v_i` (dissensus with :math:`\varepsilon = 1`).

    Under weighted gossip the recipient's update is exactly zero: it never moves towards its honest
    neighbours, and its local data alone drive it.

    Parameters
    ----------
    weights : {"rule", "table", "uniform"}, default "rule"

    References
    ----------
    .. [1] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization with
       robust aggregation rules", IEEE Transactions on Signal Processing 71, 2023.
    """

    knowledge = "omniscient"

    def __init__(self, weights: str = "rule"):
        if weights not in _WEIGHTS:
            raise ValueError(f"weights = {weights!r} must be one of: {', '.join(_WEIGHTS)}")
        self.weights = weights

    def craft(self, ctx: AttackContext) -> Tensor:
        own, v = undo_direction(ctx, self.weights)
        return own - v


def fiedler_vector(idx: Tensor, mask: Tensor, is_byzantine: Tensor) -> Tensor:
    r"""Fiedler vector of the honest subgraph's Laplacian, as a float64 ``[n]`` (0 at Byzantine nodes).

    The eigenvector of the second-smallest eigenvalue of :math:`L_H = D_H - A_H` (the graph
    induced by the honest nodes), scaled to max-abs 1 with its largest entry (lowest index on ties)
    positive, so the result is deterministic. Its sign splits the honest nodes along the graph's
    sparsest cut (Cheeger).
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
    A = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(h, h))
    L = sp.diags(np.asarray(A.sum(axis=1)).ravel()) - A
    if h <= DENSE_LIMIT:
        v = np.linalg.eigh(L.toarray())[1][:, 1]
    else:
        v0 = np.random.default_rng(0).standard_normal(h)
        vals, vecs = eigsh(L.tocsc(), k=2, sigma=-1e-3, which="LM", v0=v0)
        v = vecs[:, np.argsort(vals)[1]]
    top = int(np.argmax(np.abs(v)))
    v = v / v[top]
    out[ids] = v
    return torch.from_numpy(out)


_DIRECTIONS = ("disagreement", "ones")


@register_attack("spectral", "pull the two sides of the honest graph's sparsest cut apart (Gaucher et al. 2025)")
class SpectralHeterogeneity(AbstractAttack):
    r"""Spectral heterogeneity attack: :math:`m_{b\to i} = \theta_i + \varepsilon\, u_i\, z`.

    :math:`u` is the Fiedler vector of the honest subgraph's Laplacian (:func:`fiedler_vector`,
    max-abs 1), so recipients on the two sides of the sparsest cut are pushed in opposite
    directions, harder the farther they sit from the cut; :math:`z \in \mathbb R^d` is a unit
    direction: ``"disagreement"`` (default) the component of the honest models along the Fiedler
    mode, :math:`\sum_{j\in H} u_j\theta_j` normalised (falling back to :math:`\mathbf 1/\sqrt d`
    while the models agree), or ``"ones"`` (:math:`\mathbf 1/\sqrt d`). The honest models are
    driven towards :math:`\theta^\star + c\, u z^\top`, the heterogeneity that gossip removes
    most slowly. The Fiedler vector is computed once per graph and cached.

    Parameters
    ----------
    epsilon : float, default 1.0
        Push size, in parameter units, at the nodes farthest from the cut.
    direction : {"disagreement", "ones"}, default "disagreement"

    References
    ----------
    .. [1] R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine robust
       gossip", ICML 2025 (arXiv:2410.10418).
    """

    knowledge = "omniscient"

    def __init__(self, epsilon: float = 1.0, direction: str = "disagreement"):
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon = {epsilon} must be a finite number")
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction = {direction!r} must be one of: {', '.join(_DIRECTIONS)}")
        self.epsilon = float(epsilon)
        self.direction = direction
        self._cache: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def fiedler(self, ctx: AttackContext) -> Tensor:
        """``[n]`` float64: the cached Fiedler vector of ``ctx``'s honest graph."""
        c = self._cache
        if c is None or not (
            torch.equal(c[0], ctx.idx) and torch.equal(c[1], ctx.mask) and torch.equal(c[2], ctx.is_byzantine)
        ):
            u = fiedler_vector(ctx.idx, ctx.mask, ctx.is_byzantine)
            self._cache = c = (ctx.idx.clone(), ctx.mask.clone(), ctx.is_byzantine.clone(), u)
        return c[3]

    def craft(self, ctx: AttackContext) -> Tensor:
        u = self.fiedler(ctx).to(ctx.params.device, ctx.params.dtype)
        d = ctx.dim
        z = torch.full((d,), 1.0 / math.sqrt(d), dtype=ctx.params.dtype, device=ctx.params.device)
        if self.direction == "disagreement":
            honest_rows = torch.where(ctx.is_byzantine.unsqueeze(1), torch.zeros((), dtype=u.dtype), ctx.params)
            split = u @ honest_rows
            norm = split.norm()
            if norm > 1e-12 * (1.0 + ctx.params[~ctx.is_byzantine].norm()):
                z = split / norm
        r = ctx.recipients
        return ctx.params[r] + self.epsilon * u[r].unsqueeze(1) * z
