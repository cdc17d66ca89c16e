"""DP local step: clipping, noise scale, Poisson sampling, and reduction to the non-DP step."""

from __future__ import annotations

import math

import pytest
import torch

from p2probust.local import LocalTrainer
from p2probust.models import MLP, LinearRegression, LogisticRegression, ParamSpec
from p2probust.privacy.per_example import _generic
from p2probust.privacy import GaussianDP, clip_factors, clipped_mean_fn, per_example_gradients, poisson_positions

torch.set_default_dtype(torch.float32)


def _case(kind: str, gen: torch.Generator, a: int = 3, bsz: int = 5):
    """A model, its loss, and a batch ``theta [a, d]``, ``xb [a, B, p]``, ``yb [a, B]``."""
    if kind == "logreg":
        model, loss, p = LogisticRegression(6, 4), "cross_entropy", 6
        yb = torch.randint(0, 4, (a, bsz), generator=gen)
    elif kind in ("mlp", "vmap"):  # vmap: the generic path, on the MLP
        model, loss, p = MLP(6, 5, 4), "cross_entropy", 6
        yb = torch.randint(0, 4, (a, bsz), generator=gen)
    else:
        model, loss, p = LinearRegression(6), "mse", 6
        yb = torch.randn((a, bsz), generator=gen)
    spec = ParamSpec.from_module(model)
    theta = 2.0 * torch.randn((a, spec.dim), generator=gen)
    xb = 3.0 * torch.randn((a, bsz, p), generator=gen)
    return model, loss, spec, theta, xb, yb


def _criterion(loss):
    if loss == "mse":
        return lambda pred, y: 0.5 * ((pred - y) ** 2).mean()
    return torch.nn.functional.cross_entropy


@pytest.mark.parametrize("kind", ["logreg", "lsq", "mlp", "vmap"])
def test_clipped_mean_equals_mean_of_clipped_per_example_gradients(kind):
    """The closed forms (and the vmap path) equal the definition: clip each autograd per-example
    gradient to C, then average over the kept slots; every clipped gradient has norm <= C."""
    gen = torch.Generator().manual_seed(1)
    model, loss, spec, theta, xb, yb = _case(kind, gen)
    crit = _criterion(loss)
    clip = 60.0 if kind == "lsq" else 0.5
    keep = (torch.rand(yb.shape, generator=gen) < 0.7).float()
    denom = torch.tensor([4.0, 2.5, 3.0])
    ref = torch.zeros_like(theta)
    clipped = 0
    for i in range(theta.shape[0]):  # independent reference: plain autograd, one example at a time
        for s in range(xb.shape[1]):
            th = theta[i].clone().requires_grad_(True)
            out = torch.func.functional_call(model, spec.unflatten(th), (xb[i, s : s + 1],))
            (g,) = torch.autograd.grad(crit(out, yb[i, s : s + 1]), th)
            clipped += int(g.norm() > clip)
            g = g * min(1.0, clip / float(g.norm()))
            assert float(g.norm()) <= clip * (1 + 1e-6)
            ref[i] += keep[i, s] * g
    ref /= denom.unsqueeze(1)
    assert 0 < clipped < theta.shape[0] * xb.shape[1]  # both branches of min(1, C/‖g‖)
    fn = _generic(model, crit, spec) if kind == "vmap" else clipped_mean_fn(model, loss, crit, spec)
    got = fn(theta, xb, yb, keep, denom, clip)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["logreg", "lsq", "mlp"])
