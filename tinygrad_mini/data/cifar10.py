"""CIFAR-10 in its official python layout (a `cifar-10-batches-py/` folder or the .tar.gz, read
without extracting), validated batch by batch, found in or downloaded to the cache when no path is
given; the standard preprocessing and the reference 49,000 / 1,000 / 1,000 split."""
from __future__ import annotations

import codecs
import dataclasses
import io
import os
import pathlib
import pickle
import tarfile
import zlib
from typing import IO, Any, Callable

import numpy as np

from .download import check_cache_dir, default_cache_dir, download_url

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
DATA_ENV = "TINYGRAD_MINI_DATA"
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
NUM_CLASSES, ROW_SIZE, IMAGE_SHAPE = 10, 3072, (3, 32, 32)
NORMALIZATIONS = ("mean", "torch", "none")

_BATCH_NAMES = frozenset(TRAIN_BATCHES + (TEST_BATCH, "batches.meta"))
# the only globals a CIFAR pickle needs (numpy arrays, Python-3 bytes); anything else is refused,
# so a tampered archive cannot run code when unpickled
_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("codecs", "encode"): codecs.encode,
    ("builtins", "bytes"): bytes,
    ("__builtin__", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "bytearray"): bytearray,
}
for _module in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(_module + ".multiarray", "_reconstruct")] = np.zeros(1).__reduce__()[0]
    _SAFE_GLOBALS[(_module + ".multiarray", "scalar")] = np.float64(0).__reduce__()[0]
    _SAFE_GLOBALS[(_module + ".numeric", "_frombuffer")] = np.zeros(1).__reduce_ex__(5)[0]


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


# ------------------------------------------------------------------ where the data is
def _local_path(path: str | os.PathLike, what: str) -> pathlib.Path:
    """A folder or archive given explicitly: used as it is (no checksum)."""
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what}={str(p)!r} does not exist")
    if p.is_file():
        return p
    if any((p / name).is_file() for name in _BATCH_NAMES):
        return p
    if (p / FOLDER_NAME).is_dir():
        return p / FOLDER_NAME
    if (p / ARCHIVE_NAME).is_file():
        return p / ARCHIVE_NAME
    raise FileNotFoundError(f"{what}={str(p)!r} holds no CIFAR-10: expected data_batch_1..5 and "
                            f"test_batch, a {FOLDER_NAME}/ folder or {ARCHIVE_NAME}")


def cifar10_path(root: str | os.PathLike | None = None, *,
                 cache_dir: str | os.PathLike | None = None, download: bool = True,
                 url: str = URL, md5: str | None = MD5, timeout: float = 60.0,
                 progress: bool = True) -> pathlib.Path:
    """The folder or archive CIFAR-10 is read from, downloading it into the cache if needed.

    First match wins: `root`; `cache_dir`; $TINYGRAD_MINI_DATA; the cache directory
    ($TINYGRAD_MINI_CACHE, else ~/.cache/tinygrad_mini). `root` and $TINYGRAD_MINI_DATA are used
    as they are (no md5 check); in a cache directory `cifar-10-batches-py/` or
    `cifar-10-python.tar.gz` is used if present, else `url` is downloaded there and checked
    against `md5` (download=False raises FileNotFoundError instead).
    """
    if root is not None:
        return _local_path(root, "root")
    if cache_dir is None and os.environ.get(DATA_ENV):
        return _local_path(os.environ[DATA_ENV], f"${DATA_ENV}")
    cache = check_cache_dir(default_cache_dir() if cache_dir is None else cache_dir)
    for found in (cache / FOLDER_NAME, cache / ARCHIVE_NAME):
        if found.exists():
            return found
    if not download:
        raise FileNotFoundError(f"CIFAR-10 is not in the cache directory {str(cache)!r} (looked "
                                f"for {FOLDER_NAME}/ and {ARCHIVE_NAME}); pass download=True, a "
                                f"root path, or set {DATA_ENV}")
    check_cache_dir(cache, create=True)
    return download_url(url, cache / ARCHIVE_NAME, md5, timeout=timeout, progress=progress)


# ------------------------------------------------------------------ reading and validating
def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {x.shape}"
    return type(x).__name__


