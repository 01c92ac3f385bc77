"""save/load of state dicts and checkpoints to .npz, without pickle, written atomically.

Each array is one `<path>.npy` member of the zip (a flat state dict's members are its keys, so
`np.load` reads the file too); the nesting around the arrays (dicts with str or int keys, lists,
tuples, numbers, strings, None) is stored as JSON in `__tree__.json`. That is enough for a full
checkpoint: model, optimizer and scheduler state dicts, the epoch, a numpy Generator's state.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from .._io import atomic_write
from ..tensor import Tensor
from .modules import Module

__all__ = ["save", "load"]

_TREE = "__tree__.json"


def _encode(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able skeleton of obj; its arrays go into `arrays` under their '/'-joined path."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if obj is None or isinstance(obj, (int, float, str)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biufcUS":
            raise TypeError(f"save: {path or 'the value'} has dtype {arr.dtype}, which cannot be "
                            "saved without pickle")
        name = path or "array"
        if name in arrays:
            raise ValueError(f"save: two entries map to the same file member {name!r} "
                             "(a key containing '/' clashes with a nested one)")
        arrays[name] = arr
        return {"__ndarray__": name}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"save: dict keys must be str or int, got {k!r} at "
                                f"{path or 'the top level'}")
            items.append([k, _encode(v, f"{path}/{k}" if path else str(k), arrays)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        kind = "__tuple__" if isinstance(obj, tuple) else "__list__"
        return {kind: [_encode(v, f"{path}/{i}" if path else str(i), arrays)
                       for i, v in enumerate(obj)]}
    raise TypeError(f"save: cannot save a {type(obj).__name__} at {path or 'the top level'} "
                    "(arrays, Tensors, numbers, strings, None, and dicts/lists/tuples of them)")


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        raise ValueError(f"unknown entry {node!r}")
    (kind, body), = node.items()
    if kind == "__ndarray__":
        if body not in arrays:
            raise ValueError(f"array member {body!r} is missing")
        return arrays[body]
    if kind == "__dict__":
        return {k: _decode(v, arrays) for k, v in body}
    if kind == "__list__":
        return [_decode(v, arrays) for v in body]
    if kind == "__tuple__":
        return tuple(_decode(v, arrays) for v in body)
    raise ValueError(f"unknown entry kind {kind!r}")


def save(obj: Module | dict, path: str | os.PathLike) -> None:
    """Write a Module's state_dict(), a state dict or a nested checkpoint dict to `path` (.npz).

    Atomic: the file appears under `path` only when complete; on any failure the previous file
    at `path` is untouched and no temporary file remains. The name is used as given (no suffix
    is added).
    """
    if isinstance(obj, Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a Module or a dict, got {type(obj).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save: path must be a str or os.PathLike, got {type(path).__name__}")
    arrays: dict[str, np.ndarray] = {}
    tree = json.dumps(_encode(obj, "", arrays))
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w") as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
            zf.writestr(_TREE, tree)


def load(path: str | os.PathLike) -> dict:
    """Read what save() wrote (or any pickle-free .npz): a state dict or the nested checkpoint.

    A missing file raises FileNotFoundError; a corrupt or truncated one, ValueError naming it.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load: path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint file at {path!r}")
    try:
        with zipfile.ZipFile(path) as zf:
            arrays, tree = {}, None
            for name in zf.namelist():
                if name == _TREE:
                    tree = json.loads(zf.read(name).decode("utf-8"))
                elif name.endswith(".npy"):
                    with zf.open(name) as member:
                        arrays[name[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
                else:
                    raise ValueError(f"unexpected member {name!r}")
        return arrays if tree is None else _decode(tree, arrays)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"load: {path!r} is not a readable checkpoint (corrupt or truncated?): "
                         f"{e}") from None
