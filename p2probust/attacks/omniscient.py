r"""Statistical attacks from the robust-aggregation literature: ALIE and IPM (Mimic and sample
duplication live in :mod:`.copying`).

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


_COUNTS = ("global", "local")
_SIGNS = (-1, 1)


def _scope_counts(ctx: AttackContext, reference: str, counts: str = "local") -> tuple[Tensor, Tensor]:
    """``(n, f)`` per edge: the vectors and Byzantine vectors that ALIE's ``z`` is computed from.

    ``counts="global"``: every node and every Byzantine node of the graph (the paper's ``n, f``).
    ``counts="local"``: those aggregated where the statistics are taken (the recipient or the
    sender with its neighbours, or the whole graph for ``reference="global"``)."""
    if counts == "global" or reference == "global":
        n = torch.full((ctx.num_edges,), ctx.is_byzantine.numel(), device=ctx.params.device)
        return n, torch.full_like(n, int(ctx.is_byzantine.sum()))
    node = ctx.senders if reference == "sender" else ctx.recipients
    f = ctx.byzantine_counts()[node] + ctx.is_byzantine[node].long()
    return ctx.mask.sum(1)[node] + 1, f


def _check_z(z: float | str) -> float | str:
    if isinstance(z, str):
        if z not in _Z_FORMULAS:
            raise ValueError(f"z = {z!r} must be one of: {', '.join(_Z_FORMULAS)}, or a finite number")
        return z
    if not math.isfinite(float(z)):
        raise ValueError(f"z = {z} must be one of: {', '.join(_Z_FORMULAS)}, or a finite number")
    return float(z)


def alie_factor(ctx: AttackContext, z: float | str, reference: str, counts: str = "global") -> Tensor:
    """``[E]``: ALIE's ``z`` on every edge (a number, or the formula at the ``n, f`` of ``counts``)."""
    if isinstance(z, str):
        return alie_z(*_scope_counts(ctx, reference, counts), formula=z).to(ctx.params.dtype)
    return torch.full((ctx.num_edges,), float(z), dtype=ctx.params.dtype, device=ctx.params.device)


@register_attack("alie", "A little is enough: honest mean − z × honest std (Baruch et al. 2019)")
class ALIE(_ReferenceKnowledge, AbstractAttack):
    r"""A little is enough: :math:`m_{b\to i} = \mu + s\,z\,\sigma` (coordinate-wise), :math:`s = -1` by default.

    :math:`\mu, \sigma` are the mean and the **unbiased** standard deviation (divisor
    :math:`h - 1`, as in the paper and in every reference implementation) of the honest models at
    ``reference``. :math:`z` is a fixed number or the paper's formula (:func:`alie_z`) at the
    counts :math:`n, f` given by ``counts``:

    - ``"global"`` (default, the paper): :math:`n` = all nodes, :math:`f` = all Byzantine nodes.
      With :math:`n = 12, f = 2`: :math:`s = 5`, :math:`z = \Phi^{-1}(7/12) = 0.2104`;
    - ``"local"`` (the decentralized per-node variant of Wu et al.'s code, ByrdLab/IOS): counted
      where the statistics are taken (the recipient and its neighbours, or the sender and its
      neighbours). With one Byzantine neighbour among an even number of inputs this gives
      :math:`z = 0` (the message is the honest mean); use it with ``sign=+1`` to follow that code.

    The message stays within a few standard deviations of the honest ones, so coordinate-wise and
    distance-based rules cannot tell it apart, yet every Byzantine node pushes the same way.

    Parameters
    ----------
    z : {"paper", "variant"} or float, default "paper"
        ``"paper"``: :math:`\Phi^{-1}((n-s)/n)`; ``"variant"``: :math:`\Phi^{-1}((n-f-s)/(n-f))`
        with :math:`s = \lfloor n/2+1\rfloor - f` (He et al. 2022, Karimireddy et al. 2022); or a fixed ``z``.
    reference : {"recipient", "global", "sender"}, default "recipient"
        Where the honest statistics are taken; ``"sender"`` is local knowledge.
    counts : {"global", "local"}, default "global"
        Where :math:`n, f` of the formula are counted (ignored for a fixed ``z``).
    sign : {-1, 1}, default -1
        :math:`\mu - z\sigma` (Baruch et al.) or :math:`\mu + z\sigma` (Wu et al.'s code).

    Notes
    -----
    Acts on models. On the complete graph with α = 1 and a shared start (server equivalence),
    :math:`\mu - z\sigma` of the stepped models :math:`\theta - \gamma g_j` is the server's
    ALIE on *gradients* with the opposite sign, :math:`\bar g + z\sigma_g`, since the server
    subtracts the gradient (see the README's "Attacks on models, not gradients").

    References
    ----------
    .. [1] G. Baruch, M. Baruch, Y. Goldberg, "A little is enough: circumventing defenses for
       distributed learning", NeurIPS 2019.
    .. [2] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization with
       robust aggregation rules", IEEE TSP 71, 2023 (code: ByrdLab/IOS; per-node z, + sign).
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, z: float | str = "paper", reference: str = "recipient", counts: str = "global", sign: int = -1):
        _check_reference(reference)
        if counts not in _COUNTS:
            raise ValueError(f"counts = {counts!r} must be one of: {', '.join(_COUNTS)}")
        if sign not in _SIGNS or isinstance(sign, bool):
            raise ValueError(f"sign = {sign!r} must be -1 or 1")
        self.z = _check_z(z)
        self.reference = reference
        self.counts = counts
        self.sign = int(sign)

    def craft(self, ctx: AttackContext) -> Tensor:
        mean, std = ctx.honest_stats(self.reference)
        return mean + self.sign * alie_factor(ctx, self.z, self.reference, self.counts).unsqueeze(1) * std


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

    Notes
    -----
    Acts on models, while the paper sends :math:`-\varepsilon\bar g` on gradients. On the complete
    graph with α = 1 and a shared start, the model message :math:`-\varepsilon\mu` is the gradient
    :math:`(\theta + \varepsilon\mu)/\gamma = (1+\varepsilon)\theta/\gamma - \varepsilon\bar g`: the paper's
    attack plus a term along the current model, so the two are **not** equivalent.
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, epsilon: float = 0.1, reference: str = "recipient"):
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon = {epsilon} must be a finite number")
        _check_reference(reference)
        self.epsilon = float(epsilon)
        self.reference = reference

    def craft(self, ctx: AttackContext) -> Tensor:
        return -self.epsilon * ctx.honest_stats(self.reference)[0]
