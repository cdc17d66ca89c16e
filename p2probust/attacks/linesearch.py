r"""Optimal ALIE and IPM: a line search on the attack factor against the rule deployed at each recipient.

For a family of messages :math:`m(\gamma)` (ALIE: :math:`\mu - \gamma\sigma`; IPM:
:math:`-\gamma\mu`) the attack picks, for every recipient :math:`i` separately,

.. math:: \gamma_i^* = \arg\max_{\gamma \in \Gamma} \big\| R_i\big(\theta_i, \mathrm{inbox}_i(m(\gamma))\big) - \bar\theta_i \big\|

where :math:`R_i` is the gossip rule deployed at :math:`i` (``ctx.rule`` with ``ctx.weights`` and
``ctx.tolerance``), every Byzantine slot of :math:`i` holds :math:`m(\gamma)`, and
:math:`\bar\theta_i` is the honest mean at the recipient (its own model and honest neighbours) or
of every honest model. :math:`\Gamma` is a fixed grid **plus the fixed factor** of the plain attack
(ALIE's :math:`z`, IPM's :math:`\varepsilon`), evaluated first, so the optimal attack is never
weaker, by this error, than the plain one at the same state. The rule runs once per grid point,
batched over all recipients (cost: ``len(grid) + 1`` gossip steps).

References
----------
.. [1] V. Shejwalkar, A. Houmansadr, "Manipulating the Byzantine: optimizing model poisoning attacks
   and defenses for federated learning", NDSS 2021 (optimizing the attack factor against the rule).
.. [2] S. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by mixing:
   a recipe for optimal Byzantine ML under heterogeneity", AISTATS 2023 (line-searched ALIE / FOE).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext
from .omniscient import _check_z, alie_factor
from .simple import _check_reference

_TARGETS = ("recipient", "global")


def _check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(g) for g in grid)
    if not values or not all(math.isfinite(g) for g in values):
        raise ValueError(f"grid = {list(grid)!r} must be a non-empty sequence of finite numbers")
    return values


class AbstractLineSearch(AbstractAttack):
    """A one-parameter family of messages, searched per recipient against the deployed rule."""

    knowledge = "omniscient"
    grid: tuple[float, ...]
    reference: str
    target: str

    def _init_search(self, grid: Sequence[float], reference: str, target: str) -> None:
        _check_reference(reference)
        if target not in _TARGETS:
            raise ValueError(f"target = {target!r} must be one of: {', '.join(_TARGETS)}")
        self.grid = _check_grid(grid)
        self.reference = reference
        self.target = target

    def messages(self, stats: tuple[Tensor, Tensor], factor: Tensor) -> Tensor:  # pragma: no cover
        """``[E, d]``: the family's message at the per-edge factor ``[E]``, from the honest
        ``(mean, std)`` at the reference (computed once per round)."""
        raise NotImplementedError

    def fixed_factor(self, ctx: AttackContext) -> Tensor:  # pragma: no cover
        """``[E]``: the plain attack's factor, always tried first."""
        raise NotImplementedError

    def search(self, ctx: AttackContext) -> tuple[Tensor, Tensor, Tensor]:
        """``(messages [E, d], factor [E], error [E])`` of the best factor at each recipient."""
        honest_mean = ctx.recipient_honest_stats()[0] if self.target == "recipient" else ctx.global_honest_stats()[0]
        stats = ctx.honest_stats(self.reference)
        fixed = self.fixed_factor(ctx)
        best_m = self.messages(stats, fixed)
        best_err = _error(ctx.evaluate_rule(best_m), honest_mean)
        best_f = fixed
        for g in self.grid:
            factor = torch.full_like(fixed, g)
            m = self.messages(stats, factor)
            err = _error(ctx.evaluate_rule(m), honest_mean)
            better = err > best_err
            best_m = torch.where(better.unsqueeze(1), m, best_m)
            best_err = torch.where(better, err, best_err)
            best_f = torch.where(better, factor, best_f)
        return best_m, best_f, best_err

    def craft(self, ctx: AttackContext) -> Tensor:
        return self.search(ctx)[0]


