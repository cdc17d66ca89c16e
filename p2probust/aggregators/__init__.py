"""Aggregators (set → vector) and pre-aggregators (set → set), composable with :func:`chain`."""

from .base import AbstractAggregator, AbstractPreAggregator, Chain, ToleranceError, chain, masked_mean
from .clipping import ARC, CentredClipping, SelfCentredClipping, StaticClipping
from .coordinatewise import CoordinateWiseMedian, MeaMed, Mean, TrimmedMean
from .distance import Bulyan, Krum, MultiKrum
from .geomed import GeometricMedian
from .preaggregators import NNM, Bucketing
from .subsets import MDA, SMEA

__all__ = [
    "ARC",
    "AbstractAggregator",
    "AbstractPreAggregator",
    "Bucketing",
    "Bulyan",
    "CentredClipping",
    "Chain",
    "CoordinateWiseMedian",
    "GeometricMedian",
    "Krum",
    "MDA",
    "MeaMed",
    "Mean",
    "MultiKrum",
    "NNM",
    "SMEA",
    "SelfCentredClipping",
    "StaticClipping",
    "ToleranceError",
    "TrimmedMean",
    "chain",
    "masked_mean",
]
