"""Attacks: what Byzantine nodes send, crafted per recipient edge.

One module per family: :mod:`.simple` (sign flip, Gaussian, label flip; the baselines honest,
silent and stale), :mod:`.malformed` (huge, non-finite, zero), :mod:`.omniscient` (ALIE, IPM),
:mod:`.copying` (mimic, sample duplication), :mod:`.linesearch` (optimal ALIE / IPM against the
deployed rule), :mod:`.decentralized` (dissensus, isolation), :mod:`.spectral` (spectral
heterogeneity). Importing this package registers them all in :data:`p2probust.registry.attacks`.
"""

from .base import AbstractAttack, AttackContext
from .copying import Mimic, SampleDuplication
from .decentralized import Dissensus, Isolation, gossip_target, undo_direction
from .linesearch import AbstractLineSearch, OptimalALIE, OptimalIPM, line_maximize
from .malformed import HugeValue, NonFinite, ZeroVector
from .omniscient import ALIE, IPM, alie_z
from .simple import GaussianNoise, Honest, LabelFlip, NoAttack, SignFlip, Silent, Stale
from .spectral import SpectralHeterogeneity, fiedler_vector

__all__ = [
    "ALIE",
    "IPM",
    "AbstractAttack",
    "AbstractLineSearch",
    "AttackContext",
    "Dissensus",
    "GaussianNoise",
    "Honest",
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
    "Silent",
    "SpectralHeterogeneity",
    "Stale",
    "ZeroVector",
    "alie_z",
    "fiedler_vector",
    "gossip_target",
    "line_maximize",
    "undo_direction",
]
