"""Learning tasks: a data set, a model template, a loss, and (if known) the exact optimum.

Tasks are registered by name so TOML files and the CLI can pick one
(``p2probust.registry.tasks.create("digits")``). Every factory has the signature
``f(*, data_dir=None, test_fraction=0.2, split_seed=0, **params) -> Task``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from p2probust.data.dataset import Dataset, train_test_split
from p2probust.data.digits import load_digits_dataset
from p2probust.data.errors import DataError
from p2probust.data.mnist import load_mnist_dataset
from p2probust.data.synthetic import labels_for_partition, least_squares_optimum, make_least_squares
from p2probust.models import MLP, DropoutCNN, LinearRegression, LogisticRegression, SmallCNN
from p2probust.registry import register_task

__all__ = ["LOSSES", "Task"]

#: Loss names a task may use.
LOSSES = ("cross_entropy", "mse")

OptimumFn = Callable[[Sequence[np.ndarray]], "tuple[torch.Tensor, float]"]


@dataclass(frozen=True, eq=False)
class Task:
    """What the nodes learn.

    Attributes
    ----------
    name : str
        Registered task name.
    dataset : Dataset
        Train and test data; partitions index ``dataset.x_train``.
    make_model : callable () -> nn.Module
        Builds a fresh model template (the same architecture every call).
    loss : str
        ``"cross_entropy"`` (mean over the batch, on logits and int64 labels) or ``"mse"``,
        meaning ``mean(0.5 · (pred − y)²)``, consistent with the least-squares objective of
        :func:`~p2probust.data.least_squares_optimum`.
    classification : bool
        Whether accuracy is meaningful.
    partition_labels : ndarray[N], int64
        Labels the partitioners use: the class labels, or quantile buckets of the targets
        for regression.
    optimum_fn : callable or None
        ``parts -> (theta_star[d], loss_star)`` when the honest optimum is known exactly.
    """

    name: str
    dataset: Dataset
    make_model: Callable[[], nn.Module]
    loss: str
    classification: bool
    partition_labels: np.ndarray
    optimum_fn: Optional[OptimumFn] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise DataError(f"task loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.partition_labels.shape != (self.dataset.x_train.shape[0],):
            raise DataError(
                f"partition_labels must have shape [{self.dataset.x_train.shape[0]}], "
                f"got {list(self.partition_labels.shape)}"
            )

    def optimum(self, parts: Sequence[np.ndarray]) -> tuple[torch.Tensor, float] | None:
        """Exact minimiser and minimum of the honest objective, or None if unknown.

        Parameters
        ----------
        parts : list of int64 index arrays into ``dataset.x_train``, one per *honest* node.

        Returns
        -------
        (theta_star: Tensor[d], loss_star: float) or None
            The objective is the average over the given nodes of their local mean losses.
        """
        return None if self.optimum_fn is None else self.optimum_fn(parts)

    def to(self, device: torch.device | str) -> "Task":
        """This task with its data set on ``device`` (itself when it is there already); the exact
        optimum, if known, is still computed from the data it was built with."""
        dataset = self.dataset.to(device)
        return self if dataset is self.dataset else dataclasses.replace(self, dataset=dataset)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes


def _classification_task(name: str, dataset: Dataset, make_model: Callable[[], nn.Module]) -> Task:
    return Task(
        name=name,
        dataset=dataset,
        make_model=make_model,
        loss="cross_entropy",
        classification=True,
        partition_labels=dataset.y_train.numpy().astype(np.int64),
    )


def _mnist(name: str, data_dir: str | Path | None, test_fraction: float, split_seed: int, normalize: str) -> Dataset:
    if data_dir is None:
        raise DataError(f"task {name} needs --data-dir, a folder holding the MNIST IDX files")
    return load_mnist_dataset(data_dir, test_fraction=test_fraction, split_seed=split_seed, normalize=normalize)


@register_task("digits", "8x8 digits (bundled with scikit-learn) + logistic regression; the default")
def digits_task(
    *, data_dir: str | Path | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: str = "auto"
) -> Task:
    """scikit-learn's 8x8 digits with multinomial logistic regression (650 parameters).

    ``data_dir`` is ignored (the data are bundled).
    """
    dataset = load_digits_dataset(test_fraction=test_fraction, split_seed=split_seed, normalize=normalize)
    return _classification_task("digits", dataset, partial(LogisticRegression, 64, 10))


@register_task("digits-mlp", "8x8 digits + MLP(64 -> hidden -> 10)")
def digits_mlp_task(
    *,
    data_dir: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    hidden: int = 64,
    normalize: str = "auto",
) -> Task:
    """scikit-learn's 8x8 digits with a one-hidden-layer MLP (``hidden`` units, 64 by default)."""
    if hidden < 1:
        raise DataError(f"hidden must be >= 1, got {hidden}")
    dataset = load_digits_dataset(test_fraction=test_fraction, split_seed=split_seed, normalize=normalize)
    return _classification_task("digits-mlp", dataset, partial(MLP, 64, hidden, 10))


