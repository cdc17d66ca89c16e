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


def torch_stream(seed: int, name: str) -> torch.Generator:
    """A CPU torch Generator for stream ``name``."""
    gen = torch.Generator()
    gen.manual_seed(stream_seed(seed, name))
    return gen