def _check_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(data uint8 (N, 3072), labels int64 (N,)) from one unpickled batch, or a ValueError."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; keys present: "
                         f"{sorted(map(str, batch))}")
    data, labels = batch["data"], batch["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == ROW_SIZE and data.shape[0] > 0):
        raise ValueError(f"{where}: 'data' must be a uint8 array of shape (N, {ROW_SIZE}) with "
                         f"N > 0, got {_describe(data)}")
    try:
        y = np.asarray(labels)
    except ValueError:
        y = np.asarray(labels, dtype=object)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"{where}: 'labels' must be a flat list of integers, got {_describe(y)}")
    if len(y) != len(data):
        raise ValueError(f"{where}: {len(y)} labels for {len(data)} images")
    bad = np.flatnonzero((y < 0) | (y >= NUM_CLASSES))
    if bad.size:
        raise ValueError(f"{where}: label {y[bad[0]]} at index {bad[0]} is out of range "
                         f"0..{NUM_CLASSES - 1}")
    return data, y.astype(np.int64)


def _unpickle(f: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = _SafeUnpickler(f, encoding="latin1").load()
    except MemoryError:
        raise
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean the same here
        raise ValueError(f"{where}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})") \
            from e
    return _check_batch(obj, where)


class _GunzipStream(io.RawIOBase):
    """A .gz file inflated on the fly in 1 MiB reads. Unlike tarfile's own gzip stream it lets
    zlib check the trailer (CRC-32 and length), so a corrupt archive cannot load silently."""

    def __init__(self, f: IO[bytes]):
        self._f, self._z = f, zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._out, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while self._pos == len(self._out) and not self._z.eof:
            data = self._z.unconsumed_tail or self._f.read(1 << 20)
            if not data:
                raise EOFError("the compressed file ended before its end-of-stream marker")
            self._out, self._pos = self._z.decompress(data, 1 << 22), 0
        n = min(len(buf), len(self._out) - self._pos)
        buf[:n] = memoryview(self._out)[self._pos:self._pos + n]
        self._pos += n
        return n


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error)


def _bad_archive_advice(path: pathlib.Path, cache_dir: str | os.PathLike | None) -> str:
    """The cache's own archive is downloaded again once deleted; any other file is the user's,
    so say what a valid one is instead of telling them to delete it."""
    cache = default_cache_dir() if cache_dir is None else pathlib.Path(cache_dir).expanduser()
    if path.resolve() == (cache / ARCHIVE_NAME).resolve():
        return "it is the download cache's copy: delete it and the next load downloads it again"
    return (f"expected the official python version, {ARCHIVE_NAME} ({URL}, md5 {MD5}), or the "
            f"{FOLDER_NAME}/ folder extracted from it")


def _read_archive(path: pathlib.Path, names: tuple[str, ...],
                  cache_dir: str | os.PathLike | None) -> dict:
    found: dict = {}
    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = io.BufferedReader(_GunzipStream(raw), 1 << 20) if is_gzip else raw
            # one pass in stream mode (random access into a .tar.gz would inflate it twice)
            with tarfile.open(fileobj=stream, mode="r|" if is_gzip else "r|*",
                              bufsize=1 << 20) as tf:
                for member in tf:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in names and base not in found:
                        found[base] = _unpickle(tf.extractfile(member), f"{path}:{member.name}")
            while is_gzip and stream.read(1 << 20):  # to the end, where the CRC is checked
                pass
    except _ARCHIVE_ERRORS as e:
        raise ValueError(f"{path}: not a readable CIFAR-10 archive, truncated or corrupt "
                         f"({type(e).__name__}: {e}); {_bad_archive_advice(path, cache_dir)}") \
            from e
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{path}: the archive has no batch file(s) {missing} "
                         f"(expected {FOLDER_NAME}/{missing[0]})")
    return found


