"""The one error type of :mod:`p2probust.data`."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad data, a bad data file or a bad data parameter.

    Messages are one line and name the bad value and what is allowed, for example
    ``"alpha must be > 0, got -1.0"``.
    """
