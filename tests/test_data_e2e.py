"""tinygrad_mini.data on the shared CIFAR-10 copy (TINYGRAD_MINI_DATA): counts, classes, shapes,
the reference split and where its mean image comes from. The archive is read once per module."""
import numpy as np
import pytest

from tinygrad_mini import Tensor
from tinygrad_mini.data import DataLoader, load_cifar10, sample_batches, split_cifar10

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def raw(cifar_path):
    # the shared copy's md5 is not the official one: an explicit path is used without the check
    return load_cifar10(cifar_path)


@pytest.fixture(scope="module")
def split(raw):
    return split_cifar10(*raw)


def test_counts_shapes_dtypes(raw):
    X_train, y_train, X_test, y_test = raw
    assert X_train.shape == (50000, 3, 32, 32) and X_test.shape == (10000, 3, 32, 32)
    assert X_train.dtype == X_test.dtype == np.uint8
    assert y_train.shape == (50000,) and y_test.shape == (10000,)
    assert y_train.dtype == y_test.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [1000] * 10)
    assert X_train.min() == 0 and X_train.max() == 255  # real pixels, not a constant fill
    assert X_train[:2000].std() > 40


def test_reference_split_sizes(split):
    assert split.X_train.shape == (49000, 3072) and split.y_train.shape == (49000,)
    assert split.X_val.shape == (1000, 3072) and split.y_val.shape == (1000,)
    assert split.X_test.shape == (1000, 3072) and split.y_test.shape == (1000,)
    assert split.X_test_full.shape == (10000, 3072) and split.y_test_full.shape == (10000,)
    assert split.X_train.dtype == np.float32 and split.y_val.dtype == np.int64


def test_split_takes_val_from_the_end_of_train(raw, split):
    X_train, y_train, X_test, y_test = raw
    np.testing.assert_array_equal(split.y_train, y_train[:49000])
    np.testing.assert_array_equal(split.y_val, y_train[49000:])
    np.testing.assert_array_equal(split.y_test, y_test[:1000])
    rows = X_train.reshape(50000, -1)
    np.testing.assert_allclose(split.X_val + split.mean_image, rows[49000:], atol=1e-3)


def test_mean_image_from_train_rows_only(raw, split):
    rows = raw[0].reshape(50000, -1)
    train_mean = rows[:49000].sum(axis=0, dtype=np.int64) / 49000
    all_mean = (rows.sum(axis=0, dtype=np.int64)
                + raw[2].reshape(10000, -1).sum(axis=0, dtype=np.int64)) / 60000
    np.testing.assert_allclose(split.mean_image, train_mean, rtol=1e-6)
    assert np.abs(split.mean_image - all_mean).max() > 1e-2  # the two are distinguishable
    np.testing.assert_allclose(split.X_train.mean(axis=0, dtype=np.float64), 0, atol=1e-3)
    assert 100 < train_mean.mean() < 150


def test_torch_normalisation_range(raw):
    s = split_cifar10(*raw, normalize="torch", num_test=None)
    assert s.X_train.min() == -1 and s.X_train.max() == 1 and s.mean_image is None
    assert s.X_test.shape == (10000, 3072)


def test_loader_and_sampling_on_real_rows(split):
    index = np.arange(49000)
    loader = DataLoader((split.X_train, index), 1000, shuffle=True, seed=0)
    order = []
    for xb, ib in loader:
        assert isinstance(xb, Tensor) and xb.shape == (len(ib), 3072)
        np.testing.assert_array_equal(xb.numpy()[:5], split.X_train[ib.numpy()[:5]])
        order.append(ib.numpy())
    assert len(loader) == len(order) == 49
    np.testing.assert_array_equal(np.sort(np.concatenate(order)), index)
    xb, yb = next(sample_batches(split.X_train, split.y_train, 200, 1, rng=0))
    assert xb.shape == (200, 3072) and yb.shape == (200,)
