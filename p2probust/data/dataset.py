"""The :class:`Dataset` container and a deterministic, stratified train/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from p2probust.data.errors import DataError

__all__ = ["Dataset", "train_test_split"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A supervised data set held in memory as torch tensors.

    Attributes
    ----------
    x_train : Tensor[N, *feature_shape], float32
        Training inputs, for example ``[N, 64]`` for digits or ``[N, 1, 28, 28]`` for MNIST.
    y_train : Tensor[N]
        Training labels: int64 class ids in ``[0, num_classes)`` for classification, float32
        targets for regression.
    x_test : Tensor[M, *feature_shape], float32
        Test inputs, same feature shape as ``x_train``.
    y_test : Tensor[M]
        Test labels, same dtype as ``y_train``.
    num_classes : int
        Number of classes; 0 for regression.
    name : str
        Short name, for logs.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != torch.float32:
                raise DataError(f"x_{split} must be float32, got {x.dtype}")
            if y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"y_{split} must have shape [{x.shape[0]}] to match x_{split}, got {list(y.shape)}"
                )
            want = torch.int64 if self.num_classes > 0 else torch.float32
            if y.dtype != want:
                raise DataError(f"y_{split} must be {want} when num_classes={self.num_classes}, got {y.dtype}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"x_train and x_test feature shapes differ: {list(self.x_train.shape[1:])} "
                f"vs {list(self.x_test.shape[1:])}"
            )
        if self.num_classes < 0:
            raise DataError(f"num_classes must be >= 0 (0 for regression), got {self.num_classes}")

    def to(self, device: torch.device | str) -> "Dataset":
        """This data set with its four tensors on ``device`` (itself when they are there already)."""
        device = torch.device(device)
        if self.x_train.device == device and self.x_test.device == device:
            return self
        return Dataset(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device), self.y_test.to(device),
                       num_classes=self.num_classes, name=self.name)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one input, for example ``(64,)`` or ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def classification(self) -> bool:
        """Whether this is a classification data set (``num_classes > 0``)."""
        return self.num_classes > 0

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={list(self.x_train.shape)}, "
            f"test={list(self.x_test.shape)}, num_classes={self.num_classes})"
        )


def train_test_split(
    x: torch.Tensor,
    y: torch.Tensor,
    test_fraction: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``(x, y)`` into train and test sets, deterministically for a given ``seed``.

    Parameters
    ----------
    x : Tensor[N, ...]
        Inputs.
    y : Tensor[N]
        Labels. Integer labels give a *stratified* split; floating-point targets a plain one.
    test_fraction : float
        Fraction of samples put in the test set, in ``(0, 1)``.
    seed : int
        Seed of the split's own numpy generator.

    Returns
    -------
    x_train, y_train, x_test, y_test : Tensor
        Both parts keep the original relative order of the samples.

    Notes
    -----
    Stratified: each class ``c`` with ``N_c`` samples puts ``round(test_fraction * N_c)`` of them,
    chosen uniformly at random, in the test set, so class proportions match in both parts up to
    rounding.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"y must have shape [{x.shape[0]}] to match x, got {list(y.shape)}")
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    test_mask = np.zeros(n, dtype=bool)
    if y.dtype.is_floating_point:
        num_test = int(round(test_fraction * n))
        test_mask[rng.permutation(n)[:num_test]] = True
    else:
        labels = y.cpu().numpy()
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            num_test = int(round(test_fraction * members.size))
            test_mask[rng.permutation(members)[:num_test]] = True
    if test_mask.all() or not test_mask.any():
        raise DataError(
            f"test_fraction={test_fraction} of {n} samples leaves an empty train or test set; "
            "use more samples or a fraction further from 0 and 1"
        )
    test_idx = torch.from_numpy(np.flatnonzero(test_mask))
    train_idx = torch.from_numpy(np.flatnonzero(~test_mask))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
