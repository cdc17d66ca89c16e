"""Partitioners: split a data set's samples among ``n`` nodes (iid, Dirichlet α, extreme, one-class, shards,
class-groups).

Every partitioner has the signature
``f(labels: ndarray[N], n: int, *, seed: int | np.random.Generator, **params) -> list[ndarray]``
and returns ``n`` disjoint int64 index arrays, each non-empty, that together cover all ``N``
samples. ``labels`` are class ids (or, for regression, the buckets of
:func:`~p2probust.data.synthetic.labels_for_partition`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from p2probust.data.errors import DataError
from p2probust.registry import register_partition

__all__ = [
    "dirichlet_partition",
    "extreme_partition",
    "iid_partition",
    "one_class_partition",
    "pad_holders",
    "pad_partition",
    "partition_label_histogram",
    "shards_partition",
]


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _check(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be one-dimensional [N], got shape {list(labels.shape)}")
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"number of nodes must be a positive int, got {n!r}")
    if labels.size < n:
        raise DataError(f"cannot give {n} nodes at least one sample each from {labels.size} samples")
    return labels


def _split(order: np.ndarray, n: int) -> list[np.ndarray]:
    return [part.astype(np.int64, copy=False) for part in np.array_split(order, n)]


@register_partition("iid", "uniformly random split into near-equal parts")
def iid_partition(labels: np.ndarray, n: int, *, seed: int | np.random.Generator) -> list[np.ndarray]:
    """Random permutation of the samples cut into ``n`` near-equal parts.

    Parameters
    ----------
    labels : ndarray[N]
        Only its length is used.
    n : int
        Number of nodes, ``1 <= n <= N``.
    seed : int or numpy Generator
        Randomness of the permutation.

    Returns
    -------
    list of n int64 arrays
        Parts of size ``N // n`` or ``N // n + 1`` (the larger ones first).
    """
    labels = _check(labels, n)
    return _split(_rng(seed).permutation(labels.size), n)


@register_partition("dirichlet", "label skew: node class proportions ~ Dir(alpha); small alpha = non-iid")
def dirichlet_partition(
    labels: np.ndarray,
    n: int,
    *,
    seed: int | np.random.Generator,
    alpha: float = 1.0,
) -> list[np.ndarray]:
    """Label-skewed split: each node's class proportions are drawn from a Dirichlet law.

    Parameters
    ----------
    labels : ndarray[N]
        Class labels (any hashable-sortable values; the ``C`` distinct values are the classes).
    n : int
        Number of nodes, ``1 <= n <= N``.
    seed : int or numpy Generator
        Randomness of the proportions and of the sampling.
    alpha : float
        Concentration, ``> 0``. Small α (say 0.01) gives nodes holding nearly one class;
        large α (say 1000) gives nearly iid nodes.

    Returns
    -------
    list of n int64 arrays
        Disjoint, covering all samples; node ``i`` gets ``N // n`` samples, plus one for the
        first ``N mod n`` nodes.

    Notes
    -----
    Convention (one of several in the literature): per-node class proportions
    ``p_i ~ Dir(α·1_C)`` are drawn independently for every node. Nodes are then filled in order
    ``i = 0..n-1``: node ``i`` splits its quota ``q`` over the classes following ``p_i``
    (``floor(q·p_ic)`` of class ``c``, and the few labels left over drawn from a multinomial over
    the fractional parts, so the expected count is exactly ``q·p_ic`` with little variance) and
    takes that many samples of each class, without replacement, from per-class pools shuffled
    once. When a class pool runs dry, the samples it could not supply are redrawn with ``p_i`` renormalised
    over the classes still available (if ``p_i`` puts no mass on any available class, the
    remaining pool sizes are used instead). Since the quotas sum to ``N``, the pools end empty:
    the partition covers every sample. Late nodes may therefore be less skewed than early ones
    when α is small and classes run out.

    References
    ----------
    .. [1] T.-M. H. Hsu, H. Qi and M. Brown, "Measuring the effects of non-identical data
       distribution for federated visual classification", arXiv:1909.06335, 2019.
    """
    labels = _check(labels, n)
    if not float(alpha) > 0.0 or not np.isfinite(alpha):
        raise DataError(f"alpha must be > 0 and finite, got {alpha}")
    rng = _rng(seed)
    _, cls = np.unique(labels, return_inverse=True)
    cls = cls.reshape(-1)
    num_classes = int(cls.max()) + 1
    order = np.argsort(cls, kind="stable")
    counts = np.bincount(cls, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pools = [rng.permutation(order[s : s + c]) for s, c in zip(starts, counts)]
    remaining = counts.astype(np.int64).copy()
    proportions = rng.dirichlet(np.full(num_classes, float(alpha)), size=n)
    base, extra = divmod(labels.size, n)
    quotas = np.full(n, base, dtype=np.int64)
    quotas[:extra] += 1
    wanted = _apportion(quotas, proportions, rng)  # [n, C], every node's first choice
    parts = []
    for i in range(n):
        take = np.minimum(wanted[i], remaining)
        remaining -= take
        short = int(quotas[i] - take.sum())
        while short > 0:  # some pools ran dry: renormalise p_i over the classes left
            p = np.where(remaining > 0, proportions[i], 0.0)
            total = p.sum()
            p = p / total if total > 0 else remaining / remaining.sum()
            more = np.minimum(_apportion(np.array([short]), p[None, :], rng)[0], remaining)
            take += more
            remaining -= more
            short -= int(more.sum())
        end = counts - remaining
        chosen = [pools[c][end[c] - take[c] : end[c]] for c in np.flatnonzero(take)]
        parts.append(np.concatenate(chosen).astype(np.int64, copy=False))
    return parts


def _apportion(quotas: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts ``[m, C]``: row ``i`` sums to ``quotas[i]`` and has expectation ``quotas[i] * p[i]``.

    ``floor(q·p_c)`` of each class ``c``, plus the ``r`` labels left over drawn from a multinomial
    over the fractional parts (which sum to ``r``).
    """
    target = quotas[:, None] * p
    counts = np.floor(target).astype(np.int64)
    left = np.maximum(quotas - counts.sum(axis=1), 0)
    frac = target - counts
    total = frac.sum(axis=1, keepdims=True)
    weights = np.where(total > 0, frac / np.where(total > 0, total, 1.0), p)
    return counts + rng.multinomial(left, weights)


