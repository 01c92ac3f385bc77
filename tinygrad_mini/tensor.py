"""Tensor, the reverse-mode engine, and the ops composed from the primitives in ops.py.

The graph is made of `ops.Function` nodes; a Tensor only points at the node that made it, so the
arrays an intermediate Tensor holds are freed as soon as nothing but the graph would keep them.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import traceback
from heapq import heappop, heappush
from typing import Any, Iterator

import numpy as np

from . import ops
from .ops import Function

_state = {"grad": True, "anomaly": False, "dtype": np.dtype(np.float32)}
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_seq = itertools.count()  # creation order of graph nodes: the engine runs them newest first
_new = object.__new__
_ONE = {}  # dtype -> a read-only 1: the seed gradient of a scalar loss


def set_default_dtype(dtype) -> None:
    """Dtype given to Tensors made from Python scalars and lists of floats (float32 at start)."""
    d = np.dtype(dtype) if dtype is not None else None  # np.dtype(None) would be float64
    if d is None or d.kind != "f":
        raise TypeError(f"the default dtype must be a floating dtype, got {d}")
    _state["dtype"] = d


def get_default_dtype() -> np.dtype:
    return _state["dtype"]


def is_grad_enabled() -> bool:
    return _state["grad"]


class _FlagContext(contextlib.ContextDecorator):
    """Sets one engine flag inside a `with` block or a decorated function, then restores it."""

    key, value = "", False

    def __enter__(self):
        self._prev = _state[self.key]
        _state[self.key] = self.value
        return self

    def __exit__(self, *exc):
        _state[self.key] = self._prev
        return False


class no_grad(_FlagContext):
    """Inside `with no_grad():` ops build no graph and their results do not require grad."""

    key, value = "grad", False


class enable_grad(_FlagContext):
    key, value = "grad", True


class detect_anomaly(_FlagContext):
    """Inside, the first op whose forward or backward makes NaN/inf raises, naming the op and the
    line of user code that created it. Slower: every result is checked."""

    key, value = "anomaly", True


def _user_line() -> str:
    """The innermost stack frame outside this package, as 'file:line in func: code'."""
    for fr in reversed(traceback.extract_stack()):
        if not os.path.abspath(fr.filename).startswith(_PKG_DIR):
            return f"{fr.filename}:{fr.lineno} in {fr.name}: {fr.line}"
    return "<unknown>"


def _check_finite(arr: np.ndarray, what: str, fn: Function) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        where = getattr(fn, "trace", None) or "<unknown>"
        raise RuntimeError(f"anomaly: {fn.name} {what} produced {bad}; the op was created at {where}")


def _to_array(data: Any, dtype=None) -> np.ndarray:
    """An ndarray for Tensor(data): floating arrays keep their dtype, Python floats get the default."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, (bool, int, float, np.generic, list, tuple)):
        try:
            arr = np.asarray(data)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"Tensor data must be a rectangular nested list: {e}") from None
        if arr.dtype == np.float64 and not isinstance(data, np.generic) and dtype is None:
            arr = arr.astype(_state["dtype"])
    else:
        raise TypeError(f"Tensor data must be a numpy array, a list or a scalar, "
                        f"got {type(data).__name__}")
    if dtype is not None:
        dt = np.dtype(dtype)
        if arr.dtype.kind == "f" and dt.kind in "iu" and not np.isfinite(arr).all():
            raise ValueError(f"Tensor: cannot convert {arr[~np.isfinite(arr)].flat[0]} to "
                             f"integer dtype {dt}")
        if arr.dtype != dt:
            arr = arr.astype(dt)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"Tensor dtype must be floating, integer or bool, got {arr.dtype}")
    return arr


def _norm_axis(axis, ndim: int, op: str):
    """axis (int, tuple or None) checked against ndim and made non-negative."""
    if axis is None:
        return None
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -max(ndim, 1) <= a < max(ndim, 1):  # a 0-d tensor takes 0 and -1, as numpy
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(out) if isinstance(axis, (tuple, list)) else out[0]


