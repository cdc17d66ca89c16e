r"""Attacks whose messages are genuine honest models: Mimic and sample duplication.

Robust rules cannot flag these messages (each *is* an honest model); the damage comes from
over-representing one honest node's data, a heterogeneity attack. Shapes: ``craft(ctx) -> [E, d]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_attack
from .base import AbstractAttack, AttackContext


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


def _power_step(x: Tensor, mu: Tensor, z: Tensor) -> Tensor:
    r""":math:`\sum_j \langle x_j - \mu, z\rangle (x_j - \mu)` normalised (one power-iteration step)."""
    dev = x - mu
    cumu = (dev @ z) @ dev
    norm = cumu.norm()
    return cumu / norm if norm > 0 else z


_HEURISTICS = ("paper", "direction", "farthest")


@register_attack("mimic", "copy one honest node, fixed after a warm-up (Karimireddy, He, Jaggi 2022)")
class Mimic(AbstractAttack):
    r"""Mimic: every Byzantine node sends a copy of one honest model, :math:`m_{b\to i} = \theta_{i^*}`.

    ``heuristic="paper"`` (default) follows the paper and the authors' code
    (epfml/byzantine-robust-noniid-optimizer, ``MimicVariantAttacker``), with ``t`` the round:

    - ``t = 0``: :math:`\mu = \bar\theta_H`; :math:`z_0 \sim N(0, I_d)` from a generator seeded
      with 0 (as their code), then :math:`z = \sum_j \langle\theta_j - \mu, z_0\rangle(\theta_j - \mu)`
      normalised;
    - ``0 < t < warmup``: :math:`\mu \leftarrow \frac{t}{t+1}\mu + \frac{1}{t+1}\bar\theta_H`,
      :math:`z \leftarrow \frac{t}{t+1} z + \frac{1}{t+1}\,\mathrm{normalise}\big(\sum_j
      \langle\theta_j-\mu, z\rangle(\theta_j-\mu)\big)`, normalised;
    - ``t < warmup``: :math:`i^* = \arg\max_{j\in H} \langle\theta_j, z\rangle` (signed, not
      centred, as their code); ``t >= warmup``: :math:`i^*` stays the last one chosen.

    The state advances once per round (repeated calls in one round give the same messages) and
    restarts at round 0. ``warmup = 1`` is their default (``--mimic-warmup``).

    The stateless variants recompute :math:`i^*` every round from the centred models
    :math:`x_j = \theta_j - \bar\theta`: ``"direction"``, :math:`\arg\max_j |\langle x_j, v\rangle|`
    with :math:`v` the top principal direction (power iteration from a fixed start);
    ``"farthest"``, :math:`\arg\max_j \|x_j\|`. Ties go to the lowest id.

    Parameters
    ----------
    heuristic : {"paper", "direction", "farthest"}, default "paper"
    warmup : int, default 1
        Rounds during which the target is re-picked (``"paper"`` only), at least 1.

    Notes
    -----
    The paper copies a gradient; here a model (the same thing on the complete graph with α = 1
    and a shared start: a copied model carries its node's gradient).

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
       datasets via bucketing", ICLR 2022.
    """

    knowledge = "omniscient"

    def __init__(self, heuristic: str = "paper", warmup: int = 1):
        if heuristic not in _HEURISTICS:
            raise ValueError(f"heuristic = {heuristic!r} must be one of: {', '.join(_HEURISTICS)}")
        if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 1:
            raise ValueError(f"warmup = {warmup!r} must be an integer >= 1")
        self.heuristic = heuristic
        self.warmup = int(warmup)
        self._round = -1
        self._t = 0
        self._mu: Tensor | None = None
        self._z: Tensor | None = None
        self._target: int | None = None

    def _advance(self, x: Tensor, rnd: int) -> None:
        """Update ``mu`` and ``z`` once per round (restart at round 0)."""
        if rnd == 0 or rnd < self._round or self._z is None:
            self._t, self._target = 0, None
            self._mu = x.mean(0)
            z0 = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(0), device="cpu").to(x)
            self._z = _power_step(x, self._mu, z0)
        elif rnd != self._round:
            self._t += 1
            t = self._t
            if t < self.warmup:
                self._mu = t / (1 + t) * self._mu + x.mean(0) / (1 + t)
                z = t / (1 + t) * self._z + _power_step(x, self._mu, self._z) / (1 + t)
                self._z = z / z.norm()
        self._round = rnd

    def target(self, ctx: AttackContext) -> int:
        """Id of the honest node copied this round."""
        ids = torch.nonzero(~ctx.is_byzantine).squeeze(1)
        x = ctx.params[ids].double()
        if self.heuristic == "paper":
            self._advance(x, ctx.round)
            if self._t < self.warmup or self._target is None:
                self._target = int(ids[torch.argmax(x @ self._z)])
            return self._target
        x = x - x.mean(0)
        score = (x @ _top_direction(x)).abs() if self.heuristic == "direction" else x.norm(dim=1)
        return int(ids[torch.argmax(score)])

    def craft(self, ctx: AttackContext) -> Tensor:
        return ctx.params[self.target(ctx)].expand(ctx.num_edges, -1).clone()


_MODES = ("random", "fixed")


@register_attack("duplicate", "copy a random honest neighbour of each recipient, re-drawn every round (Wu et al. 2023)")
class SampleDuplication(AbstractAttack):
    r"""Sample duplication: :math:`m_{b\to i} = \theta_{j_i}` with :math:`j_i` an honest node.

    - ``mode="random"`` (default; Wu, Chen, Ling 2023 and their code): :math:`j_i` is drawn
      uniformly among the honest neighbours of recipient :math:`i`, once per recipient and round
      from the attack's stream (all Byzantine neighbours of :math:`i` send that copy; a recipient
      without honest neighbours gets its own model back);
    - ``mode="fixed"``: one fixed honest node ``node`` for every recipient and round (``None``:
      the honest node of lowest id), the non-adaptive form of :class:`Mimic`.

    Parameters
    ----------
    mode : {"random", "fixed"}, default "random"
    node : int or None, default None
        The honest node copied by ``mode="fixed"``.

    References
    ----------
    .. [1] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization with
       robust aggregation rules", IEEE TSP 71, 2023 (code: ByrdLab/IOS).
    .. [2] S. P. Karimireddy, L. He, M. Jaggi, ICLR 2022 (fixed duplication, mimic).
    """

    knowledge = "omniscient"

    def __init__(self, mode: str = "random", node: int | None = None):
        if mode not in _MODES:
            raise ValueError(f"mode = {mode!r} must be one of: {', '.join(_MODES)}")
        if node is not None and (isinstance(node, bool) or int(node) != node or node < 0):
            raise ValueError(f"node = {node!r} must be a non-negative node id or None")
        if node is not None and mode != "fixed":
            raise ValueError(f"node = {node} needs mode = 'fixed' (mode {mode!r} draws the copied node)")
        self.mode = mode
        self.node = None if node is None else int(node)

    def craft(self, ctx: AttackContext) -> Tensor:
        if self.mode == "random":
            return ctx.params[self.random_neighbours(ctx)]
        n = ctx.is_byzantine.numel()
        if self.node is None:
            j = int(torch.nonzero(~ctx.is_byzantine)[0])
        elif self.node >= n or bool(ctx.is_byzantine[self.node]):
            raise ValueError(f"node = {self.node} must be an honest node id in [0, {n - 1}]")
        else:
            j = self.node
        return ctx.params[j].expand(ctx.num_edges, -1).clone()

    @staticmethod
    def random_neighbours(ctx: AttackContext) -> Tensor:
        """``LongTensor [E]``: the node copied on each edge, one uniform draw per recipient."""
        uniq, inv = ctx.recipient_groups
        honest = ctx.honest_slots[uniq]  # [R, k]
        alone = ~honest.any(1, keepdim=True)
        probs = torch.cat([alone, honest], 1).to(torch.float64)
        pick = torch.multinomial(probs.to(ctx.generator.device), 1, generator=ctx.generator).squeeze(1).to(uniq.device)
        chosen = torch.where(pick > 0, ctx.idx[uniq, (pick - 1).clamp_min(0)], uniq)
        return chosen[inv]
