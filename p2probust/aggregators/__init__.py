"""Aggregators (set → vector) and pre-aggregators (set → set), composable with :func:`chain`."""

from .base import AbstractAggregator, AbstractPreAggregator, Chain, ToleranceError, chain, masked_mean
from .clipping import ARC, CenteredClipping, SelfCenteredClipping, StaticClipping
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
    "CenteredClipping",
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
    "SelfCenteredClipping",
    "StaticClipping",
    "ToleranceError",
    "TrimmedMean",
    "chain",
    "masked_mean",
]

from ..renames import module_getattr  # noqa: E402

__getattr__ = module_getattr(__name__)  #: old class names (deprecated): p2probust.renames
