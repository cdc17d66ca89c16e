"""Small calls run on one torch thread (p2probust.threads), with the same bits as on two."""

from __future__ import annotations

import threading

import pytest
import torch

import p2probust as pr
from p2probust import threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_call_runs_on_one_thread_and_puts_the_count_back(two_threads):
    with threads.one_thread_if_small(threads.SMALL_VALUES - 1):
        assert torch.get_num_threads() == 1
        with threads.one_thread_if_small(10):  # nested
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads.one_thread_if_small(threads.SMALL_VALUES):
        assert torch.get_num_threads() == 2


def test_count_is_put_back_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with threads.one_thread_if_small(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_overlapping_calls_from_two_python_threads_put_the_count_back(two_threads):
    """A interleaving that a save/restore per call gets wrong: A enters, B enters, A leaves, B leaves."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with threads.one_thread_if_small(1):
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():
        a_in.wait(5)
        with threads.one_thread_if_small(1):
            b_in.set()
            a_out.wait(5)
            seen.append(torch.get_num_threads())

    ts = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert seen == [1] and torch.get_num_threads() == 2


def _run(mode: str, clock: str | None = None):
    over = {"topology.name": "random-regular", "topology.nodes": 60, "topology.degree": 6, "byzantine.count": 6,
            "train.rounds": 6, "eval_every": 3, "attack.name": "alie", "rule.name": "trimmed-mean",
            "train.momentum": 0.9, "engine.mode": mode, "seed": 3}
    if clock:
        over.update({"engine.clock": clock, "engine.latency": "lognormal:mean=0.005,sigma=0.5", "engine.tick": 0.002})
    res = pr.simulate(pr.RunConfig().replace(**over))
    return res.params, [{k: v for k, v in row.items() if k != "consensus_distance"} for row in res.history]


@pytest.mark.parametrize("mode, clock", [("sync", None), ("async", "poisson:rate=100"), ("async", "wait:k=3,timeout=0.05")])
def test_runs_give_the_same_bits_on_one_thread_and_on_two(mode, clock, two_threads, monkeypatch):
    """Every step of these runs is small (60 nodes): on one thread by default, on two with the
    threshold at 0. The models and the metrics agree bit for bit (the consensus distance's
    reduction is computed outside the calls and is excluded: its last digit may depend on the
    thread count)."""
    one = _run(mode, clock)
    monkeypatch.setattr(threads, "SMALL_VALUES", 0)
    two = _run(mode, clock)
    assert torch.equal(one[0], two[0])
    assert one[1] == two[1]