def _error(out: Tensor, honest_mean: Tensor) -> Tensor:
    """``[E]`` distance of the rule output to the honest mean; NaN counts as infinitely far."""
    err = (out.double() - honest_mean.double()).norm(dim=1)
    return torch.nan_to_num(err, nan=math.inf)


@register_attack("alie-opt", "ALIE with z line-searched against the deployed rule, per recipient")
class OptimalALIE(AbstractLineSearch):
    r"""Optimal ALIE: :math:`m_{b\to i} = \mu - z_i^*\sigma`, :math:`z_i^*` maximising the rule's
    error at recipient :math:`i` over ``grid`` and ALIE's own ``z`` (see the module docstring).

    Parameters
    ----------
    grid : sequence of float, default (0.25, 0.5, 1, 1.5, 2, 3, 5, 10)
    z : {"paper", "variant"} or float, default "paper"
        The plain ALIE factor, always tried first (:class:`~p2probust.attacks.ALIE`).
    reference : {"recipient", "global", "sender"}, default "recipient"
        Where :math:`\mu, \sigma` are taken.
    target : {"recipient", "global"}, default "recipient"
        The honest mean the error is measured against.

    References
    ----------
    .. [1] Baruch, Baruch, Goldberg, NeurIPS 2019 (ALIE); Shejwalkar, Houmansadr, NDSS 2021 and
       Allouah et al., AISTATS 2023 (the line search).
    """

    def __init__(
        self,
        grid: Sequence[float] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
        z: float | str = "paper",
        reference: str = "recipient",
        target: str = "recipient",
    ):
        self._init_search(grid, reference, target)
        self.z = _check_z(z)

    def messages(self, stats: tuple[Tensor, Tensor], factor: Tensor) -> Tensor:
        mean, std = stats
        return mean - factor.unsqueeze(1) * std

    def fixed_factor(self, ctx: AttackContext) -> Tensor:
        return alie_factor(ctx, self.z, self.reference)


@register_attack("ipm-opt", "IPM with epsilon line-searched against the deployed rule, per recipient")
class OptimalIPM(AbstractLineSearch):
    r"""Optimal IPM: :math:`m_{b\to i} = -\varepsilon_i^*\mu`, :math:`\varepsilon_i^*` maximising the
    rule's error at recipient :math:`i` over ``grid`` and IPM's own ``epsilon``.

    Parameters
    ----------
    grid : sequence of float, default (0.5, 1, 2, 5, 10, 20, 50, 100)
    epsilon : float, default 0.1
        The plain IPM factor, always tried first (:class:`~p2probust.attacks.IPM`).
    reference : {"recipient", "global", "sender"}, default "recipient"
    target : {"recipient", "global"}, default "recipient"

    References
    ----------
    .. [1] Xie, Koyejo, Gupta, UAI 2020 (IPM); Shejwalkar, Houmansadr, NDSS 2021 and Allouah et
       al., AISTATS 2023 (the line search).
    """

    def __init__(
        self,
        grid: Sequence[float] = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
        epsilon: float = 0.1,
        reference: str = "recipient",
        target: str = "recipient",
    ):
        self._init_search(grid, reference, target)
        if not math.isfinite(epsilon):
            raise ValueError(f"epsilon = {epsilon} must be a finite number")
        self.epsilon = float(epsilon)

    def messages(self, stats: tuple[Tensor, Tensor], factor: Tensor) -> Tensor:
        return -factor.unsqueeze(1) * stats[0]

    def fixed_factor(self, ctx: AttackContext) -> Tensor:
        return torch.full((ctx.num_edges,), self.epsilon, dtype=ctx.params.dtype, device=ctx.params.device)
