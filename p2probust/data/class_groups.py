"""The ``class-groups`` partition: blocks of nodes with disjoint blocks of classes (ClippedGossip's
non-IID dumbbell). Registered on import of :mod:`p2probust.data.partition`."""

from __future__ import annotations

import numpy as np

from p2probust.data.errors import DataError
from p2probust.data.partition import _check, _rng
from p2probust.registry import register_partition

__all__ = ["class_groups_partition"]

@register_partition("class-groups", "G blocks of nodes, block g holds the g-th block of classes (He et al. 2022 dumbbell: 2 cliques x 5 classes)")
def class_groups_partition(
    labels: np.ndarray, n: int, *, seed: int | np.random.Generator, groups: int = 2
) -> list[np.ndarray]:
    r"""Groups of nodes with disjoint label sets: the non-IID dumbbell of ClippedGossip.

    The nodes are cut into ``G`` contiguous blocks (``np.array_split`` of ``0..n-1``) and the
    ``C`` classes (sorted distinct labels) into ``G`` contiguous blocks the same way; the samples of
    the classes of block ``g`` are shuffled and dealt round-robin over the nodes of block ``g``
    (near-equal parts, mixed classes). ``G = 2`` on the ``two-cliques`` topology gives the
    ClippedGossip paper's setting: clique 1 (nodes ``0..n/2-1``) holds classes 0–4 of MNIST and
    clique 2 classes 5–9. ``G = 1`` is an iid split.

    Parameters
    ----------
    labels : ndarray[N]
    n : int
        Number of nodes, ``G <= n``.
    seed : int or numpy Generator
        Randomness of the shuffle within each group.
    groups : int
        ``G``, ``1 <= G <= min(n, C)``.

    Returns
    -------
    list of n int64 arrays, disjoint and covering all samples.

    Notes
    -----
    The authors' ``DumbbellSampler`` also deals each clique's shuffled samples over its nodes with
    a stride (``indices[rank::q]``), but first truncates both cliques to the smaller one's size
    (``min_size``); here every sample is kept, so with unbalanced classes the groups' nodes hold
    slightly different amounts of data (MNIST classes 0–4: 51% of the samples).

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning via
       ClippedGossip", arXiv:2202.01545, 2022, §6 (dumbbell, non-IID: each clique 5 classes); code
       epfml/byzantine-robust-decentralized-optimizer, ``codes/sampler.py`` (``DumbbellSampler``).
    """
    labels = _check(labels, n)
    g = groups
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
        raise DataError(f"groups = {g!r} is invalid; expected an integer >= 1")
    _, cls = np.unique(labels, return_inverse=True)
    cls = cls.reshape(-1)
    num_classes = int(cls.max()) + 1
    if g > min(n, num_classes):
        raise DataError(f"groups = {g} must be at most min(n, classes) = {min(n, num_classes)} (n = {n}, {num_classes} classes)")
    rng = _rng(seed)
    node_blocks = np.array_split(np.arange(n), g)
    class_group = np.repeat(np.arange(g), [b.size for b in np.array_split(np.arange(num_classes), g)])
    parts: list[np.ndarray] = []
    for grp, nodes in enumerate(node_blocks):  # loop over the G groups, not over nodes or samples
        members = rng.permutation(np.flatnonzero(class_group[cls] == grp))
        if members.size < nodes.size:
            raise DataError(f"class-groups: group {grp} has {members.size} samples for {nodes.size} nodes")
        parts += [members[i :: nodes.size].astype(np.int64) for i in range(nodes.size)]
    return parts

