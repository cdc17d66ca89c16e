r"""Optimal ALIE and IPM: a line search on the attack factor against the rule deployed at each recipient.

For a family of messages :math:`m(\gamma)` (ALIE: :math:`\mu - \gamma\sigma`; IPM:
:math:`-\gamma\mu`) the attack picks, for every recipient :math:`i` separately, a best-effort

.. math:: \gamma_i^* \approx \arg\max_{\gamma \ge 0} \big\| R_i\big(\theta_i, \mathrm{inbox}_i(m(\gamma))\big) - \bar\theta_i \big\|

where :math:`R_i` is the gossip rule deployed at :math:`i` (``ctx.rule`` with ``ctx.weights`` and
``ctx.tolerance``), every Byzantine slot of :math:`i` holds :math:`m(\gamma)`, and
:math:`\bar\theta_i` is the honest mean at the recipient (its own model and honest neighbours) or
of every honest model. The maximiser is found by :func:`line_maximize`, ByzFL's ``LineMaximize``
(and ``tools.line_maximize`` of Gaucher et al.'s code): evaluate ``start``, expand by steps
``delta, 2 delta, 4 delta, …`` while the error grows, then contract around the best point with
steps shrinking by ``ratio``, within ``evals`` evaluations (16 by default, their default). All
recipients are searched at once: each evaluation is one batched rule call (cost: ``evals``
gossip steps). The factor found, averaged over the attacked edges, is reported per round in
``metrics.csv`` (column ``attack_factor``).

References
----------
.. [1] S. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by mixing:
   a recipe for optimal Byzantine ML under heterogeneity", AISTATS 2023 (line-searched ALIE / FOE);
   code: LPD-EPFL/byzfl, ``byzfl/attacks/attack_optimizers.py`` (``LineMaximize``).
.. [2] V. Shejwalkar, A. Houmansadr, "Manipulating the Byzantine: optimizing model poisoning attacks
   and defenses for federated learning", NDSS 2021 (optimizing the attack factor against the rule).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Callable

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext
from .simple import _check_reference

_TARGETS = ("recipient", "global")
#: halvings of a negative contraction proposal before it is clamped to 0 (the reference loops until x >= 0)
_MAX_HALVINGS = 64


def check_search(evals: int, start: float, delta: float, ratio: float) -> tuple[int, float, float, float]:
    """Validate :func:`line_maximize`'s budget and steps (ValueError naming the bad value)."""
    if isinstance(evals, bool) or int(evals) != evals or evals < 1:
        raise ValueError(f"evals = {evals!r} must be an integer >= 1")
    if not (math.isfinite(start) and start >= 0):
        raise ValueError(f"start = {start} must be a finite number >= 0")
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta = {delta} must be a finite number > 0")
    if not 0.5 < ratio < 1:
        raise ValueError(f"ratio = {ratio} must be in (0.5, 1), both excluded")
    return int(evals), float(start), float(delta), float(ratio)


