"""One run seed → named, independent random streams.

Changing what one part of a run draws (say, the attack's noise) must not change what any other
part draws (the graph, the data split, the batches). Each named stream is derived from the run seed
and a hash of its name through :class:`numpy.random.SeedSequence`, so streams are independent and
stable across Python sessions (no use of Python's salted ``hash``).

Stream names used by the simulator: ``graph``, ``placement``, ``partition``, ``init``, ``batches``,
``attack``, ``engine``, ``noise``, ``evaluation``.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

STREAMS = ("graph", "placement", "partition", "init", "batches", "attack", "engine", "noise", "evaluation")


def stream_seed(seed: int, name: str) -> int:
    """A 63-bit integer seed for stream ``name`` of run ``seed``."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    key = zlib.crc32(name.encode("utf-8"))
    return int(np.random.SeedSequence([seed, key]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def numpy_stream(seed: int, name: str) -> np.random.Generator:
    """A numpy Generator for stream ``name``."""
    return np.random.default_rng(stream_seed(seed, name))


def torch_stream(seed: int, name: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch Generator for stream ``name`` on ``device`` (draws from it are made there: pass
    ``device=generator.device`` to ``torch.rand`` and the like). A CUDA generator seeded alike
    draws other numbers than a CPU one (see :mod:`p2probust.device`)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, name))
    return gen


class ReplicaGenerators:
    """The generators of one named stream in a batched simulation: one per replica (one per seed).

    Replica ``r`` owns the nodes ``offsets[r] .. offsets[r+1] - 1`` of the joined graph. A draw for
    a set of nodes is made block by block, each replica's block with that replica's own generator
    and the shape its separate run would draw, then concatenated — so every replica draws the same
    bits as its separate run (a loop over replicas, never over nodes).

    Parameters
    ----------
    generators : list of torch.Generator
        ``torch_stream(seed_r, name)`` of each replica.
    offsets : list of int
        ``R + 1`` node offsets, ``offsets[0] = 0``, ``offsets[R]`` the joined node count.
    """

    def __init__(self, generators: list[torch.Generator], offsets: list[int]):
        if len(offsets) != len(generators) + 1:
            raise ValueError(f"{len(generators)} generators need {len(generators) + 1} offsets, got {len(offsets)}")
        self.generators, self.offsets = list(generators), list(offsets)

    def split(self, nodes: torch.Tensor) -> list[tuple[int, slice]]:
        """``(replica, positions)`` of each replica's block of ``nodes`` (global ids in ascending order;
        repeats allowed, e.g. the recipient of several attacked edges)."""
        if nodes.numel() > 1 and not bool((nodes[1:] >= nodes[:-1]).all()):
            raise ValueError("ReplicaGenerators.split needs node ids in ascending order")
        cuts = torch.searchsorted(nodes, torch.tensor(self.offsets, dtype=nodes.dtype, device=nodes.device)).tolist()
        return [(r, slice(cuts[r], cuts[r + 1])) for r in range(len(self.generators)) if cuts[r + 1] > cuts[r]]
