"""The conformance checks catch what they promise: each deliberately broken aggregator or gossip
rule below fails exactly the check written for its fault (p2probust.testing.rules, checks 1-8)."""

from __future__ import annotations

import pytest
import torch

import p2probust as pr
from p2probust.aggregators.base import masked_mean
from p2probust.testing import check_aggregator, check_gossip_rule


class _MeanBase(pr.AbstractAggregator):
    def max_tolerance(self, m):
        return m

    def __call__(self, x, mask, f):
        return masked_mean(x, mask)


class FirstSlot(_MeanBase):
    """The plain mean claiming robustness: malformed inputs reach the output."""

    fault = "not permutation invariant"

    def __call__(self, x, mask, f):
        return x[..., 0, :]


class ReadsPadding(_MeanBase):
    fault = "padding filled with nan changed the output"

    def __call__(self, x, mask, f):
        return x.mean(-2)


class MeanPlusOne(_MeanBase):
    fault = "identical inputs are not a fixed point"
    robust = False

    def __call__(self, x, mask, f):
        return masked_mean(x, mask) + 1


class RobustInName(_MeanBase):
    """The plain mean claiming robustness: malformed inputs reach the output."""

    fault = "set to nan gave a non-finite output"


class FiniteButOutside(_MeanBase):
    fault = "left the honest bounding box"
    coordinatewise = True

    def __call__(self, x, mask, f):
        return torch.nan_to_num(masked_mean(x, mask).clamp(-1e6, 1e6), nan=0.0)


class BatchedDiffers(_MeanBase):
    fault = "batched differs from the loop over nodes"
    robust = False

    def batched(self, x, mask, f):
        return masked_mean(x, mask) * 1.001


class MutatesInput(_MeanBase):
    fault = "modified its input in place"
    robust = False

    def batched(self, x, mask, f):
        out = masked_mean(x, mask)
        x.mul_(2)
        return out


class WrongShape(_MeanBase):
    fault = "batched output shape (4, 4), expected (4, 5)"
    robust = False

    def batched(self, x, mask, f):
        return masked_mean(x, mask)[:, :-1]


class Nondeterministic(_MeanBase):
    """Drifts by 1e-12 per call: within the loop check's tolerance, not the exact determinism check."""

    fault = "not deterministic"
    robust = False

    def __init__(self):
        self.calls = 0

    def batched(self, x, mask, f):
        self.calls += 1
        return masked_mean(x, mask) + 1e-12 * self.calls


class PlainMean(_MeanBase):
    robust = False


def test_a_correct_minimal_aggregator_passes():
    check_aggregator(PlainMean())
    check_aggregator(pr.chain(PlainMean()))


class _GossipBase(pr.AbstractGossipRule):
    robust = False

    def __call__(self, own, inbox, mask, weights, f):
        w = torch.where(mask, weights, torch.zeros(()))
        return own + (w.unsqueeze(-1) * torch.where(mask.unsqueeze(-1), inbox - own.unsqueeze(-2), torch.zeros(()))).sum(-2)


class GossipReadsPaddingWeights(_GossipBase):
    fault = "padding filled with"

    def __call__(self, own, inbox, mask, weights, f):
        return own + (weights.unsqueeze(-1) * (inbox - own.unsqueeze(-2))).sum(-2)


class GossipFirstSlot(_GossipBase):
    fault = "not invariant to a permutation of the neighbour slots"

    def __call__(self, own, inbox, mask, weights, f):
        return 0.5 * (own + inbox[..., 0, :])


class GossipMovesIdentical(_GossipBase):
    fault = "identical inputs are not a fixed point"

    def __call__(self, own, inbox, mask, weights, f):
        return super().__call__(own, inbox, mask, weights, f) * 1.5


class GossipClaimsRobust(_GossipBase):
    fault = "message(s) set to nan gave a non-finite output"
    robust = True


BROKEN = [FirstSlot, ReadsPadding, MeanPlusOne, RobustInName, FiniteButOutside, BatchedDiffers, MutatesInput,
          WrongShape, Nondeterministic, GossipReadsPaddingWeights, GossipFirstSlot, GossipMovesIdentical,
          GossipClaimsRobust]


@pytest.mark.parametrize("broken", BROKEN, ids=lambda cls: cls.__name__)
def test_each_check_catches_its_fault(broken):
    """``broken.fault`` is part of the message that the check written for that fault raises."""
    check = check_aggregator if issubclass(broken, pr.AbstractAggregator) else check_gossip_rule
    with pytest.raises(AssertionError) as err:
        check(broken())
    assert broken.fault in str(err.value), str(err.value)


def test_a_correct_minimal_gossip_rule_passes():
    check_gossip_rule(_GossipBase())
