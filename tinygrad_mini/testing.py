"""Property-testing helpers: hypothesis strategies and `assert_grads_match` for your own backprop.

Needs hypothesis (`pip install hypothesis`, or the `test` extra). Check a hand-derived two-layer
net against autograd in a few lines; hypothesis searches sizes, weights, labels and reg, and on a
mismatch reports the smallest example it can find (which gradient, worst index, both values):

    import numpy as np
    import tinygrad_mini.nn.functional as F
    from tinygrad_mini.testing import assert_grads_match, two_layer_problem

    def loss(X, y, W1, b1, W2, b2, reg):      # Tensors in (y stays an int array), scalar out
        h = F.affine(X, W1, b1).relu()
        return F.cross_entropy(F.affine(h, W2, b2), y) + reg * ((W1 * W1).sum() + (W2 * W2).sum())

    def my_grads(X, y, W1, b1, W2, b2, reg):  # ndarrays in, a dict of your gradients out
        h = np.maximum(X @ W1 + b1, 0)
        s = h @ W2 + b2
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        ds = p / len(y)
        dh = (ds @ W2.T) * (h > 0)
        return {"W1": X.T @ dh + 2 * reg * W1, "b1": dh.sum(axis=0),
                "W2": h.T @ ds + 2 * reg * W2, "b2": ds.sum(axis=0)}

    def test_my_backprop():
        assert_grads_match(loss, my_grads, two_layer_problem())

The strategies keep values away from kinks (relu at 0) and poles (log, 1/x at 0), so a reported
mismatch is a wrong formula, never a convention at a non-differentiable point.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .gradcheck import rel_error
from .tensor import Tensor, get_default_dtype, set_default_dtype

try:
    import hypothesis
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as _e:  # a test-time extra: say how to get it
    raise ImportError("tinygrad_mini.testing needs hypothesis: pip install hypothesis "
                      "(or pip install 'tinygrad_mini[test]')") from _e

__all__ = ["floats_away", "float_arrays", "broadcastable_shapes", "matmul_shapes", "class_labels",
           "two_layer_problem", "assert_grads_match", "assert_grads_match_at", "GradientMismatch"]


# ---------------------------------------------------------------- strategies

def floats_away(min_value: float = -3.0, max_value: float = 3.0, *,
                away_from: Sequence[float] = (0.0,), margin: float = 1e-3,
                width: int = 64) -> st.SearchStrategy:
    """Finite floats in [min_value, max_value] at least `margin` from every point in `away_from`.

    width=32 draws float32 values (the bounds are moved inwards to the nearest float32).
    """
    points = tuple(float(p) for p in away_from)
    lo, hi = float(min_value), float(max_value)
    if width == 32:
        lo32, hi32 = np.float32(lo), np.float32(hi)
        lo = float(lo32 if lo32 >= lo else np.nextafter(lo32, np.float32(np.inf)))
        hi = float(hi32 if hi32 <= hi else np.nextafter(hi32, np.float32(-np.inf)))
    base = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=width)
    if not points:
        return base
    return base.filter(lambda v: all(abs(v - p) >= margin for p in points))


def _shape_strategy(shape, min_dims, max_dims, min_side, max_side):
    if shape is None:
        return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                max_side=max_side)
    if isinstance(shape, st.SearchStrategy):
        return shape
    return st.just(tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),))


@st.composite
def _distinct_array(draw, shape, dtype, lo, hi):
    """Values spread over [lo, hi] in a random order, neighbours at least (hi - lo) / 2n apart."""
    n = int(np.prod(shape))
    order = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    jitter = draw(hnp.arrays(np.float64, n, elements=st.floats(-0.25, 0.25)))
    vals = lo + (hi - lo) * (order + 0.5 + jitter) / max(n, 1)
    return vals.reshape(shape).astype(dtype)


def float_arrays(shape=None, *, dtype=np.float64, min_value: float = -3.0, max_value: float = 3.0,
                 away_from: Sequence[float] = (0.0,), margin: float = 1e-3, distinct: bool = False,
                 min_dims: int = 0, max_dims: int = 3, min_side: int = 1,
                 max_side: int = 4) -> st.SearchStrategy:
    """Float arrays with values in [min_value, max_value], each `margin` away from `away_from`.

    shape: a tuple, a strategy of tuples, or None (any shape within the dims/side bounds).
    distinct=True spreads the values so no two are within (max - min) / 2n of each other: no ties
    for max/min, and central differences never cross one. Use min_value > 0 for log, sqrt, 1/x.
    """
    shapes = _shape_strategy(shape, min_dims, max_dims, min_side, max_side)
    lo, hi = float(min_value), float(max_value)
    if not lo < hi:
        raise ValueError(f"float_arrays: min_value {lo} must be below max_value {hi}")
    if distinct:
        points = tuple(float(p) for p in away_from)
        return shapes.flatmap(lambda s: _distinct_array(s, dtype, lo, hi)).filter(
            lambda a: all(np.all(np.abs(a - p) >= margin) for p in points))
    widths = {np.dtype(np.float64): 64, np.dtype(np.float32): 32}
    if np.dtype(dtype) not in widths:
        raise ValueError(f"float_arrays: dtype must be float32 or float64, got {np.dtype(dtype)}")
    elements = floats_away(lo, hi, away_from=away_from, margin=margin,
                           width=widths[np.dtype(dtype)])
    return shapes.flatmap(lambda s: hnp.arrays(dtype, s, elements=elements))


def broadcastable_shapes(num_shapes: int = 2, *, min_dims: int = 0, max_dims: int = 3,
                         min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """A tuple of `num_shapes` shapes that broadcast together (numpy/torch rules)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side,
        max_side=max_side).map(lambda b: b.input_shapes)


