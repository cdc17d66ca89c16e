r"""Input normalisation of pixel data sets (``[data] normalize``).

A pixel ``p`` in ``[0, P]`` (``P = 255`` for MNIST, ``16`` for the 8×8 digits) becomes

========== ================================ =====================================================
name       value                            used by
========== ================================ =====================================================
``mnist``  ``(p/P − 0.1307) / 0.3081``      torchvision's MNIST examples; the MNIST default here
``unit``   ``p / P`` (in ``[0, 1]``)        ``ToTensor()`` alone; the digits default here
``symmetric`` ``(p/P − 0.5) / 0.5`` (``[−1, 1]``) the IOS code (``Normalize(mean=[0.5], std=[0.5])``)
``none``   ``p`` (raw counts)
``auto``   the data set's default: ``mnist`` for MNIST, ``unit`` for digits
========== ================================ =====================================================

Reference for ``symmetric``: Z. Wu, T. Chen, Q. Ling, IEEE TSP 2023, code
github.com/Zhaoxian-Wu/IOS, ``ByrdLab/library/dataset.py`` (``get_mnist``).
"""

from __future__ import annotations

import typing

import torch

from p2probust.config.parts import Normalization
from p2probust.data.errors import DataError

__all__ = ["NORMALIZATIONS", "normalize_pixels"]

#: Mean and standard deviation of MNIST training pixels after scaling to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

NORMALIZATIONS = typing.get_args(Normalization)  # the one list: p2probust.config.parts


def normalize_pixels(pixels: torch.Tensor, max_value: float, kind: str, default: str) -> torch.Tensor:
    """``pixels`` (any shape, counts in ``[0, max_value]``) → float32 inputs by ``kind``.

    ``default`` is what ``"auto"`` means for this data set.
    """
    if kind not in NORMALIZATIONS:
        raise DataError(f"data.normalize = {kind!r} is invalid; expected one of: {', '.join(NORMALIZATIONS)}")
    kind = default if kind == "auto" else kind
    x = pixels.to(torch.float32)
    if kind == "none":
        return x
    x = x / max_value
    if kind == "mnist":
        return (x - MNIST_MEAN) / MNIST_STD
    if kind == "symmetric":
        return (x - 0.5) / 0.5
    return x