def line_maximize(scape: Callable[[Tensor], Tensor], size: int, *, evals: int = 16, start: float = 0.0,
                  delta: float = 1.0, ratio: float = 0.8, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """Best-effort argmax of ``size`` independent functions of ``x >= 0``, searched side by side.

    A batched transcription of ByzFL's ``LineMaximize`` / Gaucher et al.'s ``tools.line_maximize``:
    evaluate ``start``; **expansion**: propose ``best + delta``, double ``delta`` while the value
    improves, else multiply it by ``ratio`` and stop expanding; **contraction**: propose
    ``prop + delta`` if the last proposal lies below the best point, else ``prop − delta``
    (halved towards ``prop`` while negative), keep it if better, multiply ``delta`` by ``ratio``.
    Comparisons are strict, so ties keep the earlier point.

    Parameters
    ----------
    scape : callable, Tensor [size] -> Tensor [size]
        Evaluates every function at its own proposal (one batched call per evaluation).
    size : int
    evals, start, delta, ratio : see :func:`check_search`

    Returns
    -------
    (Tensor [size], Tensor [size])
        The best point found and its value.
    """
    best_x = torch.full((size,), float(start), dtype=dtype, device=device)
    best_y = scape(best_x)
    prop_x = best_x.clone()
    step = torch.full_like(best_x, float(delta))
    expanding = torch.ones(size, dtype=torch.bool, device=device)
    for _ in range(evals - 1):
        up = prop_x < best_x
        x = torch.where(up, prop_x + step, prop_x - step)
        for _ in range(_MAX_HALVINGS):
            negative = ~up & (x < 0)
            if not bool(negative.any()):
                break
            x = torch.where(negative, (x + prop_x) / 2, x)
        x = torch.where(~up & (x < 0), torch.zeros((), dtype=dtype), x)
        prop_x = torch.where(expanding, best_x + step, x)
        prop_y = scape(prop_x)
        better = prop_y > best_y
        best_x, best_y = torch.where(better, prop_x, best_x), torch.where(better, prop_y, best_y)
        step = torch.where(expanding & better, step * 2, step * ratio)
        expanding = expanding & better
    return best_x, best_y


class AbstractLineSearch(AbstractAttack):
    """A one-parameter family of messages, searched per recipient against the deployed rule."""

    knowledge = "omniscient"
    report_columns = ("attack_factor",)
    reference: str
    target: str

    def _init_search(self, evals: int, start: float, delta: float, ratio: float, reference: str, target: str) -> None:
        _check_reference(reference)
        if target not in _TARGETS:
            raise ValueError(f"target = {target!r} must be one of: {', '.join(_TARGETS)}")
        self.evals, self.start, self.delta, self.ratio = check_search(evals, start, delta, ratio)
        self.reference = reference
        self.target = target
        self._factor: float | None = None

    @abstractmethod
    def messages(self, stats: tuple[Tensor, Tensor], factor: Tensor) -> Tensor:
        """``[E, d]``: the family's message at the per-edge factor ``[E]``, from the honest
        ``(mean, std)`` at the reference (computed once per round)."""

    def search(self, ctx: AttackContext) -> tuple[Tensor, Tensor, Tensor]:
        """``(messages [E, d], factor [E], error [E])`` of the best factor found at each recipient."""
        honest_mean = ctx.recipient_honest_stats()[0] if self.target == "recipient" else ctx.global_honest_stats()[0]
        stats = ctx.honest_stats(self.reference)

        def scape(factor: Tensor) -> Tensor:
            return _error(ctx.evaluate_rule(self.messages(stats, factor.to(ctx.params.dtype))), honest_mean)

        factor, err = line_maximize(scape, ctx.num_edges, evals=self.evals, start=self.start, delta=self.delta,
                                    ratio=self.ratio, device=ctx.params.device)
        factor = factor.to(ctx.params.dtype)
        return self.messages(stats, factor), factor, err

    def craft(self, ctx: AttackContext) -> Tensor:
        crafted, factor, _ = self.search(ctx)
        self._factor = float(factor.double().mean()) if factor.numel() else None
        return crafted

    def report(self) -> dict[str, float | None]:
        """``{"attack_factor": mean factor over the attacked edges of the last craft}``."""
        return {"attack_factor": self._factor}


def _error(out: Tensor, honest_mean: Tensor) -> Tensor:
    """``[E]`` distance of the rule output to the honest mean; NaN counts as infinitely far."""
    err = (out.double() - honest_mean.double()).norm(dim=1)
    return torch.nan_to_num(err, nan=math.inf)


@register_attack("alie-opt", "ALIE with z line-searched against the deployed rule, per recipient (ByzFL)")
class OptimalALIE(AbstractLineSearch):
    r"""Optimal ALIE: :math:`m_{b\to i} = \mu - z_i^*\sigma`, :math:`z_i^* \ge 0` line-searched to
    maximise the rule's error at recipient :math:`i` (see the module docstring).

    Parameters
    ----------
    evals : int, default 16
        Rule evaluations per round (ByzFL's default).
    start, delta, ratio : float, default 0, 1, 0.8
        First factor tried, first step, contraction ratio (ByzFL's defaults).
    reference : {"recipient", "global", "sender"}, default "recipient"
        Where :math:`\mu, \sigma` (unbiased) are taken.
    target : {"recipient", "global"}, default "recipient"
        The honest mean the error is measured against.

    References
    ----------
    .. [1] Baruch, Baruch, Goldberg, NeurIPS 2019 (ALIE); Allouah et al., AISTATS 2023 and ByzFL's
       ``LineMaximize`` (the search).
    """

    replica_safe = True  #: batched seeds give byte-identical metrics (tests/test_batched.py)

    def __init__(self, evals: int = 16, start: float = 0.0, delta: float = 1.0, ratio: float = 0.8,
                 reference: str = "recipient", target: str = "recipient"):
        self._init_search(evals, start, delta, ratio, reference, target)

    def messages(self, stats: tuple[Tensor, Tensor], factor: Tensor) -> Tensor:
        mean, std = stats
        return mean - factor.unsqueeze(1) * std


@register_attack("ipm-opt", "IPM with epsilon line-searched against the deployed rule, per recipient (ByzFL)")
class OptimalIPM(AbstractLineSearch):
    r"""Optimal IPM: :math:`m_{b\to i} = -\varepsilon_i^*\mu`, :math:`\varepsilon_i^* \ge 0`
    line-searched to maximise the rule's error at recipient :math:`i`.

    Parameters
    ----------
    evals, start, delta, ratio, reference, target
        As :class:`OptimalALIE`.

    References
    ----------
    .. [1] Xie, Koyejo, Gupta, UAI 2020 (IPM); Allouah et al., AISTATS 2023 and ByzFL's
       ``LineMaximize`` (the search).
    """

    def __init__(self, evals: int = 16, start: float = 0.0, delta: float = 1.0, ratio: float = 0.8,
                 reference: str = "recipient", target: str = "recipient"):
        self._init_search(evals, start, delta, ratio, reference, target)

    def messages(self, stats: tuple[Tensor, Tensor], factor: Tensor) -> Tensor:
        return -factor.unsqueeze(1) * stats[0]
