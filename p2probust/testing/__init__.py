"""Public conformance checks for user components (aggregators, attacks, topologies)."""

from .attacks import check_attack

__all__ = ["check_attack"]