def _reduce_axis(axis, ndim: int, op: str):
    """_norm_axis for a reduction: on a 0-d tensor, axis 0 or -1 is the whole tensor."""
    ax = _norm_axis(axis, ndim, op)
    return ax if ndim else None


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient of the broadcast shape back to an input's own shape (the one place it's done)."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _add_to_grad(leaf: "Tensor", g: np.ndarray) -> None:
    """leaf.grad += g in place, once .grad is checked: the user may have set it to anything."""
    cur = leaf.grad
    if type(cur) is not np.ndarray or cur.shape != leaf.data.shape \
            or cur.dtype != leaf.data.dtype:
        what = (f"an ndarray of shape {cur.shape} and dtype {cur.dtype}"
                if isinstance(cur, np.ndarray) else f"a {type(cur).__name__}")
        raise RuntimeError(f"backward: the .grad of a leaf of shape {leaf.shape} and dtype "
                           f"{leaf.dtype} is {what}; set it to None or to an array like the "
                           "leaf's before accumulating into it")
    cur += g


def _run_backward(root: Function, grad: np.ndarray, retain_graph: bool) -> None:
    """Run the nodes newest first. A node is always made after its inputs, so creation order is a
    topological order: when a node leaves the heap, every node that feeds it a gradient has run."""
    grads = {root: grad}
    heap = [(-root.seq, root)]
    anomaly = _state["anomaly"]
    while heap:
        fn = heappop(heap)[1]
        if fn.freed:
            raise RuntimeError(
                f"Trying to backward through the graph a second time ({fn.name} has already been "
                "freed); pass retain_graph=True to the first backward() if you need to")
        g = grads.pop(fn)
        exact = fn.exact
        for src, gi in zip(fn.srcs, fn.backward(g)):
            if gi is None or src is None:
                continue
            leaf = isinstance(src, Tensor)
            if not exact:
                want = src.data if leaf else src  # both have the shape and dtype gi must take
                if gi.shape != want.shape:
                    gi = _unbroadcast(gi, want.shape)
                if gi.dtype != want.dtype:
                    gi = gi.astype(want.dtype)
            if anomaly:
                _check_finite(gi, "backward", fn)
            if not leaf:
                if src in grads:
                    grads[src] = grads[src] + gi
                else:
                    grads[src] = gi
                    heappush(heap, (-src.seq, src))
            elif src.grad is not None:
                _add_to_grad(src, gi)
            elif gi is g or gi.base is not None or not gi.flags.writeable:
                # the first gradient is kept unless it may be another's array (or is a numpy
                # scalar, which a 0-d op gives: np.array makes it a 0-d array)
                src.grad = np.array(gi)
            else:
                src.grad = gi
        if not retain_graph:
            fn.release()


_NO_NEEDS = [(False,) * n for n in range(4)]  # what an op records when nothing needs a gradient


def _apply(fn: Function, *xs: "Tensor") -> "Tensor":
    """Run fn forward on the inputs' arrays and, if any input needs a gradient, link it in the graph."""
    arrays, needs, srcs = [], [], []  # a plain loop: list comprehensions cost a call each
    for x in xs:
        arrays.append(x.data)
        if x.requires_grad:  # True for every non-leaf
            needs.append(True)
            srcs.append(x._ctx or x)  # an edge to the node that made x, or to x itself for a leaf
        else:
            needs.append(False)
            srcs.append(None)
    record = True in needs and _state["grad"]
    fn.needs = needs if record else _NO_NEEDS[len(xs)]
    try:
        data = fn.forward(*arrays)
    except ValueError as e:
        shapes = " and ".join(str(x.shape) for x in xs)
        if "broadcast" in str(e):  # numpy's message, restated with the tensors' shapes
            raise ValueError(f"{fn.name}: shapes {shapes} cannot be broadcast together") from None
        raise ValueError(f"{fn.name}: {e} (input shapes {shapes})") from None
    except TypeError as e:  # e.g. numpy refusing '-' on bools
        dtypes = " and ".join(str(x.dtype) for x in xs)
        raise TypeError(f"{fn.name} is not defined for dtype {dtypes}: {e}") from None
    out = _new(Tensor)
    out.data = data
    out.grad = None
    if not record:
        out.requires_grad = False
        out._ctx = None
        return out
    fn.srcs = srcs
    fn.shape = data.shape
    fn.dtype = data.dtype
    fn.seq = next(_seq)
    fn.freed = False
    out.requires_grad = True
    out._ctx = fn
    if _state["anomaly"]:
        fn.trace = _user_line()
        _check_finite(np.asarray(data), "forward", fn)
    return out


