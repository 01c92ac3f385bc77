"""Engine behaviours, one test per behaviour: accumulation, deep graphs, freeing, no_grad, detach,
dtypes, aliasing, the NaN gradient convention and anomaly detection."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tinygrad_mini.nn.functional as F
from tinygrad_mini import (Tensor, detect_anomaly, enable_grad, get_default_dtype,
                           is_grad_enabled, no_grad, set_default_dtype)


@pytest.fixture
def restore_default_dtype():
    prev = get_default_dtype()
    yield
    set_default_dtype(prev)


def _leaf(*shape, seed=0, dtype=np.float64):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype),
                  requires_grad=True)


# ---------------------------------------------------------------- accumulation and graph shape

def test_reused_node_accumulates():
    a = _leaf(3)
    b = a + a
    c = b + b
    c.sum().backward()
    np.testing.assert_array_equal(a.grad, np.full(3, 4.0))


def test_reused_node_in_a_product_accumulates():
    a = _leaf(4)
    (a * a).sum().backward()  # d(a^2)/da = 2a: both uses contribute
    np.testing.assert_allclose(a.grad, 2 * a.data, rtol=1e-15)


def test_two_branches_accumulate_into_one_leaf():
    a = _leaf(2, 3)
    h = a.exp()
    (h * 2.0 + h.sum(axis=0) * 3.0).sum().backward()  # h feeds two branches
    np.testing.assert_allclose(a.grad, np.exp(a.data) * (2.0 + 3.0 * 2), rtol=1e-14)


def test_deep_chain_100k_nodes():
    x = _leaf(2)
    y = x
    for _ in range(100_000):
        y = y + 0.5
    y.sum().backward()  # an explicit-stack topological sort: no RecursionError
    np.testing.assert_array_equal(x.grad, np.ones(2))
    np.testing.assert_allclose(y.data, x.data + 50_000.0)


def test_backward_twice_on_leaves_accumulates():
    x = _leaf(3)
    (x * x).sum().backward()
    (x * x).sum().backward()  # a fresh graph; x.grad is added to, as in torch
    np.testing.assert_allclose(x.grad, 4 * x.data, rtol=1e-15)


def test_second_backward_without_retain_raises():
    x = _leaf(3)
    loss = (x.exp() * 2.0).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()


def test_retain_graph_allows_a_second_backward():
    x = _leaf(3)
    loss = (x.exp() * 2.0).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * np.exp(x.data), rtol=1e-14)


def test_backward_on_a_leaf_itself():
    x = _leaf(3)
    g = np.array([1.0, 2.0, 3.0])
    x.backward(g)
    np.testing.assert_array_equal(x.grad, g)
    g[0] = 99.0  # the caller's array is not kept as the grad
    assert x.grad[0] == 1.0


def test_unused_leaf_keeps_no_grad():
    x, w = _leaf(3), _leaf(3, seed=1)
    (x * 2.0).sum().backward()
    assert w.grad is None


# ---------------------------------------------------------------- what is built and kept

def test_no_grad_builds_nothing():
    x = _leaf(3)
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_as_decorator_and_restored_after_an_exception():
    @no_grad()
    def f(t):
        return t * 3.0

    x = _leaf(2)
    assert f(x).grad_fn is None
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            raise ZeroDivisionError
    assert is_grad_enabled()
    with no_grad():
        with enable_grad():
            assert (x * 2.0).requires_grad


def test_detach_cuts_the_graph():
    x = _leaf(3)
    d = x.detach()
    assert d.grad_fn is None and not d.requires_grad
    assert np.shares_memory(d.data, x.data)  # as torch: the same data, no copy
    (d * 3.0 + x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(3))  # nothing flowed through d


def test_only_leaves_keep_grad():
    x = _leaf(2, 3)
    h = x * 2.0
    h.relu().sum().backward()
    assert h.grad is None and not h.is_leaf
    assert x.grad is not None and x.is_leaf


def test_leaf_grads_never_alias_each_other():
    a, b = _leaf(2, 3), _leaf(2, 3, seed=1)
    c = a + b  # Add's backward hands the same array to both inputs
    g = np.ones((2, 3))
    c.backward(g)
    assert not np.shares_memory(a.grad, b.grad)
    assert not np.shares_memory(a.grad, g) and not np.shares_memory(b.grad, g)
    a.grad += 5.0
    np.testing.assert_array_equal(b.grad, np.ones((2, 3)))


def test_leaf_grads_never_alias_through_views():
    a, b = _leaf(6), _leaf(3, 2, seed=1)
    (a.reshape(2, 3) + b.T).sum().backward()  # reshape / permute gradients are views
    assert a.grad.base is None and b.grad.base is None
    a.grad[0] = 7.0
    np.testing.assert_array_equal(b.grad, np.ones((3, 2)))


def test_saved_arrays_are_released_after_backward():
    x = _leaf(4)
    h = (x * 2.0).exp()
    fn = weakref.ref(h.grad_fn)
    saved = weakref.ref(h.grad_fn.out)  # Exp keeps its output for backward
    loss = (h * 3.0).sum()
    del h
    loss.backward()
    gc.collect()
    assert fn() is None, "an interior Function outlived backward"
    assert saved() is None, "a saved array outlived backward"
    assert loss.grad_fn.freed and not loss.grad_fn.__dict__


def test_retain_graph_keeps_saved_arrays():
    x = _leaf(4)
    h = (x * 2.0).exp()
    saved = weakref.ref(h.grad_fn.out)
    loss = (h * 3.0).sum()
    del h
    loss.backward(retain_graph=True)
    gc.collect()
    assert saved() is not None


# ---------------------------------------------------------------- dtypes

def test_float32_in_float32_grads_out():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((5, 4)).astype(np.float32))
    w1 = Tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    b1 = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    w2 = Tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)
    h = F.affine(x, w1, b1).relu()
    loss = F.cross_entropy(h @ w2, np.array([0, 1, 1, 0, 1])) + 0.1 * (w1 * w1).sum()
    assert loss.dtype == np.float32
    loss.backward()
    for p in (w1, b1, w2):
        assert p.grad.dtype == np.float32


def test_float64_stays_float64():
    x = _leaf(3, 2)
    out = (x.tanh() @ Tensor(np.ones((2, 2)))).log_softmax().mean()
    assert out.dtype == np.float64
    out.backward()
    assert x.grad.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_scalar_never_changes_dtype(dtype):
    t = Tensor(np.array([1.0, 2.0], dtype=dtype), requires_grad=True)
    results = [t * 0.1, 0.1 * t, t + 1, 3 - t, t / 3.0, 2.0 / t, t ** 2.0, 2.0 ** t,
               t * np.float64(0.1), np.float64(0.1) * t, t - np.float32(1.5)]
    for r in results:
        assert r.dtype == dtype
    # and the float64 product is computed in float64, not rounded through float32
    if dtype == np.float64:
        assert (t * 0.1).data[0] == 0.1


def test_list_and_scalar_get_the_default_dtype(restore_default_dtype):
    assert get_default_dtype() == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i"  # integer data stays integer (labels)
    assert Tensor(np.array([1.0])).dtype == np.float64  # a float64 array keeps its dtype
    set_default_dtype(np.float64)
    assert Tensor([1.0, 2.0]).dtype == np.float64
    assert Tensor(0.5).dtype == np.float64
    set_default_dtype(np.float32)
    assert Tensor([[0.5]]).dtype == np.float32


def test_set_default_dtype_rejects_non_floating(restore_default_dtype):
    with pytest.raises(TypeError, match="int64"):
        set_default_dtype(np.int64)


@pytest.mark.parametrize("data", [np.array([1, 2]), np.array([True, False]), [1, 2]])
def test_int_tensor_requires_grad_raises(data):
    with pytest.raises(TypeError, match="floating"):
        Tensor(data, requires_grad=True)


def test_int_tensor_is_allowed_as_data():
    y = Tensor(np.array([0, 2, 1]))
    assert y.dtype.kind == "i" and not y.requires_grad
    loss = F.cross_entropy(_leaf(3, 3), y)
    loss.backward()


def test_non_scalar_backward_without_grad_raises():
    x = _leaf(3)
    with pytest.raises(RuntimeError, match=r"shape \(3,\)"):
        (x * 2.0).backward()


def test_backward_grad_of_wrong_shape_raises():
    x = _leaf(3)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        (x * 2.0).backward(np.ones(2))


# ---------------------------------------------------------------- NaN

def _nan_input(n=4, at=1):
    x = np.linspace(0.5, 2.0, n)
    x[at] = np.nan
    return Tensor(x, requires_grad=True)


NAN_READING_OPS = {
    "exp": lambda t: t.exp(), "log": lambda t: t.log(), "pow": lambda t: t ** 3.0,
    "sqrt": lambda t: t.sqrt(), "relu": lambda t: t.relu(), "leaky_relu": lambda t: t.leaky_relu(),
    "abs": lambda t: t.abs(), "tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid(),
    "mul_by_itself": lambda t: t * t, "div_by_itself": lambda t: 1.0 / t,
}


@pytest.mark.parametrize("name", NAN_READING_OPS)
def test_nan_gradient_convention_elementwise(name):
    """An op whose derivative reads the input gives NaN at a NaN input, never 0 (relu included)."""
    x = _nan_input()
    with np.errstate(invalid="ignore"):
        out = NAN_READING_OPS[name](x)
        out.backward(np.ones(out.shape))
    assert np.isnan(out.data[1]) and np.isnan(x.grad[1])
    assert np.all(np.isfinite(x.grad[[0, 2, 3]]))


@pytest.mark.parametrize("name", ["max", "min", "softmax", "log_softmax", "cross_entropy"])
def test_nan_gradient_convention_along_a_slice(name):
    """Reductions and softmax: the slice holding the NaN gets NaN, the other slices stay finite."""
    x = Tensor(np.array([[1.0, np.nan, 0.5], [0.2, 0.3, 0.1]]), requires_grad=True)
    fns = {"max": lambda t: t.max(axis=1), "min": lambda t: t.min(axis=1),
           "softmax": lambda t: t.softmax(axis=1), "log_softmax": lambda t: t.log_softmax(axis=1),
           "cross_entropy": lambda t: F.cross_entropy(t, np.array([0, 2]), reduction="none")}
    with np.errstate(invalid="ignore"):
        out = fns[name](x)
        out.backward(np.ones(out.shape))
    assert np.isnan(out.data[0]).all() and np.isfinite(out.data[1]).all()
    assert np.isnan(x.grad[0]).all() and np.isfinite(x.grad[1]).all()


@pytest.mark.parametrize("name", ["add", "sum", "reshape", "index", "mul_other"])
def test_nan_gradient_convention_derivative_independent_of_the_value(name):
    """Where d out / d x does not read x (x + y, sums, reshapes, indexing, x * c), the gradient
    passes through finite even at a NaN: the formula is applied, nothing is masked."""
    x = _nan_input()
    fns = {"add": lambda t: t + 1.0, "sum": lambda t: t.sum(), "reshape": lambda t: t.reshape(2, 2),
           "index": lambda t: t[np.array([1, 1, 3])], "mul_other": lambda t: t * 2.0}
    out = fns[name](x)
    assert np.isnan(out.data).any()
    out.backward(np.ones(out.shape))
    assert np.all(np.isfinite(x.grad))


def test_nan_reaches_every_leaf_through_a_loss():
    """In a real loss, a NaN anywhere in the forward makes every parameter's gradient NaN."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    x[0, 0] = np.nan
    w = Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    b = Tensor(np.zeros(2), requires_grad=True)
    with np.errstate(invalid="ignore"):
        loss = F.cross_entropy(F.affine(Tensor(x), w, b).relu(), np.array([0, 1, 0]))
        loss.backward()
    assert np.isnan(loss.item())
    assert np.isnan(w.grad).any() and np.isnan(b.grad).all()


# ---------------------------------------------------------------- anomaly detection

def test_detect_anomaly_reports_forward_op_and_user_line():
    x = Tensor(np.array([-1.0, 1.0]), requires_grad=True)
    with detect_anomaly():
        with pytest.raises(RuntimeError) as info:
            x.log()  # the line the report must point at
    msg = str(info.value)
    assert "Log forward produced NaN" in msg
    assert "test_engine.py" in msg and "x.log()" in msg


def test_detect_anomaly_reports_backward_op_and_user_line():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with detect_anomaly():
        y = x.sqrt()  # finite forward, infinite derivative at 0
        with pytest.raises(RuntimeError) as info:
            y.sum().backward()
    msg = str(info.value)
    assert "Pow backward produced inf" in msg
    assert "test_engine.py" in msg and "x.sqrt()" in msg


def test_without_detect_anomaly_nan_is_just_a_value():
    x = Tensor(np.array([-1.0, 1.0]), requires_grad=True)
    with np.errstate(invalid="ignore"):
        y = x.log()
    assert np.isnan(y.data[0]) and y.data[1] == 0.0
