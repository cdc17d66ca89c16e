r"""Privacy accounting with Google's ``dp-accounting`` library (imported lazily).

A node's local step is the subsampled Gaussian mechanism: Poisson sampling at rate ``q``, then the
sum of clipped per-example gradients (sensitivity ``C`` under add/remove-one) plus
:math:`\mathcal N(0, \sigma^2 C^2 I)`. After ``T`` steps its privacy loss is that of ``T``-fold
composition, which :class:`dp_accounting.rdp.RdpAccountant` bounds through Rényi DP
(Mironov, "Rényi differential privacy", CSF 2017; Mironov, Talwar, Zhang, "Rényi differential
privacy of the sampled Gaussian mechanism", 2019) and converts to :math:`(\varepsilon, \delta)`.
Nothing here is a hand-written bound: every ε comes from the library
(https://github.com/google/differential-privacy, ``python/dp_accounting``).

The tutorial's calibration (Guerraoui, Gupta, Pinot, *Robust Machine Learning: Distributed Methods
for Safe AI*, Springer 2024, the chapter on privacy),

.. math:: \sigma_{DP} \approx C \max\Big\{1, \frac{\sqrt{T\log(1/\delta)}}{m\,\varepsilon}\Big\},

is an order-of-magnitude rule (constants dropped) for a node with ``m`` local examples; it is
offered as ``calibration = "tutorial"`` and the run still reports the accountant's ε of the σ it
gives, which can differ from the target.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from functools import lru_cache


class MissingDependency(ImportError, ValueError):
    """An optional package is not installed (a ValueError too, so the CLI reports it in one line)."""


def _dp():
    try:
        import dp_accounting
    except ImportError:
        raise MissingDependency(
            "differential privacy needs the dp-accounting package: pip install 'p2probust[privacy]'"
        ) from None
    return dp_accounting


@contextmanager
def _quiet_absl():
    """Hide dp-accounting's absl warnings about RDP orders it skips (the bound stays valid, over the
    other orders)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _event(q: float, sigma: float):
    dp = _dp()
    gaussian = dp.GaussianDpEvent(sigma)
    return gaussian if q >= 1.0 else dp.PoissonSampledDpEvent(q, gaussian)


@lru_cache(maxsize=256)
def _step_rdp(q: float, sigma: float):
    """The RDP orders and the Rényi divergence of one step at each, from ``RdpAccountant``."""
    accountant = _dp().rdp.RdpAccountant()
    with _quiet_absl():
        accountant.compose(_event(q, sigma), 1)
    return accountant.orders, accountant.rdp


@lru_cache(maxsize=4096)
def epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    """ε at ``delta`` after ``steps`` Poisson-subsampled Gaussian steps (rate ``q``, noise
    multiplier ``sigma``), by the RDP accountant of ``dp-accounting``; 0 before any step, ∞ without noise.

    Equal to ``RdpAccountant().compose(event, steps).get_epsilon(delta)`` (tested); the one-step
    RDP curve is computed once and scaled by ``steps`` (RDP composes additively, which is what the
    accountant does too), so a per-round ε costs microseconds rather than a tenth of a second."""
    if steps == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    orders, rdp = _step_rdp(q, sigma)
    return float(_dp().rdp.rdp_privacy_accountant.compute_epsilon(orders, steps * rdp, delta)[0])


def calibrate_noise(target_epsilon: float, delta: float, q: float, steps: int) -> float:
    """The smallest noise multiplier σ (to within 0.001) whose ε after ``steps`` steps at rate ``q`` is at
    most ``target_epsilon``, by ``dp_accounting.calibrate_dp_mechanism`` (a bracketed search)."""
    dp = _dp()
    with _quiet_absl():
        sigma = dp.calibrate_dp_mechanism(
            dp.rdp.RdpAccountant, lambda s: dp.SelfComposedDpEvent(_event(q, s), steps),
            target_epsilon, delta, bracket_interval=dp.LowerEndpointAndGuess(1e-3, 1.0), tol=1e-3,
        )
    return float(sigma)


def tutorial_noise(target_epsilon: float, delta: float, steps: int, m: int) -> float:
    r"""The tutorial's noise multiplier :math:`\max\{1, \sqrt{T \log(1/\delta)}/(m\varepsilon)\}`
    (σ_DP / C) for ``T = steps`` and ``m`` local examples."""
    return max(1.0, math.sqrt(steps * math.log(1.0 / delta)) / (m * target_epsilon))