@register_task("mnist-cnn", "MNIST from --data-dir + small CNN")
def mnist_cnn_task(
    *, data_dir: str | Path | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: str = "auto"
) -> Task:
    """MNIST (IDX files in ``data_dir``) with :class:`~p2probust.models.SmallCNN`.

    MNIST is by Yann LeCun and Corinna Cortes, CC BY-SA 3.0.
    """
    dataset = _mnist("mnist-cnn", data_dir, test_fraction, split_seed, normalize)
    return _classification_task("mnist-cnn", dataset, partial(SmallCNN, 10))


@register_task("mnist-dropout-cnn", "MNIST from --data-dir + ClippedGossip's CNN (conv32-conv64-fc128, dropout; 1.2M parameters, slow)")
def mnist_dropout_cnn_task(
    *, data_dir: str | Path | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: str = "auto"
) -> Task:
    """MNIST with :class:`~p2probust.models.DropoutCNN`, the network of He, Karimireddy, Jaggi's
    ClippedGossip experiments (dropout masks drawn from the run's ``batches`` stream). About 20×
    the cost of ``mnist-cnn`` per step (2.5 s a round for 20 nodes × batch 32 on one CPU core)."""
    dataset = _mnist("mnist-dropout-cnn", data_dir, test_fraction, split_seed, normalize)
    return _classification_task("mnist-dropout-cnn", dataset, partial(DropoutCNN, 10))


@register_task("mnist-logreg", "MNIST from --data-dir + logistic regression (fast)")
def mnist_logreg_task(
    *, data_dir: str | Path | None = None, test_fraction: float = 0.2, split_seed: int = 0, normalize: str = "auto"
) -> Task:
    """MNIST (IDX files in ``data_dir``) with logistic regression on the 784 pixels.

    MNIST is by Yann LeCun and Corinna Cortes, CC BY-SA 3.0.
    """
    dataset = _mnist("mnist-logreg", data_dir, test_fraction, split_seed, normalize)
    return _classification_task("mnist-logreg", dataset, partial(LogisticRegression, 784, 10))


@register_task("least-squares", "synthetic linear regression with a known optimum (strongly convex)")
def least_squares_task(
    *,
    data_dir: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    num_samples: int = 2000,
    dim: int = 20,
    noise: float = 0.1,
    heterogeneity: float = 0.0,
    seed: int = 0,
) -> Task:
    """Synthetic least squares (:func:`~p2probust.data.make_least_squares`) + linear model.

    The loss is ``"mse"`` (``0.5 · (x·θ − y)²`` averaged), so the nodes' average loss is exactly
    the objective whose optimum :meth:`Task.optimum` returns. ``seed`` seeds the data;
    ``data_dir`` is ignored.
    """
    dataset = make_least_squares(
        num_samples,
        dim,
        noise,
        seed=seed,
        heterogeneity=heterogeneity,
        test_fraction=test_fraction,
        split_seed=split_seed,
    )
    return Task(
        name="least-squares",
        dataset=dataset,
        make_model=partial(LinearRegression, dim),
        loss="mse",
        classification=False,
        partition_labels=labels_for_partition(dataset.y_train),
        optimum_fn=partial(least_squares_optimum, dataset.x_train, dataset.y_train),
    )


@register_task("blobs", "synthetic 10-class Gaussian clusters, 64 features (digits-sized, any size) + logistic regression")
def blobs_task(
    *,
    data_dir: str | Path | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    num_samples: int = 20000,
    features: int = 64,
    classes: int = 10,
    separation: float = 1.0,
    seed: int = 0,
) -> Task:
    """Synthetic classification with scikit-learn's ``make_classification`` + logistic regression.

    Digits-sized inputs (64 features, 10 classes by default) in any quantity, for runs with more
    nodes than the bundled digits have samples (e.g. 10,000 nodes). ``separation`` is
    ``make_classification``'s ``class_sep``; ``seed`` seeds the data; ``data_dir`` is ignored.
    """
    from sklearn.datasets import make_classification

    if num_samples < 2 * classes or features < 2 or classes < 2:
        raise DataError(
            f"blobs needs num_samples >= 2*classes, features >= 2, classes >= 2; got {num_samples}, {features}, {classes}"
        )
    x, y = make_classification(
        n_samples=num_samples, n_features=features, n_informative=min(features, max(2, features // 2)),
        n_redundant=0, n_classes=classes, n_clusters_per_class=1, class_sep=separation, random_state=seed,
    )
    x_tr, y_tr, x_te, y_te = train_test_split(
        torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64), test_fraction, split_seed
    )
    dataset = Dataset(x_tr, y_tr, x_te, y_te, num_classes=classes, name="blobs")
    return _classification_task("blobs", dataset, partial(LogisticRegression, features, classes))
