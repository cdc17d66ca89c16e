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

import io
import logging
import math
from typing import Any

import torch

from .rundir import RunDir, write_atomic

log = logging.getLogger("p2probust")

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


def failure_fields(err: BaseException, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary fields of a run that raised ``err``."""
    from .recorder import RecordError
    from .signals import Interrupted

    done = history[-1]["round"] if history else 0
    if is_overflow(err):  # e.g. --lr 1e300: the numbers left the representable range
        return {"status": "diverged", "diverged_round": done + 1, "diverged_reason": f"overflow ({err})"}
    if isinstance(err, Interrupted):
        return {"status": "interrupted", "stopped_by": err.name}
    if isinstance(err, KeyboardInterrupt):
        return {"status": "interrupted", "stopped_by": "SIGINT"}
    reason = str(err) if isinstance(err, RecordError) else f"{type(err).__name__}: {err}"
    return {"status": "failed", "error": reason}


def close_run_dir(run_dir: RunDir, summary: dict[str, Any], params: torch.Tensor, is_byz: torch.Tensor) -> None:
    """Write ``summary.json`` and the final parameters atomically, then unlock the folder. A write
    that fails (disk full) is reported in one line, not raised over the run's own outcome."""
    try:
        buf = io.BytesIO()
        torch.save({"params": params.detach().cpu(), "is_byzantine": is_byz.cpu()}, buf)
        write_atomic(run_dir.path / "params.pt", buf.getvalue())
        run_dir.write_json("summary.json", summary)
    except OSError as err:
        log.error(f"could not write the run's summary to {run_dir.path}: {err.strerror or err}")
    finally:
        run_dir.release()