def read_batches(path: str | os.PathLike, names: tuple[str, ...] = TRAIN_BATCHES + (TEST_BATCH,)
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (data uint8 (N, 3072), labels int64 (N,))} for the named batch files of a
    `cifar-10-batches-py` folder or a tar archive (.tar.gz/.tar/...) holding one."""
    return _read_batches(path, names, None)


def _read_batches(path: str | os.PathLike, names: tuple[str, ...],
                  cache_dir: str | os.PathLike | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """read_batches; cache_dir (None: the default) only decides the advice for a bad archive."""
    path = pathlib.Path(path)
    unknown = [n for n in names if n not in _BATCH_NAMES - {"batches.meta"}]
    if unknown or not names:
        raise ValueError(f"names must be among {TRAIN_BATCHES + (TEST_BATCH,)}, got {names!r}")
    if not path.is_dir():
        return _read_archive(path, tuple(names), cache_dir)
    batches = {}
    for name in names:
        file = path / name
        if not file.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch file {str(file)!r} is missing")
        with open(file, "rb") as f:
            batches[name] = _unpickle(f, str(file))
    return batches


def load_cifar10(root: str | os.PathLike | None = None, *, flatten: bool = False,
                 cache_dir: str | os.PathLike | None = None, download: bool = True,
                 url: str = URL, md5: str | None = MD5, timeout: float = 60.0,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test): uint8 images (N, 3, 32, 32) -- or rows (N, 3072) with
    flatten=True -- and int64 labels, 50,000 train then 10,000 test. Where the data comes from:
    see `cifar10_path`."""
    path = cifar10_path(root, cache_dir=cache_dir, download=download, url=url, md5=md5,
                        timeout=timeout, progress=progress)
    batches = _read_batches(path, TRAIN_BATCHES + (TEST_BATCH,), cache_dir)
    shape = (-1, ROW_SIZE) if flatten else (-1,) + IMAGE_SHAPE
    X_train = np.concatenate([batches[n][0] for n in TRAIN_BATCHES]).reshape(shape)
    y_train = np.concatenate([batches[n][1] for n in TRAIN_BATCHES])
    X_test, y_test = batches[TEST_BATCH]
    return X_train, y_train, X_test.reshape(shape), y_test


class CIFAR10:
    """torchvision-style dataset: item i is (image, label) with image uint8 (3, 32, 32) (CHW;
    torchvision's `.data` is HWC) and label an int; `transform`/`target_transform` apply to them."""

    classes = CLASSES

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True,
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 download: bool = True, *, cache_dir: str | os.PathLike | None = None,
                 url: str = URL, md5: str | None = MD5, timeout: float = 60.0,
                 progress: bool = True):
        path = cifar10_path(root, cache_dir=cache_dir, download=download, url=url, md5=md5,
                            timeout=timeout, progress=progress)
        names = TRAIN_BATCHES if train else (TEST_BATCH,)
        batches = _read_batches(path, names, cache_dir)
        self.data = np.concatenate([batches[n][0] for n in names]).reshape((-1,) + IMAGE_SHAPE)
        self.targets = np.concatenate([batches[n][1] for n in names])
        self.train, self.transform, self.target_transform = train, transform, target_transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"CIFAR10 index must be an int, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"CIFAR10 index {index} is out of range for {len(self)} images")
        image, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


# ------------------------------------------------------------------ preprocessing
def _float_dtype(dtype: Any) -> np.dtype:
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from None
    if d.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {d}")
    return d