class _Unsupported(TypeError):
    """An operand of a type Tensor ops do not take: the operator returns NotImplemented."""


class Tensor:
    """An n-d array with an optional gradient. Tensor(data, requires_grad=False, dtype=None)."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ndarray + Tensor -> Tensor
    __hash__ = object.__hash__  # == is elementwise, as in torch; identity hashing stays

    def __init__(self, data: Any, requires_grad: bool = False, dtype=None):
        arr = _to_array(data, dtype)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {arr.dtype}")
        self.data, self.grad, self.requires_grad, self._ctx = arr, None, bool(requires_grad), None

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        return self._ctx

    def numel(self) -> int:
        return int(self.data.size)

    def size(self, dim: int | None = None):
        """The shape (torch's size()), or one dimension of it."""
        d = None if dim is None else _norm_axis(dim, self.ndim, "size")
        if d is not None and self.ndim == 0:
            raise ValueError(f"size: a 0-d tensor has no dim {dim}")
        return self.shape if d is None else self.shape[d]

    def numpy(self) -> np.ndarray:
        return self.data

    def tolist(self):
        return self.data.tolist()

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only be changed on a leaf tensor")
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = f", dtype={self.dtype}" if self.dtype != np.float32 else ""
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tensor"]:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    # ------------------------------------------------------------ the engine
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf), contracted with grad (1 for a scalar), into each leaf's .grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no leaf of its "
                               "graph has requires_grad=True, or it was made under no_grad)")
        if grad is None:
            data = self.data
            if data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for a scalar output; this "
                                   f"tensor has shape {self.shape}: pass grad= of that shape")
            g = _ONE.get(data.dtype)
            if g is None:
                g = _ONE[data.dtype] = np.ones((), dtype=data.dtype)
                g.flags.writeable = False  # shared by all backwards: the engine never writes it
            if data.ndim:
                g = g.reshape(data.shape)  # (1, 1) for a loss of that shape
        else:
            g = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
            if g.dtype.kind not in "fiub":
                raise TypeError(f"backward: grad must be numeric, got dtype {g.dtype}")
            if g.shape != self.shape:
                raise ValueError(f"backward: grad has shape {g.shape} but the tensor has shape "
                                 f"{self.shape}")
            g = g.astype(self.dtype, copy=False)
        if self._ctx is None:
            if self.grad is None:
                self.grad = g.copy()  # g may be the caller's array
            else:
                _add_to_grad(self, g)
        else:
            _run_backward(self._ctx, g, retain_graph)

    # ------------------------------------------------------------ operands
    def _lift(self, other: Any) -> "Tensor":
        """A Tensor for the other operand; Python/numpy scalars take this tensor's float dtype."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float, np.generic)) and not isinstance(other, (bool, np.bool_)):
            if self.dtype.kind == "f":
                return Tensor(np.asarray(other, dtype=self.dtype))
            return Tensor(other)
        if isinstance(other, (np.ndarray, list, tuple, bool, np.bool_)):
            return Tensor(other)  # a bad dtype here raises a TypeError naming it
        raise _Unsupported(f"unsupported operand type {type(other).__name__} for a Tensor op")

    def _binary(self, fn: Function, other: Any, reverse: bool = False) -> "Tensor":
        try:
            y = self._lift(other)
        except _Unsupported:
            return NotImplemented
        x = self
        if x.dtype.kind != "f" and y.dtype.kind == "f" and y.ndim == 0 and not isinstance(other, Tensor):
            x = Tensor(x.data.astype(_state["dtype"]))  # int tensor * 0.5 -> default float, as torch
            y = Tensor(y.data.astype(_state["dtype"]))
        return _apply(fn, y, x) if reverse else _apply(fn, x, y)

    def __add__(self, other): return self._binary(ops.Add(), other)
    def __radd__(self, other): return self._binary(ops.Add(), other, reverse=True)
    def __mul__(self, other): return self._binary(ops.Mul(), other)
    def __rmul__(self, other): return self._binary(ops.Mul(), other, reverse=True)
    def __truediv__(self, other): return self._binary(ops.Div(), other)
    def __rtruediv__(self, other): return self._binary(ops.Div(), other, reverse=True)
    def __neg__(self): return _apply(ops.Neg(), self)

    def __sub__(self, other):
        """x - y = x + (-y)"""
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return self + (-other)
        try:
            return self + (-self._lift(other))
        except _Unsupported:
            return NotImplemented

    def __rsub__(self, other):
        """y - x = (-x) + y"""
        return (-self)._binary(ops.Add(), other, reverse=True)

    def __pow__(self, p):
        """x ** p for a constant exponent p"""
        if isinstance(p, Tensor):
            raise TypeError("Tensor exponents are not supported: write (p * x.log()).exp()")
        if not isinstance(p, (int, float, np.integer, np.floating)) or isinstance(p, bool):
            return NotImplemented
        x = self._floating() if isinstance(p, (float, np.floating)) else self  # int ** 0.5: float
        return _apply(ops.Pow(float(p)), x)

    def __rpow__(self, base):
        """b ** x = exp(x ln b) for a constant base b"""
        if not isinstance(base, (int, float, np.integer, np.floating)) or isinstance(base, bool):
            return NotImplemented
        return (self * float(np.log(base))).exp()

    def __matmul__(self, other):
        try:
            return matmul(self, self._lift(other))
        except _Unsupported:
            return NotImplemented

    def __rmatmul__(self, other):
        try:
            return matmul(self._lift(other), self)
        except _Unsupported:
            return NotImplemented

    # comparisons give bool tensors with no gradient, as in torch
    def _compare(self, ufunc, other):
        if not isinstance(other, (Tensor, np.ndarray, list, tuple, int, float, np.generic)):
            return NotImplemented  # t == "a" is False and t < None a TypeError, as for any object
        y = other.data if isinstance(other, Tensor) else np.asarray(other)
        try:
            return Tensor(ufunc(self.data, y))
        except ValueError as e:
            raise ValueError(f"{ufunc.__name__}: shapes {self.shape} and {y.shape} cannot be "
                             f"broadcast together" if "broadcast" in str(e) else
                             f"{ufunc.__name__}: {e} (shapes {self.shape}, {y.shape})") from None
        except TypeError:
            raise TypeError(f"{ufunc.__name__}: cannot compare a {self.dtype} tensor with "
                            f"{type(other).__name__} of dtype {y.dtype}") from None

    def __eq__(self, other): return self._compare(np.equal, other)  # type: ignore[override]
    def __ne__(self, other): return self._compare(np.not_equal, other)  # type: ignore[override]
    def __lt__(self, other): return self._compare(np.less, other)
    def __le__(self, other): return self._compare(np.less_equal, other)
    def __gt__(self, other): return self._compare(np.greater, other)
    def __ge__(self, other): return self._compare(np.greater_equal, other)

    # ------------------------------------------------------------ unary
    def _floating(self) -> "Tensor":
        """self, or an integer/bool tensor's values in the default float dtype (as torch)."""
        return self if self.dtype.kind == "f" else Tensor(self.data.astype(_state["dtype"]))

    def exp(self) -> "Tensor": return _apply(ops.Exp(), self._floating())
    def log(self) -> "Tensor": return _apply(ops.Log(), self._floating())
    def relu(self) -> "Tensor": return _apply(ops.ReLU(), self)
    def tanh(self) -> "Tensor": return _apply(ops.Tanh(), self._floating())
    def sigmoid(self) -> "Tensor": return _apply(ops.Sigmoid(), self._floating())

    def leaky_relu(self, negative_slope: float = 0.01) -> "Tensor":
        if not isinstance(negative_slope, (int, float, np.integer, np.floating)) \
                or isinstance(negative_slope, bool):
            raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
        return _apply(ops.LeakyReLU(float(negative_slope)), self)

    def sqrt(self) -> "Tensor":
        """sqrt x = x ** 0.5"""
        return self ** 0.5

    def abs(self) -> "Tensor":
        """|x| = relu(x) + relu(-x)   (|x|'(0) is taken as 0)"""
        return self.relu() + (-self).relu()

    # ------------------------------------------------------------ reduce
    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> "Tensor":
        axis, keepdims = (dim if dim is not None else axis), (keepdims if keepdim is None else keepdim)
        return _apply(ops.Sum(_reduce_axis(axis, self.ndim, "sum"), bool(keepdims)), self)

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> "Tensor":
        """mean = sum / n"""
        axis, keepdims = (dim if dim is not None else axis), (keepdims if keepdim is None else keepdim)
        ax = _reduce_axis(axis, self.ndim, "mean")
        if ax is None:
            n = self.data.size
        else:
            n = int(np.prod([self.shape[a] for a in (ax if isinstance(ax, tuple) else (ax,))]))
        if self.dtype.kind != "f":
            raise TypeError(f"mean needs a floating tensor, got dtype {self.dtype}")
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum(ax, keepdims) / n

    def max(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> "Tensor":
        """The maximum (torch's amax: a Tensor, not (values, indices)); ties share the gradient."""
        axis, keepdims = (dim if dim is not None else axis), (keepdims if keepdim is None else keepdim)
        ax = _reduce_axis(axis, self.ndim, "max")
        if self.data.size == 0:
            raise ValueError(f"max of an empty tensor (shape {self.shape}) has no value")
        return _apply(ops.Max(ax, bool(keepdims)), self)

    amax = max

    def min(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> "Tensor":
        """min x = -max(-x)"""
        return -((-self).max(axis, keepdims, dim=dim, keepdim=keepdim))

    amin = min

    def argmax(self, axis=None, keepdims: bool = False) -> "Tensor":
        """Indices of the maxima (an integer tensor, no gradient)."""
        ax = _reduce_axis(axis, self.ndim, "argmax")
        if self.data.size == 0:
            raise ValueError(f"argmax of an empty tensor (shape {self.shape})")
        return Tensor(np.argmax(self.data, axis=ax, keepdims=keepdims))

    def softmax(self, axis: int = -1) -> "Tensor":
        """softmax x = exp(log_softmax x)"""
        return self.log_softmax(axis).exp()

    def log_softmax(self, axis: int = -1) -> "Tensor":
        return _apply(ops.LogSoftmax(_norm_axis(axis, self.ndim, "log_softmax")), self._floating())

    # ------------------------------------------------------------ movement
    def reshape(self, *shape) -> "Tensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
            raise TypeError(f"reshape: the shape must be ints, got {shape!r}")
        shape = tuple(int(s) for s in shape)
        if shape == self.shape:
            return self
        try:
            return _apply(ops.Reshape(shape), self)
        except ValueError:
            raise ValueError(f"reshape: a tensor of shape {self.shape} ({self.data.size} elements) "
                             f"cannot take the shape {shape}") from None

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        """Merge dims start_dim..end_dim into one (torch's flatten)."""
        if self.ndim == 0:
            return self.reshape(1)
        s = _norm_axis(start_dim, self.ndim, "flatten")
        e = _norm_axis(end_dim, self.ndim, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(self.shape[:s] + (-1,) + self.shape[e + 1:])

    def unsqueeze(self, dim: int) -> "Tensor":
        d = _norm_axis(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim: int | None = None) -> "Tensor":
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        d = _norm_axis(dim, self.ndim, "squeeze")
        if self.ndim == 0 or self.shape[d] != 1:  # a 0-d tensor's dim 0 or -1: nothing to drop
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1:])

    def permute(self, *dims) -> "Tensor":
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        axes = _norm_axis(tuple(dims), self.ndim, "permute")
        if len(axes) != self.ndim:
            raise ValueError(f"permute: {dims!r} is not a permutation of the {self.ndim} dims")
        return _apply(ops.Permute(axes), self)

    def transpose(self, *dims) -> "Tensor":
        """No argument: reverse the dims (as .T); two: swap them (torch's transpose(dim0, dim1))."""
        if not dims:
            return self.permute(tuple(range(self.ndim))[::-1])
        if len(dims) != 2:
            raise ValueError(f"transpose takes no dims or two dims to swap, got {dims!r}; "
                             "use permute() for a full permutation")
        d0 = _norm_axis(dims[0], self.ndim, "transpose")
        d1 = _norm_axis(dims[1], self.ndim, "transpose")
        axes = list(range(self.ndim))
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return self.permute(tuple(axes))

    @property
    def T(self) -> "Tensor":
        return self.transpose()

    def __getitem__(self, idx) -> "Tensor":
        idx = _index_arrays(idx)
        try:
            self.data[idx]  # validate first so the error names the tensor's shape
        except IndexError as e:
            raise IndexError(f"index {idx!r} is invalid for a tensor of shape {self.shape}: {e}") from None
        return _apply(ops.Index(idx), self)


def _index_arrays(idx):
    """Tensors inside an index become their arrays."""
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    return idx


def matmul(x: Tensor, y: Tensor) -> Tensor:
    """x @ y with numpy's rules: 2-D, batched (broadcast batch dims), and 1-D operands promoted."""
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul needs at least 1-D operands, got shapes {x.shape} and {y.shape}")
    kx = x.shape[-1]
    ky = y.shape[-2] if y.ndim > 1 else y.shape[0]
    if kx != ky:
        raise ValueError(f"matmul: shapes {x.shape} and {y.shape} do not match "
                         f"({kx} columns vs {ky} rows)")
    if x.ndim == 1:
        out = matmul(x.reshape(1, kx), y)  # (1, K) @ (..., K, P) -> (..., 1, P); 1-D y: (1,)
        return out.squeeze(-2) if y.ndim > 1 else out.reshape(())
    if y.ndim == 1:
        return matmul(x, y.reshape(ky, 1)).squeeze(-1)
    return _apply(ops.MatMul(), x, y)


def affine(x: Tensor, w: Tensor, b: Tensor | None = None, *, wt: bool = False) -> Tensor:
    """x @ w + b (w (D, H)), or x @ w.T + b with w (H, D) when wt; one fused primitive."""
    xs, ws = x.data.shape, w.data.shape
    if len(xs) != 2 or len(ws) != 2:
        raise ValueError(f"{_op_name(wt)} needs a 2-D input and a 2-D weight, got shapes {xs} "
                         f"and {ws}")
    d_in, h = (ws[1], ws[0]) if wt else ws
    if xs[1] != d_in:
        raise ValueError(f"{_op_name(wt)}: input of shape {xs} does not match weight of shape "
                         f"{ws} ({xs[1]} features vs {d_in})")
    if x.data.dtype != w.data.dtype:  # as torch: no silent up-cast (or int input) in a layer
        raise TypeError(f"{_op_name(wt)}: input dtype {x.dtype} does not match weight dtype "
                        f"{w.dtype}; convert the input, e.g. Tensor(x, dtype=np.{w.dtype})")
    if b is None:
        return _apply(ops.Affine(wt), x, w)
    if b.data.shape != (h,):
        raise ValueError(f"{_op_name(wt)}: bias of shape {b.shape} does not match weight of "
                         f"shape {ws} (expected ({h},))")
    if b.data.dtype != w.data.dtype:
        raise TypeError(f"{_op_name(wt)}: bias dtype {b.dtype} does not match weight dtype "
                        f"{w.dtype}")
    return _apply(ops.Affine(wt), x, w, b)


def _op_name(wt: bool) -> str:
    return "linear" if wt else "affine"  # errors name the function the user called


def as_tensor(x: Any, name: str = "input") -> Tensor:
    """x if it is a Tensor, else Tensor(x) (no copy for an ndarray)."""
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """mean_n [logsumexp(s_n) - s_n[y_n]] for logits s (N, C) and class indices y (N,)."""
    logits = as_tensor(logits, "cross_entropy logits")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    s = logits.data
    if s.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, C), got shape {s.shape}")
    if s.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating, got dtype {s.dtype}")
    n, c = s.shape
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        bad = ""
        if t.dtype.kind == "f" and t.size:
            frac = t[t != np.round(t)]
            bad = f" (e.g. {(frac if frac.size else t).flat[0].item()!r})"
        raise ValueError(f"cross_entropy: target must hold integer class indices, got dtype "
                         f"{t.dtype}{bad}")
    if t.shape != (n,):
        raise ValueError(f"cross_entropy: target must have shape ({n},) to match logits of shape "
                         f"{s.shape}, got {t.shape}")
    if c == 0:
        raise ValueError(f"cross_entropy: logits of shape {s.shape} have no classes")
    if n:
        if n <= 32:  # a few labels: Python's min and max cost less than two numpy calls
            labels = t.tolist()
            bad = min(labels) < 0 or max(labels) >= c
        else:
            bad = int(t.min()) < 0 or int(t.max()) >= c
        if bad:
            i = int(np.argmax((t < 0) | (t >= c)))
            raise ValueError(f"cross_entropy: target value {int(t[i])} at position {i} is out of "
                             f"range for {c} classes (valid: 0..{c - 1})")
    return _apply(ops.SoftmaxCrossEntropy(t, reduction), logits)
