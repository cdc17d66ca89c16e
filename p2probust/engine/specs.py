"""Small specification languages of the event engine, parsed into frozen dataclasses (no torch).

Every parser accepts the spec object itself, a number where that makes sense, or a short text,
and raises a one-line :class:`ValueError` that names the bad value and shows the accepted forms:

=============  ==============================================================================
latency        ``0.05`` | ``const:0.05`` | ``uniform:low=0.01,high=0.1`` |
               ``lognormal:mean=0.05,sigma=0.5`` | ``exponential:mean=0.05``
compute time   the same forms as latency
bandwidth      ``inf`` | ``1e7`` (bytes/s) | ``10MB/s`` | ``100Mbit/s`` | ``512KiB/s``
duration       ``300`` | ``300s`` | ``5m`` | ``1.5h`` | ``250ms``
churn          ``none`` | ``up=50,down=5`` (+ ``crash=0.1,crash_time=30``, ``join=0.2,join_time=20``)
stragglers     ``none`` | ``0.1x5`` (10 % of the nodes compute 5 times slower)
clock          ``periodic`` | ``periodic:period=0.02,jitter=0.1`` | ``poisson:rate=50`` |
               ``wait:k=3`` | ``wait:k=3,timeout=1``
timing attack  ``none`` | ``delay:seconds=0.5`` | ``replay:lag=1`` | ``flood:copies=10``
graph dynamics ``static`` | ``random-regular:degree=4`` | ``epidemic:s=3``
=============  ==============================================================================
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

DIST_FORMS = "a number of seconds, const:X, uniform:low=A,high=B, lognormal:mean=M,sigma=S or exponential:mean=M"
BANDWIDTH_FORMS = "inf, bytes per second (1e7), or a rate like 10MB/s, 512KiB/s, 100Mbit/s"
DURATION_FORMS = "seconds like 300, 300s, 250ms, 5m or 1.5h"
CHURN_FORMS = "none or up=MEAN_UP,down=MEAN_DOWN[,crash=FRACTION,crash_time=T][,join=FRACTION,join_time=T]"
STRAGGLER_FORMS = "none or FRACTIONxFACTOR like 0.1x5"
CLOCK_FORMS = "periodic, periodic:period=P,jitter=J, poisson:rate=R or wait:k=K[,timeout=T]"
TIMING_FORMS = "none, delay:seconds=S, replay:lag=SECONDS or flood:copies=C"
DYNAMICS_FORMS = "static, random-regular:degree=D or epidemic:s=S"


def _keyvals(text: str, what: str, forms: str, allowed: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ValueError(f"{what} {text!r}: bad part {part!r}; expected {forms}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"{what} {text!r}: {key} = {value!r} is not a number; expected {forms}") from None
    return out


def _split(text: str) -> tuple[str, str]:
    kind, _, rest = str(text).strip().partition(":")
    return kind.strip().lower(), rest


@dataclass(frozen=True)
class Dist:
    """A non-negative random duration: ``const`` (``a``), ``uniform`` on [a, b], ``lognormal`` with
    mean ``a`` and log-scale σ ``b`` (μ = ln a − σ²/2, so the mean is exactly ``a``), or
    ``exponential`` with mean ``a``."""

    kind: str = "const"
    a: float = 0.0
    b: float = 0.0

    def __post_init__(self) -> None:
        ok = self.kind in ("const", "uniform", "lognormal", "exponential") and self.a >= 0 and self.b >= 0
        if self.kind == "uniform":
            ok = ok and self.a <= self.b
        if self.kind in ("lognormal", "exponential"):
            ok = ok and self.a > 0
        if not ok or not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"distribution {self.kind}(a={self.a}, b={self.b}) is invalid; expected {DIST_FORMS}")

    @property
    def constant(self) -> bool:
        """True when every draw is the same value."""
        return self.kind == "const" or (self.kind == "uniform" and self.a == self.b)

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        """``size`` draws (float64); a constant draws nothing from ``rng``."""
        if self.kind == "const":
            return np.full(size, self.a)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b, size)
        if self.kind == "lognormal":
            return rng.lognormal(math.log(self.a) - self.b**2 / 2, self.b, size)
        return rng.exponential(self.a, size)

    def __str__(self) -> str:
        if self.kind == "const":
            return f"{self.a:g}"
        names = {"uniform": ("low", "high"), "lognormal": ("mean", "sigma"), "exponential": ("mean", None)}[self.kind]
        parts = [f"{names[0]}={self.a:g}"] + ([f"{names[1]}={self.b:g}"] if names[1] else [])
        return f"{self.kind}:{','.join(parts)}"


def parse_dist(spec: Any, what: str = "distribution") -> Dist:
    """Parse a duration distribution (see the module table)."""
    if isinstance(spec, Dist):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if spec < 0 or not math.isfinite(spec):
            raise ValueError(f"{what} {spec!r} must be >= 0 seconds; expected {DIST_FORMS}")
        return Dist("const", float(spec))
    text = str(spec).strip()
    try:
        return parse_dist(float(text), what)
    except ValueError as err:
        if "must be" in str(err):
            raise
    kind, rest = _split(text)
    try:
        if kind == "const":
            return Dist("const", float(rest))
        if kind == "uniform":
            kv = _keyvals(rest, what, DIST_FORMS, ("low", "high"))
            return Dist("uniform", kv["low"], kv["high"])
        if kind == "lognormal":
            kv = _keyvals(rest, what, DIST_FORMS, ("mean", "sigma"))
            return Dist("lognormal", kv["mean"], kv["sigma"])
        if kind == "exponential":
            return Dist("exponential", _keyvals(rest, what, DIST_FORMS, ("mean",))["mean"])
    except (KeyError, ValueError):
        pass
    raise ValueError(f"{what} {text!r} is not understood; expected {DIST_FORMS}")


_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bandwidth(spec: Any) -> float:
    """Bytes per second from ``inf``, a number, or ``<x><prefix>B/s`` / ``<x><prefix>bit/s`` (``bps``)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not spec > 0:
            raise ValueError(f"bandwidth {spec!r} must be > 0; expected {BANDWIDTH_FORMS}")
        return float(spec)
    text = str(spec).strip()
    if text.lower() in ("inf", "infinity", "none"):
        return float("inf")
    m = re.fullmatch(r"([0-9.eE+-]+)\s*([kKmMgGtT]i?)?(B|bit|b)(/s|ps)?", text)
    try:
        if m is None:
            return parse_bandwidth(float(text))
        value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()] / (8 if m.group(3) in ("bit", "b") else 1)
        return parse_bandwidth(value)
    except ValueError:
        raise ValueError(f"bandwidth {text!r} is not understood; expected {BANDWIDTH_FORMS}") from None