def matmul_shapes(*, allow_1d: bool = True, max_batch_dims: int = 2,
                  max_side: int = 4) -> st.SearchStrategy:
    """(shape_a, shape_b) valid for a @ b: 2-D, batched with broadcast batch dims, and 1-D if
    allow_1d (numpy's matmul signature (m?,n),(n,p?)->(m?,p?))."""
    sig = "(m?,n),(n,p?)->(m?,p?)" if allow_1d else "(m,n),(n,p)->(m,p)"
    return hnp.mutually_broadcastable_shapes(signature=sig, max_dims=max_batch_dims,
                                             min_side=1, max_side=max_side).map(
        lambda b: b.input_shapes)


def class_labels(n: int, num_classes: int) -> st.SearchStrategy:
    """int64 class indices of shape (n,), each in [0, num_classes)."""
    if num_classes < 1:
        raise ValueError(f"class_labels: num_classes must be >= 1, got {num_classes}")
    return hnp.arrays(np.int64, (n,), elements=st.integers(0, num_classes - 1))


@st.composite
def two_layer_problem(draw, *, max_n: int = 5, max_d: int = 4, max_h: int = 4, max_c: int = 4,
                      with_reg: bool = True, margin: float = 1e-3) -> dict:
    """Inputs of the two-layer net: X (N, D), y (N,), W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), reg.

    The hidden pre-activations X W1 + b1 are kept at least `margin` from 0 (relu's kink), so the
    value of relu'(0) never decides a test.
    """
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    h = draw(st.integers(1, max_h))
    c = draw(st.integers(2, max(max_c, 2)))
    vals = dict(min_value=-2.0, max_value=2.0, away_from=())
    prob = {"X": draw(float_arrays((n, d), **vals)), "y": draw(class_labels(n, c)),
            "W1": draw(float_arrays((d, h), **vals)), "b1": draw(float_arrays((h,), **vals)),
            "W2": draw(float_arrays((h, c), **vals)), "b2": draw(float_arrays((c,), **vals)),
            "reg": draw(st.floats(0.0, 1.0)) if with_reg else 0.0}
    hypothesis.assume(np.abs(prob["X"] @ prob["W1"] + prob["b1"]).min() >= margin)
    return prob


# ---------------------------------------------------------------- assert_grads_match

class GradientMismatch(AssertionError):
    """Your gradient disagrees with autograd. Attributes: name (which gradient), index (worst
    element, or None for a shape mismatch), yours, autograd (values there), example (the inputs)."""

    def __init__(self, msg: str, name, index, yours, autograd, example):
        super().__init__(msg)
        self.name, self.index, self.yours, self.autograd = name, index, yours, autograd
        self.example = example


def _as_strategy(inputs) -> st.SearchStrategy:
    if isinstance(inputs, st.SearchStrategy):
        return inputs
    if isinstance(inputs, dict):
        return st.fixed_dictionaries(inputs)
    if isinstance(inputs, (tuple, list)):
        return st.tuples(*inputs)
    raise TypeError("assert_grads_match: inputs must be a hypothesis strategy (of a dict or a "
                    f"tuple), a dict of strategies or a tuple of strategies, got "
                    f"{type(inputs).__name__}")


def _is_float_array(v) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def _fmt_inputs(example: dict) -> str:
    with np.printoptions(precision=10, threshold=200):
        return "\n".join(f"  {k} = {v!r}" for k, v in example.items())


