"""Errors raised by the topology package.

Both are :class:`ValueError` subclasses, so callers that validate configurations can catch either
family with one ``except ValueError``. Every message is one line that names the offending value and
says what is allowed.
"""

from __future__ import annotations

__all__ = ["TopologyError", "PlacementError"]


class TopologyError(ValueError):
    """A graph that cannot be built, loaded or used (bad size, disconnected, bad labels, ...)."""


class PlacementError(ValueError):
    """A Byzantine placement that cannot be made (bad count, bad node list, unknown strategy)."""
