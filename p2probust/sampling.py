r"""Mini-batch samplers of the local step, batched over nodes (``[train] sampling``).

Each sampler picks, for every acting node ``i`` at once, ``B`` positions in ``0 .. L_i − 1`` of
that node's own sample list (``table[i, :L_i]``) and returns the sample indices ``[a, B]``:

* ``uniform`` (default): ``B`` positions i.i.d. uniform, *with* replacement
  (``⌊u·L_i⌋``, ``u ~ U[0, 1)``);
* ``epoch``: *without* replacement: each node reads its own random permutation of its samples in
  order, ``B`` at a time, and draws a fresh permutation when it is exhausted (a batch may span
  the end of one epoch and the start of the next; every sample is seen once per epoch);
* ``slice``: ``B`` *consecutive* positions from a uniform start ``s ∈ {0..L_i − 1}``, wrapping
  around: ``(s + j) mod L_i`` — the IOS code's ``random_generator``
  (github.com/Zhaoxian-Wu/IOS, ``ByrdLab/tasks/softmaxRegression.py``), reading the node's
  samples in data-set order.

All draws come from the ``batches`` stream given at each call; no Python loop over nodes (the
``epoch`` sampler loops only over the epochs a batch spans: once or twice unless ``B > L_i``).
"""

from __future__ import annotations

import typing

import torch
from torch import Tensor

from .config.parts import Sampling

__all__ = ["SAMPLINGS", "BatchSampler", "ReplicaSampler"]

SAMPLINGS = typing.get_args(Sampling)  # the one list: p2probust.config.parts


class BatchSampler:
    """Per-node batch positions over a padded table of sample indices.

    Parameters
    ----------
    table : LongTensor [n, L]
        Each node's sample indices, padded (see :func:`~p2probust.data.pad_partition`).
    lengths : LongTensor [n]
        How many entries of each row are real (0 for nodes that hold no data; they must not act).
    batch_size : int
    kind : str
        ``uniform``, ``epoch`` or ``slice``.
    """

    def __init__(self, table: Tensor, lengths: Tensor, batch_size: int, kind: str = "uniform"):
        if kind not in SAMPLINGS:
            raise ValueError(f"sampling {kind!r} is invalid; expected one of: {', '.join(SAMPLINGS)}")
        self.table, self.lengths, self.batch_size, self.kind = table, lengths, batch_size, kind
        self._some_empty = bool((lengths == 0).any())  # else no acting node can lack data: no check per call
        if kind == "epoch":
            self.perm = table.clone()  # [n, L] current epoch's order of each node's samples
            self.cursor = lengths.clone()  # next position to read; = L_i: draw a new epoch first

    def __call__(self, nodes: Tensor, generator: torch.Generator) -> Tensor:
        """``[a, B]`` sample indices of the acting ``nodes``."""
        length = self.lengths[nodes]
        if self._some_empty and bool((length == 0).any()):
            bad = int(nodes[length == 0][0])
            raise ValueError(f"node {bad} holds no training data and cannot take a local step")
        if self.kind == "uniform":
            u = torch.rand((nodes.numel(), self.batch_size), generator=generator, dtype=torch.float64, device=generator.device)
            return torch.gather(self.table.index_select(0, nodes), 1, (u * length.unsqueeze(1)).long())
        if self.kind == "slice":
            u = torch.rand(nodes.numel(), generator=generator, dtype=torch.float64, device=generator.device)
            start = (u * length).long().unsqueeze(1)
            pos = (start + torch.arange(self.batch_size, device=nodes.device)) % length.unsqueeze(1)
            return torch.gather(self.table.index_select(0, nodes), 1, pos)
        return self._epoch(nodes, length, generator)

    def _epoch(self, nodes: Tensor, length: Tensor, generator: torch.Generator) -> Tensor:
        lim = length.unsqueeze(1)
        pos = self.cursor[nodes].unsqueeze(1) + torch.arange(self.batch_size, device=nodes.device)  # [a, B] stream positions
        out = torch.zeros_like(pos)
        pending = torch.ones_like(pos, dtype=torch.bool)
        perm = self.perm[nodes]
        while True:
            inside = pos < lim
            take = pending & inside
            out = torch.where(take, torch.gather(perm, 1, torch.minimum(pos, lim - 1)), out)
            pending &= ~inside
            if not bool(pending.any()):
                break
            redraw = pending.any(1)  # these nodes start a new epoch
            rows = torch.nonzero(redraw).squeeze(1)
            perm = perm.index_copy(0, rows, self._shuffle(nodes[rows], generator))
            pos = torch.where(pending, pos - lim, pos)
        self.perm = self.perm.index_copy(0, nodes, perm)
        self.cursor = self.cursor.index_copy(0, nodes, pos[:, -1] + 1)
        return out

    def _shuffle(self, nodes: Tensor, generator: torch.Generator) -> Tensor:
        """``[m, L]`` fresh random orders of the nodes' samples (real entries first)."""
        width = self.table.shape[1]
        keys = torch.rand((nodes.numel(), width), generator=generator, dtype=torch.float64, device=generator.device)
        keys = torch.where(torch.arange(width, device=nodes.device) < self.lengths[nodes].unsqueeze(1), keys, 2.0)
        return torch.gather(self.table[nodes], 1, torch.argsort(keys, dim=1))


class ReplicaSampler:
    """The batch sampler of a batched simulation: one :class:`BatchSampler` per replica (over its
    own partition table, so ``epoch`` shuffles draw the widths its separate run draws), called per
    replica block with that replica's generator (:class:`~p2probust.rng.ReplicaGenerators`)."""

    def __init__(self, samplers: list[BatchSampler], offsets: list[int]):
        self.samplers, self.offsets = list(samplers), list(offsets)

    def __call__(self, nodes: Tensor, generator) -> Tensor:
        """``[a, B]`` sample indices (into the shared training set) of the acting ``nodes``."""
        blocks = [self.samplers[r](nodes[pos] - self.offsets[r], generator.generators[r])
                  for r, pos in generator.split(nodes)]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks)
