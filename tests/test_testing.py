"""tinygrad_mini.testing: the strategies keep their promises, and assert_grads_match passes a right
hand derivation and finds (and shrinks, unless shrink=False) a counterexample for wrong ones."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_mini.nn.functional as F
import tinygrad_mini.testing as testing
from tinygrad_mini.testing import (GradientMismatch, assert_grads_match, assert_grads_match_at,
                                   broadcastable_shapes, class_labels, float_arrays, floats_away,
                                   matmul_shapes, two_layer_problem)


# ---------------------------------------------------------------- strategies

@given(float_arrays(min_value=-2.0, max_value=5.0, away_from=(0.0, 1.0), margin=0.01))
def test_float_arrays_respect_bounds_and_margins(a):
    assert a.dtype == np.float64 and a.ndim <= 3
    assert np.all((a >= -2.0) & (a <= 5.0))
    assert np.all(np.abs(a) >= 0.01) and np.all(np.abs(a - 1.0) >= 0.01)


@given(float_arrays((2, 3), dtype=np.float32, min_value=0.1, max_value=0.7))
def test_float_arrays_float32(a):
    assert a.dtype == np.float32 and a.shape == (2, 3)
    assert np.all((a >= 0.1) & (a <= 0.7))


@given(float_arrays(distinct=True, min_dims=1))
def test_distinct_float_arrays_have_no_near_ties(a):
    gaps = np.diff(np.sort(a.ravel()))
    assert gaps.size == 0 or gaps.min() >= 6.0 / (2 * a.size) - 1e-12


@given(floats_away(-1.0, 1.0, away_from=(0.5,), margin=0.1))
def test_floats_away(v):
    assert -1.0 <= v <= 1.0 and abs(v - 0.5) >= 0.1


@given(broadcastable_shapes(3))
def test_broadcastable_shapes_broadcast(shapes):
    assert len(shapes) == 3
    np.broadcast_shapes(*shapes)


@given(matmul_shapes())
def test_matmul_shapes_are_valid_for_matmul(shapes):
    a, b = shapes
    np.matmul(np.ones(a), np.ones(b))


@given(st.integers(1, 6).flatmap(lambda n: class_labels(n, 3).map(lambda y: (n, y))))
def test_class_labels(ny):
    n, y = ny
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.all((y >= 0) & (y < 3))


def test_class_labels_needs_a_class():
    with pytest.raises(ValueError, match="num_classes"):
        class_labels(3, 0)


@given(two_layer_problem())
def test_two_layer_problem_is_consistent_and_away_from_relu_kinks(p):
    n, d = p["X"].shape
    h, c = p["W2"].shape
    assert p["W1"].shape == (d, h) and p["b1"].shape == (h,) and p["b2"].shape == (c,)
    assert p["y"].shape == (n,) and np.all((p["y"] >= 0) & (p["y"] < c))
    assert np.abs(p["X"] @ p["W1"] + p["b1"]).min() >= 1e-3
    assert p["reg"] >= 0.0


def test_missing_hypothesis_gives_a_clear_import_error():
    code = "import sys; sys.modules['hypothesis'] = None; import tinygrad_mini.testing"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "pip install hypothesis" in proc.stderr


# ---------------------------------------------------------------- the student's two-layer net

def loss(X, y, W1, b1, W2, b2, reg):
    h = F.affine(X, W1, b1).relu()
    return F.cross_entropy(F.affine(h, W2, b2), y) + reg * ((W1 * W1).sum() + (W2 * W2).sum())


def grads(X, y, W1, b1, W2, b2, reg, mistake=None):
    """The closed-form gradients, with an optional deliberate mistake."""
    z = X @ W1 + b1
    h = np.maximum(z, 0)
    s = h @ W2 + b2
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    ds = p if mistake == "no_mean" else p / len(y)
    dh = ds @ W2.T
    if mistake == "mask_on_output":
        dh = dh * (h >= 0)  # always 1: h = relu(z) is never negative
    elif mistake == "mask_ge_on_input":
        dh = dh * (z >= 0)  # differs from 1[z > 0] only at z == 0, a kink
    else:
        dh = dh * (z > 0)
    out = {"W1": X.T @ dh + 2 * reg * W1, "b1": dh.sum(axis=0),
           "W2": h.T @ ds + 2 * reg * W2, "b2": ds.sum(axis=0)}
    if mistake == "bias_reg":
        out["b1"] = out["b1"] + 2 * reg * b1
    if mistake == "keepdims_bias":
        out["b2"] = ds.sum(axis=0, keepdims=True)
    if mistake == "w1_with_w2_reg":
        out["W1"] = X.T @ dh + 2 * reg * W2.sum()
    return out


def _with(mistake):
    return lambda *a, **kw: grads(*a, **kw, mistake=mistake)


def test_correct_derivation_passes():
    assert_grads_match(loss, grads, two_layer_problem())


def test_relu_convention_at_the_kink_is_not_reported():
    """1[z >= 0] and 1[z > 0] differ only at z == 0, which the strategy keeps away from: the
    choice of relu'(0) is a convention, not a bug."""
    assert_grads_match(loss, _with("mask_ge_on_input"), two_layer_problem())


