"""Op-table tests: each op's forward against numpy, and its gradient three ways (a closed form
written here, central differences in float64, and PyTorch in float64), with a random upstream grad.

One OpCase row per op: the tinygrad_mini call, the numpy reference, the closed-form gradient and the
torch call, plus an input strategy kept away from kinks and poles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor
from tinygrad_mini.gradcheck import numerical_grad
from tinygrad_mini.testing import (broadcastable_shapes, class_labels, float_arrays, floats_away,
                                   matmul_shapes)


@dataclass(frozen=True)
class OpCase:
    name: str
    inputs: st.SearchStrategy  # draws (tuple of float arrays, dict of constant keyword args)
    tiny: Callable  # (*Tensors, **kw) -> Tensor
    ref: Callable  # (*ndarrays, **kw) -> ndarray, the numpy forward
    grad: Callable  # (G, *ndarrays, **kw) -> one closed-form gradient per array
    torch_fn: Callable  # (torch module, *torch tensors, **kw) -> torch tensor
    smooth: bool = True  # False where inputs sit on kinks on purpose (ties): no central differences


def _args(*arrays: st.SearchStrategy, **kw: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(st.tuples(*arrays), st.fixed_dictionaries(kw))


def _sum_to(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum g down to `shape` (the test's own un-broadcast): pad shape on the left with 1s, sum
    every axis where it is 1, then drop the padding."""
    padded = (1,) * (g.ndim - len(shape)) + tuple(shape)
    ones = tuple(i for i, n in enumerate(padded) if n == 1)
    return g.sum(axis=ones, keepdims=True).reshape(shape)


def _expand(g: np.ndarray, x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    """The upstream gradient of a reduction, reshaped so it broadcasts against x."""
    if axis is None:
        return np.reshape(g, (1,) * x.ndim)
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = sorted(a % x.ndim for a in axes)
    return g if keepdims else np.reshape(g, [1 if i in axes else n for i, n in enumerate(x.shape)])


# ---------------------------------------------------------------- input strategies

WIDE = dict(min_value=-3.0, max_value=3.0, away_from=())
NONZERO = dict(min_value=-3.0, max_value=3.0, away_from=(0.0,), margin=0.3)
POSITIVE = dict(min_value=0.2, max_value=3.0, away_from=())


@st.composite
def _pair(draw, x_kw=WIDE, y_kw=WIDE):
    sx, sy = draw(broadcastable_shapes(2))
    return (draw(float_arrays(sx, **x_kw)), draw(float_arrays(sy, **y_kw))), {}


@st.composite
def _with_const(draw, c_kw=WIDE, x_kw=WIDE):
    """x and a constant ndarray c of a broadcast-compatible shape."""
    sx, sc = draw(broadcastable_shapes(2))
    return (draw(float_arrays(sx, **x_kw)),), {"c": draw(float_arrays(sc, **c_kw))}


def _unary(**kw) -> st.SearchStrategy:
    return _args(float_arrays(**kw))


def _scalar_const(**kw) -> st.SearchStrategy:
    return _args(float_arrays(**WIDE), c=floats_away(-3, 3, **kw))


@st.composite
def _matmul(draw):
    sa, sb = draw(matmul_shapes())
    return (draw(float_arrays(sa, **WIDE)), draw(float_arrays(sb, **WIDE))), {}


@st.composite
def _affine(draw, bias=True):
    n, d, h = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    arrays = [draw(float_arrays((n, d), **WIDE)), draw(float_arrays((d, h), **WIDE))]
    if bias:
        arrays.append(draw(float_arrays((h,), **WIDE)))
    return tuple(arrays), {}


@st.composite
def _linear(draw):
    lead = draw(st.sampled_from([(), (2,)]))
    n, i, o = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return (draw(float_arrays(lead + (n, i), **WIDE)), draw(float_arrays((o, i), **WIDE)),
            draw(float_arrays((o,), **WIDE))), {}


@st.composite
def _axis_spec(draw, ndim: int, allow_tuple: bool = True):
    """None, an int in [-ndim, ndim), or a non-empty tuple of distinct axes."""
    choices = [st.none(), st.integers(-ndim, ndim - 1)]
    if allow_tuple:
        choices.append(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                unique=True).map(tuple))
    return draw(st.one_of(*choices))


