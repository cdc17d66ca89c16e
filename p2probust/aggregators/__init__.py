"""Aggregators (set → vector) and pre-aggregators (set → set), composable with :func:`chain`."""

import warnings

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

#: Old class names still importable (deprecated): old name -> new name.
RENAMED = {"CentredClipping": "CenteredClipping", "SelfCentredClipping": "SelfCenteredClipping"}
_warned: set[str] = set()


def renamed(name: str, stacklevel: int = 3):
    """The class behind an old name of :data:`RENAMED`, with one ``FutureWarning`` per name and process."""
    new = RENAMED[name]
    if name not in _warned:
        _warned.add(name)
        warnings.warn(f"p2probust: {name} is renamed {new} (registry names unchanged); the old name will be removed",
                      FutureWarning, stacklevel=stacklevel)
    return globals()[new]


def __getattr__(name: str):
    if name in RENAMED:
        return renamed(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
