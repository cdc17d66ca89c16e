"""Attacks: what Byzantine nodes send, crafted per recipient edge.

One module per family: :mod:`.simple` (sign flip, Gaussian, label flip), :mod:`.malformed` (huge,
non-finite, zero), :mod:`.omniscient` (ALIE, IPM, mimic, sample duplication), :mod:`.linesearch`
(optimal ALIE / IPM against the deployed rule), :mod:`.decentralized` (dissensus, isolation,
spectral heterogeneity). Importing this package registers them all in
:data:`p2probust.registry.attacks`.
"""

from .base import AbstractAttack, AttackContext
from .decentralized import Dissensus, Isolation, SpectralHeterogeneity, fiedler_vector, undo_direction
from .linesearch import AbstractLineSearch, OptimalALIE, OptimalIPM
from .malformed import HugeValue, NonFinite, ZeroVector
from .omniscient import ALIE, IPM, Mimic, SampleDuplication, alie_z
from .simple import GaussianNoise, LabelFlip, NoAttack, SignFlip

__all__ = [
    "ALIE",
    "IPM",
    "AbstractAttack",
    "AbstractLineSearch",
    "AttackContext",
    "Dissensus",
    "GaussianNoise",
    "HugeValue",
    "Isolation",
    "LabelFlip",
    "Mimic",
    "NoAttack",
    "NonFinite",
    "OptimalALIE",
    "OptimalIPM",
    "SampleDuplication",
    "SignFlip",
    "SpectralHeterogeneity",
    "ZeroVector",
    "alie_z",
    "fiedler_vector",
    "undo_direction",
]
