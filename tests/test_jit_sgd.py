"""The compiled end of a local step (p2probust.jit.sgd): the bits of torch's add_/lerp_/index_copy_."""

from __future__ import annotations

import pytest
import torch

import p2probust as pr
from p2probust.jit import sgd as jit_sgd

needs_numba = pytest.mark.skipif(not pr.jit.available(), reason="numba cannot be imported here")

FORMS = [(0.9, False, 0.0), (0.99, False, 5e-4), (0.3, False, 0.0), (0.5, False, 1e-2), (0.9, True, 0.0),
         (0.9, True, 1e-3), (0.0, False, 0.0), (0.0, False, 1e-3)]


def _rows(dtype, seed, n=300, a=170, d=651):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(n, d, generator=g, dtype=dtype)
    momentum = torch.randn(n, d, generator=g, dtype=dtype)
    grads = torch.randn(a, d, generator=g, dtype=dtype) * 10
    nodes = torch.randperm(n, generator=g)[:a]
    return params, momentum, grads, nodes


@needs_numba
@pytest.mark.parametrize("beta, heavy_ball, weight_decay", FORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_bits_as_torch(beta, heavy_ball, weight_decay, dtype):
    params, momentum, grads, nodes = _rows(dtype, seed=int(beta * 100) + heavy_ball)
    update = dict(lr=0.05, beta=beta, weight_decay=weight_decay, heavy_ball=heavy_ball)
    want_p, want_m = jit_sgd.torch_update(params.clone(), momentum.clone(), grads.clone(), params[nodes], nodes, **update,
                                          inplace=True)
    got_p, got_m = params.clone(), momentum.clone()
    assert jit_sgd.usable(got_p, nodes.numel())
    jit_sgd.sgd_rows_(got_p, got_m, grads, params[nodes], nodes, **update)
    assert torch.equal(got_p, want_p) and torch.equal(got_m, want_m)
    others = torch.ones(params.shape[0], dtype=torch.bool)
    others[nodes] = False
    assert torch.equal(got_p[others], params[others]) and torch.equal(got_m[others], momentum[others])  # rows not acting
    if beta == 0:
        assert torch.equal(got_m, momentum)  # plain SGD keeps no momentum


@needs_numba
def test_hand_computed_step():
    params, momentum = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.5, 0.0], [1.0, -1.0]])
    grads = torch.tensor([[2.0, -4.0]])
    jit_sgd._run(jit_sgd._KERNEL.get(), params, momentum, grads, params[[1]], torch.tensor([1]), lr=0.25, beta=0.5,
                 weight_decay=0.0, heavy_ball=False)
    # m = 0.5 * m + 0.5 * g = [1.5, -2.5]; θ = θ − 0.25 m = [2.625, 4.625]
    assert params.tolist() == [[1.0, 2.0], [2.625, 4.625]] and momentum.tolist() == [[0.5, 0.0], [1.5, -2.5]]


@needs_numba
def test_a_kernel_with_other_bits_is_refused_with_a_warning():
    kernel = jit_sgd._KERNEL.get()

    def unfused(params, momentum, grads, theta, nodes, consts, form, decay, start, stop):
        kernel(params, momentum, grads, theta, nodes, consts, form, decay, start, stop)
        rows = torch.from_numpy(params)[torch.from_numpy(nodes[start:stop])]
        torch.from_numpy(params)[torch.from_numpy(nodes[start:stop])] = torch.nextafter(rows, rows + 1)

    with pytest.warns(RuntimeWarning, match="local-step update differs"):
        assert not jit_sgd._matches_torch(unfused)
    assert jit_sgd._matches_torch(kernel)


@needs_numba
@pytest.mark.parametrize("over", [{"train.momentum": 0.9}, {"train.momentum": 0.9, "train.momentum_form": "heavy-ball",
                                                             "train.weight_decay": 1e-3},
                                  {"engine.mode": "async", "train.momentum": 0.5}])
def test_runs_same_with_and_without_the_kernel(over, with_and_without):
    cfg = pr.RunConfig().replace(**{"topology.nodes": 60, "byzantine.count": 6, "train.rounds": 4, "eval_every": 2, **over})
    fast, slow = with_and_without(jit_sgd, lambda: pr.simulate(cfg))
    assert torch.equal(fast.params, slow.params) and fast.history == slow.history


@needs_numba
@pytest.mark.parametrize("update", [dict(lr=1e300, beta=0.0, weight_decay=0.0, heavy_ball=False),
                                    dict(lr=0.1, beta=0.9, weight_decay=1e40, heavy_ball=False)])
def test_an_overflowing_scalar_is_torch_s_error(update):
    """torch refuses a Python scalar that float32 would round to ±inf (a run reports it as a
    divergence by overflow); the kernel refuses it too, before writing anything."""
    params, momentum, grads, nodes = _rows(torch.float32, seed=9)
    with pytest.raises(RuntimeError, match="cannot be converted to type float without overflow"):
        jit_sgd.torch_update(params.clone(), momentum.clone(), grads.clone(), params[nodes], nodes, **update, inplace=True)
    got = params.clone()
    with pytest.raises(RuntimeError, match="cannot be converted to type float without overflow"):
        jit_sgd.sgd_rows_(got, momentum.clone(), grads, params[nodes], nodes, **update)
    assert torch.equal(got, params)
