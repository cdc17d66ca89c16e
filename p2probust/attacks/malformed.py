r"""Malformed messages: huge values, non-finite values (NaN, ±inf) and the zero vector.

These need no knowledge at all (``knowledge = "local"``). They test the rules rather than the
learning: a robust rule must never let a NaN or an infinity from a Byzantine neighbour reach an
honest node's parameters (only the plain mean is exempt), and must bound the influence of a huge
but finite message.

Every attack here sends the same constant vector on every attacked edge:

.. math:: m_{b\to i} = v\,\mathbf 1_d \quad (v = 10^{30},\ \mathrm{NaN},\ \pm\infty) \qquad\text{or}\qquad m_{b\to i} = 0.

References
----------
.. [1] R. Guerraoui, N. Gupta, R. Pinot, *Robust Machine Learning: Distributed Methods for Safe AI*,
   Springer 2024 (malformed and arbitrary Byzantine vectors).
.. [2] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with adversaries:
   Byzantine tolerant gradient descent", NeurIPS 2017 (arbitrary vectors of huge norm).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _constant(ctx: AttackContext, value: float) -> Tensor:
    return torch.full((ctx.num_edges, ctx.dim), value, dtype=ctx.params.dtype, device=ctx.params.device)


@register_attack("huge", "send value × 1 (default 1e30): a finite message of enormous norm")
class HugeValue(AbstractAttack):
    r"""Huge values: :math:`m_{b\to i} = v\,\mathbf 1_d` with :math:`v = 10^{30}` by default.

    Parameters
    ----------
    value : float, default 1e30
        A finite number (it stays finite in float32, whose largest value is about 3.4e38).

    Notes
    -----
    Reference: Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024; Blanchard et al., NeurIPS 2017.
    """

    knowledge = "local"

    def __init__(self, value: float = 1e30):
        if not math.isfinite(value):
            raise ValueError(f"value = {value} must be finite; use the 'non-finite' attack for NaN and inf")
        self.value = float(value)

    def craft(self, ctx: AttackContext) -> Tensor:
        return _constant(ctx, self.value)


@register_attack("non-finite", "send a vector of NaN (value='nan'), +inf ('inf') or -inf ('-inf')")
class NonFinite(AbstractAttack):
    r"""Non-finite messages: :math:`m_{b\to i} = v\,\mathbf 1_d`, :math:`v \in \{\mathrm{NaN}, +\infty, -\infty\}`.

    Parameters
    ----------
    value : {"nan", "inf", "-inf"} or float, default "nan"
        The non-finite value sent in every coordinate (``float("nan")`` etc. are accepted too).

    Notes
    -----
    Reference: Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024 (malformed messages).
    """

    knowledge = "local"

    def __init__(self, value: str | float = "nan"):
        if isinstance(value, str):
            if value.lower() not in _NON_FINITE:
                raise ValueError(f"value = {value!r} must be one of: nan, inf, -inf")
            self.value = value.lower().lstrip("+")
        else:
            v = float(value)
            if math.isfinite(v):
                raise ValueError(f"value = {value} must be non-finite (nan, inf or -inf); use 'huge' for finite values")
            self.value = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")

    def craft(self, ctx: AttackContext) -> Tensor:
        return _constant(ctx, _NON_FINITE[self.value])


@register_attack("zero", "send the zero vector")
class ZeroVector(AbstractAttack):
    r"""Zero vector: :math:`m_{b\to i} = 0`.

    A silent, crash-like peer that pulls its neighbours towards the origin (and, in gradient
    form, stalls training).

    Notes
    -----
    Reference: Guerraoui, Gupta, Pinot, *Robust Machine Learning*, 2024.
    """

    knowledge = "local"

    def craft(self, ctx: AttackContext) -> Tensor:
        return _constant(ctx, 0.0)