@register_partition("extreme", "sort by label and cut into contiguous chunks (most non-iid)")
def extreme_partition(labels: np.ndarray, n: int, *, seed: int | np.random.Generator = 0) -> list[np.ndarray]:
    """The most label-skewed split: samples sorted by label, cut into ``n`` contiguous chunks.

    Parameters
    ----------
    labels : ndarray[N]
        Class labels.
    n : int
        Number of nodes, ``1 <= n <= N``.
    seed : int or numpy Generator
        Accepted for the uniform signature; the split is deterministic (stable sort).

    Returns
    -------
    list of n int64 arrays
        Near-equal contiguous chunks of the label-sorted order; with balanced classes each
        node holds at most ``ceil(C / n) + 1`` classes.
    """
    labels = _check(labels, n)
    _rng(seed)  # validate only
    return _split(np.argsort(labels, kind="stable"), n)


@register_partition("one-class", "label separation (Wu et al. 2023): class c to node c mod n; n > C: classes dealt over groups of nodes")
def one_class_partition(labels: np.ndarray, n: int, *, seed: int | np.random.Generator = 0) -> list[np.ndarray]:
    r"""Label separation: every node holds the samples of one class (or a few), as in the IOS code.

    With ``C`` classes (sorted distinct labels, class index ``c``):

    * ``C >= n``: node ``i`` gets every class ``c`` with ``c mod n = i`` (``C = n``: one class per
      node, class ``i`` at node ``i``; ``C = 10, n = 5``: classes ``{i, i+5}``);
    * ``C < n``: the nodes are cut into ``C`` contiguous groups, group ``c`` being nodes
      ``⌊cn/C⌋ .. ⌊(c+1)n/C⌋ − 1``, and the samples of class ``c`` are dealt round-robin over
      its group in data-set order.

    Deterministic (``seed`` is accepted for the uniform signature and only validated). Parts keep
    the data-set order, so a contiguous-slice sampler reads them as the authors' code does.

    Parameters
    ----------
    labels : ndarray[N]
        Class labels.
    n : int
        Number of nodes that hold data (``split_among = "honest"`` passes the honest count).
    seed : int or numpy Generator
        Validated only.

    Returns
    -------
    list of n int64 arrays, disjoint and covering all samples.

    References
    ----------
    .. [1] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic optimization with
       robust aggregation rules", IEEE Trans. Signal Processing 71, 2023 ("label separation");
       code: github.com/Zhaoxian-Wu/IOS, ``ByrdLab/library/partition.py`` (``LabelSeperation``).
    """
    labels = _check(labels, n)
    _rng(seed)
    _, cls = np.unique(labels, return_inverse=True)
    cls = cls.reshape(-1)
    num_classes = int(cls.max()) + 1
    if num_classes >= n:
        owner = cls % n
    else:
        bounds = (np.arange(num_classes + 1) * n) // num_classes
        rank = np.zeros_like(cls)
        for c in range(num_classes):  # loop over classes, not nodes or samples
            members = np.flatnonzero(cls == c)
            rank[members] = np.arange(members.size)
        size = bounds[1:] - bounds[:-1]
        owner = bounds[cls] + rank % size[cls]
    parts = [np.flatnonzero(owner == i).astype(np.int64) for i in range(n)]
    empty = [i for i, p in enumerate(parts) if p.size == 0]
    if empty:
        raise DataError(f"one-class partition leaves node {empty[0]} without samples (a class has fewer samples than its group of nodes)")
    return parts


