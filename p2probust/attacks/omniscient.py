r"""Statistical attacks from the robust-aggregation literature: ALIE, IPM, Mimic, sample duplication.

Each crafts the message of every attacked edge ``b → i`` at once from honest statistics taken at a
``reference``: the honest models recipient ``i`` aggregates (``"recipient"``, its own model and its
honest neighbours' messages), every honest model (``"global"``), or the honest messages the
sender ``b`` itself received (``"sender"``, the only local choice). Shapes: ``craft(ctx) -> [E, d]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext
from .simple import _check_reference, _ReferenceKnowledge

_Z_FORMULAS = ("paper", "variant")
#: the normal quantile is taken at a probability clamped to [1e-7, 1 - 1e-7] so z stays finite
_CDF_EPS = 1e-7


def alie_z(n: Tensor, f: Tensor, formula: str = "paper") -> Tensor:
    r"""ALIE's factor :math:`z` for ``n`` aggregated vectors of which ``f`` are Byzantine.

    With :math:`s = \lfloor n/2 + 1\rfloor - f` "supporters" needed for a majority,

    - ``"paper"`` (Baruch et al. 2019): :math:`z = \Phi^{-1}\big((n - s)/n\big)`;
    - ``"variant"`` (He et al. 2022, Karimireddy et al. 2022): :math:`z = \Phi^{-1}\big((n - f - s)/(n - f)\big)`.

    Parameters
    ----------
    n, f : Tensor [E] (integer)
    formula : {"paper", "variant"}

    Returns
    -------
    Tensor [E] (float64)
        The probability is clamped to ``[1e-7, 1 - 1e-7]`` so that ``z`` is finite.

    Examples
    --------
    >>> float(alie_z(torch.tensor([50]), torch.tensor([24]))[0])  # doctest: +ELLIPSIS
    1.75...
    """
    if formula not in _Z_FORMULAS:
        raise ValueError(f"z formula {formula!r} must be one of: {', '.join(_Z_FORMULAS)}, or a number")
    n, f = n.double(), f.double()
    s = torch.floor(n / 2 + 1) - f
    cdf = (n - s) / n if formula == "paper" else (n - f - s) / (n - f).clamp_min(1)
    return torch.special.ndtri(cdf.clamp(_CDF_EPS, 1 - _CDF_EPS))


def _scope_counts(ctx: AttackContext, reference: str) -> tuple[Tensor, Tensor]:
    """``(n, f)`` per edge: the vectors and Byzantine vectors aggregated at the reference."""
    counts = ctx.byzantine_counts()
    degree = ctx.mask.sum(1)
    if reference == "global":
        n = torch.full((ctx.num_edges,), ctx.is_byzantine.numel(), device=ctx.params.device)
        return n, torch.full_like(n, int(ctx.is_byzantine.sum()))
    node = ctx.senders if reference == "sender" else ctx.recipients
    f = counts[node] + ctx.is_byzantine[node].long()
    return degree[node] + 1, f


def _check_z(z: float | str) -> float | str:
    if isinstance(z, str):
        if z not in _Z_FORMULAS:
            raise ValueError(f"z = {z!r} must be one of: {', '.join(_Z_FORMULAS)}, or a finite number")
        return z
    if not math.isfinite(float(z)):
        raise ValueError(f"z = {z} must be one of: {', '.join(_Z_FORMULAS)}, or a finite number")
    return float(z)


def alie_factor(ctx: AttackContext, z: float | str, reference: str) -> Tensor:
    """``[E]``: ALIE's ``z`` on every edge (a number, or the formula at the reference's ``n, f``)."""
    if isinstance(z, str):
        return alie_z(*_scope_counts(ctx, reference), formula=z).to(ctx.params.dtype)
    return torch.full((ctx.num_edges,), float(z), dtype=ctx.params.dtype, device=ctx.params.device)


@register_attack("alie", "A little is enough: honest mean − z × honest std (Baruch et al. 2019)")
class ALIE(_ReferenceKnowledge, AbstractAttack):
    r"""A little is enough: :math:`m_{b\to i} = \mu - z\,\sigma` (coordinate-wise).

    :math:`\mu, \sigma` are the mean and (population) standard deviation of the honest models at
    ``reference``; :math:`z` comes from the paper's formula (:func:`alie_z`, with ``n`` and ``f``
    counted where the statistics are taken: the recipient's neighbourhood plus itself, the whole
    graph, or the sender's neighbourhood plus itself) or is a fixed number. The message stays
    within a few standard deviations of the honest ones, so coordinate-wise and distance-based
    rules cannot tell it apart, yet every Byzantine node pushes the same way.

    Parameters
    ----------
    z : {"paper", "variant"} or float, default "paper"
        ``"paper"``: :math:`\Phi^{-1}((n-s)/n)`; ``"variant"``: :math:`\Phi^{-1}((n-f-s)/(n-f))`
        with :math:`s = \lfloor n/2+1\rfloor - f`; or a fixed ``z``.
    reference : {"recipient", "global", "sender"}, default "recipient"
        Where the honest statistics are taken; ``"sender"`` is local knowledge.

    References
    ----------
    .. [1] G. Baruch, M. Baruch, Y. Goldberg, "A little is enough: circumventing defenses for
       distributed learning", NeurIPS 2019.
    """

    def __init__(self, z: float | str = "paper", reference: str = "recipient"):
        _check_reference(reference)
        self.z = _check_z(z)
        self.reference = reference

    def craft(self, ctx: AttackContext) -> Tensor:
        mean, std = ctx.honest_stats(self.reference)
        return mean - alie_factor(ctx, self.z, self.reference).unsqueeze(1) * std


@register_attack("ipm", "inner product manipulation: −epsilon × honest mean (Xie et al. 2020)")
class IPM(_ReferenceKnowledge, AbstractAttack):
    r"""Inner product manipulation: :math:`m_{b\to i} = -\varepsilon\,\mu`.

    :math:`\mu` is the honest mean at ``reference``. A small :math:`\varepsilon` (0.1, the paper's
    setting against median-type rules) keeps the message close to the honest ones while making the
    inner product of the aggregate with the true mean negative when enough are accepted; a large
    :math:`\varepsilon` (e.g. 100) is the setting against the mean and Krum-type rules.

    Parameters
    ----------
    epsilon : float, default 0.1
    reference : {"recipient", "global", "sender"}, default "recipient"

    References
    ----------
    .. [1] C. Xie, O. Koyejo, I. Gupta, "Fall of empires: breaking Byzantine-tolerant SGD by inner
       product manipulation", UAI 2020.
    """

    def __init__(self, epsilon: float = 0.1, reference: str = "recipient"):
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon = {epsilon} must be a finite number")
        _check_reference(reference)
        self.epsilon = float(epsilon)
        self.reference = reference

    def craft(self, ctx: AttackContext) -> Tensor:
        return -self.epsilon * ctx.honest_stats(self.reference)[0]


def _top_direction(x: Tensor, iters: int = 50) -> Tensor:
    """``[d]``: top right singular vector of ``x [h, d]`` by power iteration from a fixed start."""
    v = torch.linspace(1.0, 2.0, x.shape[1], dtype=x.dtype, device=x.device)
    for _ in range(iters):
        w = x.T @ (x @ v)
        norm = w.norm()
        if not norm > 0:
            break
        v = w / norm
    return v


_MIMIC_HEURISTICS = ("direction", "farthest")


@register_attack("mimic", "copy the honest node that most increases heterogeneity (Karimireddy et al. 2022)")
class Mimic(AbstractAttack):
    r"""Mimic: every Byzantine node sends a copy of one honest model, :math:`m_{b\to i} = \theta_{i^*}`.

    Over-representing one honest node biases every recipient towards that node's data, which
    robust rules cannot detect (the message *is* honest). The node is chosen each round to
    maximise the damage from heterogeneity:

    - ``"direction"`` (default; the paper's heuristic): :math:`z` is the direction of maximum
      variance of the honest models (top principal component of :math:`\theta_j - \bar\theta`,
      power iteration from a fixed start vector), and :math:`i^* = \arg\max_j |\langle \theta_j -
      \bar\theta, z\rangle|`;
    - ``"farthest"``: :math:`i^* = \arg\max_j \|\theta_j - \bar\theta\|`.

    Ties go to the lowest id. Unlike the paper, which fixes :math:`i^*` after a warm-up, the
    choice is recomputed every round (the attack keeps no state).

    Parameters
    ----------
    heuristic : {"direction", "farthest"}, default "direction"

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
       datasets via bucketing", ICLR 2022.
    """

    knowledge = "omniscient"

    def __init__(self, heuristic: str = "direction"):
        if heuristic not in _MIMIC_HEURISTICS:
            raise ValueError(f"heuristic = {heuristic!r} must be one of: {', '.join(_MIMIC_HEURISTICS)}")
        self.heuristic = heuristic

    def target(self, ctx: AttackContext) -> int:
        """Id of the honest node copied this round."""
        ids = torch.nonzero(~ctx.is_byzantine).squeeze(1)
        x = ctx.params[ids].double()
        x = x - x.mean(0)
        if self.heuristic == "direction":
            score = (x @ _top_direction(x)).abs()
        else:
            score = x.norm(dim=1)
        return int(ids[torch.argmax(score)])

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[self.target(ctx)].expand(ctx.num_edges, -1).clone()


@register_attack("duplicate", "every Byzantine node sends a copy of one honest node's message")
class SampleDuplication(AbstractAttack):
    r"""Sample duplication: :math:`m_{b\to i} = \theta_{j}` for one fixed honest node :math:`j`.

    All Byzantine nodes duplicate the same honest node, so its data count ``1 + |B|`` times in
    every neighbourhood they reach: a heterogeneity attack whose messages are genuine honest models.

    Parameters
    ----------
    node : int or None, default None
        The honest node copied; ``None`` picks the honest node of lowest id.

    Notes
    -----
    This is the non-adaptive form of :class:`Mimic` (the copied node is fixed instead of chosen
    each round).

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
       datasets via bucketing", ICLR 2022.
    """

    knowledge = "omniscient"

    def __init__(self, node: int | None = None):
        if node is not None and (isinstance(node, bool) or int(node) != node or node < 0):
            raise ValueError(f"node = {node!r} must be a non-negative node id or None")
        self.node = None if node is None else int(node)

    def craft(self, ctx: AttackContext) -> Tensor:
        n = ctx.is_byzantine.numel()
        if self.node is None:
            j = int(torch.nonzero(~ctx.is_byzantine)[0])
        elif self.node >= n or bool(ctx.is_byzantine[self.node]):
            raise ValueError(f"node = {self.node} must be an honest node id in [0, {n - 1}]")
        else:
            j = self.node
        return ctx.params[j].expand(ctx.num_edges, -1).clone()
