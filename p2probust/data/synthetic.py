"""A synthetic, strongly convex least-squares task with an exactly known optimum."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from p2probust.data.dataset import Dataset, train_test_split
from p2probust.data.errors import DataError

__all__ = ["labels_for_partition", "least_squares_optimum", "make_least_squares"]

NUM_GROUPS = 10


def make_least_squares(
    num_samples: int = 2000,
    dim: int = 20,
    noise: float = 0.1,
    *,
    seed: int = 0,
    heterogeneity: float = 0.0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """A linear-regression data set ``y = x·θ_true + heterogeneity·shift + noise·ε``.

    Parameters
    ----------
    num_samples : int
        Total number of samples, before the train/test split.
    dim : int
        Number of features ``d``.
    noise : float
        Standard deviation of the Gaussian label noise ``ε ~ N(0, 1)``; must be >= 0.
    seed : int
        Seed of the data (features, ``θ_true``, groups, noise).
    heterogeneity : float
        Size of the per-group target shift (0: none); must be >= 0. See Notes.
    test_fraction, split_seed
        The (non-stratified) train/test split, see :func:`train_test_split`.

    Returns
    -------
    Dataset
        ``x`` float32 ``[N, dim]`` with i.i.d. ``N(0, 1)`` entries, ``y`` float32 ``[N]``,
        ``num_classes=0``, ``name="least-squares"``.

    Notes
    -----
    ``θ_true ~ N(0, I/dim)`` so that ``x·θ_true`` has unit variance. With
    ``heterogeneity = h > 0`` each sample gets a uniformly random group ``g ∈ {0..9}`` and its
    target is shifted by ``h · c_g`` with ``c = linspace(-1, 1, 10)``. Partitioners group samples
    by :func:`labels_for_partition` (deciles of ``y``), which correlate with ``g``, so a
    non-iid partition gives nodes whose local optima differ more as ``h`` grows. Even with
    ``h = 0`` a label-skewed partition already makes local optima differ (selection on ``y``).

    The objective ``(1/2N) Σ (x_s·θ − y_s)²`` is strongly convex whenever ``X`` has full column
    rank, which holds almost surely for ``N >= dim``.
    """
    if num_samples < 2:
        raise DataError(f"num_samples must be >= 2, got {num_samples}")
    if dim < 1:
        raise DataError(f"dim must be >= 1, got {dim}")
    if noise < 0:
        raise DataError(f"noise must be >= 0, got {noise}")
    if heterogeneity < 0:
        raise DataError(f"heterogeneity must be >= 0, got {heterogeneity}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_samples, dim))
    theta_true = rng.standard_normal(dim) / np.sqrt(dim)
    groups = rng.integers(0, NUM_GROUPS, size=num_samples)
    shifts = heterogeneity * np.linspace(-1.0, 1.0, NUM_GROUPS)[groups]
    y = x @ theta_true + shifts + noise * rng.standard_normal(num_samples)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    x_train, y_train, x_test, y_test = train_test_split(xt, yt, test_fraction, split_seed)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=0, name="least-squares")


def labels_for_partition(y: torch.Tensor | np.ndarray, num_groups: int = NUM_GROUPS) -> np.ndarray:
    """Class-like labels for regression targets: the quantile bucket of each ``y``.

    Parameters
    ----------
    y : Tensor[N] or ndarray[N]
        Real-valued targets.
    num_groups : int
        Number of buckets (10 by default, deciles).

    Returns
    -------
    ndarray[N], int64
        Bucket ids in ``[0, num_groups)``, near-equal bucket sizes; lets the Dirichlet and extreme
        partitioners skew regression data by target value.
    """
    values = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    if values.ndim != 1:
        raise DataError(f"y must be one-dimensional, got shape {list(values.shape)}")
    if num_groups < 1:
        raise DataError(f"num_groups must be >= 1, got {num_groups}")
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(values.size)
    return (ranks * num_groups // max(values.size, 1)).astype(np.int64)


def least_squares_optimum(
    x: torch.Tensor,
    y: torch.Tensor,
    parts: Sequence[np.ndarray | torch.Tensor],
) -> tuple[torch.Tensor, float]:
    """Exact minimiser of the honest nodes' average least-squares loss.

    .. math::

        F(θ) = \\frac{1}{m} \\sum_{i=1}^{m} L_i(θ), \\qquad
        L_i(θ) = \\frac{1}{2|D_i|} \\sum_{s ∈ D_i} (x_s·θ − y_s)^2 .

    Parameters
    ----------
    x : Tensor[N, d]
        Features of the whole training set.
    y : Tensor[N]
        Targets.
    parts : list of int64 index arrays
        ``parts[i]`` indexes the samples ``D_i`` of honest node ``i`` (``m = len(parts)``).

    Returns
    -------
    theta_star : Tensor[d], float32
        The minimiser.
    loss_star : float
        ``F(θ*)``, computed in float64.

    Notes
    -----
    ``F`` is a weighted least-squares objective with weight ``w_s = 1 / (m |D_i|)`` on each sample
    of node ``i``: ``F(θ) = ½ Σ_s w_s (x_s·θ − y_s)²``. Its minimiser solves the weighted normal
    equations ``(Xᵀ W X) θ = Xᵀ W y``; we solve them in float64 as the equivalent least-squares
    problem on ``√W X``, ``√W y`` (:func:`numpy.linalg.lstsq`), which is better conditioned and
    returns the minimum-norm solution if ``X`` lacks full rank.
    """
    if len(parts) == 0:
        raise DataError("parts must hold at least one node's index array, got none")
    xs = x.detach().cpu().numpy().astype(np.float64)
    ys = y.detach().cpu().numpy().astype(np.float64)
    if xs.ndim != 2 or ys.shape != (xs.shape[0],):
        raise DataError(f"x must be [N, d] and y [N]; got {list(xs.shape)} and {list(ys.shape)}")
    index, weights = [], []
    for i, part in enumerate(parts):
        part = np.asarray(part.cpu().numpy() if isinstance(part, torch.Tensor) else part, dtype=np.int64)
        if part.size == 0:
            raise DataError(f"node {i} has no samples; every node needs at least one")
        index.append(part)
        weights.append(np.full(part.size, 1.0 / (len(parts) * part.size)))
    idx = np.concatenate(index)
    root_w = np.sqrt(np.concatenate(weights))
    a = xs[idx] * root_w[:, None]
    b = ys[idx] * root_w
    theta, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = a @ theta - b
    loss = 0.5 * float(residual @ residual)
    return torch.from_numpy(theta.astype(np.float32)), loss
