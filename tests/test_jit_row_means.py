"""The compiled means of listed rows (p2probust.jit.row_means): the bits of the sparse product."""

from __future__ import annotations

import pytest
import torch

import p2probust as pr
from p2probust.jit import row_means

needs_numba = pytest.mark.skipif(not pr.jit.available(), reason="numba cannot be imported here")


def _sparse_path(params, members, inv):
    """The torch path of AttackContext.recipient_honest_mean: A @ params / count, gathered."""
    r = members.shape[0]
    real = members >= 0
    rows = torch.arange(r).unsqueeze(1).expand_as(members)[real]
    adjacency = torch.sparse_coo_tensor(torch.stack([rows, members[real]]), torch.ones(rows.numel(), dtype=params.dtype),
                                        (r, params.shape[0]), check_invariants=True).coalesce()
    return (torch.sparse.mm(adjacency, params) / real.sum(1, keepdim=True).to(params.dtype))[inv]


def _row(n, k, g):
    size = 1 + int(torch.randint(0, k, (), generator=g))
    row = torch.randperm(n, generator=g)[:size].sort().values
    return torch.cat([row, torch.full((k - size,), -1)])


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_bits_as_the_sparse_product(dtype):
    g = torch.Generator().manual_seed(0)
    n, r, k, d = 200, 60, 11, 97
    params = torch.randn(n, d, generator=g, dtype=dtype) * torch.logspace(-3, 3, d, dtype=dtype)
    params[torch.rand(n, d, generator=g) < 0.05] = -0.0  # +0.0 + -0.0 = +0.0 in the product
    params[5, 3], params[7, 4], params[9, 5] = float("nan"), float("inf"), -float("inf")
    members = torch.stack([_row(n, k, g) for _ in range(r)])
    count = (members >= 0).sum(1).to(dtype)
    inv = torch.randint(0, r, (150,), generator=g)
    for scale, per_edge in ((None, False), (-4.0, False), (0.3, False), (None, True), (-4.0, True)):  # the sign flip's -c · mean fused in
        got = row_means.listed_means(params, members, count, inv, *([] if scale is None else [scale]), per_edge=per_edge)
        want = _sparse_path(params, members, inv) * (1 if scale is None else scale)
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
        assert torch.equal(torch.signbit(got), torch.signbit(want))


@needs_numba
def test_hand_computed_means():
    params = torch.tensor([[1.0, -0.0], [2.0, -0.0], [4.0, 8.0]])
    members = torch.tensor([[0, 2, -1], [0, 1, 2]])
    out = row_means.listed_means(params, members, torch.tensor([2.0, 3.0]), torch.tensor([1, 0, 1]))
    assert torch.equal(out, torch.tensor([[7 / 3, 8 / 3], [2.5, 4.0], [7 / 3, 8 / 3]]))  # sums exact, one rounded division
    assert not bool(torch.signbit(row_means.listed_means(params, members[:, :2], torch.tensor([2.0, 2.0]),
                                                         torch.tensor([0]))).any())  # (+0 − 0 − 0)/2 = +0


@needs_numba
def test_an_overflowing_scale_gives_torch_s_infinities():
    """torch rounds a Python scale to the tensor's dtype in ``mean * scale`` (±inf past float32's
    range, no error): the kernel does the same."""
    params, members = torch.tensor([[1.0, -2.0, 0.0], [3.0, 2.0, 0.0]]), torch.tensor([[0, 1]])
    want = _sparse_path(params, members, torch.tensor([0])) * 1e300
    got = row_means.listed_means(params, members, torch.tensor([2.0]), torch.tensor([0]), 1e300)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(torch.nan_to_num(got), torch.nan_to_num(want))
    assert got[0, 0] == float("inf") and bool(got[0, 2].isnan())


def test_out_of_range_members_are_rejected():
    with pytest.raises(IndexError, match="members must lie in"):
        row_means.listed_means(torch.zeros(3, 4), torch.tensor([[0, 3]]), torch.tensor([2.0]), torch.tensor([0]))


@needs_numba
@pytest.mark.parametrize("attack", ["sign-flip", "gaussian"])
def test_runs_same_with_and_without_the_kernel(attack, with_and_without):
    cfg = pr.RunConfig().replace(**{"topology.name": "random-regular", "topology.degree": 6, "topology.nodes": 80,
                                    "byzantine.count": 12, "attack.name": attack, "train.rounds": 4, "eval_every": 2,
                                    "train.momentum": 0.9})
    fast, slow = with_and_without(row_means, lambda: pr.simulate(cfg))
    assert torch.equal(fast.params, slow.params) and fast.history == slow.history
