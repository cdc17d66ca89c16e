"""Optional parts of a run: per-node recording and differential privacy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..typecheck import check_types
from .base import ConfigError, _require, no_flag, option

DPSampling = Literal["poisson", "fixed"]  #: Poisson batches (rate q; the accountant's assumption) or fixed-size
Calibration = Literal["accountant", "tutorial"]  #: σ from dp-accounting, or C·max{1, √(T log(1/δ))/(mε)}


@dataclass(frozen=True)
class RecordConfig:
    """Per-node recording (:mod:`p2probust.node_recorder`): every ``every`` rounds (0: off), into ``nodes.npz``.

    Beyond ``max_nodes`` nodes, a seeded sample of ``max_nodes`` nodes is recorded (Byzantine nodes first).
    """

    every: int = no_flag(0, "--record-nodes every=K")
    max_nodes: int = no_flag(1000, "--record-nodes every=K,max_nodes=M")

    def __post_init__(self) -> None:
        _require(isinstance(self.every, int) and self.every >= 0, "record.every", self.every, "an integer >= 0 (0: off)")
        _require(isinstance(self.max_nodes, int) and self.max_nodes >= 1, "record.max_nodes", self.max_nodes, "an integer >= 1")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differentially private local steps (:mod:`p2probust.privacy`): on when ``epsilon``, ``clip``
    or ``noise_multiplier`` is set. ``epsilon`` is a target: σ is calibrated for it unless given."""

    #: target ε (> 0) at ``delta`` after the planned steps
    epsilon: float | None = option(
        None, "differential privacy: target ε per node; σ is calibrated for rounds × local steps", name="--dp-epsilon")
    delta: float = option(1e-5, "differential privacy: δ at which ε is reported", name="--dp-delta")  #: in (0, 1)
    #: per-example norm bound C (default 1 when on; inf: no clipping)
    clip: float | None = option(
        None, "differential privacy: per-example gradient norm bound C (turns DP-SGD on)", name="--dp-clip")
    #: σ (noise std σC on the clipped sum); default: calibrated, or 0
    noise_multiplier: float | None = option(
        None, "differential privacy: noise multiplier σ (noise std σ·C); default: calibrated", name="--dp-noise")
    sampling: DPSampling = option(
        "poisson", "differential privacy: Poisson batches (rate q, proven ε) or fixed-size (heuristic ε)",
        name="--dp-sampling")
    calibration: Calibration = option(
        "accountant", "differential privacy: σ from the accountant or the tutorial's rule", name="--dp-calibration")
    #: q; default batch_size / mean local dataset size
    sample_rate: float | None = no_flag(None, "[privacy] sample_rate")

    def __post_init__(self) -> None:
        check_types(self, "privacy")
        eps = self.epsilon
        _require(eps is None or 0 < eps < math.inf, "privacy.epsilon", eps, "a target ε > 0 (finite)")
        _require(0 < self.delta < 1, "privacy.delta", self.delta, "δ in (0, 1)")
        _require(self.clip is None or self.clip > 0, "privacy.clip", self.clip, "a norm bound C > 0 (inf: no clipping)")
        sigma = self.noise_multiplier
        _require(sigma is None or 0 <= sigma < math.inf, "privacy.noise_multiplier", sigma, "σ >= 0 (finite)")
        q = self.sample_rate
        _require(q is None or 0 < q <= 1, "privacy.sample_rate", q, "a sampling rate q in (0, 1]")
        if self.clip == math.inf and (eps is not None or (sigma or 0) > 0):
            raise ConfigError("privacy.clip = inf cannot give privacy (the noise is σ·C); set a finite clip")

    @property
    def enabled(self) -> bool:
        """Whether the local step is the DP one."""
        return self.epsilon is not None or self.clip is not None or self.noise_multiplier is not None
