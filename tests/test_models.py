"""Tests of the model zoo and the stacked-parameter helpers (p2probust.models)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.func import functional_call, vmap

from p2probust.models import (
    MLP,
    LinearRegression,
    LogisticRegression,
    ParamSpec,
    SmallCNN,
    flatten_params,
    init_stacked,
    num_parameters,
)

MODELS = {
    "logreg": (partial(LogisticRegression, 64, 10), (64,)),
    "logreg-image": (partial(LogisticRegression, 784, 10), (1, 28, 28)),
    "mlp": (partial(MLP, 64, 16, 10), (64,)),
    "cnn": (partial(SmallCNN, 10), (1, 28, 28)),
    "linreg": (partial(LinearRegression, 5), (5,)),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_parameter_counts():
    assert num_parameters(LogisticRegression(64, 10)) == 650
    assert num_parameters(MLP(64, 64, 10)) == 64 * 64 + 64 + 64 * 10 + 10
    assert num_parameters(SmallCNN()) == 5994
    assert num_parameters(LinearRegression(7)) == 7


def test_output_shapes():
    assert SmallCNN()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert SmallCNN()(torch.zeros(2, 784)).shape == (2, 10)
    assert LinearRegression(3)(torch.zeros(4, 3)).shape == (4,)


@pytest.mark.parametrize("name", MODELS)
def test_param_spec_round_trip(name):
    module = MODELS[name][0]()
    spec = ParamSpec.from_module(module)
    flat = flatten_params(module)
    assert flat.shape == (spec.dim,) and spec.dim == num_parameters(module)
    tensors = spec.unflatten(flat)
    assert list(tensors) == [n for n, _ in module.named_parameters()]
    for n, p in module.named_parameters():
        assert torch.equal(tensors[n], p.detach())
    assert torch.equal(spec.flatten(tensors), flat)
    stacked = torch.stack([flat, 2 * flat]).reshape(1, 2, spec.dim)
    batched = spec.unflatten(stacked)
    for n, p in module.named_parameters():
        assert batched[n].shape == (1, 2, *p.shape)
        assert torch.equal(batched[n][0, 1], 2 * p.detach())
    assert torch.equal(spec.flatten(batched), stacked)


def test_unflatten_returns_views():
    spec = ParamSpec.from_module(MLP(4, 3, 2))
    flat = torch.zeros(2, spec.dim)
    spec.unflatten(flat)["fc2.bias"].fill_(1.0)
    assert flat[:, -2:].eq(1.0).all() and flat[:, :-2].eq(0.0).all()
    with pytest.raises(ValueError, match="last dimension"):
        spec.unflatten(torch.zeros(spec.dim + 1))


@pytest.mark.parametrize("name", MODELS)
def test_init_stacked_deterministic_and_bounded(name):
    factory = MODELS[name][0]
    a = init_stacked(factory, 4, generator=gen(1), same=False)
    b = init_stacked(factory, 4, generator=gen(1), same=False)
    c = init_stacked(factory, 4, generator=gen(2), same=False)
    assert a.shape == (4, num_parameters(factory())) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])
    same = init_stacked(factory, 4, generator=gen(1))
    assert (same == same[0]).all()
    # bounds of PyTorch's default init: |w| <= 1/sqrt(fan_in)
    module = factory()
    spec = ParamSpec.from_module(module)
    for n, t in spec.unflatten(a).items():
        layer = module.get_submodule(n.rsplit(".", 1)[0])
        fan_in = layer.weight[0].numel()
        assert t.abs().max() <= fan_in**-0.5 + 1e-7


def test_init_stacked_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    init_stacked(SmallCNN, 5, generator=gen(), same=False)
    assert torch.equal(torch.rand(3), expected)


def test_init_stacked_matches_default_init_statistics():
    # the variance of U(-b, b) is b^2/3, as for PyTorch's own init of nn.Linear(400, 300)
    rows = init_stacked(partial(nn_linear_model, 400, 300), 1, generator=gen())
    weight = rows[0, : 400 * 300]
    assert weight.var().item() == pytest.approx((1 / 400) / 3, rel=0.02)


def nn_linear_model(i: int, o: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(i, o))


def three_nodes(name: str, param_seed: int, batch: tuple[int, ...], x_seed: int):
    """``(factory, template, spec, params [3, d], x [*batch, *features])`` for ``MODELS[name]``:
    three different parameter rows and a batch of inputs, both seeded."""
    factory, feature_shape = MODELS[name]
    template = factory()
    params = init_stacked(factory, 3, generator=gen(param_seed), same=False)
    x = torch.randn(*batch, *feature_shape, generator=gen(x_seed))
    return factory, template, ParamSpec.from_module(template), params, x


@pytest.mark.parametrize("name", MODELS)
def test_vmap_functional_call_matches_loop(name):
    factory, template, spec, params, x = three_nodes(name, 7, (4,), 8)

    def forward(row: torch.Tensor) -> torch.Tensor:
        return functional_call(template, spec.unflatten(row), (x,))

    batched = vmap(forward)(params)
    for i in range(3):
        module = factory()
        with torch.no_grad():
            for n, p in module.named_parameters():
                p.copy_(spec.unflatten(params[i])[n])
        assert torch.allclose(batched[i], module(x), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_vmap_grad_per_node(name):
    """Per-node gradients from one batched call equal per-module autograd gradients."""
    _, template, spec, params, x = three_nodes(name, 3, (3, 4), 4)

    def loss(row, xb):
        return functional_call(template, spec.unflatten(row), (xb,)).square().mean()

    grads = vmap(torch.func.grad(loss))(params, x)
    for i in range(3):
        row = params[i].clone().requires_grad_(True)
        loss(row, x[i]).backward()
        assert torch.allclose(grads[i], row.grad, atol=1e-5)


def test_init_schemes_scales_and_per_node_draws():
    make = partial(LogisticRegression, 64, 10)
    base = init_stacked(make, 3, generator=gen(4))
    assert torch.equal(init_stacked(make, 3, generator=gen(4), scale=2.0), 2.0 * base)  # scale multiplies the bound
    shared = init_stacked(make, 3, generator=gen(4), scheme="normal", scale=6.0)
    assert torch.equal(shared[0], shared[2])
    assert torch.equal(shared[0], 6.0 * torch.randn(1, 650, generator=gen(4))[0])  # IOS RandomInitialize(scale=6)
    per = init_stacked(make, 3, generator=gen(4), scheme="normal", scale=6.0, same=False)
    assert not torch.equal(per[0], per[1])
    assert abs(float(per.std()) - 6.0) < 0.3 and abs(float(per.mean())) < 0.6  # 1,950 draws: SE 0.14
    assert torch.equal(init_stacked(make, 3, generator=gen(4), scheme="zero"), torch.zeros(3, 650))
    with pytest.raises(ValueError, match="init scheme 'xavier'"):
        init_stacked(make, 3, generator=gen(4), scheme="xavier")
