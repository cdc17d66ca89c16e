"""Spec parsing of the event engine: accepted forms, one-line errors, config and CLI plumbing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from p2probust.cli import main
from p2probust.config import ConfigError, RunConfig
from p2probust.engine import specs as sp


@pytest.mark.parametrize("text, expected", [
    (0.05, sp.Dist("const", 0.05)),
    ("0.05", sp.Dist("const", 0.05)),
    ("const:0.1", sp.Dist("const", 0.1)),
    ("uniform:low=0.01,high=0.1", sp.Dist("uniform", 0.01, 0.1)),
    ("lognormal:mean=0.05,sigma=0.5", sp.Dist("lognormal", 0.05, 0.5)),
    ("exponential:mean=2", sp.Dist("exponential", 2.0)),
])
def test_dist_forms(text, expected):
    assert sp.parse_dist(text) == expected
    assert sp.parse_dist(str(expected)) == expected


@pytest.mark.parametrize("bad", ["lognormal:mean=0.05", "gauss:mean=1", "uniform:low=2,high=1", "-1", "x", "lognormal:mean=a,sigma=1"])
def test_dist_errors_are_one_line_with_forms(bad):
    with pytest.raises(ValueError) as err:
        sp.parse_dist(bad, "latency")
    msg = str(err.value)
    assert "\n" not in msg and "lognormal:mean=M,sigma=S" in msg


def test_lognormal_mean_is_the_mean():
    draws = sp.parse_dist("lognormal:mean=0.05,sigma=0.5").sample(np.random.default_rng(0), 200_000)
    assert draws.mean() == pytest.approx(0.05, rel=0.01)


@pytest.mark.parametrize("text, bps", [("10MB/s", 1e7), ("100Mbit/s", 12.5e6), ("512KiB/s", 512 * 1024), ("1e6", 1e6),
                                       ("inf", math.inf), (2000, 2000.0), ("8bps", 1.0)])
def test_bandwidth(text, bps):
    assert sp.parse_bandwidth(text) == pytest.approx(bps)


@pytest.mark.parametrize("text, seconds", [("300s", 300), ("5m", 300), ("250ms", 0.25), ("1.5h", 5400), (12, 12), ("0", 0)])
def test_duration(text, seconds):
    assert sp.parse_duration(text) == pytest.approx(seconds)


def test_other_specs_round_trip_and_errors():
    assert sp.parse_churn("up=50,down=5") == sp.ChurnSpec(up=50, down=5)
    assert sp.parse_churn("none").active is False
    assert sp.parse_stragglers("0.1x5") == sp.StragglerSpec(0.1, 5)
    assert sp.parse_clock("poisson:rate=50").rate == 50
    assert sp.parse_clock("wait:k=3,timeout=1") == sp.ClockSpec("wait", k=3, timeout=1.0)
    assert sp.parse_timing_attack("flood:copies=10") == sp.TimingAttackSpec("flood", 10)
    assert sp.parse_dynamics("epidemic:s=3") == sp.DynamicsSpec("epidemic", 3)
    for fn, bad, form in [(sp.parse_churn, "up=50", "up=MEAN_UP"), (sp.parse_stragglers, "10%", "0.1x5"),
                          (sp.parse_clock, "poisson", "poisson:rate=R"), (sp.parse_timing_attack, "flood:copies=0.5", "flood"),
                          (sp.parse_dynamics, "epidemic:k=3", "epidemic:s=S"), (sp.parse_bandwidth, "fast", "10MB/s"),
                          (sp.parse_duration, "soon", "300s")]:
        with pytest.raises(ValueError, match=form) as err:
            fn(bad)
        assert "\n" not in str(err.value)


def test_engine_config_parses_and_keeps_defaults():
    e = RunConfig().engine
    assert (e.compute_time, e.latency, e.bandwidth, e.mode, e.drop, e.duration) == (0.01, 0.005, math.inf, "sync", 0.0, 0.0)
    cfg = RunConfig().replace(**{"engine.bandwidth": "10MB/s", "engine.duration": "5m", "engine.latency": "0.02"})
    assert (cfg.engine.bandwidth, cfg.engine.duration, cfg.engine.latency) == (1e7, 300.0, 0.02)
    with pytest.raises(ConfigError, match="engine.churn"):
        RunConfig().replace(**{"engine.churn": "up=5"})
    with pytest.raises(ConfigError, match="engine.mode"):
        RunConfig().replace(**{"engine.mode": "eventual"})


def test_toml_engine_table(tmp_path):
    from p2probust.config import load_config

    path = tmp_path / "x.toml"
    path.write_text('[engine]\nmode = "async"\nlatency = "lognormal:mean=0.05,sigma=0.5"\nbandwidth = "10MB/s"\n'
                    'drop = 0.05\nchurn = "up=50,down=5"\nstragglers = "0.1x5"\nduration = "300s"\n')
    e = load_config(path).engine
    assert e.mode == "async" and e.duration == 300 and e.specs()["latency"].kind == "lognormal"


def test_cli_malformed_spec_exits_2_with_one_line():
    res = CliRunner().invoke(main, ["run", "--latency", "lognormal:mu=1", "--out", "unused"])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "uniform:low=A,high=B" in lines[0]