def test_each_clipped_example_has_norm_at_most_c(kind):
    """One kept slot and denominator 1 isolate one clipped per-example gradient: norm <= C always,
    and = C when the raw gradient is longer."""
    gen = torch.Generator().manual_seed(2)
    model, loss, spec, theta, xb, yb = _case(kind, gen, a=2, bsz=4)
    crit = _criterion(loss)
    fn = clipped_mean_fn(model, loss, crit, spec)
    raw = per_example_gradients(model, crit, spec)(theta, xb, yb)  # [a, B, d]
    for clip in (0.05, 1.0, 1e6):
        for s in range(4):
            keep = torch.zeros(yb.shape)
            keep[:, s] = 1.0
            g = fn(theta, xb, yb, keep, torch.ones(2), clip)
            norms, raw_norms = g.norm(dim=1), raw[:, s].norm(dim=1)
            assert bool((norms <= clip * (1 + 1e-5)).all())
            expect = torch.minimum(raw_norms, torch.tensor(clip))
            torch.testing.assert_close(norms, expect, rtol=1e-5, atol=1e-6)


def test_clip_factors_are_one_at_infinite_c_and_for_zero_gradients():
    sq = torch.tensor([0.0, 4.0, 100.0])
    assert torch.equal(clip_factors(sq, math.inf), torch.ones(3))
    torch.testing.assert_close(clip_factors(sq, 5.0), torch.tensor([1.0, 1.0, 0.5]))


def test_noise_has_the_configured_scale():
    """privatize adds N(0, (σC/B)²) per coordinate: 10⁵ draws (fixed seed), std within 1 %, mean
    within 4 standard errors, the same scale on every node (per-node B)."""
    dp = GaussianDP(clip=0.5, noise_multiplier=2.0, sample_rate=0.1, delta=1e-5,
                    generator=torch.Generator().manual_seed(3))
    base = torch.zeros(2, 50_000, dtype=torch.float64)
    denom = torch.tensor([4.0, 10.0], dtype=torch.float64)
    noise = dp.privatize(base, denom)
    for i, want in enumerate((2.0 * 0.5 / 4.0, 2.0 * 0.5 / 10.0)):
        std = float(noise[i].std())
        assert abs(std / want - 1) < 0.01
        assert abs(float(noise[i].mean())) < 4 * want / math.sqrt(50_000)
    excess_kurtosis = float(((noise[0] / noise[0].std()) ** 4).mean()) - 3
    assert abs(excess_kurtosis) < 0.1  # Gaussian, not another law of that variance
    assert dp.privatize(base, denom) is not None and GaussianDP(1.0, 0.0, 0.1, 1e-5).privatize(base, denom) is base


def _trainer(model, loss, x, y, n, privacy=None, batch=8):
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(x.shape[0], generator=gen)
    table = perm[: n * 12].view(n, 12)
    lengths = torch.tensor([12, 9, 12, 7, 12][:n])
    return LocalTrainer(model, x, y, table, lengths, loss=loss, batch_size=batch, privacy=privacy)


def _data(kind, gen):
    x = torch.randn((80, 6), generator=gen)
    if kind == "lsq":
        return LinearRegression(6), "mse", x, torch.randn(80, generator=gen)
    model = LogisticRegression(6, 4) if kind == "logreg" else MLP(6, 5, 4)
    return model, "cross_entropy", x, torch.randint(0, 4, (80,), generator=gen)


@pytest.mark.parametrize("kind", ["logreg", "lsq", "mlp"])
def test_sigma_zero_and_infinite_clip_is_the_non_dp_step(kind):
    """σ = 0, C = ∞ and fixed-size batches: the same batches, the same update; bit for bit for the
    closed-form linear models, to float rounding (rtol 1e-6) for the vmap path (MLP)."""
    gen = torch.Generator().manual_seed(4)
    model, loss, x, y = _data(kind, gen)
    n = 5
    plain = _trainer(model, loss, x, y, n)
    dp = GaussianDP(clip=math.inf, noise_multiplier=0.0, sample_rate=0.5, delta=1e-5, sampling="fixed")
    private = _trainer(model, loss, x, y, n, privacy=dp)
    params = torch.randn((n, ParamSpec.from_module(model).dim), generator=gen)
    mom = torch.randn(params.shape, generator=gen)
    nodes = torch.tensor([0, 2, 3, 4])
    out = [t.step(params, mom, nodes, 0.3, 0.9, torch.Generator().manual_seed(6)) for t in (plain, private)]
    for a, b in zip(out[0], out[1]):
        if kind == "mlp":
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(a, b)
    assert dp.steps.tolist() == [1, 0, 1, 1, 1]


