"""How a run ended, as ``summary.json`` records it and as the command line's exit code says.

=============  =========  ====================================================================
status         exit code  meaning
=============  =========  ====================================================================
completed      0          every round ran and every honest model stayed finite
(bad input)    2          nothing ran: a one-line error names the bad value
diverged       3          an honest model became NaN or ±inf (or overflowed) at ``diverged_round``
failed         4          the run could not go on (e.g. the disk filled up); ``error`` says why
interrupted    128 + sig  stopped by SIGINT (130), SIGTERM (143) or SIGHUP (129)
=============  =========  ====================================================================

Every status keeps ``metrics.csv`` whole up to the last round that ended, ``summary.json``, and
the final parameters (``params.pt``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

EXIT_CODES = {"completed": 0, "bad_input": 2, "diverged": 3, "failed": 4}


class Diverged(Exception):
    """An honest model became non-finite at round ``round``."""

    def __init__(self, round: int, reason: str = "an honest model became NaN or ±inf"):
        super().__init__(f"{reason} at round {round}")
        self.round = round
        self.reason = reason


def is_overflow(err: BaseException) -> bool:
    """A torch error that means numbers left the representable range (e.g. ``--lr 1e300``)."""
    return isinstance(err, (RuntimeError, OverflowError)) and "overflow" in str(err).lower()


def honest_models_finite(params: torch.Tensor, rows: torch.Tensor, consensus: float) -> bool:
    """Whether every honest model is finite; the full check (one pass over ``params[rows]``) runs
    only when the consensus distance, computed anyway, is not finite."""
    if math.isfinite(consensus):
        return True
    return bool(torch.isfinite(params[rows]).all())


def describe(summary: dict[str, Any]) -> str:
    """One console line for a run that did not complete."""
    status = summary.get("status")
    if status == "diverged":
        return f"diverged at round {summary.get('diverged_round')}: {summary.get('diverged_reason')}"
    if status == "interrupted":
        return f"interrupted by {summary.get('stopped_by', 'a signal')} after round {summary.get('rounds_done')}"
    if status == "failed":
        return f"failed after round {summary.get('rounds_done')}: {summary.get('error')}"
    return str(status)
