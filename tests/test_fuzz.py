"""Fuzzing the public API with hypothesis: generated shapes, dtypes and values, valid and invalid.

Each test states an oracle written independently of the library (numpy, or the documented rule)
and asserts "the right result, or the documented exception whose message names the offending
argument, value or shape" -- never an internal IndexError/KeyError/AttributeError."""
from __future__ import annotations

import math
import operator
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor, nn, optim
from tinygrad_mini.data import DataLoader

ALLOWED = (ValueError, TypeError, RuntimeError)


def numpy_quiet(fn, *args, **kwargs):
    """numpy's result, or the exception numpy raised (warnings about NaN/inf silenced)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs), None
        except Exception as e:  # noqa: BLE001 -- any numpy refusal is a verdict here
            return None, e


def expect_error(call, types, *names):
    """call() raises one of `types` and its message contains at least one of `names`."""
    with pytest.raises(types) as info:
        call()
    msg = str(info.value)
    assert any(n in msg for n in names), f"message {msg!r} names none of {names}"
    return msg


def reduce_to(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast gradient back to `shape` (the closed form of broadcasting's adjoint)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def floats(width=64, finite=False):
    if finite:
        return st.floats(-10, 10, width=width)
    return st.floats(width=width, allow_nan=True, allow_infinity=True,
                     min_value=None, max_value=None).filter(lambda v: abs(v) < 1e6
                                                            or not math.isfinite(v))


def arrays(dtype, shape, finite=False):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        elements = floats(8 * dt.itemsize, finite)
    elif dt.kind == "b":
        elements = st.booleans()
    else:
        elements = st.integers(-5, 5)
    return hnp.arrays(dt, shape, elements=elements)


NUMERIC = [np.float32, np.float64, np.int64, np.bool_]

# ---------------------------------------------------------------- Tensor(data)


@given(st.sampled_from(["f4", "f8", "f2", "i1", "i8", "u1", "?", "c16", "U2", "O", "M8[D]"]),
       hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3), st.booleans())
def test_tensor_constructor_any_dtype(dtype, shape, requires_grad):
    arr = np.zeros(shape, dtype=dtype)
    kind = arr.dtype.kind
    if kind not in "fiub":
        expect_error(lambda: Tensor(arr), TypeError, str(arr.dtype))
    elif requires_grad and kind != "f":
        expect_error(lambda: Tensor(arr, requires_grad=True), TypeError, str(arr.dtype))
    else:
        t = Tensor(arr, requires_grad=requires_grad)
        assert t.shape == shape and t.dtype == arr.dtype and t.requires_grad == requires_grad
        assert t.numpy() is arr  # an ndarray is wrapped, not copied


# ---------------------------------------------------------------- binary ops, broadcasting

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


@st.composite
def shape_pairs(draw):
    """Half the time mutually broadcastable, half the time two independent (often clashing)."""
    if draw(st.booleans()):
        return draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                      min_side=0, max_side=3)).input_shapes
    shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
    return draw(shape), draw(shape)


def documented_operands(a: np.ndarray, other, kind: str) -> tuple:
    """The arrays numpy should combine, by the documented (torch's) rules: a list or Python
    float gets the default dtype (float32) -- but a Python number takes a float tensor's dtype;
    an integer tensor meeting a float scalar or 0-d array (not a Tensor) computes in float32."""
    if isinstance(other, (Tensor, np.ndarray)):
        b = other.data if isinstance(other, Tensor) else other
    elif a.dtype.kind == "f" and not isinstance(other, (list, bool)):
        b = np.asarray(other, dtype=a.dtype)
    else:
        b = np.asarray(other)
        b = b.astype(np.float32) if b.dtype == np.float64 else b
    if a.dtype.kind != "f" and b.dtype.kind == "f" and b.ndim == 0 and kind != "tensor":
        return a.astype(np.float32), b.astype(np.float32)
    return a, b


@settings(max_examples=120)
@given(shape_pairs(), st.sampled_from(NUMERIC), st.sampled_from(NUMERIC),
       st.sampled_from(list(OPS)), st.sampled_from(["tensor", "ndarray", "list"]), st.data())
@np.errstate(all="ignore")  # inf - inf and friends: numpy's warnings are not the point
def test_binary_ops_match_numpy_or_name_the_shapes(shapes, da, db, op, kind, data):
    sa, sb = shapes
    a, b = data.draw(arrays(da, sa)), data.draw(arrays(db, sb))
    other = {"tensor": Tensor(b), "ndarray": b, "list": b.tolist()}[kind]
    a_op, b_seen = documented_operands(a, other, kind)
    want, np_error = numpy_quiet(OPS[op], a_op, b_seen)
    call = (lambda: OPS[op](Tensor(a), other))
    bool_sub = op == "-" and b_seen.dtype == np.bool_  # refused, as numpy and torch do
    if np_error is not None or bool_sub:
        clash = isinstance(np_error, ValueError)  # shapes clash: the message names both
        types = ((ValueError,) if clash else ()) + ((TypeError,) if not clash or bool_sub else ())
        expect_error(call, types, *([f"{sa} and {b_seen.shape}"] if clash else []), "bool")
        return
    out = call()
    assert isinstance(out, Tensor) and out.shape == want.shape
    tol = 1e-6 if np.float32 in (out.dtype, want.dtype) else 1e-12
    np.testing.assert_allclose(out.data.astype(np.float64), want.astype(np.float64), rtol=tol,
                               equal_nan=True)
    if kind == "ndarray" and op == "-" and a.dtype == np.bool_:  # array - bool tensor
        expect_error(lambda: other - Tensor(a), TypeError, "bool")
        return
    reverse = OPS[op](other, Tensor(a)) if kind == "ndarray" else None  # numpy on the left
    if reverse is not None:
        want_r, _ = numpy_quiet(OPS[op], b_seen, a_op)
        np.testing.assert_allclose(reverse.data.astype(np.float64), want_r.astype(np.float64),
                                   rtol=tol, equal_nan=True)


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       st.sampled_from(["+", "*", "-", "/"]), st.data())
def test_binary_op_gradients_are_summed_back_to_each_shape(shapes, op, data):
    sa, sb = shapes.input_shapes
    a = data.draw(arrays(np.float64, sa, finite=True))
    b = data.draw(arrays(np.float64, sb, finite=True).filter(lambda v: np.all(np.abs(v) > 0.1)))
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = OPS[op](ta, tb)
    g = data.draw(arrays(np.float64, out.shape, finite=True))
    out.backward(g)
    da, db = {"+": (g, g), "-": (g, -g), "*": (g * b, g * a),
              "/": (g / b, -g * a / (b * b))}[op]  # d(a op b)/da, d(a op b)/db times upstream
    np.testing.assert_allclose(ta.grad, reduce_to(np.broadcast_to(da, out.shape), sa), rtol=1e-12)
    np.testing.assert_allclose(tb.grad, reduce_to(np.broadcast_to(db, out.shape), sb), rtol=1e-12)


# ---------------------------------------------------------------- reductions

@st.composite
def axis_args(draw, ndim):
    single = st.integers(-ndim - 2, ndim + 1)
    return draw(st.one_of(st.none(), single, st.lists(single, max_size=3).map(tuple),
                          st.sampled_from([1.0, "0", True])))


@settings(max_examples=120)
@given(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
       st.sampled_from([np.float32, np.float64]), st.sampled_from(["sum", "mean", "max"]),
       st.booleans(), st.data())
def test_reductions_with_random_axes(shape, dtype, name, keepdims, data):
    x = data.draw(arrays(dtype, shape, finite=True))
    axis = data.draw(axis_args(len(shape)))
    t = Tensor(x, requires_grad=True)
    call = (lambda: getattr(t, name)(axis, keepdims))
    if isinstance(axis, (float, str, bool)):
        expect_error(call, TypeError, "axis")
        return
    whole = len(shape) == 0 and axis in (0, -1, (0,), (-1,))  # a 0-d tensor's only axis
    want, np_error = numpy_quiet(getattr(np, name), x, axis=None if whole else axis,
                                 keepdims=keepdims)
    if name == "max" and x.size == 0:  # stricter than numpy: no max over nothing, anywhere
        expect_error(call, ValueError, str(shape), "axis")
        return
    if np_error is not None:
        expect_error(call, ValueError, "axis")
        return
    with np.errstate(all="ignore"):
        out = call()
    assert out.shape == np.shape(want) and out.dtype == x.dtype
    np.testing.assert_allclose(out.data, want, rtol=1e-6, equal_nan=True)
    if name == "max":
        return
    # d sum / dx = upstream broadcast over the reduced axes; mean divides by their size
    g = data.draw(arrays(dtype, out.shape, finite=True))
    out.backward(g)
    nd = len(shape)
    axes = tuple(range(nd)) if axis is None else tuple(
        a % nd for a in (axis if isinstance(axis, tuple) else (axis,))) if nd else ()
    expanded = g if keepdims else np.expand_dims(g, axes)
    n = int(np.prod([shape[a] for a in axes])) if nd else 1
    want_grad = np.broadcast_to(expanded, shape) / (n if name == "mean" else 1)
    np.testing.assert_allclose(t.grad, want_grad, rtol=1e-6)


# ---------------------------------------------------------------- movement and indexing

@given(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), st.data())
def test_reshape_matches_numpy_or_names_both_shapes(shape, data):
    x = data.draw(arrays(np.float64, shape, finite=True))
    size = x.size
    target = data.draw(st.one_of(
        st.lists(st.integers(-1, 5), max_size=4).map(tuple),
        st.just((size,)), st.just(tuple(reversed(shape))), st.just((-1,)),
        st.just((size, 1)), st.sampled_from([(2.0,), ("3",), (None,)])))
    t = Tensor(x, requires_grad=True)
    if any(not isinstance(s, int) for s in target):
        expect_error(lambda: t.reshape(*target), TypeError, "shape")
        return
    want, np_error = numpy_quiet(np.reshape, x, target)
    if np_error is not None:
        msg = expect_error(lambda: t.reshape(*target), ValueError, str(shape))
        assert str(target) in msg or "unknown dimension" in msg
        return
    out = t.reshape(*target)
    np.testing.assert_array_equal(out.data, want)
    g = data.draw(arrays(np.float64, out.shape, finite=True))
    if out is t:  # the same shape: reshape is the identity and returns the tensor itself
        return
    out.backward(g)
    np.testing.assert_array_equal(t.grad, g.reshape(shape))


@given(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3), st.data())
def test_permute_matches_numpy_or_is_a_value_error(shape, data):
    nd = len(shape)
    x = data.draw(arrays(np.float64, shape, finite=True))
    axes = data.draw(st.one_of(st.permutations(range(nd)).map(tuple),
                               st.lists(st.integers(-nd - 1, nd), max_size=nd + 1).map(tuple)))
    t = Tensor(x, requires_grad=True)
    want, np_error = numpy_quiet(np.transpose, x, axes)
    if np_error is not None or len(axes) != nd:
        expect_error(lambda: t.permute(*axes), ValueError, "axis", "permutation", "repeated")
        return
    out = t.permute(*axes)
    np.testing.assert_array_equal(out.data, want)
    g = data.draw(arrays(np.float64, out.shape, finite=True))
    out.backward(g)
    np.testing.assert_array_equal(t.grad, np.transpose(g, np.argsort([a % nd for a in axes])))


@st.composite
def indices(draw, shape):
    """An int, a slice, an int array (repeats allowed), a bool mask, or a tuple of them."""
    def one(n, axis):
        return draw(st.one_of(
            st.integers(-n - 2, n + 1),
            st.builds(slice, st.none() | st.integers(-n - 1, n + 1),
                      st.none() | st.integers(-n - 1, n + 1),
                      st.none() | st.sampled_from([-2, -1, 1, 2])),
            hnp.arrays(np.int64, st.integers(0, 4), elements=st.integers(-n - 1, n)),
            hnp.arrays(np.bool_, st.sampled_from([n, n + 1]))))
    k = draw(st.integers(1, len(shape) + 1))
    items = tuple(one(shape[i] if i < len(shape) else 1, i) for i in range(k))
    return items[0] if k == 1 else items


@settings(max_examples=120)
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), st.data())
def test_indexing_matches_numpy_or_names_the_shape(shape, data):
    x = data.draw(arrays(np.float64, shape, finite=True))
    idx = data.draw(indices(shape))
    t = Tensor(x, requires_grad=True)
    want, np_error = numpy_quiet(operator.getitem, x, idx)
    if np_error is not None:
        if isinstance(np_error, IndexError):  # Python's indexing protocol, as torch
            expect_error(lambda: t[idx], IndexError, str(shape))
        else:
            expect_error(lambda: t[idx], ALLOWED, "index", "indices")
        return
    out = t[idx]
    np.testing.assert_array_equal(out.data, want)
    # the gradient of x[idx]: each upstream element lands on the element it was read from
    g = data.draw(arrays(np.float64, out.shape, finite=True))
    out.backward(g)
    ids = np.arange(x.size).reshape(shape)[idx]
    want_grad = np.bincount(np.ravel(ids), weights=np.ravel(g), minlength=x.size)
    np.testing.assert_allclose(t.grad, want_grad.reshape(shape), rtol=1e-12)


# ---------------------------------------------------------------- cross_entropy

@settings(max_examples=150)
@given(st.integers(0, 5), st.integers(0, 5), st.sampled_from(["mean", "sum", "none"]),
       st.sampled_from(["int64", "int8", "uint8", "float64", "float_frac", "bool", "list"]),
       st.sampled_from(["n", "n1", "scalar", "n+1"]), st.data())
def test_cross_entropy_with_random_targets(n, c, reduction, kind, tshape, data):
    logits = data.draw(arrays(np.float64, (n, c), finite=True))
    shape = {"n": (n,), "n1": (n, 1), "scalar": (), "n+1": (n + 1,)}[tshape]
    values = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, c + 3)))
    target = {"int64": values, "int8": values.astype(np.int8), "list": values.tolist(),
              "uint8": values.astype(np.uint8),  # -1 becomes 255: still out of range, named
              "float64": values.astype(np.float64), "float_frac": values + 0.5,
              "bool": values > 0}[kind]
    t = np.asarray(target)
    x = Tensor(logits, requires_grad=True)
    call = (lambda: F.cross_entropy(x, target, reduction=reduction))
    if t.dtype.kind not in "iu":
        expect_error(call, ValueError, str(t.dtype))
        return
    if t.shape != (n,):
        expect_error(call, ValueError, str(t.shape))
        return
    if c == 0:
        expect_error(call, ValueError, "no classes")
        return
    bad = (t < 0) | (t >= c)
    if bad.any():
        i = int(np.argmax(bad))
        expect_error(call, ValueError, f"target value {t[i]} at position {i}")
        return
    # the oracle: log-sum-exp minus the picked score, and (softmax - onehot) for the gradient
    m = logits.max(axis=1, keepdims=True) if c else 0
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    losses = lse - logits[np.arange(n), t]
    with np.errstate(invalid="ignore"):
        want = {"none": losses, "sum": losses.sum(), "mean": losses.mean() if n else np.nan}
    out = call()
    np.testing.assert_allclose(out.data, want[reduction], rtol=1e-10, atol=1e-12,
                               equal_nan=True)
    g = data.draw(arrays(np.float64, out.shape, finite=True))
    with np.errstate(all="ignore"):
        out.backward(g)
    onehot = np.zeros((n, c))
    onehot[np.arange(n), t] = 1
    if reduction == "none":
        scale = g[:, None]  # (N, 1): each row's own upstream
    else:
        scale = g / n if (reduction == "mean" and n) else g
    probs = np.exp(logits - lse[:, None])
    np.testing.assert_allclose(x.grad, (probs - onehot) * scale, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- nn.Linear, nn.BatchNorm1d

@settings(max_examples=80)
@given(st.integers(0, 4), st.integers(0, 4),
       hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), st.booleans(),
       st.sampled_from(["f4", "f8", "i8", "?", "c16", "O"]), st.data())
def test_linear_with_random_inputs(fin, fout, shape, fit, dtype, data):
    if fit and shape:
        shape = shape[:-1] + (fin,)
    lin = nn.Linear(fin, fout, rng=0)
    x = data.draw(arrays(np.float64, shape, finite=True)).astype(dtype)
    call = (lambda: lin(x))
    if x.dtype.kind not in "fiub":
        expect_error(call, TypeError, str(x.dtype))
    elif x.ndim == 0:
        expect_error(call, ValueError, "()")
    elif shape[-1] != fin:
        expect_error(call, ValueError, str(shape))
    elif x.dtype != np.float32:  # as torch: a float32 layer takes only float32 input
        expect_error(call, TypeError, f"input dtype {x.dtype} does not match weight dtype float32")
    else:
        out = call()
        w, b = lin.weight.data.astype(np.float64), lin.bias.data.astype(np.float64)
        want = x.astype(np.float64) @ w.T + b
        assert out.shape == shape[:-1] + (fout,)
        np.testing.assert_allclose(out.data, want, rtol=1e-5, atol=1e-6)


@settings(max_examples=80)
@given(st.integers(1, 4), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
       st.booleans(), st.booleans(), st.sampled_from(["f4", "f8", "i8"]), st.data())
def test_batchnorm1d_with_random_inputs(c, shape, fit, training, dtype, data):
    if fit and len(shape) >= 2:
        shape = (shape[0], c) + shape[2:]
    bn = nn.BatchNorm1d(c, dtype=np.float64)
    bn.train(training)
    x = data.draw(arrays(np.float64, shape, finite=True)).astype(dtype)
    call = (lambda: bn(x))
    if len(shape) not in (2, 3) or shape[1] != c:
        expect_error(call, ValueError, str(shape))
        return
    axes = (0,) if x.ndim == 2 else (0, 2)
    m = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
    problems = ([(TypeError, str(x.dtype))] if x.dtype.kind != "f" else []) + \
        ([(ValueError, str(shape))] if training and m <= 1 else [])
    if problems:  # either may be reported first
        expect_error(call, tuple(e for e, _ in problems), *[n for _, n in problems])
        return
    out = call()
    bshape = (1, c) if x.ndim == 2 else (1, c, 1)
    x64, tol = x.astype(np.float64), (1e-5 if x.dtype == np.float32 else 1e-9)
    if training:
        mean, var = x64.mean(axis=axes, keepdims=True), x64.var(axis=axes, keepdims=True)
        np.testing.assert_allclose(bn.running_mean.data, 0.1 * mean.reshape(c), atol=tol)
        np.testing.assert_allclose(bn.running_var.data,
                                   0.9 + 0.1 * var.reshape(c) * m / (m - 1), rtol=tol)
    else:  # fresh running statistics: mean 0, variance 1
        mean, var = np.zeros(bshape), np.ones(bshape)
    want = (x64 - mean) / np.sqrt(var + 1e-5)
    # float32: rounding in x - mean is amplified up to 1/sqrt(eps) when the variance is ~0
    atol = tol if x.dtype != np.float32 else 1e-4 * (1 + np.abs(x64).max(initial=0))
    np.testing.assert_allclose(out.data, want, rtol=tol, atol=atol)


# ---------------------------------------------------------------- optimizer arguments

NUMBER = st.one_of(st.floats(-1.0, 2.0), st.integers(-1, 2),
                   st.sampled_from([0.0, float("nan"), float("inf"), -1e-3]))
NOT_NUMBER = st.sampled_from(["0.1", None, True, [0.1]])
ARG = st.one_of(NUMBER, NUMBER, NUMBER, NOT_NUMBER)


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def sgd_problem(lr, momentum, dampening, weight_decay, nesterov) -> set:
    """The arguments torch's documented rules reject (finite numbers are also required here)."""
    bad = {name for name, v in (("lr", lr), ("momentum", momentum), ("dampening", dampening),
                                ("weight_decay", weight_decay)) if not _real(v)}
    bad |= {name for name, v in (("lr", lr), ("momentum", momentum),
                                 ("weight_decay", weight_decay)) if _real(v) and v < 0}
    if not bad and nesterov and (momentum <= 0 or dampening != 0):
        bad.add("Nesterov")
    return bad


def adam_problem(lr, betas, eps, weight_decay) -> set:
    bad = {name for name, v in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay))
           if not _real(v) or v < 0}
    if not isinstance(betas, (tuple, list)) or len(betas) != 2 \
            or not all(_real(b) and 0 <= b < 1 for b in betas):
        bad.add("beta")
    return bad


