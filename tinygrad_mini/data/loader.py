"""Batching: `DataLoader` (torch's arguments) over arrays or a Dataset, and the reference's
minibatches drawn with replacement. A shuffled epoch's order is a pure function of (seed, epoch),
so resuming exactly needs only the epoch and how many of its batches were already taken.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from ..tensor import Tensor


def _as_array(a: Any, where: str) -> np.ndarray:
    arr = a.data if isinstance(a, Tensor) else a
    if not isinstance(arr, np.ndarray):
        if not isinstance(arr, (list, tuple)):
            raise TypeError(f"{where} must be a numpy array, a Tensor or a list, "
                            f"got {type(a).__name__}")
        try:
            arr = np.asarray(arr)
        except ValueError as e:
            raise ValueError(f"{where} is a ragged list: {e}") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{where} must hold numbers or bools, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{where} must have a first (sample) dimension, got a 0-d array")
    return arr


def _as_arrays(arrays: tuple, owner: str) -> tuple[np.ndarray, ...]:
    if not arrays:
        raise ValueError(f"{owner} needs at least one array")
    out = tuple(_as_array(a, f"{owner} array {i}") for i, a in enumerate(arrays))
    lengths = [len(a) for a in out]
    if len(set(lengths)) > 1:
        raise ValueError(f"{owner}: arrays must have the same length, got lengths {lengths}")
    return out


class TensorDataset:
    """TensorDataset(*arrays): sample i is tuple(a[i] for a in arrays); first dims must match."""

    def __init__(self, *arrays: Any):
        self.arrays = _as_arrays(arrays, "TensorDataset")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)


def _stack(values: list, field: str) -> Tensor:
    arrays = [v.data if isinstance(v, Tensor) else np.asarray(v) for v in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"DataLoader: samples' {field} differ in shape: {sorted(shapes)}")
    return Tensor(np.stack(arrays))


def _collate(items: list) -> Any:
    """Samples that are tuples -> a tuple of stacked Tensors; anything else -> one Tensor."""
    first = items[0]
    if isinstance(first, (tuple, list)):
        sizes = {len(it) if isinstance(it, (tuple, list)) else -1 for it in items}
        if len(sizes) > 1:
            raise ValueError("DataLoader: samples differ in their number of fields")
        return tuple(_stack([it[k] for it in items], f"field {k}") for k in range(len(first)))
    return _stack(items, "values")


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class DataLoader:
    """Batches of Tensors over a tuple of equal-length arrays (X, y) -- batch = (X_b, y_b) --, one
    array or Tensor -- batch = X_b --, or a Dataset (`__len__`, `__getitem__`; samples collated).

    Without shuffling, array batches are views of the arrays (no copy). With shuffle=True epoch k
    visits `epoch_order(k)`, a permutation drawn from np.random.default_rng((seed, k)); a pass
    that is abandoned part-way counts as an epoch. `state_dict()` / `load_state_dict()` resume
    exactly, also mid-epoch. seed=None draws a fresh seed (readable as `.seed`).
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None):
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        if isinstance(dataset, tuple):
            self._arrays, self._single = _as_arrays(dataset, "DataLoader"), False
        elif isinstance(dataset, (np.ndarray, Tensor)):
            self._arrays, self._single = _as_arrays((dataset,), "DataLoader"), True
        elif isinstance(dataset, TensorDataset):
            self._arrays, self._single = dataset.arrays, False
        elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__") \
                and not isinstance(dataset, (dict, str, bytes)):  # no rows to index 0..n-1
            self._arrays, self._single = None, False
        else:
            raise TypeError(f"DataLoader needs a tuple of arrays, an array or a Dataset with "
                            f"__len__ and __getitem__, got {type(dataset).__name__}")
        self.dataset = dataset
        self.num_samples = len(self._arrays[0]) if self._arrays is not None else len(dataset)
        if self.num_samples == 0:
            raise ValueError("DataLoader: the dataset is empty (0 samples)")
        if not isinstance(shuffle, (bool, np.bool_)) or not isinstance(drop_last,
                                                                        (bool, np.bool_)):
            raise TypeError(f"shuffle and drop_last must be bools, got {shuffle!r}, {drop_last!r}")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) % 2**63
        self.seed = _check_int(seed, "seed", 0)
        self._epoch, self._batch, self._resume = 0, 0, False

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    @property
    def epoch(self) -> int:
        """The epoch in progress, or the next one if none is."""
        return self._epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample indices epoch `epoch` (0-based) visits, in order."""
        epoch = _check_int(epoch, "epoch", 0)
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng((self.seed, epoch)).permutation(self.num_samples)

    def __iter__(self) -> Iterator[Any]:
        if self._resume:
            self._resume = False
        elif self._batch > 0:  # the previous pass was abandoned part-way
            self._epoch, self._batch = self._epoch + 1, 0
        return self._run(self._epoch, self._batch)

    def _run(self, epoch: int, start: int) -> Iterator[Any]:
        order = self.epoch_order(epoch) if self.shuffle else None
        for b in range(start, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            batch = self._fetch(slice(lo, hi) if order is None else order[lo:hi])
            self._batch = b + 1
            yield batch
        self._epoch, self._batch = epoch + 1, 0

    def _fetch(self, index: slice | np.ndarray) -> Any:
        if self._arrays is not None:
            out = tuple(Tensor(a[index]) for a in self._arrays)
            return out[0] if self._single else out
        rows = range(self.num_samples)[index] if isinstance(index, slice) else index
        return _collate([self.dataset[int(i)] for i in rows])

    def state_dict(self) -> dict[str, int]:
        """{'seed', 'epoch', 'batch' (batches of that epoch already taken), 'num_samples',
        'batch_size'}; a finished epoch is saved as the start of the next one."""
        epoch, batch = self._epoch, self._batch
        if batch >= len(self):
            epoch, batch = epoch + 1, 0
        return {"seed": self.seed, "epoch": epoch, "batch": batch,
                "num_samples": self.num_samples, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`: the next pass starts at its epoch and batch."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        keys = {"seed", "epoch", "batch", "num_samples", "batch_size"}
        if set(state) != keys:
            raise ValueError(f"DataLoader state: missing keys {sorted(keys - set(state))}, "
                             f"unexpected keys {sorted(set(state) - keys)}")
        for key in ("num_samples", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"DataLoader state has {key}={state[key]!r} but this loader has "
                                 f"{key}={getattr(self, key)}")
        seed = _check_int(state["seed"], "state['seed']", 0)
        epoch = _check_int(state["epoch"], "state['epoch']", 0)
        batch = _check_int(state["batch"], "state['batch']", 0)
        if batch > len(self):
            raise ValueError(f"state['batch']={batch} exceeds the {len(self)} batches per epoch")
        self.seed, self._epoch, self._batch, self._resume = seed, epoch, batch, True


def sample_batches(X: Any, y: Any, batch_size: int, num_iters: int,
                   rng: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The reference's minibatches: each of num_iters iterations draws batch_size indices with
    replacement, `rng.choice(N, batch_size, replace=True)`, and yields numpy (X[idx], y[idx]).

    rng: None (fresh), an int seed, a np.random.Generator, or a np.random.RandomState (pass
    `np.random.RandomState(seed)` to match code that calls np.random.choice after np.random.seed).
    """
    X, y = _as_arrays((X, y), "sample_batches")
    batch_size = _check_int(batch_size, "batch_size", 1)
    num_iters = _check_int(num_iters, "num_iters", 0)
    if len(X) == 0:
        raise ValueError("sample_batches: the dataset is empty (0 samples)")
    if rng is None or isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(rng)
    elif not isinstance(rng, (np.random.Generator, np.random.RandomState)):
        raise TypeError(f"rng must be None, an int seed, a np.random.Generator or a "
                        f"np.random.RandomState, got {type(rng).__name__}")

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for _ in range(num_iters):
            idx = rng.choice(len(X), batch_size, replace=True)
            yield X[idx], y[idx]

    return batches()
