"""The compiled softmax-regression gradient (p2probust.jit.logreg): the bits of the torch path
(batch gather, baddbmm, softmax residual, bmm, sum)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import p2probust as pr
from p2probust.jit import load_kernel, same_bits
from p2probust.jit import logreg as jit_logreg
from p2probust.jit import softmax as jit_softmax
from p2probust.local import LocalTrainer
from p2probust.models import LogisticRegression

needs_kernel = pytest.mark.skipif(jit_softmax.lanes() == 0 or not pr.jit.available(),
                                  reason="no AVX2/AVX-512 torch kernels or no numba here")


def _case(a, bsz, p, classes, seed, scale=0.3):
    """A trainer over 40 samples per node, parameters, nodes and a batch draw (10% flipped nodes)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40 * a, p, generator=g), torch.randint(0, classes, (40 * a,), generator=g)
    flipped = torch.rand(a, generator=g) < 0.1
    trainer = LocalTrainer(LogisticRegression(p, classes), x, y, torch.arange(40 * a).view(a, 40), torch.full((a,), 40),
                           loss="cross_entropy", batch_size=bsz, num_classes=classes, flipped=flipped)
    theta = torch.randn(a, classes * (p + 1), generator=g) * scale
    nodes = torch.arange(a)
    return trainer, theta, nodes, trainer.sampler(nodes, g)


def _kernel_gradients(trainer, theta, nodes, samples):
    """The kernel's gradients, called directly (no verification against torch)."""
    out = np.empty(tuple(theta.shape), np.float32)
    flip = trainer.flipped[nodes].numpy()
    jit_logreg._KERNEL.get()(trainer.x.numpy(), trainer.y.numpy(), samples.numpy(), flip, trainer.num_classes - 1,
                             jit_logreg.plain_columns(trainer.num_classes), theta.numpy(), out, 0, nodes.numel())
    return torch.from_numpy(out)


@needs_kernel
@pytest.mark.parametrize("a, bsz, p, classes", [(40, 32, 64, 10), (9, 16, 20, 3), (12, 64, 50, 2),
                                                (6, 100, 17, 5), (3, 384, 8, 4), (4, 16, 384, 2), (7, 16, 3, 9),
                                                (5, 33, 31, jit_softmax.lanes() - 1)])
@pytest.mark.parametrize("scale", [0.3, 30.0])
def test_gradients_are_the_torch_path_s_bits(a, bsz, p, classes, scale):
    """Against the torch path (gather, baddbmm, softmax residual, bmm, sum over the batch) over
    batch sizes, feature counts that are and are not multiples of a vector, class counts up to a
    vector, saturated softmaxes, flipped labels."""
    trainer, theta, nodes, samples = _case(a, bsz, p, classes, seed=a + bsz + p, scale=scale)
    assert jit_logreg._KERNEL.get() is not None and jit_logreg.usable(trainer.x, theta, bsz)  # loaded: any size
    want = trainer._block_gradients(theta, nodes, samples, ())
    assert same_bits(_kernel_gradients(trainer, theta, nodes, samples), want)


@needs_kernel
@pytest.mark.parametrize("classes", [2, 4, 5, 7, 8, 10, 15])
@pytest.mark.parametrize("rows", [1, 3, 4, 7, 32, 63, 64, 100, 256, 384, 1000, 4099, 70000])
def test_bias_gradient_is_aten_s_cascade_sum(rows, classes):
    """column_sums repeats ATen's sum over the batch dimension of ``G [a, B, C]`` (interleaved
    partials or one cascade per column, chunks of 16 or more rows merged level by level)."""
    column_sums = load_kernel(jit_logreg.SOURCE, "logreg", "column_sums", "the logistic-regression gradient kernel")
    g = torch.randn(2, rows, classes, generator=torch.Generator().manual_seed(rows)) * torch.logspace(-3, 3, rows).view(1, -1, 1)
    plain, width = jit_logreg.plain_columns(classes), 16
    got = torch.empty(2, classes)
    for i in range(2):
        padded = np.zeros((rows, width), np.float32)
        padded[:, :classes] = g[i].numpy()
        column_sums(padded, rows, plain, np.empty((4, width), np.float32), np.empty((5, width), np.float32), got[i].numpy())
    assert same_bits(got, g.sum(1))


@needs_kernel
def test_one_and_two_threads_give_thesame_bits(monkeypatch):
    monkeypatch.setattr(jit_logreg, "_checked", {})
    trainer, theta, nodes, samples = _case(200, 32, 64, 10, seed=3)
    reference = lambda m=200: trainer._block_gradients(theta[:m], nodes[:m], samples[:m], ())  # noqa: E731
    threads = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference))
    finally:
        torch.set_num_threads(threads)
    assert same_bits(outs[0], outs[1]) and same_bits(outs[0], reference())