def assert_grads_match_at(forward_fn: Callable[..., Tensor], closed_form_fn: Callable[..., Any],
                          example: dict | tuple, *, wrt: Sequence | None = None,
                          rtol: float = 1e-7, atol: float = 1e-10) -> None:
    """assert_grads_match on one given example (a dict of named inputs or a tuple of positional
    ones); raises GradientMismatch (an AssertionError) with the report on a mismatch."""
    named = isinstance(example, dict)
    if not named and not isinstance(example, (tuple, list)):
        raise TypeError("assert_grads_match: an example must be a dict (named inputs) or a tuple "
                        f"(positional inputs), got {type(example).__name__}")
    items = dict(example) if named else {i: v for i, v in enumerate(example)}
    # everyone works in float64 on private copies: your function may modify its arguments
    arrays = {k: (v.astype(np.float64) if _is_float_array(v) else v) for k, v in items.items()}

    def call(fn, values):
        return fn(**values) if named else fn(*values.values())

    theirs = call(closed_form_fn, {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                   for k, v in arrays.items()})
    if isinstance(theirs, dict):
        keys = list(theirs) if wrt is None else list(wrt)
        mine = theirs
    else:
        theirs = tuple(theirs) if isinstance(theirs, (tuple, list)) else (theirs,)
        keys = ([k for k, v in arrays.items() if _is_float_array(v)] if wrt is None
                else list(wrt))
        if len(keys) != len(theirs):
            raise ValueError(f"assert_grads_match: your function returned {len(theirs)} "
                             f"gradient(s) for {len(keys)} input(s) {keys}; return a dict keyed "
                             "by input name or pass wrt=")
        mine = dict(zip(keys, theirs))
    for k in keys:
        if k not in arrays:
            raise ValueError(f"assert_grads_match: gradient {k!r} names no input; inputs are "
                             f"{list(arrays)}")
        if not _is_float_array(arrays[k]):
            raise ValueError(f"assert_grads_match: input {k!r} is not a floating array, so it "
                             "has no gradient")
        if k not in mine:
            raise ValueError(f"assert_grads_match: your gradients have no entry for {k!r}")

    prev_dtype = get_default_dtype()
    set_default_dtype(np.float64)
    try:
        tensors = {k: (Tensor(v.copy(), requires_grad=k in keys) if _is_float_array(v) else v)
                   for k, v in arrays.items()}
        out = call(forward_fn, tensors)
        if not isinstance(out, Tensor) or out.data.size != 1:
            raise TypeError("assert_grads_match: forward_fn must return a scalar Tensor, got "
                            f"{type(out).__name__} {getattr(out, 'shape', '')}")
        if out.requires_grad:
            out.backward()
    finally:
        set_default_dtype(prev_dtype)

    for k in keys:
        t = tensors[k]
        auto = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64)
        yours = np.asarray(mine[k], dtype=np.float64)
        name = repr(k) if named else f"input {k}"
        if yours.shape != auto.shape:
            raise GradientMismatch(
                f"your gradient for {name} has shape {yours.shape} but the input has shape "
                f"{auto.shape}\ninputs:\n{_fmt_inputs(items)}", k, None, yours, auto, example)
        bad = ~(np.abs(yours - auto) <= atol + rtol * np.maximum(np.abs(yours), np.abs(auto)))
        if bad.any():
            err = np.where(bad, np.abs(yours - auto), -1.0)
            err = np.where(np.isnan(err), np.inf, err)
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), auto.shape))
            raise GradientMismatch(
                f"your gradient for {name} disagrees with autograd at index {idx}: yours "
                f"{float(yours[idx])!r}, autograd {float(auto[idx])!r} (rel_error over the array "
                f"{rel_error(yours, auto):.3g}; {int(bad.sum())} of {bad.size} elements differ)"
                f"\ninputs:\n{_fmt_inputs(items)}", k, idx, float(yours[idx]), float(auto[idx]),
                example)


def assert_grads_match(forward_fn: Callable[..., Tensor], closed_form_fn: Callable[..., Any],
                       inputs, *, wrt: Sequence | None = None, rtol: float = 1e-7,
                       atol: float = 1e-10, max_examples: int | None = None,
                       shrink: bool = True) -> None:
    """Search (with hypothesis) for inputs where your hand-derived gradients disagree with autograd.

    forward_fn: Tensors in, scalar Tensor out. Floating arrays arrive as float64 Tensors, other
      inputs (int labels, Python numbers) unchanged.
    closed_form_fn: the same inputs as float64 ndarrays (private copies), returning your gradients:
      a dict {input name: gradient} (named inputs) or a tuple in the order of `wrt`.
    inputs: a strategy of dicts (named inputs, e.g. two_layer_problem()) or tuples (positional),
      or a dict/tuple of strategies.
    wrt: which inputs to differentiate; default the keys of your dict, or every floating input.
    A gradient element fails when |yours - autograd| > atol + rtol max(|yours|, |autograd|). On a
    failure, raises GradientMismatch (an AssertionError) for the shrunk example: which gradient,
    worst index, both values, relative error and the inputs. Call it from a plain test function,
    not inside @given.
    shrink=False turns hypothesis' shrink phase off: the first failing example is reported as it
      was found (larger, but at once; shrinking costs seconds per failure). For a fast red test
      while you fix a derivation, or in a suite that sends known-wrong derivations through here.
    """
    strategy = _as_strategy(inputs)
    # one shrunk counterexample, not an ExceptionGroup when two gradients are wrong
    overrides: dict[str, Any] = {"deadline": None, "database": None, "report_multiple_bugs": False,
                                 "suppress_health_check": [hypothesis.HealthCheck.too_slow,
                                                           hypothesis.HealthCheck.filter_too_much]}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    # the explain phase traces every line run; the report below already says what went wrong
    dropped = {hypothesis.Phase.explain} | (set() if shrink else {hypothesis.Phase.shrink})
    overrides["phases"] = [p for p in hypothesis.settings().phases if p not in dropped]

    @hypothesis.settings(hypothesis.settings(), **overrides)
    @hypothesis.given(strategy)
    def search(example):
        assert_grads_match_at(forward_fn, closed_form_fn, example, wrt=wrt, rtol=rtol, atol=atol)

    search()
