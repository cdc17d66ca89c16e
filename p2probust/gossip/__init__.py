"""Gossip rules: how a node turns its own model and its inbox into its new model."""

from .base import AbstractGossipRule, lift
from .mixing import AggregateAndMix, Gossip
from .registry import make_rule

__all__ = ["AbstractGossipRule", "AggregateAndMix", "Gossip", "lift", "make_rule"]
