"""MNIST from IDX files on disk (never downloaded).

MNIST is by Yann LeCun and Corinna Cortes (with Christopher Burges), released under the Creative
Commons Attribution-Share Alike 3.0 licence (CC BY-SA 3.0). Users bring their own copy: any folder
holding the four IDX files (gzip-compressed or not), or torchvision's cache layout
``<data_dir>/MNIST/raw/``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from p2probust.data.dataset import Dataset, train_test_split
from p2probust.data.errors import DataError
from p2probust.data.normalize import MNIST_MEAN, MNIST_STD, normalize_pixels

__all__ = ["MNIST_FILES", "MNIST_MEAN", "MNIST_STD", "find_mnist_files", "load_mnist_dataset", "read_idx"]

#: Key -> base file name of the four MNIST IDX files.
MNIST_FILES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the format of the MNIST distribution), gzip-compressed or not.

    Parameters
    ----------
    path : str or Path
        The file. Compression is detected from the gzip magic bytes ``0x1f 0x8b`` (or a ``.gz``
        suffix), so a decompressed file keeps working whatever its name.

    Returns
    -------
    np.ndarray
        Array with the file's dimensions and dtype in native byte order (``uint8`` for MNIST).

    Notes
    -----
    An IDX file starts with a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim``
    big-endian uint32 sizes, then the data in C order, big-endian. Type codes: 0x08 ubyte,
    0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

    References
    ----------
    .. [1] Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
       http://yann.lecun.com/exdb/mnist/ (file format description).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err.strerror or err}") from None
    if raw[:2] == _GZIP_MAGIC or path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"IDX file {path} is not valid gzip: {err}") from None
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is too short ({len(raw)} bytes) to hold a magic number")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"IDX file {path} has bad magic number 0x{raw[:4].hex()}; expected 0x0000<type><ndim>"
        )
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise DataError(f"IDX file {path} has unknown type code 0x{code:02x}; allowed: {known}")
    if ndim == 0:
        raise DataError(f"IDX file {path} declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header ({len(raw)} < {header} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} has {len(raw) - header} data bytes; dims {list(shape)} of "
            f"{dtype.name} need {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _candidates(data_dir: Path, base: str) -> list[Path]:
    return [d / f"{base}{ext}" for d in (data_dir, data_dir / "MNIST" / "raw") for ext in ("", ".gz")]


def find_mnist_files(data_dir: str | Path) -> dict[str, Path]:
    """Locate the MNIST IDX files under ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``),
        either directly or in torchvision's cache layout ``data_dir/MNIST/raw/``.

    Returns
    -------
    dict[str, Path]
        The files found, keyed by ``"train-images"``, ``"train-labels"``, ``"test-images"``,
        ``"test-labels"`` (see :data:`MNIST_FILES`); missing files are absent. The folder itself
        is searched before ``MNIST/raw/``, and an uncompressed file before its ``.gz``.

    Raises
    ------
    DataError
        If ``data_dir`` is not a folder.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(f"MNIST folder {data_dir} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for key, base in MNIST_FILES.items():
        for candidate in _candidates(data_dir, base):
            if candidate.is_file():
                found[key] = candidate
                break
    return found


def _load_split(files: dict[str, Path], prefix: str, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(files[f"{prefix}-images"])
    labels = read_idx(files[f"{prefix}-labels"])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{files[f'{prefix}-images']} holds shape {list(images.shape)}; expected [N, 28, 28]")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{files[f'{prefix}-labels']} holds shape {list(labels.shape)}; expected [{images.shape[0]}] "
            "to match the images"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{files[f'{prefix}-labels']} holds labels outside 0..9")
    x = normalize_pixels(torch.from_numpy(images).unsqueeze(1), 255.0, normalize, "mnist")
    return x, torch.from_numpy(labels.astype(np.int64))


def load_mnist_dataset(
    data_dir: str | Path, *, test_fraction: float = 0.2, split_seed: int = 0, normalize: str = "auto"
) -> Dataset:
    """MNIST from the IDX files in ``data_dir``, as a :class:`Dataset`.

    Parameters
    ----------
    data_dir : str or Path
        Folder holding the IDX files (see :func:`find_mnist_files`).
    test_fraction : float
        Used only when the training files are absent: fraction of the t10k set held out for
        testing (stratified).
    split_seed : int
        Seed of that split.
    normalize : str
        ``auto`` (= ``mnist``), ``mnist``, ``unit``, ``symmetric`` or ``none``
        (see :mod:`p2probust.data.normalize`).

    Returns
    -------
    Dataset
        ``x`` float32 ``[N, 1, 28, 28]``, ``y`` int64 ``[N]``, ``num_classes=10``,
        ``name="mnist"``.

    Notes
    -----
    By default pixels are scaled to ``[0, 1]`` (divided by 255), then standardised with the usual
    MNIST training mean 0.1307 and standard deviation 0.3081: ``x = (p / 255 - 0.1307) / 0.3081``;
    ``normalize`` picks another convention.

    If both the train and t10k files exist they are the train and test sets. If only the t10k
    files exist (as in the official 10,000-image test set shipped with this project), that set
    is split into train and test parts with ``split_seed``; the returned name says so
    (``"mnist-t10k-split"``).

    MNIST is by Yann LeCun and Corinna Cortes, CC BY-SA 3.0.

    References
    ----------
    .. [1] Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to
       document recognition", Proc. IEEE 86(11), 1998.
    """
    data_dir = Path(data_dir).expanduser()
    files = find_mnist_files(data_dir)
    has_test = "test-images" in files and "test-labels" in files
    has_train = "train-images" in files and "train-labels" in files
    if not has_test:
        looked = ", ".join(f"{b}[.gz]" for b in MNIST_FILES.values())
        raise DataError(
            f"no MNIST IDX files in {data_dir} or {data_dir / 'MNIST' / 'raw'}; looked for {looked} "
            "(at least the two t10k files are needed)"
        )
    x_test, y_test = _load_split(files, "test", normalize)
    if has_train:
        x_train, y_train = _load_split(files, "train", normalize)
        return Dataset(x_train, y_train, x_test, y_test, num_classes=10, name="mnist")
    x_train, y_train, x_test, y_test = train_test_split(x_test, y_test, test_fraction, split_seed)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10, name="mnist-t10k-split")