def parse_duration(spec: Any) -> float:
    """Seconds from a number or ``300s`` / ``250ms`` / ``5m`` / ``1.5h``; 0 means no time limit."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if spec < 0 or math.isnan(spec):
            raise ValueError(f"duration {spec!r} must be >= 0; expected {DURATION_FORMS}")
        return float(spec)
    text = str(spec).strip()
    m = re.fullmatch(r"([0-9.eE+]+)\s*(ms|s|m|min|h)?", text)
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}
    try:
        if m is None:
            raise ValueError
        return parse_duration(float(m.group(1)) * scale[m.group(2)])
    except ValueError:
        raise ValueError(f"duration {text!r} is not understood; expected {DURATION_FORMS}") from None


@dataclass(frozen=True)
class ChurnSpec:
    """On/off churn (exponential up and down times with means ``up`` and ``down``, 0 = no churn),
    crash-stop (a ``crash`` fraction of the nodes stops for good at an exponential time of mean
    ``crash_time``) and node-join (a ``join`` fraction starts offline and joins at an exponential
    time of mean ``join_time``). ``outages`` lists scripted ``(node, start, end)`` offline spans."""

    up: float = 0.0
    down: float = 0.0
    crash: float = 0.0
    crash_time: float = 100.0
    join: float = 0.0
    join_time: float = 10.0
    outages: tuple[tuple[int, float, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "outages", tuple((int(a), float(b), float(c)) for a, b, c in self.outages))
        bad = (self.up < 0 or self.down < 0 or (self.up > 0) != (self.down > 0) or not 0 <= self.crash <= 1
               or not 0 <= self.join <= 1 or self.crash_time <= 0 or self.join_time <= 0
               or any(s < 0 or e < s for _, s, e in self.outages))
        if bad:
            raise ValueError(f"churn {self} is invalid; expected {CHURN_FORMS} (up and down both > 0)")

    @property
    def active(self) -> bool:
        return self.up > 0 or self.crash > 0 or self.join > 0 or bool(self.outages)

    def __str__(self) -> str:
        if not self.active:
            return "none"
        parts = [f"up={self.up:g},down={self.down:g}"] if self.up > 0 else []
        parts += [f"crash={self.crash:g},crash_time={self.crash_time:g}"] if self.crash else []
        parts += [f"join={self.join:g},join_time={self.join_time:g}"] if self.join else []
        parts += [f"outages={len(self.outages)}"] if self.outages else []
        return ",".join(parts)


def parse_churn(spec: Any) -> ChurnSpec:
    """Parse a churn specification (see the module table)."""
    if isinstance(spec, ChurnSpec):
        return spec
    if isinstance(spec, dict):
        try:
            return ChurnSpec(**spec)
        except TypeError:
            raise ValueError(f"churn {spec!r} has unknown keys; expected {CHURN_FORMS} or outages") from None
    text = str(spec).strip()
    if text.lower() in ("", "none", "off"):
        return ChurnSpec()
    kv = _keyvals(text, "churn", CHURN_FORMS, ("up", "down", "crash", "crash_time", "join", "join_time"))
    try:
        return ChurnSpec(**kv)
    except ValueError:
        raise ValueError(f"churn {text!r} is invalid; expected {CHURN_FORMS} (up and down both > 0)") from None


@dataclass(frozen=True)
class StragglerSpec:
    """A ``fraction`` of the nodes (drawn once per run) compute ``factor`` times slower."""

    fraction: float = 0.0
    factor: float = 1.0

    def __post_init__(self) -> None:
        if not (0 <= self.fraction <= 1 and self.factor >= 1):
            raise ValueError(f"stragglers {self.fraction}x{self.factor} are invalid; expected {STRAGGLER_FORMS} "
                             "with a fraction in [0, 1] and a factor >= 1")

    def __str__(self) -> str:
        return "none" if self.fraction == 0 else f"{self.fraction:g}x{self.factor:g}"


def parse_stragglers(spec: Any) -> StragglerSpec:
    if isinstance(spec, StragglerSpec):
        return spec
    text = str(spec).strip().lower()
    if text in ("", "none", "0", "off"):
        return StragglerSpec()
    frac, sep, factor = text.partition("x")
    try:
        if not sep:
            raise ValueError
        return StragglerSpec(float(frac), float(factor))
    except ValueError:
        raise ValueError(f"stragglers {spec!r} are not understood; expected {STRAGGLER_FORMS}") from None


@dataclass(frozen=True)
class ClockSpec:
    """When an asynchronous node wakes. ``periodic``: wakes ``period`` seconds apart (0: back to
    back, as soon as its last step is done), each gap scaled by ``1 + jitter·U(−1, 1)``;
    ``poisson``: exponential gaps of mean ``1/rate``; ``wait``: after its local step and send, a node
    waits for fresh messages from ``k`` neighbours (or ``timeout`` seconds, 0 = forever) before it
    aggregates."""

    kind: str = "periodic"
    period: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    k: int = 0
    timeout: float = 0.0

    def __post_init__(self) -> None:
        ok = {"periodic": self.period >= 0 and 0 <= self.jitter <= 1, "poisson": self.rate > 0,
              "wait": self.k >= 1 and self.timeout >= 0}.get(self.kind, False)
        if not ok:
            raise ValueError(f"clock {self} is invalid; expected {CLOCK_FORMS} (jitter in [0, 1], rate > 0, k >= 1)")

    def __str__(self) -> str:
        if self.kind == "poisson":
            return f"poisson:rate={self.rate:g}"
        if self.kind == "wait":
            return f"wait:k={self.k}" + (f",timeout={self.timeout:g}" if self.timeout else "")
        return "periodic" if not (self.period or self.jitter) else f"periodic:period={self.period:g},jitter={self.jitter:g}"


def parse_clock(spec: Any) -> ClockSpec:
    if isinstance(spec, ClockSpec):
        return spec
    kind, rest = _split(spec)
    try:
        if kind == "periodic":
            return ClockSpec("periodic", **_keyvals(rest, "clock", CLOCK_FORMS, ("period", "jitter")))
        if kind == "poisson":
            return ClockSpec("poisson", rate=_keyvals(rest, "clock", CLOCK_FORMS, ("rate",))["rate"])
        if kind == "wait":
            kv = _keyvals(rest, "clock", CLOCK_FORMS, ("k", "timeout"))
            if kv["k"] != int(kv["k"]):
                raise ValueError
            return ClockSpec("wait", k=int(kv["k"]), timeout=kv.get("timeout", 0.0))
    except (KeyError, ValueError):
        pass
    raise ValueError(f"clock {spec!r} is not understood; expected {CLOCK_FORMS}")


@dataclass(frozen=True)
class TimingAttackSpec:
    """What Byzantine nodes do with *time*: ``delay`` their messages by ``value`` seconds, ``replay``
    a model they observed ``value`` seconds ago, or ``flood`` a neighbour with ``value`` copies of
    each message (the recipient keeps the latest per sender)."""

    kind: str = "none"
    value: float = 0.0

    def __post_init__(self) -> None:
        ok = {"none": True, "delay": self.value >= 0, "replay": self.value >= 0,
              "flood": self.value >= 1 and self.value == int(self.value)}.get(self.kind, False)
        if not ok:
            raise ValueError(f"timing attack {self} is invalid; expected {TIMING_FORMS}")

    def __str__(self) -> str:
        key = {"delay": "seconds", "replay": "lag", "flood": "copies"}.get(self.kind)
        return "none" if key is None else f"{self.kind}:{key}={self.value:g}"


def parse_timing_attack(spec: Any) -> TimingAttackSpec:
    if isinstance(spec, TimingAttackSpec):
        return spec
    kind, rest = _split(spec)
    key = {"delay": "seconds", "replay": "lag", "flood": "copies"}.get(kind)
    try:
        if kind in ("none", ""):
            return TimingAttackSpec()
        if key is not None:
            return TimingAttackSpec(kind, _keyvals(rest, "timing attack", TIMING_FORMS, (key,))[key])
    except (KeyError, ValueError):
        pass
    raise ValueError(f"timing attack {spec!r} is not understood; expected {TIMING_FORMS}")


@dataclass(frozen=True)
class DynamicsSpec:
    """A time-varying topology: ``static`` (the configured graph), a fresh ``random-regular`` graph of
    degree ``value`` every round, or ``epidemic`` sampling where each node pushes to ``value``
    uniformly random peers every round (de Vos et al., "Epidemic learning", NeurIPS 2023)."""

    kind: str = "static"
    value: int = 0

    def __post_init__(self) -> None:
        ok = self.kind == "static" or (self.kind in ("random-regular", "epidemic") and self.value >= 1)
        if not ok:
            raise ValueError(f"graph dynamics {self} are invalid; expected {DYNAMICS_FORMS} (an integer >= 1)")

    def __str__(self) -> str:
        key = {"random-regular": "degree", "epidemic": "s"}.get(self.kind)
        return "static" if key is None else f"{self.kind}:{key}={self.value}"


def parse_dynamics(spec: Any) -> DynamicsSpec:
    if isinstance(spec, DynamicsSpec):
        return spec
    kind, rest = _split(spec)
    key = {"random-regular": "degree", "epidemic": "s"}.get(kind)
    try:
        if kind in ("static", ""):
            return DynamicsSpec()
        if key is not None:
            v = _keyvals(rest, "graph dynamics", DYNAMICS_FORMS, (key,))[key]
            if v == int(v):
                return DynamicsSpec(kind, int(v))
    except (KeyError, ValueError):
        pass
    raise ValueError(f"graph dynamics {spec!r} are not understood; expected {DYNAMICS_FORMS}")
