"""Data sets, partitioners and tasks.

Importing this package registers the built-in tasks (``digits``, ``digits-mlp``, ``mnist-cnn``,
``mnist-logreg``, ``least-squares``) and partitions (``iid``, ``dirichlet``, ``extreme``, ``one-class``, ``shards``).
"""

from p2probust.data.dataset import Dataset, train_test_split
from p2probust.data.digits import load_digits_dataset
from p2probust.data.errors import DataError
from p2probust.data.mnist import MNIST_FILES, MNIST_MEAN, MNIST_STD, find_mnist_files, load_mnist_dataset, read_idx
from p2probust.data.partition import (
    dirichlet_partition,
    extreme_partition,
    iid_partition,
    one_class_partition,
    pad_holders,
    pad_partition,
    partition_label_histogram,
    shards_partition,
)
from p2probust.data.synthetic import labels_for_partition, least_squares_optimum, make_least_squares
from p2probust.data.tasks import LOSSES, Task

__all__ = [
    "LOSSES",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataError",
    "Dataset",
    "Task",
    "dirichlet_partition",
    "extreme_partition",
    "find_mnist_files",
    "iid_partition",
    "labels_for_partition",
    "least_squares_optimum",
    "load_digits_dataset",
    "load_mnist_dataset",
    "make_least_squares",
    "one_class_partition",
    "pad_holders",
    "pad_partition",
    "partition_label_histogram",
    "shards_partition",
    "read_idx",
    "train_test_split",
]