@st.composite
def _reduction(draw, distinct=False, ties=False):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    if ties:
        x = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 0.0, 1.0])))
    else:
        x = draw(float_arrays(shape, distinct=distinct, **WIDE))
    return (x,), {"axis": draw(_axis_spec(len(shape))), "keepdims": draw(st.booleans())}


@st.composite
def _along_axis(draw, **kw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    return (draw(float_arrays(shape, **kw)),), {"axis": draw(st.integers(-len(shape),
                                                                         len(shape) - 1))}


@st.composite
def _cross_entropy(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (draw(float_arrays((n, c), min_value=-5.0, max_value=5.0, away_from=())),), {
        "target": draw(class_labels(n, c)),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


@st.composite
def _reshape(draw):
    x = draw(float_arrays(**WIDE))
    s = x.shape
    shape = draw(st.sampled_from([(-1,), s[::-1], (1,) + s, (x.size, 1)]))
    return (x,), {"shape": shape}


@st.composite
def _permute(draw):
    x = draw(float_arrays(**WIDE))
    return (x,), {"dims": tuple(draw(st.permutations(range(x.ndim))))}


@st.composite
def _swap(draw):
    x = draw(float_arrays(min_dims=1, **WIDE))
    return (x,), {"d0": draw(st.integers(-x.ndim, x.ndim - 1)),
                  "d1": draw(st.integers(-x.ndim, x.ndim - 1))}


@st.composite
def _flatten(draw):
    x = draw(float_arrays(min_dims=1, max_dims=4, max_side=3, **WIDE))
    s = draw(st.integers(0, x.ndim - 1))
    return (x,), {"start": s, "end": draw(st.integers(s, x.ndim - 1))}


def _no_negative_steps(idx) -> bool:
    parts = idx if isinstance(idx, tuple) else (idx,)
    return all(not isinstance(p, slice) or p.step is None or p.step > 0 for p in parts)


@st.composite
def _basic_index(draw):
    x = draw(float_arrays(min_dims=1, **WIDE))
    # torch has no negative-step slices, so they are left to numpy's own tests
    idx = draw(hnp.basic_indices(x.shape, allow_newaxis=True).filter(_no_negative_steps))
    return (x,), {"idx": idx}


@st.composite
def _int_array_index(draw):
    x = draw(float_arrays(min_dims=1, **WIDE))
    n = x.shape[0]
    idx = draw(hnp.arrays(np.int64, draw(st.integers(1, 6)), elements=st.integers(-n, n - 1)))
    return (x,), {"idx": idx}


@st.composite
def _int_array_and_slice(draw):
    x = draw(float_arrays(min_dims=2, **WIDE))
    n = x.shape[0]
    rows = draw(hnp.arrays(np.int64, draw(st.integers(1, 5)), elements=st.integers(0, n - 1)))
    return (x,), {"rows": rows, "cols": draw(st.slices(x.shape[1]).filter(_no_negative_steps))}


@st.composite
def _bool_mask(draw):
    x = draw(float_arrays(min_dims=1, **WIDE))
    full = draw(st.booleans())
    mshape = x.shape if full else x.shape[:1]
    return (x,), {"mask": draw(hnp.arrays(np.bool_, mshape))}


@st.composite
def _pow(draw):
    p = draw(st.sampled_from([2.0, 3.0, -1.0, 0.5, 1.5, -2.5]))
    x_kw = POSITIVE if p != int(p) or p < 0 else WIDE
    return (draw(float_arrays(**x_kw)),), {"p": p}


# ---------------------------------------------------------------- closed-form gradients

def _matmul_grads(g, a, b):
    """dA = G B^T, dB = A^T G, with 1-D operands promoted (as numpy) and batch dims summed."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = np.asarray(g)
    if b.ndim == 1:
        g2 = g2[..., None]
    if a.ndim == 1:
        g2 = g2[..., None, :]
    da = g2 @ np.swapaxes(b2, -1, -2)
    db = np.swapaxes(a2, -1, -2) @ g2
    return _sum_to(da, a2.shape).reshape(a.shape), _sum_to(db, b2.shape).reshape(b.shape)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _ce_forward(s, target, reduction):
    m = s.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
    losses = lse - s[np.arange(len(target)), target]
    return {"mean": losses.mean, "sum": losses.sum, "none": lambda: losses}[reduction]()


def _ce_grad(g, s, target, reduction):
    """(p - onehot(y)) / N for the mean, unscaled for the sum, row-scaled by g for none."""
    n = s.shape[0]
    delta = np.zeros_like(s)
    delta[np.arange(n), target] = 1.0
    if reduction == "none":
        scale = np.asarray(g)[:, None]
    else:
        scale = g / n if reduction == "mean" else g
    return ((_softmax(s, 1) - delta) * scale,)


def _max_grad(g, x, axis, keepdims):
    """The upstream grad shared evenly among the maxima of each slice."""
    hit = (x == x.max(axis=axis, keepdims=True)).astype(np.float64)
    return (_expand(g, x, axis, keepdims) * hit / hit.sum(axis=axis, keepdims=True),)


def _min_grad(g, x, axis, keepdims):
    hit = (x == x.min(axis=axis, keepdims=True)).astype(np.float64)
    return (_expand(g, x, axis, keepdims) * hit / hit.sum(axis=axis, keepdims=True),)


def _count(x, axis):
    if axis is None:
        return x.size
    axes = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([x.shape[a] for a in axes]))


def _scatter_rows(g, x, idx):
    """Gradient of x[idx] for an integer array idx, as an explicit loop: repeats add up."""
    dx = np.zeros_like(x)
    for j, i in enumerate(idx):
        dx[i] += g[j]
    return (dx,)


def _scatter_rows_cols(g, x, rows, cols):
    dx = np.zeros_like(x)
    for j, i in enumerate(rows):
        dx[i, cols] += g[j]
    return (dx,)


def _scatter_basic(g, x, idx):
    dx = np.zeros_like(x)
    dx[idx] += g  # a basic index selects each element at most once
    return (dx,)


def _scatter_mask(g, x, mask):
    dx = np.zeros_like(x)
    dx[mask] = g
    return (dx,)


def _t(torch, a):
    return torch.from_numpy(np.asarray(a))


def _torch_axis(axis):
    return axis if axis is not None else ()


def _torch_reduce(torch, name, x, axis, keepdims):
    if axis is None:
        out = getattr(torch, name)(x)
        return out.reshape((1,) * x.ndim) if keepdims else out
    return getattr(torch, name)(x, dim=axis, keepdim=keepdims)


def _torch_index(torch, x, idx):
    parts = idx if isinstance(idx, tuple) else (idx,)
    return x[tuple(_t(torch, p) if isinstance(p, np.ndarray) else p for p in parts)]


# ---------------------------------------------------------------- the table

LN2 = float(np.log(2.0))

OPS = [
    # binary, broadcasting
    OpCase("add", _pair(), lambda x, y: x + y, lambda x, y: x + y,
           lambda g, x, y: (_sum_to(g, x.shape), _sum_to(g, y.shape)),
           lambda torch, x, y: x + y),
    OpCase("sub", _pair(), lambda x, y: x - y, lambda x, y: x - y,
           lambda g, x, y: (_sum_to(g, x.shape), -_sum_to(g, y.shape)),
           lambda torch, x, y: x - y),
    OpCase("mul", _pair(), lambda x, y: x * y, lambda x, y: x * y,
           lambda g, x, y: (_sum_to(g * y, x.shape), _sum_to(g * x, y.shape)),
           lambda torch, x, y: x * y),
    OpCase("div", _pair(y_kw=NONZERO), lambda x, y: x / y, lambda x, y: x / y,
           lambda g, x, y: (_sum_to(g / y, x.shape), _sum_to(-g * x / y ** 2, y.shape)),
           lambda torch, x, y: x / y),
    # a constant ndarray on either side
    OpCase("add_ndarray_left", _with_const(), lambda x, c: c + x, lambda x, c: c + x,
           lambda g, x, c: (_sum_to(g, x.shape),), lambda torch, x, c: _t(torch, c) + x),
    OpCase("sub_ndarray_left", _with_const(), lambda x, c: c - x, lambda x, c: c - x,
           lambda g, x, c: (-_sum_to(g, x.shape),), lambda torch, x, c: _t(torch, c) - x),
    OpCase("mul_ndarray_right", _with_const(), lambda x, c: x * c, lambda x, c: x * c,
           lambda g, x, c: (_sum_to(g * c, x.shape),), lambda torch, x, c: x * _t(torch, c)),
    OpCase("div_ndarray_left", _with_const(x_kw=NONZERO), lambda x, c: c / x,
           lambda x, c: c / x, lambda g, x, c: (_sum_to(-g * c / x ** 2, x.shape),),
           lambda torch, x, c: _t(torch, c) / x),
    # Python scalars on either side
    OpCase("add_scalar", _scalar_const(away_from=()), lambda x, c: x + c, lambda x, c: x + c,
           lambda g, x, c: (g,), lambda torch, x, c: x + c),
    OpCase("radd_scalar", _scalar_const(away_from=()), lambda x, c: c + x, lambda x, c: c + x,
           lambda g, x, c: (g,), lambda torch, x, c: c + x),
    OpCase("sub_scalar", _scalar_const(away_from=()), lambda x, c: x - c, lambda x, c: x - c,
           lambda g, x, c: (g,), lambda torch, x, c: x - c),
    OpCase("rsub_scalar", _scalar_const(away_from=()), lambda x, c: c - x, lambda x, c: c - x,
           lambda g, x, c: (-g,), lambda torch, x, c: c - x),
    OpCase("mul_scalar", _scalar_const(away_from=()), lambda x, c: x * c, lambda x, c: x * c,
           lambda g, x, c: (g * c,), lambda torch, x, c: x * c),
    OpCase("rmul_scalar", _scalar_const(away_from=()), lambda x, c: c * x, lambda x, c: c * x,
           lambda g, x, c: (g * c,), lambda torch, x, c: c * x),
    OpCase("div_scalar", _scalar_const(margin=0.3), lambda x, c: x / c, lambda x, c: x / c,
           lambda g, x, c: (g / c,), lambda torch, x, c: x / c),
    OpCase("rdiv_scalar", _args(float_arrays(**NONZERO), c=floats_away(-3, 3, away_from=())),
           lambda x, c: c / x, lambda x, c: c / x, lambda g, x, c: (-g * c / x ** 2,),
           lambda torch, x, c: c / x),
    OpCase("neg", _unary(**WIDE), lambda x: -x, lambda x: -x, lambda g, x: (-g,),
           lambda torch, x: -x),
    OpCase("pow", _pow(), lambda x, p: x ** p, lambda x, p: x ** p,
           lambda g, x, p: (g * p * x ** (p - 1),), lambda torch, x, p: x ** p),
    OpCase("rpow", _unary(**WIDE), lambda x: 2.0 ** x, lambda x: 2.0 ** x,
           lambda g, x: (g * LN2 * 2.0 ** x,), lambda torch, x: 2.0 ** x),
    OpCase("sqrt", _unary(**POSITIVE), lambda x: x.sqrt(), np.sqrt,
           lambda g, x: (g / (2 * np.sqrt(x)),), lambda torch, x: x.sqrt()),
    # matmul and the affine layers
    OpCase("matmul", _matmul(), lambda a, b: a @ b, lambda a, b: a @ b, _matmul_grads,
           lambda torch, a, b: a @ b),
    OpCase("affine", _affine(), F.affine, lambda x, w, b: x @ w + b,
           lambda g, x, w, b: (g @ w.T, x.T @ g, g.sum(axis=0)),
           lambda torch, x, w, b: x @ w + b),
    OpCase("affine_no_bias", _affine(bias=False), F.affine, lambda x, w: x @ w,
           lambda g, x, w: (g @ w.T, x.T @ g), lambda torch, x, w: x @ w),
    OpCase("linear", _linear(), F.linear, lambda x, w, b: x @ w.T + b,
           lambda g, x, w, b: (g @ w, (g.reshape(-1, w.shape[0]).T @ x.reshape(-1, w.shape[1])),
                               g.reshape(-1, w.shape[0]).sum(axis=0)),
           lambda torch, x, w, b: torch.nn.functional.linear(x, w, b)),
    # unary
    OpCase("exp", _unary(**WIDE), lambda x: x.exp(), np.exp, lambda g, x: (g * np.exp(x),),
           lambda torch, x: x.exp()),
    OpCase("log", _unary(**POSITIVE), lambda x: x.log(), np.log, lambda g, x: (g / x,),
           lambda torch, x: x.log()),
    OpCase("relu", _unary(), F.relu, lambda x: np.maximum(x, 0.0),
           lambda g, x: (g * (x > 0),), lambda torch, x: torch.relu(x)),
    OpCase("leaky_relu", _args(float_arrays(), slope=st.sampled_from([0.01, 0.2])),
           lambda x, slope: F.leaky_relu(x, slope), lambda x, slope: np.where(x > 0, x, slope * x),
           lambda g, x, slope: (g * np.where(x > 0, 1.0, slope),),
           lambda torch, x, slope: torch.nn.functional.leaky_relu(x, slope)),
    OpCase("abs", _unary(), lambda x: x.abs(), np.abs, lambda g, x: (g * np.sign(x),),
           lambda torch, x: x.abs()),
    OpCase("tanh", _unary(**WIDE), F.tanh, np.tanh, lambda g, x: (g * (1 - np.tanh(x) ** 2),),
           lambda torch, x: torch.tanh(x)),
    OpCase("sigmoid", _unary(min_value=-8.0, max_value=8.0, away_from=()), F.sigmoid,
           lambda x: 1 / (1 + np.exp(-x)),
           lambda g, x: (g * np.exp(-x) / (1 + np.exp(-x)) ** 2,),
           lambda torch, x: torch.sigmoid(x)),
    # reductions
    OpCase("sum", _reduction(), lambda x, axis, keepdims: x.sum(axis, keepdims),
           lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims),
           lambda g, x, axis, keepdims: (np.broadcast_to(_expand(g, x, axis, keepdims),
                                                         x.shape),),
           lambda torch, x, axis, keepdims: x.sum(dim=_torch_axis(axis), keepdim=keepdims)),
    OpCase("mean", _reduction(), lambda x, axis, keepdims: x.mean(axis, keepdims),
           lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims),
           lambda g, x, axis, keepdims: (np.broadcast_to(_expand(g, x, axis, keepdims),
                                                         x.shape) / _count(x, axis),),
           lambda torch, x, axis, keepdims: x.mean(dim=_torch_axis(axis), keepdim=keepdims)),
    OpCase("max", _reduction(distinct=True), lambda x, axis, keepdims: x.max(axis, keepdims),
           lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), _max_grad,
           lambda torch, x, axis, keepdims: _torch_reduce(torch, "amax", x, axis, keepdims)),
    OpCase("max_ties", _reduction(ties=True), lambda x, axis, keepdims: x.max(axis, keepdims),
           lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), _max_grad,
           lambda torch, x, axis, keepdims: _torch_reduce(torch, "amax", x, axis, keepdims),
           smooth=False),
    OpCase("min", _reduction(distinct=True), lambda x, axis, keepdims: x.min(axis, keepdims),
           lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims), _min_grad,
           lambda torch, x, axis, keepdims: _torch_reduce(torch, "amin", x, axis, keepdims)),
    OpCase("min_ties", _reduction(ties=True), lambda x, axis, keepdims: x.min(axis, keepdims),
           lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims), _min_grad,
           lambda torch, x, axis, keepdims: _torch_reduce(torch, "amin", x, axis, keepdims),
           smooth=False),
    # reductions broadcast back against their input
    OpCase("center", _along_axis(**WIDE), lambda x, axis: x - x.mean(axis, keepdims=True),
           lambda x, axis: x - x.mean(axis=axis, keepdims=True),
           lambda g, x, axis: (g - g.mean(axis=axis, keepdims=True),),
           lambda torch, x, axis: x - x.mean(dim=axis, keepdim=True)),
    OpCase("normalize", _along_axis(**POSITIVE), lambda x, axis: x / x.sum(axis, keepdims=True),
           lambda x, axis: x / x.sum(axis=axis, keepdims=True),
           lambda g, x, axis: (g / x.sum(axis=axis, keepdims=True)
                               - (g * x).sum(axis=axis, keepdims=True)
                               / x.sum(axis=axis, keepdims=True) ** 2,),
           lambda torch, x, axis: x / x.sum(dim=axis, keepdim=True)),
    # softmax and the loss
    OpCase("softmax", _along_axis(**WIDE), lambda x, axis: F.softmax(x, axis), _softmax,
           lambda g, x, axis: (_softmax(x, axis) * (g - (g * _softmax(x, axis)).sum(
               axis=axis, keepdims=True)),),
           lambda torch, x, axis: torch.softmax(x, dim=axis)),
    OpCase("log_softmax", _along_axis(**WIDE), lambda x, axis: F.log_softmax(x, axis),
           lambda x, axis: np.log(_softmax(x, axis)),
           lambda g, x, axis: (g - _softmax(x, axis) * g.sum(axis=axis, keepdims=True),),
           lambda torch, x, axis: torch.log_softmax(x, dim=axis)),
    OpCase("cross_entropy", _cross_entropy(),
           lambda s, target, reduction: F.cross_entropy(s, target, reduction=reduction),
           _ce_forward, _ce_grad,
           lambda torch, s, target, reduction: torch.nn.functional.cross_entropy(
               s, _t(torch, target), reduction=reduction)),
    # movement
    OpCase("reshape", _reshape(), lambda x, shape: x.reshape(shape),
           lambda x, shape: x.reshape(shape), lambda g, x, shape: (g.reshape(x.shape),),
           lambda torch, x, shape: x.reshape(shape)),
    OpCase("permute", _permute(), lambda x, dims: x.permute(dims),
           lambda x, dims: np.transpose(x, dims),
           lambda g, x, dims: (np.transpose(g, [dims.index(i) for i in range(len(dims))]),),
           lambda torch, x, dims: x.permute(dims)),
    OpCase("transpose_two_dims", _swap(), lambda x, d0, d1: x.transpose(d0, d1),
           lambda x, d0, d1: np.swapaxes(x, d0, d1), lambda g, x, d0, d1: (np.swapaxes(g, d0, d1),),
           lambda torch, x, d0, d1: x.transpose(d0, d1)),
    OpCase("T", _args(float_arrays(min_dims=2, max_dims=2, **WIDE)), lambda x: x.T,
           lambda x: x.T, lambda g, x: (g.T,), lambda torch, x: x.T),
    OpCase("flatten", _flatten(), lambda x, start, end: x.flatten(start, end),
           lambda x, start, end: x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:]),
           lambda g, x, start, end: (g.reshape(x.shape),),
           lambda torch, x, start, end: x.flatten(start, end)),
    # indexing
    OpCase("index_basic", _basic_index(), lambda x, idx: x[idx], lambda x, idx: x[idx],
           _scatter_basic, lambda torch, x, idx: _torch_index(torch, x, idx)),
    OpCase("index_int_array", _int_array_index(), lambda x, idx: x[idx], lambda x, idx: x[idx],
           _scatter_rows, lambda torch, x, idx: x[_t(torch, idx)]),
    OpCase("index_int_array_and_slice", _int_array_and_slice(),
           lambda x, rows, cols: x[rows, cols], lambda x, rows, cols: x[rows, cols],
           _scatter_rows_cols, lambda torch, x, rows, cols: x[_t(torch, rows), cols]),
    OpCase("index_bool_mask", _bool_mask(), lambda x, mask: x[mask], lambda x, mask: x[mask],
           _scatter_mask, lambda torch, x, mask: x[_t(torch, mask)]),
]

IDS = [c.name for c in OPS]

# the dtype and NaN properties need fewer examples than the gradient checks
LIGHT = settings(max_examples=max(10, settings.default.max_examples // 2))


# ---------------------------------------------------------------- helpers

def _draw(case: OpCase, data) -> tuple:
    arrays, kw = data.draw(case.inputs, label="inputs")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    return arrays, kw, np.random.default_rng(seed)


def _autograd(case: OpCase, arrays, kw, rng) -> tuple:
    """(upstream grad G, the output, each input's .grad after out.backward(G))."""
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = case.tiny(*ts, **kw)
    g = np.asarray(rng.standard_normal(out.shape))
    out.backward(g)
    return g, out, [np.zeros_like(a) if t.grad is None else t.grad for t, a in zip(ts, arrays)]


def _close(actual, expected, rtol=1e-10, atol=1e-12, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("case", OPS, ids=IDS)
@given(data=st.data())
def test_forward_matches_numpy(case, data):
    arrays, kw, _ = _draw(case, data)
    out = case.tiny(*[Tensor(a) for a in arrays], **kw)
    assert isinstance(out, Tensor)
    assert out.dtype == np.float64
    _close(out.data, case.ref(*arrays, **kw), what=f"{case.name} forward")


@pytest.mark.parametrize("case", OPS, ids=IDS)
@given(data=st.data())
def test_grad_matches_closed_form(case, data):
    arrays, kw, rng = _draw(case, data)
    g, _, grads = _autograd(case, arrays, kw, rng)
    expected = case.grad(g, *arrays, **kw)
    assert len(expected) == len(arrays)
    for i, (got, want) in enumerate(zip(grads, expected)):
        assert got.dtype == np.float64
        _close(got, want, what=f"{case.name} d/d(input {i})")


@pytest.mark.parametrize("case", [c for c in OPS if c.smooth],
                         ids=[c.name for c in OPS if c.smooth])
@given(data=st.data())
def test_grad_matches_central_differences(case, data):
    arrays, kw, rng = _draw(case, data)
    g, _, grads = _autograd(case, arrays, kw, rng)
    work = [a.copy() for a in arrays]
    for i in range(len(work)):
        def phi(_x):
            return float(np.sum(case.tiny(*[Tensor(a) for a in work], **kw).data * g))
        num = numerical_grad(phi, work[i])
        _close(grads[i], num, rtol=1e-5, atol=1e-6, what=f"{case.name} d/d(input {i})")


@pytest.mark.torch
@pytest.mark.parametrize("case", OPS, ids=IDS)
@given(data=st.data())
def test_matches_torch_float64(case, data):
    torch = pytest.importorskip("torch")
    arrays, kw, rng = _draw(case, data)
    g, out, grads = _autograd(case, arrays, kw, rng)
    tt = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    tout = case.torch_fn(torch, *tt, **kw)
    _close(out.data, tout.detach().numpy(), what=f"{case.name} forward vs torch")
    tout.backward(torch.from_numpy(np.array(g, dtype=np.float64)))
    for i, (got, t) in enumerate(zip(grads, tt)):
        want = np.zeros_like(arrays[i]) if t.grad is None else t.grad.numpy()
        _close(got, want, what=f"{case.name} d/d(input {i}) vs torch")


@pytest.mark.parametrize("case", OPS, ids=IDS)
@LIGHT
@given(data=st.data())
def test_float32_stays_float32(case, data):
    arrays, kw, rng = _draw(case, data)
    ts = [Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    kw = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
          for k, v in kw.items()}
    out = case.tiny(*ts, **kw)
    assert out.dtype == np.float32, f"{case.name}: float32 in, {out.dtype} out"
    out.backward(np.asarray(rng.standard_normal(out.shape), dtype=np.float32))
    for t in ts:
        assert t.grad is None or t.grad.dtype == np.float32, f"{case.name}: grad {t.grad.dtype}"
    _close(out.data, case.ref(*arrays, **{k: v for k, v in kw.items()}), rtol=1e-4, atol=1e-4,
           what=f"{case.name} float32 forward")


@pytest.mark.parametrize("case", [c for c in OPS if not c.name.startswith("index")],
                         ids=[c.name for c in OPS if not c.name.startswith("index")])
@LIGHT
@given(data=st.data())
def test_nan_propagates_forward(case, data):
    """A NaN in an input comes out as NaN wherever numpy's forward has NaN, never as 0."""
    arrays, kw, _ = _draw(case, data)
    for i in range(len(arrays)):
        bad = [a.copy() for a in arrays]
        bad[i].flat[0] = np.nan
        with np.errstate(invalid="ignore"):
            want = np.isnan(case.ref(*bad, **kw))
            got = case.tiny(*[Tensor(a) for a in bad], **kw).data
        assert np.array_equal(np.isnan(got), want), f"{case.name}: NaN in input {i}"


@given(data=st.data())
def test_nan_propagates_through_indexing(data):
    """The selected NaN survives indexing (rows that do not select it stay finite)."""
    arrays, kw, _ = _draw(OPS[IDS.index("index_int_array")], data)
    x = arrays[0].copy()
    x.flat[0] = np.nan
    out = Tensor(x)[kw["idx"]].data
    assert np.array_equal(np.isnan(out), np.isnan(x[kw["idx"]]))


# ---------------------------------------------------------------- cross-entropy at extreme logits

def _ce_exact(s, target):
    """Per-sample loss computed in extended precision where that is possible."""
    s = s.astype(np.longdouble)
    m = s.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(axis=1))
    return (lse - s[np.arange(len(target)), target]).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_finite_and_exact_at_logits_1e4(dtype, reduction):
    s = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, 1e4]])
    target = np.array([0, 1, 2, 0])
    x = Tensor(s.astype(dtype), requires_grad=True)
    out = F.cross_entropy(x, target, reduction=reduction)
    per = _ce_exact(s, target)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    assert np.all(np.isfinite(out.data))
    np.testing.assert_allclose(out.data, want, rtol=1e-6)
    g = np.ones(out.shape, dtype=dtype)
    out.backward(g)
    assert np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(x.grad, _ce_grad(g.astype(np.float64), s, target, reduction)[0],
                               rtol=1e-6, atol=1e-12)


@pytest.mark.torch
def test_cross_entropy_at_logits_1e4_matches_torch():
    torch = pytest.importorskip("torch")
    s = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [3.0, -1e4, 1e4]])
    target = np.array([0, 1, 0])
    x = Tensor(s, requires_grad=True)
    F.cross_entropy(x, target).backward()
    ts = torch.tensor(s, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(ts, torch.from_numpy(target))
    tl.backward()
    np.testing.assert_allclose(F.cross_entropy(Tensor(s), target).item(), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(x.grad, ts.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- ops the engine trusts

def _exact_inputs(name: str, dtype, draw) -> tuple:
    """(the op, its input arrays) for an op marked `exact`, inputs drawn in `dtype`."""
    from tinygrad_mini import ops
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    n, d, h = (draw(st.integers(1, 4)) for _ in range(3))

    def arr(s, **kw):
        return draw(float_arrays(s, dtype=dtype, **(kw or WIDE)))

    if name == "Affine":
        wt, bias = draw(st.booleans()), draw(st.booleans())
        xs = [arr((n, d)), arr((h, d) if wt else (d, h))] + ([arr((h,))] if bias else [])
        return ops.Affine(wt), xs
    if name == "SoftmaxCrossEntropy":
        reduction = draw(st.sampled_from(["mean", "sum", "none"]))
        return ops.SoftmaxCrossEntropy(draw(class_labels(n, h)), reduction), [arr((n, h))]
    if name == "LeakyReLU":
        return ops.LeakyReLU(0.1), [arr(shape)]
    return getattr(ops, name)(), [arr(shape, **(POSITIVE if name == "Log" else {}))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_exact_ops_return_each_gradient_in_its_inputs_shape_and_dtype(dtype, data):
    """The engine skips un-broadcasting and casting after an op whose `exact` is True; this holds
    every such op to it, calling forward and backward directly (no engine in between)."""
    from tinygrad_mini import ops
    exact = sorted(c.__name__ for c in vars(ops).values()
                   if isinstance(c, type) and issubclass(c, ops.Function) and c.exact)
    assert exact == sorted(["Neg", "Exp", "Log", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Affine",
                            "SoftmaxCrossEntropy"]), "an op marked exact needs a case here"
    name = data.draw(st.sampled_from(exact), label="op")
    fn, xs = _exact_inputs(name, dtype, data.draw)
    fn.needs = [True] * len(xs)
    out = np.asarray(fn.forward(*xs))
    assert out.dtype == dtype
    g = np.asarray(np.random.default_rng(0).standard_normal(out.shape), dtype=dtype)
    grads = fn.backward(g)
    assert len(grads) >= len(xs) and all(gi is None for gi in grads[len(xs):])  # Affine: db
    for i, (gi, x) in enumerate(zip(grads, xs)):
        assert (np.shape(gi), np.asarray(gi).dtype) == (x.shape, x.dtype), f"{name} input {i}"
