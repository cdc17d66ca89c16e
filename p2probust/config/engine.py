"""The simulated network of a run (parsed by :mod:`p2probust.engine.specs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ..typecheck import check_types
from .base import ConfigError, _require, option

Mode = Literal["sync", "async"]


@dataclass(frozen=True)
class EngineConfig:
    """The simulated network (seconds, bytes per second); specs are parsed by :mod:`p2probust.engine.specs`.

    ``compute_time`` and ``latency`` are seconds or distributions (``lognormal:mean=0.05,sigma=0.5``,
    ``uniform:low=..,high=..``, ``exponential:mean=..``); ``bandwidth`` is bytes/s or ``10MB/s``;
    ``mode`` is ``sync`` (rounds) or ``async`` (each node on its own ``clock``); ``duration`` stops
    the run at a simulated time (``300s``; 0: stop after ``train.rounds``).
    """

    compute_time: float | str = option(
        0.01, "simulated seconds per local step: 0.01, lognormal:mean=0.01,sigma=0.5, exponential:mean=0.01")
    latency: float | str = option(
        0.005, "link latency: seconds (0.005), uniform:low=A,high=B, lognormal:mean=M,sigma=S, exponential:mean=M")
    bandwidth: float = option(float("inf"), "link bandwidth: bytes/s, 10MB/s, 100Mbit/s or inf", type=str)
    mode: Mode = option("sync", "synchronous rounds or asynchronous gossip")
    clock: str = option("periodic", "async wake-ups: periodic, periodic:period=P,jitter=J, poisson:rate=R, "
                        "wait:k=K[,timeout=T]")
    drop: float = option(0.0, "probability that a message is lost")
    churn: str | Mapping[str, Any] = option(
        "none", "none or up=MEAN,down=MEAN[,crash=FRAC,crash_time=T][,join=FRAC,join_time=T]")
    stragglers: str = option("none", "FRACTIONxFACTOR: that fraction of nodes computes FACTOR times slower (0.1x5)")
    #: stop at this simulated time in seconds (0: after train.rounds)
    duration: float = option(0.0, "stop at this simulated time (300s, 5m); 0: stop after --rounds", type=str)
    timing_attack: str = option("none", "Byzantine timing: none, delay:seconds=S, replay:lag=S, flood:copies=C")
    #: a new graph every round
    dynamics: str = option("static", "time-varying graph: static, random-regular:degree=D, epidemic:s=S")
    tick: float = option(0.0, "async: round compute completions up to multiples of tick seconds to batch them")

    def __post_init__(self) -> None:
        from ..engine import specs

        def parse(key: str, fn, value):
            try:
                return fn(value)
            except ValueError as err:
                raise ConfigError(f"engine.{key}: {err}") from None

        for key in ("compute_time", "latency"):
            dist = parse(key, lambda v, k=key: specs.parse_dist(v, k.replace("_", " ")), getattr(self, key))
            if dist.kind == "const":
                object.__setattr__(self, key, dist.a)
        object.__setattr__(self, "bandwidth", parse("bandwidth", specs.parse_bandwidth, self.bandwidth))
        object.__setattr__(self, "duration", parse("duration", specs.parse_duration, self.duration))
        _require(isinstance(self.drop, (int, float)) and 0 <= self.drop < 1, "engine.drop", self.drop, "a probability in [0, 1)")
        _require(isinstance(self.tick, (int, float)) and self.tick >= 0, "engine.tick", self.tick, "seconds >= 0")
        if isinstance(self.churn, Mapping):
            object.__setattr__(self, "churn", dict(self.churn))
        for key, fn in (("clock", specs.parse_clock), ("churn", specs.parse_churn), ("stragglers", specs.parse_stragglers),
                        ("timing_attack", specs.parse_timing_attack), ("dynamics", specs.parse_dynamics)):
            parse(key, fn, getattr(self, key))
        check_types(self, "engine")

    def specs(self) -> dict[str, Any]:
        """The parsed specification objects, by key."""
        from ..engine import specs as sp

        return {
            "compute_time": sp.parse_dist(self.compute_time), "latency": sp.parse_dist(self.latency),
            "clock": sp.parse_clock(self.clock), "churn": sp.parse_churn(self.churn),
            "stragglers": sp.parse_stragglers(self.stragglers), "timing_attack": sp.parse_timing_attack(self.timing_attack),
            "dynamics": sp.parse_dynamics(self.dynamics),
        }
