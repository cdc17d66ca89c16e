r"""Attacks that exploit the graph: dissensus and isolation (the spectral attack lives in :mod:`.spectral`).

They are omniscient: each message depends on the recipient's honest neighbours. Shapes:
``craft(ctx) -> [E, d]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext
from .linesearch import _error, check_search, line_maximize

_WEIGHTS = ("rule", "table", "uniform")


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


def honest_pull(ctx: AttackContext, weights: str = "rule") -> tuple[Tensor, Tensor, Tensor]:
    r"""Per distinct recipient ``r`` (``ctx.recipient_groups``): its model, the weighted honest pull
    :math:`\sum_{j \in N_H(i)} w_{ij}(\theta_j - \theta_i)` and its Byzantine weight
    :math:`\sum_{b\in N_B(i)} w_{ib}`, as ``([R, d], [R, d], [R])``."""
    if weights not in _WEIGHTS:
        raise ValueError(f"weights = {weights!r} must be one of: {', '.join(_WEIGHTS)}")
    r, _ = ctx.recipient_groups
    w = _mixing_weights(ctx, weights)[r]  # [R, k]
    honest = ctx.honest_slots[r]
    byz = ctx.mask[r] & ctx.is_byzantine[ctx.idx[r]]
    own = ctx.params[r]
    diff = ctx.params[ctx.idx[r]] - own.unsqueeze(1)  # [R, k, d]
    zero = torch.zeros((), dtype=w.dtype)
    pull = torch.where(honest.unsqueeze(-1), w.unsqueeze(-1) * diff, zero).sum(1)
    return own, pull, torch.where(byz, w, zero).sum(1)


def gossip_target(ctx: AttackContext, weights: str = "rule") -> Tensor:
    r"""``[E, d]``: where honest gossip would take each edge's recipient,
    :math:`\theta_i + \alpha\sum_{j\in N_H(i)} w_{ij}(\theta_j - \theta_i)` (α: the rule's gossip
    rate, 1 if it has none). The point line-searched attacks push away from (Gaucher et al.'s
    ``grad_target_honest``)."""
    own, pull, _ = honest_pull(ctx, weights)
    alpha = float(getattr(ctx.rule, "alpha", 1.0))
    return (own + alpha * pull)[ctx.recipient_groups[1]]


def search_factor(ctx: AttackContext, base: Tensor, direction: Tensor, target: Tensor, search: tuple) -> tuple[Tensor, Tensor]:
    r"""Line-search :math:`c_i \ge 0` per recipient so that ``base + c · direction`` ([E, d] each)
    maximises :math:`\|R_i(\cdot) - \mathrm{target}_i\|` (:func:`~.linesearch.line_maximize` with
    ``search = (evals, start, delta, ratio)``); returns ``(messages [E, d], c [E])``."""
    evals, start, delta, ratio = search

    def scape(c: Tensor) -> Tensor:
        return _error(ctx.evaluate_rule(base + c.to(base.dtype).unsqueeze(1) * direction), target)

    c, _ = line_maximize(scape, ctx.num_edges, evals=evals, start=start, delta=delta, ratio=ratio, device=base.device)
    c = c.to(base.dtype)
    return base + c.unsqueeze(1) * direction, c


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
    own, pull, byz_weight = honest_pull(ctx, weights)  # once per distinct recipient, gathered back to the edges
    inv = ctx.recipient_groups[1]
    return own[inv], (pull / byz_weight.clamp_min(torch.finfo(pull.dtype).tiny).unsqueeze(1))[inv]


@register_attack("dissensus", "push each recipient away from its honest neighbours (He, Karimireddy, Jaggi 2022)")
class Dissensus(AbstractAttack):
    r"""Dissensus: :math:`m_{b\to i} = \theta_i - \varepsilon\, v_i` with :math:`v_i` from
    :func:`undo_direction`.

    Each recipient is pushed away from the weighted average of its honest neighbours by
    :math:`\varepsilon` times its own gossip step: with :math:`\varepsilon > 1` its update under
    plain gossip points away from its neighbours, so honest models drift apart (most at the graph's
    bottlenecks). The messages sit close to the recipient's own model, where clipping and trimming
    rules keep them.

    With ``search=True`` (Gaucher, Dieuleveut, Hendrikx 2025 and their code,
    ``attacks/identical_sparse.py``, ``factor=-16``), :math:`\varepsilon_i \ge 0` is instead
    line-searched per recipient, :func:`~.linesearch.line_maximize` with ``evals`` rule
    evaluations from 0, to maximise the distance of the deployed rule's output to the honest
    gossip target :func:`gossip_target`; the factor found (mean over edges) is reported per round
    as ``attack_factor``. Their direction is :math:`L_{i\cdot}\theta = -\sum_j w_{ij}(\theta_j -
    \theta_i)`, ours the same divided by the Byzantine weight :math:`\sum_b w_{ib}` (a positive
    per-recipient scale, so the searched messages cover the same ray).

    Parameters
    ----------
    epsilon : float, default 1.5
        The fixed factor (ignored when ``search``).
    weights : {"rule", "table", "uniform"}, default "rule"
        Mixing weights used in :math:`v_i` (see :func:`undo_direction`).
    search : bool, default False
    evals : int, default 16

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
       ClippedGossip" (self-centered clipping), arXiv:2202.01545, 2022; the attack follows the
       authors' code (``DissensusWorker``: ``target_model − ε · partial_sum / byzantine_weight``).
    .. [2] R. Gaucher, A. Dieuleveut, H. Hendrikx, "Unified breakdown analysis for Byzantine robust
       gossip", ICML 2025 (code: renaudgaucher/Byzantine-Robust-Gossip).
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    knowledge = "omniscient"

    def __init__(self, epsilon: float = 1.5, weights: str = "rule", search: bool = False, evals: int = 16):
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon = {epsilon} must be a finite number")
        if weights not in _WEIGHTS:
            raise ValueError(f"weights = {weights!r} must be one of: {', '.join(_WEIGHTS)}")
        if not isinstance(search, bool):
            raise ValueError(f"search = {search!r} must be true or false")
        self.epsilon = float(epsilon)
        self.weights = weights
        self.search = search
        self.evals = check_search(evals, 0.0, 1.0, 0.8)[0]
        self.report_columns = ("attack_factor",) if search else ()
        self._factor: float | None = None

    def craft(self, ctx: AttackContext) -> Tensor:
        own, v = undo_direction(ctx, self.weights)
        if not self.search:
            return own - self.epsilon * v
        crafted, c = search_factor(ctx, own, -v, gossip_target(ctx, self.weights), (self.evals, 0.0, 1.0, 0.8))
        self._factor = float(c.double().mean()) if c.numel() else None
        return crafted

    def report(self) -> dict[str, float | None]:
        return {"attack_factor": self._factor} if self.search else {}


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
