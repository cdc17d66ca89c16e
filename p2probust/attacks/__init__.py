"""Attacks: what Byzantine nodes send, crafted per recipient edge."""

from .base import AbstractAttack, AttackContext
from .simple import GaussianNoise, LabelFlip, NoAttack, SignFlip

__all__ = ["AbstractAttack", "AttackContext", "GaussianNoise", "LabelFlip", "NoAttack", "SignFlip"]
