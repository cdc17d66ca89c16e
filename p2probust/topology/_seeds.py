"""Seed handling shared by the builders and the placement strategies (private)."""

from __future__ import annotations

import numbers
from typing import Union

import numpy as np

Seed = Union[int, np.random.Generator, None]


def as_int_seed(seed: Seed) -> int | None:
    """Turn ``seed`` (int, numpy Generator or None) into an int or None.

    A Generator is consumed once (``seed.integers(2**31)``), so passing the same Generator twice
    gives two different graphs, as with any other draw from it.
    """
    if seed is None:
        return None
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**31))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        return int(seed)
    raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


def numpy_rng(seed: Seed) -> np.random.Generator:
    """A numpy Generator from ``seed`` (a Generator is used as is, not copied)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(as_int_seed(seed))
