"""Tests of p2probust.data: data sets, IDX reading, MNIST loading, synthetic least squares, tasks."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from p2probust.data import (
    DataError,
    Dataset,
    Task,
    find_mnist_files,
    labels_for_partition,
    least_squares_optimum,
    load_digits_dataset,
    load_mnist_dataset,
    make_least_squares,
    read_idx,
    train_test_split,
)
from p2probust.data.partition import dirichlet_partition, iid_partition
from p2probust.registry import tasks

SHARED_MNIST = Path(__file__).parents[2] / "shared" / "data" / "mnist"


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, codes[dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def write_mnist(folder: Path, *, n_train: int | None, n_test: int, compress: bool, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ext = ".gz" if compress else ""
    out = {}
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        if count is None:
            continue
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, compress=compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress=compress)
        out[prefix] = (images, labels)
    return out


# --- Dataset and split -------------------------------------------------------------------------


def test_digits_shapes_and_range():
    ds = load_digits_dataset()
    assert ds.num_classes == 10 and ds.name == "digits"
    assert ds.x_train.shape[1:] == (64,) and ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 1797
    assert abs(ds.x_test.shape[0] - 0.2 * 1797) <= 10
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    assert ds.feature_shape == (64,) and ds.classification


def test_digits_split_is_stratified_and_deterministic():
    a = load_digits_dataset(split_seed=3)
    b = load_digits_dataset(split_seed=3)
    c = load_digits_dataset(split_seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    train_frac = torch.bincount(a.y_train, minlength=10).double() / a.y_train.numel()
    test_frac = torch.bincount(a.y_test, minlength=10).double() / a.y_test.numel()
    assert torch.allclose(train_frac, test_frac, atol=0.01)


def test_train_test_split_disjoint_and_covering():
    x = torch.arange(100, dtype=torch.float32)[:, None]
    y = torch.arange(100) % 4
    x_tr, y_tr, x_te, y_te = train_test_split(x, y, 0.25, seed=0)
    assert sorted(torch.cat([x_tr, x_te]).flatten().tolist()) == list(range(100))
    assert torch.bincount(y_te).tolist() == [6, 6, 6, 6]  # round(0.25 * 25) per class
    assert torch.equal(y[x_te.flatten().long()], y_te)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_train_test_split_rejects_bad_fraction(fraction):
    with pytest.raises(DataError, match="test_fraction"):
        train_test_split(torch.zeros(10, 2), torch.zeros(10, dtype=torch.int64), fraction, seed=0)


def test_dataset_validates_dtypes():
    x = torch.zeros(4, 2)
    with pytest.raises(DataError, match="y_train"):
        Dataset(x, torch.zeros(4), x, torch.zeros(4, dtype=torch.int64), num_classes=2, name="bad")


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / "img", images, compress=compress))
    got_labels = read_idx(write_idx(tmp_path / "lab", labels, compress=compress))
    assert got_images.dtype == np.uint8 and np.array_equal(got_images, images)
    assert np.array_equal(got_labels, labels)


def test_read_idx_wider_types(tmp_path):
    ints = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    floats = np.linspace(-1, 1, 4, dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i", ints, compress=False)), ints)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.gz", floats, compress=True)), floats)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="magic"):
        read_idx(path)


def test_read_idx_bad_type_code_and_size(tmp_path):
    path = tmp_path / "code"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="type code"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 2, 2) + b"\x00\x00\x00")
    with pytest.raises(DataError, match="data bytes"):
        read_idx(path)


# --- MNIST -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_train_and_test(tmp_path, layout, compress):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    written = write_mnist(folder, n_train=30, n_test=20, compress=compress)
    assert len(find_mnist_files(tmp_path)) == 4
    ds = load_mnist_dataset(tmp_path)
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    images, labels = written["train"]
    expected = (torch.from_numpy(images).float() / 255.0 - 0.1307) / 0.3081
    assert torch.allclose(ds.x_train[:, 0], expected, atol=1e-6)
    assert ds.y_train.tolist() == labels.tolist()


def test_load_mnist_test_only_is_split(tmp_path):
    write_mnist(tmp_path, n_train=None, n_test=50, compress=True)
    a = load_mnist_dataset(tmp_path, test_fraction=0.2, split_seed=1)
    b = load_mnist_dataset(tmp_path, test_fraction=0.2, split_seed=1)
    assert a.x_train.shape[0] == 40 and a.x_test.shape[0] == 10
    assert torch.equal(a.x_train, b.x_train)
    assert sorted(torch.bincount(a.y_test, minlength=10).tolist()) == [1] * 10


def test_load_mnist_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist_dataset(tmp_path / "nowhere")


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte") as info:
        load_mnist_dataset(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST copy not present")
def test_load_shared_mnist():
    ds = load_mnist_dataset(SHARED_MNIST)
    assert ds.x_train.shape == (8000, 1, 28, 28) and ds.x_test.shape == (2000, 1, 28, 28)
    assert set(ds.y_train.unique().tolist()) == set(range(10))
    assert abs(float(ds.x_train.mean())) < 0.1 and abs(float(ds.x_train.std()) - 1.0) < 0.1


# --- synthetic least squares -------------------------------------------------------------------


def test_make_least_squares_shapes_and_determinism():
    a = make_least_squares(500, 7, 0.1, seed=2)
    b = make_least_squares(500, 7, 0.1, seed=2)
    assert a.x_train.shape == (400, 7) and a.y_train.dtype == torch.float32 and a.num_classes == 0
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    labels = labels_for_partition(a.y_train)
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [40] * 10
    # higher bucket, higher target
    y = a.y_train.numpy()
    assert all(y[labels == g].max() <= y[labels == g + 1].min() for g in range(9))


def _honest_gradient(x, y, parts, theta):
    grads = [x[p].T @ (x[p] @ theta - y[p]) / len(p) for p in parts]
    return np.mean(grads, axis=0)


def test_least_squares_optimum_is_stationary():
    ds = make_least_squares(600, 5, 0.5, seed=1, heterogeneity=2.0)
    parts = dirichlet_partition(labels_for_partition(ds.y_train), 6, seed=0, alpha=0.3)
    theta, loss = least_squares_optimum(ds.x_train, ds.y_train, parts[:4])
    x, y = ds.x_train.double().numpy(), ds.y_train.double().numpy()
    grad = _honest_gradient(x, y, parts[:4], theta.double().numpy())
    assert np.linalg.norm(grad) < 1e-4
    local = np.mean([0.5 * np.mean((x[p] @ theta.double().numpy() - y[p]) ** 2) for p in parts[:4]])
    assert loss == pytest.approx(local, rel=1e-5)
    # any perturbation is worse
    other = theta.double().numpy() + 0.01
    worse = np.mean([0.5 * np.mean((x[p] @ other - y[p]) ** 2) for p in parts[:4]])
    assert worse > loss


def test_least_squares_optimum_one_node_matches_lstsq():
    ds = make_least_squares(300, 4, 0.3, seed=5)
    parts = iid_partition(np.zeros(300 - 60), 1, seed=0)
    theta, loss = least_squares_optimum(ds.x_train, ds.y_train, parts)
    x, y = ds.x_train.double().numpy(), ds.y_train.double().numpy()
    ref, *_ = np.linalg.lstsq(x, y, rcond=None)
    assert np.allclose(theta.numpy(), ref, atol=1e-5)
    assert loss == pytest.approx(0.5 * np.mean((x @ ref - y) ** 2), rel=1e-6)


# --- tasks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", [("digits", {}), ("digits-mlp", {"hidden": 16}), ("least-squares", {"num_samples": 200, "dim": 3})])
def test_tasks_build_and_run(name, params):
    task = tasks.create(name, **params)
    assert isinstance(task, Task) and task.name == name
    assert task.partition_labels.shape == (task.dataset.x_train.shape[0],)
    model = task.make_model()
    out = model(task.dataset.x_train[:5])
    if task.classification:
        assert task.loss == "cross_entropy" and out.shape == (5, task.dataset.num_classes)
        assert task.optimum([np.arange(10)]) is None
    else:
        assert task.loss == "mse" and out.shape == (5,)
        theta, loss = task.optimum([np.arange(50), np.arange(50, 100)])
        assert theta.shape == (3,) and loss >= 0.0


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-logreg"])
def test_mnist_tasks_need_data_dir(name):
    with pytest.raises(DataError, match=f"task {name} needs --data-dir"):
        tasks.create(name)


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-logreg"])
def test_mnist_tasks_on_tiny_files(tmp_path, name):
    write_mnist(tmp_path, n_train=20, n_test=10, compress=True)
    task = tasks.create(name, data_dir=tmp_path)
    assert task.make_model()(task.dataset.x_train[:4]).shape == (4, 10)


def test_unknown_task_parameter_is_an_error():
    with pytest.raises(ValueError, match="task .digits. has no parameter .alpha.; its parameters"):
        tasks.create("digits", alpha=3)


def test_blobs_task_is_digits_sized_deterministic_and_scales():
    from p2probust import registry

    a = registry.tasks.create("blobs", num_samples=500)
    b = registry.tasks.create("blobs", num_samples=500)
    assert a.dataset.x_train.shape == (400, 64) and a.dataset.num_classes == 10
    assert torch.equal(a.dataset.x_train, b.dataset.x_train)
    assert sorted(set(a.partition_labels.tolist())) == list(range(10))
    with pytest.raises(DataError, match="num_samples"):
        registry.tasks.create("blobs", num_samples=5)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("mnist", lambda p: (p / 255.0 - 0.1307) / 0.3081),
        ("auto", lambda p: (p / 255.0 - 0.1307) / 0.3081),
        ("unit", lambda p: p / 255.0),
        ("symmetric", lambda p: p / 127.5 - 1.0),  # the IOS code's Normalize(mean=0.5, std=0.5)
        ("none", lambda p: p),
    ],
)
def test_mnist_normalize_options(tmp_path, kind, expected):
    written = write_mnist(tmp_path, n_train=12, n_test=8, compress=False)
    ds = load_mnist_dataset(tmp_path, normalize=kind)
    pixels = torch.from_numpy(written["train"][0]).double()
    assert torch.allclose(ds.x_train[:, 0].double(), expected(pixels), atol=1e-5)
    if kind == "symmetric":
        assert float(ds.x_train.min()) >= -1.0 and float(ds.x_train.max()) <= 1.0


def test_normalize_reaches_tasks_and_rejects_bad_values(tmp_path):
    write_mnist(tmp_path, n_train=12, n_test=8, compress=False)
    task = tasks.create("mnist-logreg", data_dir=str(tmp_path), normalize="unit")
    assert 0.0 <= float(task.dataset.x_train.min()) and float(task.dataset.x_train.max()) <= 1.0
    digits = tasks.create("digits", normalize="symmetric").dataset.x_train
    assert float(digits.min()) == -1.0 and float(digits.max()) == 1.0  # digits counts 0..16 → 2p/16 − 1
    assert torch.equal(tasks.create("digits").dataset.x_train, load_digits_dataset().x_train)
    with pytest.raises(DataError, match="data.normalize = 'zscore'"):
        load_mnist_dataset(tmp_path, normalize="zscore")
