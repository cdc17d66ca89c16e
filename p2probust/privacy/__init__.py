"""Differentially private local steps (example-level DP at each node) and their accounting.

Each honest node runs DP-SGD on its own data: per-example gradients (closed form for linear models,
``vmap(grad)`` otherwise), clipped to norm C, summed, plus Gaussian noise N(0, σ²C²), divided by the
batch size, before local momentum. ε at δ comes from Google's ``dp-accounting`` (RDP accountant).
Models are shared every round, so the guarantee covers the whole sequence of released models (the
gossip that follows each step is post-processing).

Modules: :mod:`.per_example` (clipped means), :mod:`.sampling` (batched Poisson sampling),
:mod:`.mechanism` (:class:`GaussianDP`), :mod:`.accountant` (ε, calibration), :mod:`.setup` (from config).
"""

from .accountant import calibrate_noise, epsilon, tutorial_noise
from .mechanism import GaussianDP
from .per_example import clip_factors, clipped_mean_fn, per_example_gradients
from .sampling import poisson_positions

__all__ = [
    "GaussianDP", "calibrate_noise", "clip_factors", "clipped_mean_fn", "epsilon", "per_example_gradients",
    "poisson_positions", "tutorial_noise",
]
