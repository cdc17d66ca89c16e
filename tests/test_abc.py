"""The abstract base classes of the plugin families: a subclass implementing only the abstract
methods runs in a simulation and gives the same run as the built-in it re-implements; a subclass
missing one cannot be instantiated."""

from __future__ import annotations

import pytest
import torch

import p2probust as pr
from p2probust import aggregators, attacks, gossip

SMALL = {"rounds": 4, "nodes": 16, "byzantine": 2, "seed": 3}


class MinimalMean(pr.AbstractAggregator):
    """The masked mean, written for one node only (``batched`` is the inherited ``vmap``)."""

    robust = False

    def __call__(self, x, mask, f):
        w = mask.to(x.dtype).unsqueeze(-1)
        return (w * torch.where(mask.unsqueeze(-1), x, torch.zeros(()))).sum(0) / w.sum()

    def max_tolerance(self, m):
        return m


class MinimalGossip(pr.AbstractGossipRule):
    """Unweighted gossip ``own + α Σ_j (inbox_j − own)`` for one node."""

    robust = False

    def __init__(self, alpha=0.5):
        self.alpha = alpha

    def __call__(self, own, inbox, mask, weights, f):
        diff = torch.where(mask.unsqueeze(-1), inbox - own, torch.zeros(()))
        return own + self.alpha * diff.sum(0)


class MinimalSignFlip(pr.AbstractAttack):
    """−4 × the honest mean each recipient aggregates (the built-in sign flip's default)."""

    def craft(self, ctx):
        return -4.0 * ctx.recipient_honest_mean()


def _same_run(a: pr.simulation.Result, b: pr.simulation.Result, atol: float) -> None:
    assert [r["round"] for r in a.history] == [r["round"] for r in b.history]
    assert torch.allclose(a.params, b.params, atol=atol, rtol=0), (a.params - b.params).abs().max()


def test_families_export_their_abstract_base_class():
    assert pr.AbstractAggregator is aggregators.AbstractAggregator
    assert pr.AbstractPreAggregator is aggregators.AbstractPreAggregator
    assert pr.AbstractGossipRule is gossip.AbstractGossipRule
    assert pr.AbstractAttack is attacks.AbstractAttack
    for name in ("AbstractAggregator", "AbstractPreAggregator", "AbstractGossipRule", "AbstractAttack"):
        assert name in pr.__all__


def test_minimal_aggregator_runs_like_the_builtin_mean():
    mine = pr.simulate(pr.RunConfig(), rule=MinimalMean(), **SMALL)
    builtin = pr.simulate(pr.RunConfig(), rule=pr.Mean(), **SMALL)
    assert mine.summary["status"] == "completed"
    _same_run(mine, builtin, atol=1e-5)


def test_minimal_gossip_rule_runs_like_the_builtin_gossip():
    mine = pr.simulate(pr.RunConfig(), rule=MinimalGossip(0.5), **SMALL)
    builtin = pr.simulate(pr.RunConfig(), rule=gossip.make_rule("gossip", alpha=0.5), **SMALL)
    assert mine.summary["status"] == "completed"
    _same_run(mine, builtin, atol=1e-5)


def test_minimal_attack_runs_like_the_builtin_sign_flip():
    mine = pr.simulate(pr.RunConfig(), attack=MinimalSignFlip(), **SMALL)
    builtin = pr.simulate(pr.RunConfig(), attack=pr.SignFlip(scale=4.0), **SMALL)
    clean = pr.simulate(pr.RunConfig(), attack=pr.Honest(), **SMALL)
    _same_run(mine, builtin, atol=0.0)
    assert not torch.allclose(mine.params, clean.params)  # the attack did change the run


@pytest.mark.parametrize("base, method", [
    (pr.AbstractAggregator, "__call__"),
    (pr.AbstractPreAggregator, "__call__"),
    (pr.AbstractGossipRule, "__call__"),
    (pr.AbstractAttack, "craft"),
])
def test_subclass_missing_the_abstract_method_cannot_be_built(base, method):
    incomplete = type("Incomplete", (base,), {"__repr__": lambda self: "Incomplete()"})
    with pytest.raises(TypeError, match=method):
        incomplete()
    with pytest.raises(TypeError):
        base()
    assert base.__abstractmethods__ == frozenset({method})


def test_minimal_pre_aggregator_chains():
    """A pre-aggregator implementing only ``__call__`` composes with ``chain`` and is lifted by vmap."""

    class Halve(pr.AbstractPreAggregator):
        def __call__(self, x, mask, f):
            return x / 2, mask

    g = torch.Generator().manual_seed(0)
    x, mask = torch.randn(3, 5, 4, generator=g), torch.rand(3, 5, generator=g) > 0.3
    mask[:, 0] = True
    f = torch.zeros(3, dtype=torch.long)
    out = pr.chain(Halve(), pr.Mean()).batched(x, mask, f)
    assert torch.allclose(out, pr.Mean().batched(x, mask, f) / 2)


def test_old_clipping_names_are_deprecated_aliases_that_warn_once(monkeypatch):
    import warnings

    from p2probust import renames

    monkeypatch.setattr(renames, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pr.CentredClipping is pr.CenteredClipping is aggregators.CentredClipping
        assert aggregators.SelfCentredClipping is pr.SelfCenteredClipping
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert messages == ["p2probust: CentredClipping is renamed CenteredClipping; the old name will be removed",
                        "p2probust: SelfCentredClipping is renamed SelfCenteredClipping; the old name will be removed"]
    assert "CentredClipping" not in pr.__all__ and "CenteredClipping" in pr.__all__
    with pytest.raises(AttributeError, match="no attribute 'CentredClippin'"):
        pr.CentredClippin
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from p2probust.topology import NeighborTable, NeighbourTable
        assert NeighborTable is NeighbourTable
    assert [str(w.message) for w in caught] == ["p2probust: NeighborTable is renamed NeighbourTable; the old name will be removed"]
    with pytest.raises(AttributeError):
        pr.NeighborTable  # never exported at the top level