@needs_kernel
@pytest.mark.parametrize("bsz, p, classes, why", [(32, 400, 10, "a contraction past MKL's K-block"),
                                                  (12, 64, 2, "under 16 rows: MKL's other kernels"),
                                                  (32, 2, 10, "two features"),
                                                  (16, 3, 7, "under ATen's small-product loop"),
                                                  (32, 64, 16, "a row of a vector or more")])
def test_shapes_outside_the_matched_range_take_the_torch_path(bsz, p, classes, why):
    theta = torch.zeros(4, classes * (p + 1))
    assert not jit_logreg.usable(torch.zeros(10, p), theta, bsz), why
    assert not jit_logreg.usable(torch.zeros(10, p, dtype=torch.float64), theta.double(), 32)


@needs_kernel
def test_a_kernel_that_differs_warns_once_and_the_torch_path_serves_that_shape(monkeypatch):
    trainer, theta, nodes, samples = _case(30, 32, 64, 10, seed=8)
    kernel, calls = jit_logreg._KERNEL.get(), []

    def off_by_one_ulp(x, y, samples_, flip, top, plain, theta_, out, start, stop):
        calls.append(1)
        kernel(x, y, samples_, flip, top, plain, theta_, out, start, stop)
        out[start:stop] = np.nextafter(out[start:stop], np.float32(2))

    monkeypatch.setattr(jit_logreg._KERNEL, "_kernel", [off_by_one_ulp])
    monkeypatch.setattr(jit_logreg, "_checked", {})
    reference = lambda m=200: trainer._block_gradients(theta[:m], nodes[:m], samples[:m], ())  # noqa: E731
    with pytest.warns(RuntimeWarning, match="logistic-regression gradient differs"):
        got = jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference)
    assert same_bits(got, reference()) and calls
    ran = len(calls)
    again = jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference)
    assert same_bits(again, reference()) and len(calls) == ran  # the shape is served by torch from now on


@needs_kernel
def test_the_first_call_of_a_shape_is_compared_on_its_first_rows(monkeypatch):
    trainer, theta, nodes, samples = _case(40, 48, 64, 10, seed=6)
    monkeypatch.setattr(jit_logreg, "CHECK_ROWS", 8)
    monkeypatch.setattr(jit_logreg, "_checked", {})
    asked = []

    def reference(m):
        asked.append(m)
        return trainer._block_gradients(theta[:m], nodes[:m], samples[:m], ())

    got = jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference)
    assert asked == [8] and jit_logreg._checked == {(48, 64, 10): True}
    jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference)
    assert asked == [8]  # checked once per shape
    assert same_bits(got, trainer._block_gradients(theta, nodes, samples, ()))


@needs_kernel
def test_a_label_outside_the_classes_is_torch_s_error(monkeypatch):
    monkeypatch.setattr(jit_logreg, "_checked", {})
    trainer, theta, nodes, samples = _case(20, 32, 64, 10, seed=2)
    reference = lambda m: trainer._block_gradients(theta[:m], nodes[:m], samples[:m], ())  # noqa: E731
    jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference)  # the labels' range is kept ...
    trainer.y[samples[0, 0]] = 10  # ... until they are written to
    with pytest.raises(RuntimeError, match="out of bounds"):
        jit_logreg.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, reference)


@needs_kernel
@pytest.mark.parametrize("over", [{"train.momentum": 0.9}, {"attack.name": "label-flip", "train.batch_size": 16},
                                  {"engine.mode": "async", "data.task": "digits"}])
def test_runs_same_with_and_without_the_kernel(over, with_and_without):
    cfg = pr.RunConfig().replace(**{"topology.nodes": 60, "byzantine.count": 6, "train.rounds": 4, "eval_every": 2, **over})
    fast, slow = with_and_without(jit_logreg, lambda: pr.simulate(cfg))
    assert torch.equal(fast.params, slow.params) and fast.history == slow.history


@needs_kernel
def test_under_mkl_s_avx2_kernels_the_result_is_still_the_torch_path_s():
    """MKL's AVX2 kernels (its choice on CPUs without AVX-512) sum in another order: the check at
    the first call sees it and the torch path serves the shape, so the bits are torch's either way."""
    code = (
        "import sys, warnings, torch\nsys.path.insert(0, 'tests')\n"
        "from test_jit_logreg import _case\nfrom p2probust.jit import logreg as jl\n"
        "trainer, theta, nodes, samples = _case(40, 32, 64, 10, seed=1)\n"
        "ref = lambda m: trainer._block_gradients(theta[:m], nodes[:m], samples[:m], ())\n"
        "with warnings.catch_warnings(record=True):\n"
        "    warnings.simplefilter('always')\n"
        "    got = jl.gradients(trainer.x, trainer.y, samples, trainer.flipped, 9, theta, ref)\n"
        "print(torch.equal(got.view(torch.int32), ref(40).view(torch.int32)), jl._checked)\n"
    )
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=root)
    assert out.stdout.startswith("True"), out.stdout + out.stderr