def test_poisson_positions_are_valid_and_have_rate_q():
    gen = torch.Generator().manual_seed(7)
    lengths = torch.tensor([40, 10, 0, 25] * 50)
    pos, mask = poisson_positions(lengths, 40, 0.3, gen)
    assert pos.shape == mask.shape
    assert bool((pos[mask] < lengths.unsqueeze(1).expand_as(pos)[mask]).all())
    assert not bool(mask[2::4].any())  # an empty node draws nothing
    rows_sorted = [(r[m].diff() > 0).all() for r, m in zip(pos, mask)]  # distinct positions, in order
    assert all(bool(v) for v in rows_sorted)
    counts = mask.sum(1).double()
    for j, m in ((0, 40), (1, 10), (3, 25)):  # E|B| = qm, Var = q(1−q)m, 50 nodes each
        c = counts[j::4]
        assert abs(float(c.mean()) - 0.3 * m) < 4 * math.sqrt(0.21 * m / 50)


def test_poisson_batched_step_equals_a_loop_over_nodes():
    """The masked, padded batch gives each node the DP gradient of its own drawn examples only."""
    gen = torch.Generator().manual_seed(8)
    model, loss, x, y = _data("logreg", gen)
    n = 5
    dp = GaussianDP(clip=0.7, noise_multiplier=0.0, sample_rate=0.4, delta=1e-5)
    trainer = _trainer(model, loss, x, y, n, privacy=dp)
    params = torch.randn((n, ParamSpec.from_module(model).dim), generator=gen)
    nodes = torch.arange(n)
    got = trainer.gradients(params, nodes, torch.Generator().manual_seed(9))
    pos, mask = poisson_positions(trainer.lengths, trainer.table.shape[1], 0.4, torch.Generator().manual_seed(9))
    spec = ParamSpec.from_module(model)
    per_ex = per_example_gradients(model, torch.nn.functional.cross_entropy, spec)
    for i in range(n):
        idx = trainer.table[i, pos[i][mask[i]]]
        g = per_ex(params[i : i + 1], x[idx].unsqueeze(0), y[idx].unsqueeze(0))[0]
        g = g * torch.clamp(0.7 / g.norm(dim=1, keepdim=True), max=1.0)
        torch.testing.assert_close(got[i], g.sum(0) / (0.4 * float(trainer.lengths[i])), rtol=1e-5, atol=1e-6)


def test_mechanism_rejects_bad_values_in_one_line():
    for kwargs, word in (({"clip": 0.0}, "clip"), ({"noise_multiplier": -1.0}, "noise_multiplier"),
                         ({"clip": math.inf, "noise_multiplier": 1.0}, "finite clip"),
                         ({"sample_rate": 1.5}, "sample_rate"), ({"sampling": "shuffle"}, "sampling")):
        args = {"clip": 1.0, "noise_multiplier": 1.0, "sample_rate": 0.1, "delta": 1e-5, **kwargs}
        with pytest.raises(ValueError, match=word) as err:
            GaussianDP(**args)
        assert "\n" not in str(err.value)


def test_node_without_data_steps_by_noise_only():
    gen = torch.Generator().manual_seed(10)
    model, loss, x, y = _data("logreg", gen)
    table = torch.arange(24).view(2, 12)
    for sigma in (0.0, 1.0):
        dp = GaussianDP(clip=1.0, noise_multiplier=sigma, sample_rate=0.5, delta=1e-5,
                        generator=torch.Generator().manual_seed(11))
        trainer = LocalTrainer(model, x, y, table, torch.tensor([12, 0]), loss=loss, batch_size=6, privacy=dp)
        g = trainer.gradients(torch.zeros(2, 28), torch.arange(2), torch.Generator().manual_seed(12))
        assert bool(torch.isfinite(g).all())
        assert bool((g[1] == 0).all()) == (sigma == 0)  # no data: zero clipped sum, plus noise σC / 1
