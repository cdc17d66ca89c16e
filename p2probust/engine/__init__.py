"""The event engine: simpy owns simulated time and decides who acts when.

Nothing here imports torch: the engine hands integer index sets to the kernels through callbacks
(the synchronous :class:`RoundPlan`; the asynchronous engine's activations and deliveries).
"""

from .churn import ChurnSchedule
from .dynamics import EdgeSampler
from .specs import (
    ChurnSpec,
    ClockSpec,
    Dist,
    DynamicsSpec,
    StragglerSpec,
    TimingAttackSpec,
    parse_bandwidth,
    parse_churn,
    parse_clock,
    parse_dist,
    parse_duration,
    parse_dynamics,
    parse_stragglers,
    parse_timing_attack,
)
from .sync import RoundPlan, RoundTiming, SyncEngine, SyncNetwork
from .timing import ComputeModel, LinkModel

__all__ = [
    "ChurnSchedule", "ChurnSpec", "ClockSpec", "ComputeModel", "Dist", "DynamicsSpec", "EdgeSampler", "LinkModel",
    "RoundPlan", "RoundTiming", "StragglerSpec", "SyncEngine", "SyncNetwork", "TimingAttackSpec",
    "parse_bandwidth", "parse_churn", "parse_clock", "parse_dist", "parse_duration", "parse_dynamics",
    "parse_stragglers", "parse_timing_attack",
]
