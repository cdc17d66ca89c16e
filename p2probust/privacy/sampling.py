r"""Poisson subsampling of every node's local data in one batched call.

Each example of node ``i``'s local set :math:`D_i` enters the batch independently with probability
``q`` (the sampling that the privacy amplification of the subsampled Gaussian mechanism assumes:
Mironov, Talwar, Zhang, "Rényi differential privacy of the sampled Gaussian mechanism", 2019;
Opacus' ``UniformWithReplacementSampler``). Batch sizes then differ per node and per step: the
batch is a padded ``[a, K]`` table with a mask, ``K`` the largest batch drawn this step: the k-th
chosen position of a row is where the row's running count of chosen positions first reaches k + 1,
one batched ``searchsorted`` (no Python loop over nodes, no sort).
"""

from __future__ import annotations

import torch
from torch import Tensor


def poisson_positions(lengths: Tensor, width: int, q: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Positions ``[a, K]`` into each node's padded sample table, and their mask ``[a, K]``.

    Parameters
    ----------
    lengths : LongTensor [a]
        Local dataset sizes :math:`|D_i|`; positions ``>= lengths[i]`` are padding, never drawn.
    width : int
        Width ``L`` of the padded table.
    q : float
        Sampling rate in (0, 1].
    generator : torch.Generator
        One ``[a, L]`` uniform draw per call.
    """
    a = lengths.numel()
    u = torch.rand((a, width), generator=generator, dtype=torch.float64, device=generator.device).to(lengths.device)
    chosen = (u < q) & (torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1))
    running = chosen.cumsum(1)  # [a, L], non-decreasing per row
    counts = running[:, -1] if width else torch.zeros(a, dtype=torch.long, device=lengths.device)
    k = max(int(counts.max()) if a else 0, 1)
    ranks = torch.arange(1, k + 1, device=lengths.device).expand(a, k).contiguous()
    pos = torch.searchsorted(running, ranks)  # first position whose running count is k + 1
    mask = torch.arange(k, device=lengths.device).unsqueeze(0) < counts.unsqueeze(1)
    return torch.where(mask, pos, torch.zeros_like(pos)), mask


def gather_batch(trainer, nodes: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
    """The examples ``[a, K, ...]`` and labels ``[a, K]`` at ``pos`` of each node's table (labels
    flipped y → C−1−y for label-flipping nodes, as in :meth:`LocalTrainer.sample`)."""
    samples = torch.gather(trainer.table[nodes], 1, pos)
    yb = trainer.y[samples]
    if trainer.flipped is not None and trainer.num_classes:
        yb = torch.where(trainer.flipped[nodes].unsqueeze(1), trainer.num_classes - 1 - yb, yb)
    xb = trainer.x.index_select(0, samples.reshape(-1)).reshape(samples.shape + trainer.x.shape[1:])
    return xb, yb
