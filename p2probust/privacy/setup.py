"""From the ``[privacy]`` config to a :class:`GaussianDP`: sampling rate, calibration, checks.

Runs once, before the first round, when the local data sizes are known. The noise multiplier is
the configured one, or calibrated for the target ε at δ over the planned ``T = rounds × local_steps``
steps (by the accountant, default, or by the tutorial's rule), and the choice is logged.
"""

from __future__ import annotations

import logging
import math

import torch

from ..config import ConfigError
from .accountant import calibrate_noise, epsilon, tutorial_noise
from .mechanism import GaussianDP

log = logging.getLogger("p2probust")


def sample_rate(pcfg, batch_size: int, honest_lengths: torch.Tensor) -> float:
    """q: the configured one, else ``batch_size / mean |D_i|`` (Poisson: every node's expected batch
    is about ``batch_size``) or ``batch_size / min |D_i|`` (fixed: the worst node), capped at 1."""
    if pcfg.sample_rate is not None:
        return pcfg.sample_rate
    sizes = honest_lengths.double()
    m = float(sizes.mean() if pcfg.sampling == "poisson" else sizes.min())
    return min(1.0, batch_size / m)


def noise_multiplier(pcfg, q: float, steps: int, m: int) -> tuple[float, str]:
    """σ and how it was chosen; a one-line ``ConfigError`` when a given σ cannot reach the target ε."""
    if pcfg.noise_multiplier is not None:
        sigma = pcfg.noise_multiplier
        if pcfg.epsilon is not None:
            reached = epsilon(q, sigma, steps, pcfg.delta)
            if reached > pcfg.epsilon:
                raise ConfigError(
                    f"privacy.noise_multiplier = {sigma} reaches ε = {reached:.4g} > privacy.epsilon = {pcfg.epsilon} "
                    f"after T = {steps} steps (q = {q:.4g}, δ = {pcfg.delta}); raise it, or leave it unset to calibrate"
                )
        return sigma, "configured"
    if pcfg.epsilon is None:
        return 0.0, "none (clipping only)"
    if pcfg.calibration == "tutorial":
        return tutorial_noise(pcfg.epsilon, pcfg.delta, steps, m), f"tutorial rule, m = {m}"
    try:
        return calibrate_noise(pcfg.epsilon, pcfg.delta, q, steps), "accountant"
    except (ValueError, RuntimeError) as err:
        raise ConfigError(
            f"privacy.epsilon = {pcfg.epsilon} cannot be reached at δ = {pcfg.delta} in T = {steps} steps "
            f"(q = {q:.4g}): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None


def build_privacy(pcfg, batch_size: int, steps: int, lengths: torch.Tensor, honest: torch.Tensor,
                  generator: torch.Generator) -> GaussianDP:
    """The :class:`GaussianDP` of a run; logs σ, q and the ε planned after ``steps`` steps."""
    honest_lengths = lengths[honest] if bool(honest.any()) else lengths
    q = sample_rate(pcfg, batch_size, honest_lengths)
    m = int(honest_lengths.min())
    sigma, how = noise_multiplier(pcfg, q, steps, m)
    clip = pcfg.clip if pcfg.clip is not None else 1.0
    dp = GaussianDP(clip=clip, noise_multiplier=sigma, sample_rate=q, delta=pcfg.delta, sampling=pcfg.sampling,
                    generator=generator, steps=torch.zeros(lengths.numel(), dtype=torch.long, device=lengths.device))
    planned = epsilon(q, sigma, steps, pcfg.delta)
    log.info(f"privacy: noise multiplier σ = {sigma:.4g} ({how}), clip C = {clip:g}, sampling {pcfg.sampling} "
             f"q = {q:.4g}; ε = {planned:.4g} at δ = {pcfg.delta:g} after T = {steps} local steps")
    if pcfg.sampling == "fixed" and sigma > 0:
        log.warning("warning: privacy sampling 'fixed': ε assumes Poisson sampling at q = B/|D_i| and is a heuristic "
                    "bound for fixed-size batches; use sampling = 'poisson' for a proven one")
    if pcfg.calibration == "tutorial" and pcfg.epsilon is not None and pcfg.noise_multiplier is None \
            and planned > pcfg.epsilon and math.isfinite(planned):
        log.warning(f"warning: the tutorial's σ = {sigma:.4g} gives ε = {planned:.4g} > target {pcfg.epsilon} by "
                    "the accountant (the rule drops constants); calibration = 'accountant' meets the target")
    return dp


def privacy_from_config(cfg, lengths: torch.Tensor, honest: torch.Tensor, generator: torch.Generator) -> GaussianDP | None:
    """The DP mechanism of a run's local step (``cfg.privacy``), or None when privacy is off; the
    planned steps are ``train.rounds × train.local_steps``."""
    if not cfg.privacy.enabled:
        return None
    steps = cfg.train.rounds * cfg.train.local_steps
    return build_privacy(cfg.privacy, cfg.train.batch_size, steps, lengths, honest, generator)