def _check_images(X: Any, name: str) -> np.ndarray:
    if not isinstance(X, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(X).__name__}")
    if X.dtype.kind not in "uif":
        raise TypeError(f"{name} must hold real numbers (uint8 pixels or floats), got {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"{name} must have shape (N, ...) with one image per row, got {X.shape}")
    return X


def mean_image(X_train: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """m = (1/N) sum_i X_train[i], accumulated in float64 (never in uint8), returned as dtype."""
    X_train = _check_images(X_train, "X_train")
    if len(X_train) == 0:
        raise ValueError("mean_image needs at least one training image, got 0")
    return X_train.mean(axis=0, dtype=np.float64).astype(_float_dtype(dtype))


def normalize_torch(X: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """x' = (x/255 - 0.5)/0.5 in dtype, in torch's order (ToTensor then Normalize(0.5, 0.5))."""
    out = _check_images(X, "X").astype(_float_dtype(dtype))
    out /= 255
    out -= 0.5
    out /= 0.5
    return out


@dataclasses.dataclass
class CIFAR10Split:
    """Float inputs ready for training. X_test is the first num_test rows of X_test_full;
    mean_image (None unless normalize='mean') was computed on X_train's rows only."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    X_test_full: np.ndarray
    y_test_full: np.ndarray
    mean_image: np.ndarray | None
    normalize: str

    def as_dict(self) -> dict[str, Any]:
        """cs231n's get_CIFAR10_data keys (X_train, y_train, X_val, ...) plus the rest."""
        return dataclasses.asdict(self)


def _check_count(value: Any, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def split_cifar10(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                  y_test: np.ndarray, *, num_training: int = 49000, num_validation: int = 1000,
                  num_test: int | None = 1000, normalize: str = "mean", dtype: Any = np.float32,
                  flatten: bool = True) -> CIFAR10Split:
    """The reference split: train = the first num_training images, val = the next num_validation,
    test = the first num_test of the test set (None: all of it; X_test_full always holds all).

    normalize: 'mean' subtracts the mean image of the training rows only; 'torch' maps pixels to
    (x/255 - 0.5)/0.5; 'none' only converts. Pixels become `dtype` before any arithmetic.
    """
    X_train, X_test = _check_images(X_train, "X_train"), _check_images(X_test, "X_test")
    for name, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
            raise TypeError(f"y_{name} must be a 1-d integer array, got {_describe(y)}")
        if len(y) != len(X):
            raise ValueError(f"X_{name} has {len(X)} images but y_{name} has {len(y)} labels")
        bad = np.flatnonzero((y < 0) | (y >= NUM_CLASSES))
        if bad.size:  # never let a negative label wrap around to the last class later
            raise ValueError(f"y_{name}: label {y[bad[0]]} at index {bad[0]} is out of range "
                             f"0..{NUM_CLASSES - 1}")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(f"train images {X_train.shape[1:]} and test images {X_test.shape[1:]} "
                         f"differ in shape")
    _check_count(num_training, "num_training")
    _check_count(num_validation, "num_validation")
    _check_count(num_test, "num_test", allow_none=True)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    dtype = _float_dtype(dtype)
    if num_training + num_validation > len(X_train):
        raise ValueError(f"num_training={num_training} + num_validation={num_validation} exceeds "
                         f"the {len(X_train)} training images")
    num_test = len(X_test) if num_test is None else num_test
    if num_test > len(X_test):
        raise ValueError(f"num_test={num_test} exceeds the {len(X_test)} test images")
    if normalize == "mean" and num_training == 0:
        raise ValueError("normalize='mean' needs num_training >= 1 to compute the mean image")

    shape = (-1, int(np.prod(X_train.shape[1:]))) if flatten else (-1,) + X_train.shape[1:]
    end = num_training + num_validation
    parts = [X_train[:num_training], X_train[num_training:end], X_test]
    mean = None
    if normalize == "torch":
        parts = [normalize_torch(p, dtype) for p in parts]
    else:
        parts = [p.astype(dtype) for p in parts]
        if normalize == "mean":
            mean = mean_image(X_train[:num_training], dtype)
            for p in parts:
                p -= mean
            mean = mean.reshape(shape[1:])
    Xtr, Xval, Xte = (p.reshape(shape) for p in parts)
    return CIFAR10Split(X_train=Xtr, y_train=y_train[:num_training].astype(np.int64),
                        X_val=Xval, y_val=y_train[num_training:end].astype(np.int64),
                        X_test=Xte[:num_test], y_test=y_test[:num_test].astype(np.int64),
                        X_test_full=Xte, y_test_full=y_test.astype(np.int64), mean_image=mean,
                        normalize=normalize)


def get_cifar10_data(root: str | os.PathLike | None = None, *, num_training: int = 49000,
                     num_validation: int = 1000, num_test: int | None = 1000,
                     normalize: str = "mean", dtype: Any = np.float32, flatten: bool = True,
                     cache_dir: str | os.PathLike | None = None, download: bool = True,
                     url: str = URL, md5: str | None = MD5, timeout: float = 60.0,
                     progress: bool = True) -> CIFAR10Split:
    """load_cifar10 then split_cifar10: cs231n's get_CIFAR10_data with the same defaults."""
    raw = load_cifar10(root, cache_dir=cache_dir, download=download, url=url, md5=md5,
                       timeout=timeout, progress=progress)
    return split_cifar10(*raw, num_training=num_training, num_validation=num_validation,
                         num_test=num_test, normalize=normalize, dtype=dtype, flatten=flatten)
