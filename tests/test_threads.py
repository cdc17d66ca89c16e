"""Small calls run on one torch thread (p2probust.threads), with the same bits as on two."""

from __future__ import annotations

import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import p2probust as pr
from p2probust import threads
from p2probust.models import MLP, DropoutCNN, LinearRegression, LogisticRegression, SmallCNN, layers_only
from p2probust.state import build


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_call_runs_on_one_thread_and_puts_the_count_back(two_threads):
    with threads.one_thread_if(True):
        assert torch.get_num_threads() == 1
        with threads.one_thread_if(True):  # nested
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads.one_thread_if(False):
        assert torch.get_num_threads() == 2


def test_forward_flops_are_the_hand_counted_matrix_products():
    """2·in·out per linear layer; 2·(output positions × channels)·(kernel × input channels) per
    convolution (LeCun's network: 24·24·8 outputs of 5·5 kernels, then 8·8·16 of 8·5·5)."""
    assert threads.forward_flops(LogisticRegression(64, 10), torch.zeros(1, 64)) == 2 * 64 * 10
    conv1, conv2, fc = 2 * 24 * 24 * 8 * 25, 2 * 8 * 8 * 16 * 8 * 25, 2 * 256 * 10
    assert threads.forward_flops(SmallCNN(), torch.zeros(1, 784)) == conv1 + conv2 + fc == 645_120


@pytest.mark.parametrize("make", [lambda: LogisticRegression(64, 10), lambda: MLP(64, 32, 10), lambda: SmallCNN(),
                                  lambda: DropoutCNN(), lambda: LinearRegression(20)])
def test_the_hooks_on_p2probust_s_models_count_what_the_flop_counter_counts(make):
    """The built-in models are counted with forward hooks (no dispatch mode); the library's
    FlopCounterMode is the reference."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make()
    sample = torch.zeros(1, 20 if isinstance(model, LinearRegression) else (784 if "CNN" in type(model).__name__ else 64))
    assert layers_only(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(sample)
    assert threads.forward_flops(model, sample) == counter.get_total_flops() > 0


def test_a_run_of_a_built_in_model_does_not_import_torch_dynamo():
    """Its first import costs about a second of set-up; neither the FLOP count nor the memory
    estimate needs it for p2probust's own models."""
    code = ("import sys, p2probust as pr\n"
            "pr.simulate(pr.RunConfig().replace(**{'train.rounds': 1, 'topology.nodes': 12, 'byzantine.count': 1}))\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_counting_flops_changes_no_buffer_and_draws_nothing_from_the_global_generator():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert threads.forward_flops(model, torch.ones(1, 4)) == 2 * 4 * 8 + 2 * 8 * 2
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_a_model_that_cannot_run_on_one_sample_has_no_estimate_and_keeps_its_threads():
    class NeedsMore(nn.Module):
        def forward(self, x, extra):
            return x + extra

    assert threads.forward_flops(NeedsMore(), torch.zeros(1, 3)) is None
    assert not threads.small_step(SimpleNamespace(flops_per_node=None), 1)
    assert not threads.small_step(object(), 1)


def test_built_trainer_counts_its_local_step_and_small_means_small():
    """Logistic regression on 64 features: 3·B·1,280 + 4·650 FLOPs a node, on one thread up to
    267 nodes; the MNIST CNN's local step is never small, even for one node."""
    sim, _ = build(pr.RunConfig().replace(**{"data.task": "blobs", "topology.nodes": 30, "byzantine.count": 0}))
    b = sim.trainer.batch_size
    assert sim.trainer.flops_per_node == 3 * b * 1280 + 4 * 650
    per_node = 3 * 32 * 1280 + 4 * 650
    assert threads.small_step(SimpleNamespace(flops_per_node=per_node), 267)
    assert not threads.small_step(SimpleNamespace(flops_per_node=per_node), 268)
    cnn = 3 * 32 * threads.forward_flops(SmallCNN(), torch.zeros(1, 784)) + 4 * 5994
    assert not threads.small_step(SimpleNamespace(flops_per_node=cnn), 1)
    assert threads.small_mix(290, 10, 650) and not threads.small_mix(300, 10, 650)


def test_count_is_put_back_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with threads.one_thread_if(True):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_overlapping_calls_from_two_python_threads_put_the_count_back(two_threads):
    """A interleaving that a save/restore per call gets wrong: A enters, B enters, A leaves, B leaves."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with threads.one_thread_if(True):
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():
        a_in.wait(5)
        with threads.one_thread_if(True):
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
    """Every phase of these runs is small (60 nodes): on one thread by default, on two with the
    thresholds at 0. The models and the metrics agree bit for bit (the consensus distance's
    reduction is computed outside the calls and is excluded: its last digit may depend on the
    thread count)."""
    calls = []
    real = threads.one_thread_if

    def spy(small):
        calls.append(small)
        return real(small)

    monkeypatch.setattr(threads, "one_thread_if", spy)
    for module in ("p2probust.step", "p2probust.async_kernel"):
        monkeypatch.setattr(f"{module}.one_thread_if", spy)
    one = _run(mode, clock)
    assert calls and all(calls)  # every local step and gossip phase ran on one thread
    monkeypatch.setattr(threads, "STEP_FLOPS", 0)
    monkeypatch.setattr(threads, "MIX_VALUES", 0)
    calls.clear()
    two = _run(mode, clock)
    assert calls and not any(calls)
    assert torch.equal(one[0], two[0])
    assert one[1] == two[1]
