"""Gossip rules: how a node turns its own model and its inbox into its new model."""

from .base import AbstractGossipRule, lift
from .bridge import BridgeScreening
from .clipped import SCC, ClippedGossip
from .ios import IOS
from .mixing import AggregateAndMix, Gossip
from .registry import make_chain, make_rule
from .robust_sum import GTS, CSHe, CSPlus

__all__ = [
    "AbstractGossipRule",
    "AggregateAndMix",
    "BridgeScreening",
    "CSHe",
    "CSPlus",
    "ClippedGossip",
    "GTS",
    "Gossip",
    "IOS",
    "SCC",
    "lift",
    "make_chain",
    "make_rule",
]
