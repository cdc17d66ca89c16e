"""Tests of the partitioners and partition helpers (p2probust.data.partition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from p2probust.data import (
    DataError,
    dirichlet_partition,
    extreme_partition,
    load_digits_dataset,
    pad_partition,
    partition_label_histogram,
)
from p2probust.registry import partitions

BALANCED = np.repeat(np.arange(10), 100)
PARTITIONERS = [
    ("iid", {}),
    ("dirichlet", {"alpha": 0.1}),
    ("dirichlet", {"alpha": 10.0}),
    ("extreme", {}),
    ("class-groups", {"groups": 1}),
]


def make(name, labels, n, seed, params):
    return partitions.get(name).factory(labels, n, seed=seed, **params)


@pytest.fixture(scope="module")
def digit_labels():
    return load_digits_dataset().y_train.numpy()


@pytest.mark.parametrize("name,params", PARTITIONERS)
@pytest.mark.parametrize("n", [1, 7, 50, 1000])
def test_disjoint_covering_nonempty(name, params, n):
    parts = make(name, BALANCED, n, 0, params)
    assert len(parts) == n
    assert all(p.dtype == np.int64 and p.size >= 1 for p in parts)
    flat = np.concatenate(parts)
    assert flat.size == BALANCED.size and np.array_equal(np.sort(flat), np.arange(BALANCED.size))
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("name,params", PARTITIONERS)
def test_deterministic_under_seed(name, params):
    a = make(name, BALANCED, 13, 4, params)
    b = make(name, BALANCED, 13, 4, params)
    c = make(name, BALANCED, 13, np.random.default_rng(4), params)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a, c))
    if name != "extreme":
        d = make(name, BALANCED, 13, 5, params)
        assert not all(np.array_equal(x, y) for x, y in zip(a, d))


@pytest.mark.parametrize("name,params", PARTITIONERS)
def test_too_few_samples(name, params):
    with pytest.raises(DataError, match="cannot give 11 nodes"):
        make(name, np.zeros(10, dtype=np.int64), 11, 0, params)


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_dirichlet_rejects_bad_alpha(alpha):
    with pytest.raises(DataError, match="alpha must be > 0"):
        dirichlet_partition(BALANCED, 4, seed=0, alpha=alpha)


def test_dirichlet_small_alpha_is_one_class_large_alpha_is_uniform(digit_labels):
    n = 10
    skewed = partition_label_histogram(dirichlet_partition(digit_labels, n, seed=0, alpha=0.01), digit_labels, 10)
    flat = partition_label_histogram(dirichlet_partition(digit_labels, n, seed=0, alpha=1000.0), digit_labels, 10)
    top_share = skewed.max(axis=1) / skewed.sum(axis=1)
    assert np.median(top_share) > 0.9
    global_share = np.bincount(digit_labels, minlength=10) / digit_labels.size
    shares = flat / flat.sum(axis=1, keepdims=True)
    assert np.abs(shares - global_share).max() < 0.05


def test_dirichlet_with_as_many_nodes_as_samples_gives_one_each():
    labels = np.arange(10_000) % 10
    parts = dirichlet_partition(labels, 10_000, seed=0, alpha=0.5)
    assert all(p.size == 1 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(10_000))


@pytest.mark.parametrize("n", [2, 3, 5, 10, 20, 100])
def test_extreme_has_few_classes_per_node(digit_labels, n):
    # balanced classes: at most ceil(C / n) + 1 classes per node
    hist = partition_label_histogram(extreme_partition(BALANCED, n, seed=0), BALANCED, 10)
    assert (np.count_nonzero(hist, axis=1) <= math.ceil(10 / n) + 1).all()
    # unbalanced classes: a chunk of size L spans at most ceil(L / smallest class) + 1 classes
    parts = extreme_partition(digit_labels, n, seed=0)
    hist = partition_label_histogram(parts, digit_labels, 10)
    chunk = max(p.size for p in parts)
    smallest = np.bincount(digit_labels).min()
    assert (np.count_nonzero(hist, axis=1) <= math.ceil(chunk / smallest) + 1).all()
    # contiguous in label order
    assert all(np.all(np.diff(digit_labels[p]) >= 0) for p in parts)


def test_pad_partition():
    parts = [np.array([5, 2, 9]), np.array([1]), np.array([3, 4])]
    table, lengths = pad_partition(parts)
    assert table.dtype == torch.int64 and lengths.tolist() == [3, 1, 2]
    assert table.tolist() == [[5, 2, 9], [1, 1, 1], [3, 4, 3]]
    with pytest.raises(DataError, match="node 1 has no samples"):
        pad_partition([np.array([1]), np.array([], dtype=np.int64)])


def test_label_histogram_counts():
    labels = np.array([0, 1, 1, 2, 2, 2])
    hist = partition_label_histogram([np.array([0, 1]), np.array([2, 3, 4, 5])], labels, 3)
    assert hist.tolist() == [[1, 1, 0], [0, 1, 3]]


# --- one-class (label separation) and shards --------------------------------------------------


def test_one_class_gives_class_i_to_node_i_as_the_ios_code():
    labels = np.array([3, 1, 0, 2, 1, 3, 0, 0, 2])
    parts = partitions.get("one-class").factory(labels, 4, seed=0)
    # IOS LabelSeperation, class_cnt >= node_cnt: sample goes to node (class index mod n), in data order
    assert [p.tolist() for p in parts] == [[2, 6, 7], [1, 4], [3, 8], [0, 5]]


def test_one_class_with_more_classes_than_nodes_wraps_classes():
    hist = partition_label_histogram(partitions.get("one-class").factory(BALANCED, 4, seed=0), BALANCED, 10)
    held = [set(np.flatnonzero(row).tolist()) for row in hist]
    assert held == [{0, 4, 8}, {1, 5, 9}, {2, 6}, {3, 7}]


def test_one_class_with_fewer_classes_than_nodes_deals_over_groups():
    labels = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    parts = partitions.get("one-class").factory(labels, 5, seed=0)
    # groups: floor(c*5/2) -> nodes {0, 1} for class 0 and {2, 3, 4} for class 1, dealt round-robin
    assert [p.tolist() for p in parts] == [[0, 4], [2, 7], [1, 6], [3], [5]]


def test_one_class_rejects_a_class_too_small_for_its_group():
    with pytest.raises(DataError, match="without samples"):
        partitions.get("one-class").factory(np.array([0, 0, 0, 1]), 4, seed=0)


def test_shards_cut_the_sorted_labels_and_hand_out_k_random_shards():
    parts = partitions.get("shards").factory(BALANCED, 10, seed=3, shards_per_node=2)
    order = np.random.default_rng(3).permutation(20).reshape(10, 2)  # McMahan: 20 shards of 50 sorted samples
    shards = np.array_split(np.argsort(BALANCED, kind="stable"), 20)
    for part, row in zip(parts, order):
        assert np.array_equal(part, np.concatenate([shards[s] for s in row]))
    hist = partition_label_histogram(parts, BALANCED, 10)
    assert (hist.sum(1) == 100).all() and ((hist > 0).sum(1) <= 2).all()
    flat = np.sort(np.concatenate(parts))
    assert np.array_equal(flat, np.arange(BALANCED.size))
    with pytest.raises(DataError, match="shards_per_node = 0"):
        partitions.get("shards").factory(BALANCED, 10, seed=3, shards_per_node=0)


def test_pad_holders_gives_non_holders_no_data():
    from p2probust.data import pad_holders

    table, lengths = pad_holders([np.array([4, 5]), np.array([7])], np.array([False, True, False, True]))
    assert lengths.tolist() == [0, 2, 0, 1]
    assert table[1].tolist() == [4, 5] and table[3].tolist() == [7, 7] and table[0].tolist() == [4, 4]
