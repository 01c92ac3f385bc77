"""BLAS axpy (y += a x in one pass, no temporary) from the OpenBLAS that numpy's wheel ships.

numpy has no fused multiply-add, so `p -= lr * g` reads and writes memory twice; the optimizers
call `axpy` for large parameters and fall back to numpy when it returns False (another BLAS, an
odd layout, or TINYGRAD_MINI_BLAS=0 in the environment).
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

MIN_SIZE = 16384  # below this the ctypes call costs more than the pass it saves

# ILP64 symbol names (64-bit ints) of numpy's vendored OpenBLAS, newest naming first
_SYMBOLS = ("scipy_cblas_{}axpy64_", "cblas_{}axpy64_")


def _load() -> dict:
    """{dtype: C function} for float32 and float64, or {} when no usable library is found."""
    if os.environ.get("TINYGRAD_MINI_BLAS", "1") == "0":
        return {}
    root = os.path.dirname(np.__file__)
    patterns = ("*openblas*.so*", "*openblas*.dylib", "*openblas*.dll")
    for folder in (os.path.join(root, "..", "numpy.libs"), os.path.join(root, ".dylibs")):
        for path in sorted(p for pat in patterns for p in glob.glob(os.path.join(folder, pat))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for name in _SYMBOLS:
                try:
                    fns = {np.dtype(np.float32): getattr(lib, name.format("s")),
                           np.dtype(np.float64): getattr(lib, name.format("d"))}
                except AttributeError:
                    continue
                for dtype, fn in fns.items():
                    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
                    fn.argtypes = [ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64,
                                   ctypes.c_void_p, ctypes.c_int64]
                    fn.restype = None
                return fns
    return {}


_AXPY = _load()


def available() -> bool:
    """True when axpy runs in BLAS on this machine."""
    return bool(_AXPY)


def axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> bool:
    """y += alpha x in place in one BLAS pass; False (y untouched) when BLAS cannot take it."""
    fn = _AXPY.get(y.dtype)
    if (fn is None or y.size < MIN_SIZE or x.dtype != y.dtype or x.strides != y.strides
            or x.shape != y.shape or not y.flags.writeable
            or not (x.flags.aligned and y.flags.aligned)
            or not (y.flags.c_contiguous or y.flags.f_contiguous)
            or np.may_share_memory(x, y)):
        return False
    fn(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return True
