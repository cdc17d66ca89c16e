"""Aggregators (set → vector) and pre-aggregators (set → set), composable with :func:`chain`."""

from .base import AbstractAggregator, AbstractPreAggregator, Chain, ToleranceError, chain, masked_mean
from .coordinatewise import CoordinateWiseMedian, Mean, TrimmedMean

__all__ = [
    "AbstractAggregator",
    "AbstractPreAggregator",
    "Chain",
    "CoordinateWiseMedian",
    "Mean",
    "ToleranceError",
    "TrimmedMean",
    "chain",
    "masked_mean",
]
