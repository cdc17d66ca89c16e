"""The compiled softmax-regression residual (p2probust.jit.softmax): the bits of torch.softmax."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import p2probust as pr
from p2probust.jit import logreg as jit_logreg
from p2probust.jit import same_bits
from p2probust.jit import softmax as jit_softmax
from p2probust.local import LocalTrainer
from p2probust.models import LogisticRegression

needs_kernel = pytest.mark.skipif(jit_softmax.lanes() == 0 or not pr.jit.available(),
                                  reason="no AVX2/AVX-512 torch kernels or no numba here")


def _torch_residual(z, y, bsz):
    g = torch.softmax(z, -1)
    return g.scatter_add_(-1, y.unsqueeze(-1), g.new_full((*y.shape, 1), -1.0)).div_(bsz)


def _logits(a, bsz, classes, scale, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(a, bsz, classes, generator=g) * scale
    y = torch.randint(0, classes, (a, bsz), generator=g)
    return z, y


@needs_kernel
@pytest.mark.parametrize("classes", [2, 3, 10, jit_softmax.lanes() - 1 or 2])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 8.0, 300.0])
@pytest.mark.parametrize("bsz", [32, 7])
def test_same_bits_as_torch(classes, scale, bsz, monkeypatch):
    monkeypatch.setattr(jit_softmax, "MIN_VALUES", 0)
    z, y = _logits(300, bsz, classes, scale, seed=classes + bsz)
    want = _torch_residual(z, y, bsz)
    assert jit_softmax.usable(z)
    got = jit_softmax.softmax_residual(z.clone(), y, bsz)
    assert same_bits(got, want)
    # the rows sum to 0 up to rounding (softmax sums to 1, minus the one-hot), each in [-1/B, 1/B]
    assert torch.allclose(got.sum(-1), torch.zeros(()), atol=1e-6)
    assert bool((got.abs() <= 1.0 / bsz + 1e-7).all())


@needs_kernel
def test_nan_inf_and_underflow_rowssame_bits(monkeypatch):
    monkeypatch.setattr(jit_softmax, "MIN_VALUES", 0)
    z, y = _logits(8, 4, 10, 3.0, seed=1)
    z[0, 0, 3] = float("nan")  # a NaN makes its whole row NaN
    z[1, 1, :] = float("-inf")  # all −inf: NaN (−inf − −inf)
    z[2, 2, 4] = float("inf")
    z[3, 3, 5] = float("-inf")  # one −inf in a finite row: probability 0
    z[4, 0, 0] = 150.0  # the others underflow to zero or subnormals
    z[5, 1, :] = torch.tensor([0.0, -87.0, -88.0, -89.0, -95.0, -100.0, -103.9, -104.0, -104.1, -200.0])
    z[6, 2, :] = 0.0  # a tie: 1/10 each
    got = jit_softmax.softmax_residual(z.clone(), y, 4)
    assert same_bits(got, _torch_residual(z, y, 4))
    assert bool(got[0, 0].isnan().all()) and bool(got[1, 1].isnan().all()) and not bool(got[3, 3].isnan().any())
    assert got[6, 2, (y[6, 2] + 1) % 10].item() == pytest.approx(0.1 / 4)


def test_calls_it_cannot_reproduce_take_the_torch_path(monkeypatch):
    z, _ = _logits(1000, 32, 10, 1.0, seed=2)
    assert not jit_softmax.usable(z.double())
    with monkeypatch.context() as patch:
        patch.setattr(jit_softmax._KERNEL, "_kernel", [])  # not loaded yet in this process
        assert not jit_softmax.usable(z[:1, :1])  # below MIN_VALUES: not worth compiling for
        assert jit_softmax._KERNEL._kernel == []  # and the question did not load it
    if jit_softmax.lanes() and pr.jit.available():
        assert jit_softmax._KERNEL.get() is not None and jit_softmax.usable(z[:1, :1])  # loaded: any size
    assert not jit_softmax.usable(torch.randn(1000, 32, 16))  # as wide as an AVX-512 vector: another order
    assert not jit_softmax.usable(z.clone().requires_grad_())
    z64, y = _logits(100, 32, 10, 1.0, seed=3)
    assert torch.equal(jit_softmax.softmax_residual(z64.double(), y, 32), _torch_residual(z64.double(), y, 32))


@needs_kernel
@pytest.mark.parametrize("label", [10, -1])
def test_labels_outside_the_classes_are_refused_as_by_torch(label, monkeypatch):
    z, y = _logits(50, 8, 10, 1.0, seed=7)
    y[3, 2] = label
    with pytest.raises(RuntimeError, match=f"index {label} is out of bounds for dimension 2 with size 10"):
        _torch_residual(z, y, 8)
    monkeypatch.setattr(jit_softmax, "MIN_VALUES", 0)
    with pytest.raises(RuntimeError, match=f"index {label} is out of bounds for dimension 2 with size 10"):
        jit_softmax.softmax_residual(z.clone(), y, 8)


@needs_kernel
def test_a_kernel_with_other_bits_is_refused_with_a_warning():
    def off_by_one_ulp(z, y, bsz, start, stop):
        g = _torch_residual(torch.from_numpy(z[start:stop]), torch.from_numpy(y[start:stop]), float(bsz))
        torch.from_numpy(z[start:stop]).copy_(torch.nextafter(g, torch.tensor(2.0)))

    with pytest.warns(RuntimeWarning, match="differs from torch.softmax"):
        assert not jit_softmax._matches_torch(off_by_one_ulp)
    assert jit_softmax._matches_torch(jit_softmax._KERNEL.get())


@needs_kernel
def test_logistic_regression_gradients_and_runs_same_with_and_without_the_kernel(with_and_without, monkeypatch):
    monkeypatch.setattr(jit_logreg._KERNEL, "_kernel", [None])  # the torch path of the gradient, whose softmax this is
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(4000, 64, generator=g), torch.randint(0, 10, (4000,), generator=g)
    table = torch.arange(4000).view(100, 40)
    trainer = LocalTrainer(LogisticRegression(64, 10), x, y, table, torch.full((100,), 40),
                           loss="cross_entropy", batch_size=32, num_classes=10)
    theta = torch.randn(100, 650, generator=g) * 0.1
    nodes = torch.arange(100)

    def run():
        grads = trainer.gradients(theta, nodes, torch.Generator().manual_seed(5))
        cfg = pr.RunConfig().replace(**{"topology.nodes": 60, "byzantine.count": 6, "train.rounds": 4, "eval_every": 2,
                                        "train.momentum": 0.9})
        return grads, pr.simulate(cfg)

    (fast_grads, fast), (slow_grads, slow) = with_and_without(jit_softmax, run)
    assert torch.equal(fast_grads, slow_grads)
    assert torch.equal(fast.params, slow.params)
    assert fast.history == slow.history


@needs_kernel
def test_avx2_dispatch_serves_fewer_classes_only():
    """Under ATEN_CPU_CAPABILITY=avx2 torch's vectors hold 8 floats: rows of up to 7 classes keep the
    bits, 10 classes take the torch path (its summation order differs there)."""
    code = (
        "import torch\nfrom p2probust.jit import softmax as s\ns.MIN_VALUES = 0\n"
        "assert s.lanes() == 8, s.lanes()\n"
        "g = torch.Generator().manual_seed(6)\n"
        "for c in (2, 5, 7):\n"
        "    z = torch.randn(500, 3, c, generator=g) * 4; y = torch.randint(0, c, (500, 3), generator=g)\n"
        "    p = torch.softmax(z, -1); want = p.scatter_add_(-1, y.unsqueeze(-1), p.new_full((500, 3, 1), -1.0)).div_(3)\n"
        "    assert s.usable(z) and torch.equal(s.softmax_residual(z.clone(), y, 3), want), c\n"
        "assert not s.usable(torch.randn(500, 3, 10))\nprint('ok')\n"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@needs_kernel
@pytest.mark.parametrize("task", ["blobs", "digits-mlp"])
def test_dp_runs_same_with_and_without_the_kernel(task, with_and_without):
    """DP-SGD's per-example residuals (softmax regression and the MLP's hand-written backward) come
    from the same pass, with B = 1."""
    pytest.importorskip("dp_accounting")
    cfg = pr.RunConfig().replace(**{"topology.nodes": 60, "byzantine.count": 6, "train.rounds": 3, "eval_every": 3,
                                    "data.task": task, "privacy.epsilon": 4.0, "privacy.delta": 1e-5, "privacy.clip": 0.5})
    fast, slow = with_and_without(jit_softmax, lambda: pr.simulate(cfg))
    assert torch.equal(fast.params, slow.params) and fast.history == slow.history
