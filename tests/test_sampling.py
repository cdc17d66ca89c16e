"""Batch samplers of the local step (p2probust.sampling): uniform, epoch, slice."""

from __future__ import annotations

import pytest
import torch

from p2probust.data import pad_partition
from p2probust.sampling import BatchSampler

PARTS = [torch.arange(100, 105), torch.arange(200, 207), torch.arange(300, 303)]  # lengths 5, 7, 3


def table():
    return pad_partition(PARTS)


def test_epoch_sees_every_sample_once_per_epoch_per_node():
    tab, lengths = table()
    sampler = BatchSampler(tab, lengths, 4, "epoch")
    gen = torch.Generator().manual_seed(0)
    stream = torch.cat([sampler(torch.arange(3), gen) for _ in range(21)], 1)  # [3, 84]
    for i, part in enumerate(PARTS):
        L = part.numel()
        for e in range(84 // L):  # every consecutive block of L draws is a permutation of the node's samples
            block = stream[i, e * L : (e + 1) * L]
            assert sorted(block.tolist()) == part.tolist()
    firsts = {tuple(stream[0, e * 5 : e * 5 + 5].tolist()) for e in range(16)}
    assert len(firsts) > 1  # reshuffled between epochs


def test_epoch_with_a_batch_larger_than_the_node_and_a_subset_of_nodes():
    tab, lengths = table()
    sampler = BatchSampler(tab, lengths, 8, "epoch")
    gen = torch.Generator().manual_seed(1)
    a = sampler(torch.tensor([2]), gen)[0].tolist()  # L = 3: epochs of 3 inside one batch of 8
    assert sorted(a[:3]) == sorted(a[3:6]) == PARTS[2].tolist()
    b = sampler(torch.tensor([0, 2]), gen)
    assert sorted(b[0, :5].tolist()) == PARTS[0].tolist()
    tail = a[6:] + b[1, :1].tolist()  # node 2 continues the epoch it started in the first call
    assert sorted(tail) == PARTS[2].tolist()


def test_slice_reads_consecutive_samples_from_a_uniform_start_wrapping_around():
    tab, lengths = table()
    gen = torch.Generator().manual_seed(2)
    out = BatchSampler(tab, lengths, 6, "slice")(torch.arange(3), gen)
    u = torch.rand(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for i, part in enumerate(PARTS):
        start = int(u[i] * part.numel())
        assert out[i].tolist() == [int(part[(start + j) % part.numel()]) for j in range(6)]


def test_uniform_is_the_historical_draw():
    tab, lengths = table()
    out = BatchSampler(tab, lengths, 5, "uniform")(torch.arange(3), torch.Generator().manual_seed(3))
    u = torch.rand((3, 5), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(out, torch.gather(tab, 1, (u * lengths.unsqueeze(1)).long()))


def test_a_node_without_data_cannot_sample():
    tab, _ = table()
    with pytest.raises(ValueError, match="node 1 holds no training data"):
        BatchSampler(tab, torch.tensor([5, 0, 3]), 2, "epoch")(torch.arange(3), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="sampling 'random'"):
        BatchSampler(tab, torch.tensor([5, 7, 3]), 2, "random")