NAMES = {"lr": ("lr", "learning rate"), "momentum": ("momentum",), "dampening": ("dampening",),
         "weight_decay": ("weight_decay",), "Nesterov": ("Nesterov",), "eps": ("eps", "epsilon"),
         "beta": ("beta",)}


def check_optimizer(make, bad: set):
    p = nn.Parameter(np.ones(3))
    if bad:
        expect_error(lambda: make([p]), (TypeError, ValueError),
                     *[n for b in bad for n in NAMES[b]])
        return
    opt = make([p])
    p.grad = np.ones(3)
    opt.step()
    assert np.isfinite(p.data).all()


@given(ARG, ARG, ARG, ARG, st.booleans())
def test_sgd_constructor_arguments(lr, momentum, dampening, weight_decay, nesterov):
    check_optimizer(lambda ps: optim.SGD(ps, lr=lr, momentum=momentum, dampening=dampening,
                                         weight_decay=weight_decay, nesterov=nesterov),
                    sgd_problem(lr, momentum, dampening, weight_decay, nesterov))


@given(ARG, st.one_of(st.tuples(NUMBER, NUMBER), st.tuples(NUMBER), NOT_NUMBER), ARG, ARG,
       st.sampled_from([optim.Adam, optim.AdamW]))
def test_adam_constructor_arguments(lr, betas, eps, weight_decay, cls):
    check_optimizer(lambda ps: cls(ps, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
                    adam_problem(lr, betas, eps, weight_decay))


@given(st.lists(st.sampled_from(["p", "q", "dup_p", "array", "int_tensor", "nonleaf"]),
                max_size=4))
def test_optimizer_param_lists(items):
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    made = {"p": p, "q": q, "dup_p": p, "array": np.ones(2), "int_tensor": Tensor(np.arange(2)),
            "nonleaf": p * 2}
    params = [made[k] for k in items]
    names = [k if k != "dup_p" else "p" for k in items]
    call = (lambda: optim.SGD(params, lr=0.1))
    if not params:
        expect_error(call, ValueError, "empty")
    elif {"array", "int_tensor", "nonleaf"} & set(items) or len(set(names)) < len(names):
        expect_error(call, (TypeError, ValueError), "param")
    else:
        assert [len(g["params"]) for g in call().param_groups] == [len(params)]


# ---------------------------------------------------------------- DataLoader arguments

@given(st.integers(0, 7), st.one_of(st.integers(-1, 9), st.sampled_from([2.0, "2", None, True])),
       st.sampled_from([True, False, np.bool_(True), "yes", 1]),
       st.sampled_from([True, False, np.bool_(False), None, 0]),
       st.one_of(st.none(), st.integers(-1, 3), st.sampled_from([1.5, "7"])))
def test_dataloader_arguments(n, batch_size, shuffle, drop_last, seed):
    X, y = np.arange(n, dtype=np.float64).reshape(n, 1), np.arange(n)

    def intlike(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    bad = []
    if not intlike(batch_size) or batch_size < 1:
        bad.append("batch_size")
    if n == 0:
        bad.append("empty")
    if not isinstance(shuffle, (bool, np.bool_)) or not isinstance(drop_last, (bool, np.bool_)):
        bad.append("shuffle and drop_last")
    if seed is not None and (not intlike(seed) or seed < 0):
        bad.append("seed")
    call = (lambda: DataLoader((X, y), batch_size, shuffle=shuffle, drop_last=drop_last,
                               seed=seed))
    if bad:
        expect_error(call, (TypeError, ValueError), *bad)
        return
    loader = call()
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full + ([rest] if rest and not drop_last else [])
    assert len(loader) == len(sizes)
    for epoch in range(2):
        batches = list(loader)
        assert [len(xb) for xb, _ in batches] == sizes
        seen = np.concatenate([yb.data for _, yb in batches]) if batches else np.zeros(0, int)
        order = np.concatenate([xb.data[:, 0] for xb, _ in batches]) if batches else seen
        np.testing.assert_array_equal(order, seen)  # rows stay paired with their labels
        assert len(set(seen.tolist())) == len(seen) == sum(sizes)  # each sample at most once
        if not shuffle:
            np.testing.assert_array_equal(seen, np.arange(sum(sizes)))
        else:
            again = DataLoader((X, y), batch_size, shuffle=True, drop_last=drop_last,
                               seed=loader.seed)
            np.testing.assert_array_equal(again.epoch_order(epoch), loader.epoch_order(epoch))


# ---------------------------------------------------------------- NaN and inf propagate

UNARY = {
    "exp": (lambda t: t.exp(), np.exp),
    "log": (lambda t: t.log(), np.log),
    "tanh": (lambda t: t.tanh(), np.tanh),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "relu": (lambda t: t.relu(), lambda x: np.where(np.isnan(x), x, np.where(x > 0, x, 0))),
    "leaky_relu": (lambda t: F.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    "abs": (lambda t: t.abs(), np.abs),
    "neg": (lambda t: -t, np.negative),
    "square": (lambda t: t ** 2, np.square),
    "softmax": (lambda t: F.softmax(t, -1),
                lambda x: np.exp(x - x.max(-1, keepdims=True))
                / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)),
}


@settings(max_examples=60)
@given(st.sampled_from(sorted(UNARY)), st.sampled_from([np.float32, np.float64]),
       hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4), st.data())
def test_unary_ops_propagate_nan_and_inf_like_the_math(name, dtype, shape, data):
    x = data.draw(arrays(dtype, shape))
    ours, ref = UNARY[name]
    with np.errstate(all="ignore"):
        out = ours(Tensor(x)).data
        want = ref(x.astype(np.float64))
    assert out.dtype == x.dtype
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=1e-5, atol=1e-30,
                               equal_nan=True)
