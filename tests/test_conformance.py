"""The conformance suite run over every registered aggregator, pre-aggregator chain and rule."""

from __future__ import annotations

import pytest
import torch

from p2probust import registry
from p2probust.aggregators import CoordinateWiseMedian, chain
from p2probust.gossip import make_rule
from p2probust.testing import check_aggregator, check_gossip_rule

AGGREGATORS = registry.aggregators.names()
PREAGGREGATORS = registry.preaggregators.names()
RULES = registry.rules.names()


@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregator_conforms(name):
    check_aggregator(registry.aggregators.create(name))


@pytest.mark.parametrize("name", PREAGGREGATORS)
def test_preaggregator_then_median_conforms(name):
    check_aggregator(chain(registry.preaggregators.create(name), CoordinateWiseMedian()))


@pytest.mark.parametrize("spec", ["nnm+trimmed-mean", "nnm+krum", "arc+geomed", "bucketing+trimmed-mean", "nnm+arc+meamed"])
def test_chains_conform(spec):
    check_aggregator(make_rule(spec).aggregator)


@pytest.mark.parametrize("name", RULES)
def test_rule_conforms(name):
    check_gossip_rule(make_rule(name))


@pytest.mark.parametrize("name", ["trimmed-mean", "krum", "centered-clipping"])
def test_aggregate_and_mix_conforms_smoke(name):
    check_gossip_rule(make_rule(name, alpha=0.5))


@pytest.mark.slow
@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregate_and_mix_conforms(name):
    check_gossip_rule(make_rule(name, alpha=0.5))


@pytest.mark.parametrize("name", ["trimmed-mean", "krum", "geomed"])
def test_float32_inputs(name):
    check_aggregator(registry.aggregators.create(name), dtype=torch.float32, atol=1e-5)


def test_oracle_clipped_gossip_on_node_subsets():
    # issue 15: oracle ClippedGossip matched rows to nodes by counting them
    from p2probust.gossip import ClippedGossip
    from p2probust.testing import check_node_subsets

    check_node_subsets(ClippedGossip(tau="oracle"))
    check_node_subsets(ClippedGossip(tau="oracle"), seed=3, n=12, degree=5)


def test_node_subset_check_catches_rows_matched_by_position():
    from p2probust.gossip import ClippedGossip
    from p2probust.testing import check_node_subsets

    class ByPosition(ClippedGossip):
        def for_nodes(self, nodes):
            return self  # ignores which nodes the rows are

    with pytest.raises((AssertionError, ValueError)):
        check_node_subsets(ByPosition(tau="oracle"))