@register_partition("shards", "McMahan et al. 2017: sort by label, cut into n*shards_per_node shards, k random shards per node")
def shards_partition(
    labels: np.ndarray, n: int, *, seed: int | np.random.Generator, shards_per_node: int = 2
) -> list[np.ndarray]:
    r"""Pathological non-iid split of FedAvg: each node gets ``k`` shards of one label each (mostly).

    The samples are sorted by label (stable), cut into ``n·k`` shards of near-equal size
    (``np.array_split``), and a uniformly random permutation of the shards hands shards
    ``π(ik) .. π(ik + k − 1)`` to node ``i``. With balanced classes and shards no larger than a
    class, a node holds at most ``2k`` classes and usually ``k``.

    Parameters
    ----------
    labels : ndarray[N]
    n : int
    seed : int or numpy Generator
        Randomness of the shard assignment.
    shards_per_node : int
        ``k >= 1`` (McMahan et al. use 2: 200 shards of 300 MNIST images over 100 clients).

    Returns
    -------
    list of n int64 arrays, disjoint and covering all samples; sizes differ by at most ``k``.

    References
    ----------
    .. [1] H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas,
       "Communication-efficient learning of deep networks from decentralized data", AISTATS 2017, §3.
    """
    labels = _check(labels, n)
    k = shards_per_node
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"shards_per_node = {k!r} is invalid; expected an integer >= 1")
    if n * k > labels.size:
        raise DataError(f"cannot cut {labels.size} samples into n*shards_per_node = {n * k} non-empty shards")
    shards = np.array_split(np.argsort(labels, kind="stable"), n * k)
    order = _rng(seed).permutation(n * k).reshape(n, k)
    return [np.concatenate([shards[s] for s in row]).astype(np.int64) for row in order]


def pad_partition(parts: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack ragged per-node index arrays into a fixed-shape table.

    Parameters
    ----------
    parts : list of n int index arrays
        Non-empty.

    Returns
    -------
    table : LongTensor[n, L_max]
        Row ``i`` holds ``parts[i]`` followed by copies of ``parts[i][0]`` (a valid index, so
        gathers need no mask).
    lengths : LongTensor[n]
        ``len(parts[i])``.
    """
    arrays = [np.asarray(p.cpu().numpy() if isinstance(p, torch.Tensor) else p, dtype=np.int64) for p in parts]
    if not arrays:
        raise DataError("parts must hold at least one node, got none")
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise DataError(f"node {int(empty[0])} has no samples; every node needs at least one")
    table = np.empty((len(arrays), int(lengths.max())), dtype=np.int64)
    for i, a in enumerate(arrays):
        table[i, : a.size] = a
        table[i, a.size :] = a[0]
    return torch.from_numpy(table), torch.from_numpy(lengths)


def pad_holders(parts: Sequence[np.ndarray], holders: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pad_partition` for a split among some nodes only (``data.split_among = "honest"``).

    Parameters
    ----------
    parts : list of m int index arrays, m = ``holders.sum()``
        The parts of the holders, in increasing node id (the IOS code's ``DistributedDataSets``).
    holders : bool ndarray[n]

    Returns
    -------
    table : LongTensor[n, L_max]
        Holder rows as in :func:`pad_partition`; other rows hold the valid index ``parts[0][0]``.
    lengths : LongTensor[n]
        0 for the nodes that hold no data (they must not train).
    """
    holders = np.asarray(holders, dtype=bool)
    if int(holders.sum()) != len(parts):
        raise DataError(f"{len(parts)} parts for {int(holders.sum())} data-holding nodes")
    sub, sub_len = pad_partition(parts)
    ids = torch.from_numpy(np.flatnonzero(holders))
    table = torch.full((holders.size, sub.shape[1]), int(sub[0, 0]), dtype=torch.long).index_copy(0, ids, sub)
    lengths = torch.zeros(holders.size, dtype=torch.long).index_copy(0, ids, sub_len)
    return table, lengths


def partition_label_histogram(
    parts: Sequence[np.ndarray | torch.Tensor],
    labels: np.ndarray | torch.Tensor,
    num_classes: int,
) -> np.ndarray:
    """Per-node label counts.

    Parameters
    ----------
    parts : list of n index arrays
    labels : ndarray[N] of ints in ``[0, num_classes)``
    num_classes : int

    Returns
    -------
    ndarray[n, num_classes], int64
        ``hist[i, c]`` = number of samples of class ``c`` at node ``i``.
    """
    labels = np.asarray(labels.cpu().numpy() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    arrays = [np.asarray(p.cpu().numpy() if isinstance(p, torch.Tensor) else p, dtype=np.int64) for p in parts]
    node = np.repeat(np.arange(len(arrays)), [a.size for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    hist = np.bincount(node * num_classes + labels[flat], minlength=len(arrays) * num_classes)
    return hist.reshape(len(arrays), num_classes).astype(np.int64)


from p2probust.data.class_groups import class_groups_partition  # noqa: E402  (registers "class-groups")

__all__ += ["class_groups_partition"]
