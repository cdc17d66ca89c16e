"""scikit-learn's bundled 8x8 handwritten digits (no download)."""

from __future__ import annotations

import torch

from p2probust.data.dataset import Dataset, train_test_split
from p2probust.data.normalize import normalize_pixels

__all__ = ["load_digits_dataset"]


def load_digits_dataset(*, test_fraction: float = 0.2, split_seed: int = 0, normalize: str = "auto") -> Dataset:
    """The UCI optical handwritten digits bundled with scikit-learn, as a :class:`Dataset`.

    1,797 grey-scale 8x8 images of the digits 0-9, flattened to 64 features and scaled to
    ``[0, 1]`` by dividing the 0-16 pixel counts by 16.

    Parameters
    ----------
    test_fraction : float
        Fraction of the 1,797 samples held out for testing (stratified by class).
    split_seed : int
        Seed of the split; fixed so every run sees the same train and test sets.
    normalize : str
        ``auto`` (= ``unit``: counts / 16), ``mnist``, ``unit``, ``symmetric`` or ``none``
        (see :mod:`p2probust.data.normalize`).

    Returns
    -------
    Dataset
        ``x_train`` float32 ``[N, 64]``, ``y_train`` int64 ``[N]``, ``num_classes=10``,
        ``name="digits"``.

    References
    ----------
    .. [1] E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
       Learning Repository, 1998. Loaded with :func:`sklearn.datasets.load_digits`.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = normalize_pixels(torch.as_tensor(bunch.data, dtype=torch.float32), 16.0, normalize, "unit")
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    x_train, y_train, x_test, y_test = train_test_split(x, y, test_fraction, split_seed)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10, name="digits")