def test_relu_convention_shows_only_at_an_exact_zero():
    X = np.array([[1.0]])
    example = dict(X=X, y=np.array([1]), W1=np.array([[1.0]]), b1=np.array([-1.0]),
                   W2=np.array([[1.0, -1.0]]), b2=np.zeros(2), reg=0.0)  # z = 0 exactly
    with pytest.raises(GradientMismatch):
        assert_grads_match_at(loss, _with("mask_ge_on_input"), example)
    assert_grads_match_at(loss, grads, example)


def test_missing_mean_is_found_and_shrunk_to_two_samples():
    with pytest.raises(GradientMismatch) as info:
        assert_grads_match(loss, _with("no_mean"), two_layer_problem())
    err = info.value
    # with one sample the /N makes no difference, so the smallest counterexample has two
    assert err.example["X"].shape[0] == 2
    assert err.name in {"W1", "b1", "W2", "b2"} and err.index is not None
    np.testing.assert_allclose(err.yours, 2 * err.autograd, rtol=1e-6)  # off by a factor N = 2
    msg = str(err)
    assert f"your gradient for {err.name!r} disagrees with autograd at index {err.index}" in msg
    assert "rel_error" in msg and "X = array(" in msg


@pytest.mark.parametrize("mistake, names", [("mask_on_output", {"W1", "b1"}),
                                            ("bias_reg", {"b1"}), ("w1_with_w2_reg", {"W1"})])
def test_wrong_derivations_are_found(mistake, names):
    """Found, not shrunk (shrinking is tested above): no assertion here needs a small example."""
    with pytest.raises(GradientMismatch) as info:
        assert_grads_match(loss, _with(mistake), two_layer_problem(), shrink=False)
    assert info.value.name in names
    assert repr(info.value.name) in str(info.value)
    if mistake in ("bias_reg", "w1_with_w2_reg"):
        assert info.value.example["reg"] > 0  # only a nonzero reg shows these


def test_wrong_gradient_shape_is_reported():
    with pytest.raises(GradientMismatch, match=r"'b2' has shape \(1, \d\) but the input has shape"):
        assert_grads_match(loss, _with("keepdims_bias"), two_layer_problem(), shrink=False)


def test_without_shrinking_the_first_failing_example_is_reported():
    """shrink=False: the mistake still fails, and the report is the first example it failed on:
    every example tried before it passed, and after it only its replay ran (no smaller ones)."""
    seen = []

    def recorded(**kw):
        seen.append({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
        return grads(**kw, mistake="no_mean")

    with pytest.raises(GradientMismatch) as info:
        assert_grads_match(loss, recorded, two_layer_problem(), shrink=False)
    example = info.value.example

    def is_reported(kw):
        return all(np.array_equal(kw[k], example[k]) for k in example)

    first = next(i for i, kw in enumerate(seen) if is_reported(kw))
    assert all(is_reported(kw) for kw in seen[first:])
    for kw in seen[:first]:
        assert_grads_match_at(loss, _with("no_mean"), kw)
    assert info.value.name in {"W1", "b1", "W2", "b2"} and len(example["y"]) >= 2


# ---------------------------------------------------------------- other call forms

def test_positional_inputs_and_tuple_of_gradients():
    def f(x, w):
        return (x @ w).tanh().sum()

    def mine(x, w):
        dpre = 1 - np.tanh(x @ w) ** 2
        return dpre @ w.T, x.T @ dpre

    def wrong(x, w):
        dpre = 1 - np.tanh(x @ w) ** 2
        return dpre @ w.T, x.T @ dpre.T.T * 1.5

    shapes = (float_arrays((3, 2), away_from=()), float_arrays((2, 4), away_from=()))
    assert_grads_match(f, mine, shapes)
    with pytest.raises(GradientMismatch, match="input 1"):
        assert_grads_match(f, wrong, shapes)


def test_wrt_selects_the_gradients_to_check():
    def f(x, w):
        return (x * w).sum()

    assert_grads_match(f, lambda x, w: (x,), {"x": float_arrays((3,)), "w": float_arrays((3,))},
                       wrt=["w"])


def test_dict_of_strategies_and_max_examples():
    calls = []

    def mine(a):
        calls.append(1)
        return {"a": 2 * a}

    assert_grads_match(lambda a: (a * a).sum(), mine, {"a": float_arrays()}, max_examples=7)
    assert len(calls) <= 7


@pytest.mark.parametrize("mine, err, match", [
    (lambda a: {"b": a}, ValueError, "names no input"),
    (lambda a: (a, a), ValueError, "returned 2 gradient"),
])
def test_usage_errors_are_clear(mine, err, match):
    with pytest.raises(err, match=match):
        assert_grads_match_at(lambda a: a.sum(), mine, {"a": np.ones(2)})


def test_forward_must_return_a_scalar():
    with pytest.raises(TypeError, match="scalar Tensor"):
        assert_grads_match_at(lambda a: a * 2.0, lambda a: {"a": a}, {"a": np.ones(2)})


def test_the_module_docstring_example_runs():
    """The example in tinygrad_mini.testing's docstring is real code that passes."""
    doc = testing.__doc__
    code = textwrap.dedent(doc[doc.index("    import numpy"):doc.index("The strategies")])
    scope: dict = {}
    exec(compile(code, "<testing docstring>", "exec"), scope)
    scope["test_my_backprop"]()
