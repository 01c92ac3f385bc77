"""The fused primitives (affine, linear, softmax cross-entropy) equal the ops they fuse, in values
and gradients, and float32 stays float32 through a whole training step (params, grads, loss).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor, nn, ops, optim
from tinygrad_mini.testing import class_labels, float_arrays

RTOL = {np.float64: 1e-12, np.float32: 1e-5}


@st.composite
def affine_problem(draw, dtype=np.float64):
    """x (N, D), w (D, H), b (H,) and an upstream gradient g (N, H)."""
    n, d, h = (draw(st.integers(1, 5)) for _ in range(3))
    x = draw(float_arrays((n, d), dtype=dtype))
    w = draw(float_arrays((d, h), dtype=dtype))
    b = draw(float_arrays((h,), dtype=dtype))
    g = draw(float_arrays((n, h), dtype=dtype))
    return x, w, b, g


def _grads(out: Tensor, g: np.ndarray, *leaves: Tensor) -> list:
    out.backward(g)
    return [t.grad for t in leaves]


def _leaves(*arrays: np.ndarray, needs=None) -> list[Tensor]:
    needs = needs or [True] * len(arrays)
    return [Tensor(a.copy(), requires_grad=r) for a, r in zip(arrays, needs)]


def _assert_same(fused: list, composed: list, dtype) -> None:
    for a, b in zip(fused, composed):
        if b is None:
            assert a is None
            continue
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype])


# ---------------------------------------------------------------- affine / linear

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_bias", [True, False])
@given(data=st.data())
def test_affine_equals_matmul_plus_add(dtype, with_bias, data):
    x, w, b, g = data.draw(affine_problem(dtype))
    xf, wf, bf = _leaves(x, w, b)
    xc, wc, bc = _leaves(x, w, b)
    fused = F.affine(xf, wf, bf if with_bias else None)
    composed = xc @ wc + bc if with_bias else xc @ wc
    _assert_same([fused.data], [composed.data], dtype)
    _assert_same(_grads(fused, g, xf, wf, bf), _grads(composed, g, xc, wc, bc), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data(), lead=st.sampled_from([(), (2,), (2, 3)]))
def test_linear_equals_matmul_transposed_plus_add(dtype, data, lead):
    x, w, b, g = data.draw(affine_problem(dtype))
    x = np.broadcast_to(x, lead + x.shape).copy()
    g = np.broadcast_to(g, lead + g.shape).copy()
    weight = w.T.copy()  # (H, D), torch's layout
    xf, wf, bf = _leaves(x, weight, b)
    xc, wc, bc = _leaves(x, weight, b)
    fused = F.linear(xf, wf, bf)
    composed = xc @ wc.T + bc
    _assert_same([fused.data], [composed.data], dtype)
    _assert_same(_grads(fused, g, xf, wf, bf), _grads(composed, g, xc, wc, bc), dtype)


@given(data=st.data())
def test_affine_input_without_grad_gets_none_and_params_still_match(data):
    x, w, b, g = data.draw(affine_problem())
    xf, wf, bf = _leaves(x, w, b, needs=[False, True, True])
    xc, wc, bc = _leaves(x, w, b, needs=[False, True, True])
    fused_grads = _grads(F.affine(xf, wf, bf), g, xf, wf, bf)
    composed_grads = _grads(xc @ wc + bc, g, xc, wc, bc)
    assert fused_grads[0] is None and composed_grads[0] is None
    _assert_same(fused_grads[1:], composed_grads[1:], np.float64)


def test_affine_keeps_only_what_backward_needs():
    """With the input batch needing no gradient, the node holds x (for dW) but not W (for dX)."""
    x, w, b = np.ones((3, 4)), np.ones((4, 2)), np.zeros(2)
    out = F.affine(Tensor(x), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True))
    saved = [v for v in vars(out.grad_fn).values() if isinstance(v, np.ndarray)]
    assert any(v is x for v in saved)
    assert not any(np.shares_memory(v, w) for v in saved if v is not x)


# ---------------------------------------------------------------- cross-entropy

@st.composite
def logits_problem(draw, dtype=np.float64):
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    s = draw(float_arrays((n, c), dtype=dtype, min_value=-20.0, max_value=20.0))
    y = draw(class_labels(n, c))
    return s, y


def _composed_cross_entropy(s: Tensor, y: np.ndarray, reduction: str) -> Tensor:
    """-log_softmax(s)[n, y_n], then mean / sum / none: the ops the fused primitive replaces."""
    picked = -s.log_softmax(axis=1)[np.arange(len(y)), y]
    return {"mean": picked.mean, "sum": picked.sum, "none": lambda: picked}[reduction]()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data())
def test_cross_entropy_equals_log_softmax_gather_mean(dtype, reduction, data):
    s, y = data.draw(logits_problem(dtype))
    sf, sc = _leaves(s, s)
    fused = F.cross_entropy(sf, y, reduction=reduction)
    composed = _composed_cross_entropy(sc, y, reduction)
    assert fused.shape == composed.shape
    _assert_same([fused.data], [composed.data], dtype)
    g = data.draw(float_arrays(fused.shape, dtype=dtype, min_dims=0, max_dims=1))
    _assert_same(_grads(fused, g, sf), _grads(composed, g, sc), dtype)


@pytest.mark.parametrize("layout", ["fortran", "transposed view", "strided slice"])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.uint64])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@given(data=st.data())
def test_cross_entropy_on_any_layout_and_label_dtype_equals_the_plain_case(layout, label_dtype,
                                                                          reduction, data):
    """The primitive picks s[n, y_n] by flat index: logits that are not C-ordered and labels that
    are not int64 give bit-for-bit the loss and gradient of C-ordered logits with int64 labels."""
    s, y = data.draw(logits_problem(np.float64))
    if layout == "fortran":
        odd = np.asfortranarray(s)
    elif layout == "transposed view":
        odd = np.ascontiguousarray(s.T).T
    else:
        wide = np.zeros((s.shape[0], 2 * s.shape[1]))
        wide[:, ::2] = s
        odd = wide[:, ::2]
    assert not odd.flags.c_contiguous or s.shape[0] == 1 or s.shape[1] == 1
    plain, other = Tensor(s.copy(), requires_grad=True), Tensor(odd, requires_grad=True)
    a = F.cross_entropy(plain, y.astype(np.int64), reduction=reduction)
    b = F.cross_entropy(other, y.astype(label_dtype), reduction=reduction)
    np.testing.assert_array_equal(a.data, b.data)
    g = data.draw(float_arrays(a.shape, dtype=np.float64, min_dims=0, max_dims=1))
    a.backward(g)
    b.backward(g)
    np.testing.assert_array_equal(plain.grad, other.grad)


def test_cross_entropy_large_logits_stay_finite_like_the_composed_form():
    """Both are shifted by the max: logits of 1e4 give the same finite loss and gradient."""
    s = np.array([[1e4, 0.0, -1e4], [5.0, 1e4, 1e4]])
    y = np.array([1, 2])
    sf, sc = _leaves(s, s)
    fused, composed = F.cross_entropy(sf, y), _composed_cross_entropy(sc, y, "mean")
    assert np.isfinite(fused.item())
    _assert_same([fused.data], [composed.data], np.float64)
    _assert_same(_grads(fused, np.float64(1.0), sf), _grads(composed, np.float64(1.0), sc),
                 np.float64)


# ---------------------------------------------------------------- dtypes end to end

def _graph_dtypes(out: Tensor) -> set:
    """The dtypes of every node's output in out's graph."""
    seen, dtypes, stack = set(), set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if not isinstance(fn, ops.Function) or id(fn) in seen:
            continue
        seen.add(id(fn))
        dtypes.add(np.dtype(fn.dtype))
        stack.extend(fn.srcs)
    return dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_step_keeps_the_dtype_end_to_end(dtype):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(12, 8, dtype=dtype, rng=1), nn.ReLU(),
                          nn.Linear(8, 6, dtype=dtype, rng=2), nn.ReLU(),
                          nn.Linear(6, 3, dtype=dtype, rng=3))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = Tensor(rng.standard_normal((5, 12)).astype(dtype))
    y = rng.integers(0, 3, 5)
    for _ in range(2):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y) * 0.5 + 1.0  # Python floats must not promote
        assert _graph_dtypes(loss) == {np.dtype(dtype)}
        assert loss.dtype == dtype and loss.data.dtype == dtype
        loss.backward()
        opt.step()
        for p in model.parameters():
            assert p.dtype == dtype and p.data.dtype == dtype
            assert p.grad is not None and p.grad.dtype == dtype
        assert np.isfinite(loss.item())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_step_keeps_the_dtype_with_raw_tensors(dtype):
    """F.affine, relu, F.linear and cross_entropy on raw Tensors, with an integer label array."""
    rng = np.random.default_rng(1)
    w1 = Tensor(rng.standard_normal((7, 4)).astype(dtype), requires_grad=True)
    b1 = Tensor(np.zeros(4, dtype), requires_grad=True)
    w2 = Tensor(rng.standard_normal((3, 4)).astype(dtype), requires_grad=True)
    x = Tensor(rng.standard_normal((6, 7)).astype(dtype), requires_grad=True)
    loss = F.cross_entropy(F.linear(F.affine(x, w1, b1).relu(), w2), rng.integers(0, 3, 6))
    loss.backward()
    assert loss.dtype == dtype
    for t in (x, w1, b1, w2):
        assert t.grad.dtype == dtype
