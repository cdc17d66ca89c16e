"""Aggregators (set → vector) and pre-aggregators (set → set), composable with :func:`chain`."""

from .base import AbstractAggregator, AbstractPreAggregator, Chain, ToleranceError, chain, masked_mean
from .clipping import ARC, CentredClipping, SelfCentredClipping, StaticClipping
from .coordinatewise import CoordinateWiseMedian, MeaMed, Mean, NeighbourTrimmedMean, TrimmedMean
from .distance import Bulyan, Krum, MultiKrum
from .faba import FABA
from .geomed import GeometricMedian
from .rfa import RFA
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
    "FABA",
    "GeometricMedian",
    "Krum",
    "MDA",
    "MeaMed",
    "Mean",
    "MultiKrum",
    "NNM",
    "RFA",
    "NeighbourTrimmedMean",
    "SMEA",
    "SelfCentredClipping",
    "StaticClipping",
    "ToleranceError",
    "TrimmedMean",
    "chain",
    "masked_mean",
]
