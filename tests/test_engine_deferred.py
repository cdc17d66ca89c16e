"""The engine's own queue of node events (engine/deferred.py) against one simpy event per node
event: the same kernel calls with the same arrays at the same times, the same random stream, the
same event count; one by one or vectorized; saved and restored between instants."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from p2probust.engine import ComputeModel, LinkModel
from p2probust.engine import deferred
from p2probust.engine import specs as sp
from p2probust.engine.events import AsyncEngine, AsyncSetup
from test_checkpoint_async import Recording


def _setup(clock: str, *, compute: str = "0.01", tick: float = 0.0, stragglers=sp.StragglerSpec(), drop: float = 0.0,
           timing: str = "none"):
    n = 40
    G = nx.random_regular_graph(4, n, seed=1)
    idx = np.array([sorted(G.neighbors(i)) for i in range(n)])
    byz = np.zeros(n, dtype=bool)
    byz[[3, 17, 30]] = True  # they do not train: each sends at its completion, between the others' draws
    rng = np.random.default_rng(4)
    comp = ComputeModel.build(sp.parse_dist(compute), 1, stragglers, n, rng)
    links = LinkModel(sp.parse_dist("lognormal:mean=0.005,sigma=0.5"), drop=drop)
    return AsyncSetup(idx, np.ones_like(idx, dtype=bool), byz, ~byz, ~byz, comp, links, sp.parse_clock(clock), rng,
                      timing_attack=sp.parse_timing_attack(timing), tick=tick)


def _run(setup_kw: dict, deferred_on: bool, rounds: int = 8, duration: float = 0.0, compiled=None):
    setup = _setup(**setup_kw)
    setup.compiled = compiled
    eng = AsyncEngine(setup, rounds, duration=duration)
    if not deferred_on:
        eng._init_deferred(False)  # every node event a simpy event
    kernel = Recording()
    end = eng.run(kernel)
    return kernel.log, (end, eng.events, eng.round, eng.activations), eng.s.rng.bit_generator.state


CASES = {
    "poisson-tick": dict(clock="poisson:rate=100", tick=0.002),
    "poisson": dict(clock="poisson:rate=100"),
    "periodic-jitter-tick": dict(clock="periodic:period=0.01,jitter=0.3", tick=0.002),
    "periodic-ties": dict(clock="periodic:period=0.01,jitter=0", tick=0.002),  # wake-ups land on completion instants
    "periodic-zero": dict(clock="periodic:period=0,jitter=0", drop=0.2),  # every node computes again at once
    "zero-compute": dict(clock="poisson:rate=100", compute="0.0"),  # completions at the wake-up's instant
    "stragglers": dict(clock="poisson:rate=100", tick=0.003, stragglers=sp.StragglerSpec(0.25, 3.0)),
    "flood-drops": dict(clock="poisson:rate=100", tick=0.002, drop=0.3, timing="flood:copies=3"),
    "delay-attack": dict(clock="periodic:period=0.01,jitter=0.3", tick=0.002, timing="delay:seconds=0.004"),
}


@pytest.mark.parametrize("vector_min", [1, 8, 10**9, "compiled"], ids=["all-vectorized", "default", "one-by-one", "compiled"])
@pytest.mark.parametrize("case", list(CASES))
def test_deferred_node_events_reproduce_one_simpy_event_each(case, vector_min, monkeypatch):
    compiled = None
    if vector_min == "compiled":  # the vectorized passes' bookkeeping in numba (p2probust.jit.engine)
        jit_engine = pytest.importorskip("p2probust.jit.engine")
        if not jit_engine.usable():
            pytest.skip("numba cannot be imported here")
        compiled, vector_min = jit_engine, 1
    monkeypatch.setattr(deferred, "_VECTOR_MIN", vector_min)
    reference = _run(CASES[case], deferred_on=False)
    assert _run(CASES[case], deferred_on=True, compiled=compiled) == reference
    assert len(reference[0]) >= 3 * 8  # a compute, an aggregation and a progress call per round at least


def test_deferred_engine_uses_far_fewer_simpy_steps():
    steps = {}
    for on in (False, True):
        eng = AsyncEngine(_setup("poisson:rate=100", tick=0.002), 8)
        if not on:
            eng._init_deferred(False)
        env_step, count = eng.env.step, [0]

        def step(env_step=env_step, count=count):
            count[0] += 1
            env_step()

        eng.env.step = step
        eng.run(Recording())
        steps[on] = count[0]
    assert steps[True] < steps[False] / 2


def test_duration_limit_counts_the_wake_ups_before_it():
    kw = CASES["poisson-tick"]
    assert _run(kw, True, rounds=1000, duration=0.0437) == _run(kw, False, rounds=1000, duration=0.0437)


def test_deferred_mode_only_when_nothing_comes_between():
    assert AsyncEngine(_setup("poisson:rate=100"), 3)._later is not None
    for kw in (dict(compute="exponential:mean=0.005"), dict(clock="wait:k=2,timeout=0.05")):
        assert AsyncEngine(_setup(**{"clock": "poisson:rate=100", **kw}), 3)._later is None


@pytest.mark.parametrize("case", ["poisson-tick", "periodic-ties"])
def test_deferred_state_round_trip_continues_the_same_calls(case):
    first, saved = AsyncEngine(_setup(**CASES[case]), 12), {}
    kernel = Recording()

    def idle(r):
        if r == 5:
            saved["state"], saved["at"] = first.state(), len(kernel.log)
            assert sorted(saved["state"][0]["later_node"].tolist()) == list(range(first.n))  # one queued event per node

    first.on_idle = idle
    first.run(kernel)
    arrays, scalars = saved["state"]
    json.dumps(scalars)
    second, again = AsyncEngine(_setup(**CASES[case]), 12), Recording()
    second.restore(arrays, scalars)
    second.run(again)
    assert again.log == kernel.log[saved["at"]:]
    assert (second.env.now, second.events, second.round) == (first.env.now, first.events, first.round)
