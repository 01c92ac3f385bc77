"""The gradient checker itself: numerical_grad and rel_error on functions with known derivatives,
gradcheck passing on correct gradients (float32 inputs too), failing with a report on a wrong one,
and telling kinks apart from wrong gradients."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor, get_default_dtype, ops
from tinygrad_mini.gradcheck import (GradcheckError, GradcheckResult, gradcheck, numerical_grad,
                                     rel_error)
from tinygrad_mini.tensor import _apply
from tinygrad_mini.testing import float_arrays


# ---------------------------------------------------------------- custom ops with planted bugs

class SquareHalfGrad(ops.Function):
    """z = x^2 with a wrong backward: g x instead of 2 g x."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * self.x,)


class MulWrongSecond(ops.Function):
    """z = x y with dz/dy wrongly taken as y (right: x); dz/dx is right."""

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, grad):
        return grad * self.y, grad * self.y


class IdentityTransposedGrad(ops.Function):
    """z = x (square); backward returns G^T: right only for a symmetric upstream gradient."""

    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return (grad.T.copy(),)


class ReLUTimesFive(ops.Function):
    """z = relu(x) with dz/dx = 5 1[x > 0]: wrong everywhere x > 0, including right next to 0."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, grad):
        return (grad * 5.0 * (self.x > 0),)


# ---------------------------------------------------------------- numerical_grad and rel_error

@given(float_arrays(min_value=-2.0, max_value=2.0, away_from=()))
def test_numerical_grad_of_a_cubic(x):
    num = numerical_grad(lambda a: np.sum(a ** 3), x)
    np.testing.assert_allclose(num, 3 * x ** 2, rtol=1e-6, atol=1e-7)
    assert num.dtype == np.float64 and num.shape == x.shape


def test_numerical_grad_takes_a_tensor_and_restores_it():
    x = Tensor(np.array([[0.5, -1.0], [2.0, 0.25]]), requires_grad=True)
    before = x.data.copy()
    num = numerical_grad(lambda t: (t.exp() * t).sum(), x)  # d/dx x e^x = (1 + x) e^x
    np.testing.assert_allclose(num, (1 + before) * np.exp(before), rtol=1e-8)
    np.testing.assert_array_equal(x.data, before)
    assert x.grad is None  # f ran under no_grad


@pytest.mark.parametrize("bad, err, match", [
    (lambda: numerical_grad(lambda a: a * 2, np.ones(3)), ValueError, r"scalar.*\(3,\)"),
    (lambda: numerical_grad(lambda a: a.sum(), np.arange(3)), TypeError, "floating"),
    (lambda: numerical_grad(lambda a: a.sum(), [1.0, 2.0]), TypeError, "list"),
    (lambda: numerical_grad(lambda a: a.sum(), np.broadcast_to(np.ones(1), (3,))), ValueError,
     "read-only"),
    (lambda: numerical_grad(lambda a: a.sum(), np.ones(3), eps=0.0), ValueError, "eps"),
])
def test_numerical_grad_rejects_bad_input(bad, err, match):
    with pytest.raises(err, match=match):
        bad()


def test_rel_error_values():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0]), np.array([2.0])) == pytest.approx(1 / 3)
    # norm-wise: a tiny element that differs does not dominate
    assert rel_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) < 1e-11
    assert np.isnan(rel_error(np.array([np.nan]), np.array([1.0])))
    assert rel_error(Tensor(np.array([3.0])), np.array([1.0])) == pytest.approx(0.5)


def test_rel_error_rejects_different_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(1, 3\)"):
        rel_error(np.ones(3), np.ones((1, 3)))


@given(float_arrays(away_from=()), st.floats(-1.0, 1.0))
def test_rel_error_is_symmetric_and_bounded(a, shift):
    b = a + shift
    r = rel_error(a, b)
    assert r == rel_error(b, a)
    assert 0.0 <= r <= 1.0


# ---------------------------------------------------------------- gradcheck passes

def _two_layer(x, w1, b1, w2, b2, y):
    return F.cross_entropy(F.affine(F.affine(x, w1, b1).tanh(), w2, b2), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradcheck_passes_on_a_correct_net(dtype):
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(dtype) for s in [(4, 3), (3, 5), (5,), (5, 2), (2,)]]
    before = [a.copy() for a in args]
    res = gradcheck(_two_layer, *args, np.array([0, 1, 1, 0]))
    assert res and isinstance(res, GradcheckResult) and res.ok
    assert set(res.rel_errors) == {0, 1, 2, 3, 4}
    assert max(res.rel_errors.values()) < 1e-7  # checked in float64, even for float32 data
    for a, b in zip(args, before):  # the caller's arrays are untouched
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


def test_gradcheck_float32_inputs_are_checked_in_float64():
    x = Tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    seen = []

    def f(t):
        seen.append((t.dtype, Tensor([1.0]).dtype))  # the data, and lists made inside f
        return (t.sigmoid() * t).sum(axis=1)

    assert gradcheck(f, x)
    assert all(d == (np.float64, np.float64) for d in seen)
    assert get_default_dtype() == np.float32  # restored afterwards
    assert x.dtype == np.float32 and x.grad is None  # the caller's tensor is not touched


def test_gradcheck_only_checks_inputs_that_require_grad():
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((3, 2)))  # data, no grad
    w = Tensor(rng.standard_normal((2, 2)), requires_grad=True)
    res = gradcheck(lambda a, b: (a @ b).exp(), x, w)
    assert list(res.rel_errors) == [1]


def test_gradcheck_restores_default_dtype_when_f_raises():
    def f(t):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        gradcheck(f, np.ones(2))
    assert get_default_dtype() == np.float32


@pytest.mark.parametrize("f, err, match", [
    (lambda t: t.data, TypeError, "must return a Tensor"),
    (lambda t: t > 0, TypeError, "floating"),
])
def test_gradcheck_rejects_bad_f(f, err, match):
    with pytest.raises(err, match=match):
        gradcheck(f, np.ones(2))


def test_gradcheck_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda t: t * 2.0, Tensor(np.ones(2)))


# ---------------------------------------------------------------- gradcheck fails, with a report

def test_gradcheck_reports_a_wrong_gradient():
    x = np.array([[0.5, -1.5, 2.0], [1.0, -0.25, 3.0]])
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: _apply(SquareHalfGrad(), t), x, seed=3)
    res = info.value.result
    assert not res.ok and len(res.failures) == 1
    m = res.failures[0]
    assert m.input_index == 0
    u = np.random.default_rng(3).standard_normal(x.shape)  # gradcheck's upstream gradient
    worst = np.unravel_index(np.argmax(np.abs(x * u)), x.shape)  # |wrong - right| = |x u|
    assert m.index == tuple(int(i) for i in worst)
    assert m.analytic == pytest.approx(x[worst] * u[worst])
    assert m.numerical == pytest.approx(2 * x[worst] * u[worst], rel=1e-6)
    assert res.rel_errors[0] == pytest.approx(1 / 3, rel=1e-6)  # |x - 2x| / (|x| + |2x|)
    msg = str(info.value)
    for part in ["input 0", f"index {m.index}", f"autograd {m.analytic:.10g}",
                 f"numerical {m.numerical:.10g}", "rel_error over the input 0.333", "6 coord"]:
        assert part in msg, part


def test_gradcheck_names_the_wrong_input():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(4), rng.standard_normal(4)
    res = gradcheck(lambda a, b: _apply(MulWrongSecond(), a, b), x, y, raise_exception=False)
    assert not res and [m.input_index for m in res.failures] == [1]
    assert res.rel_errors[0] < 1e-8
    assert "input 1" in str(res) and "input 0 (" not in str(res)


def test_gradcheck_random_upstream_catches_a_transposed_gradient():
    """A backward returning G^T is right for a symmetric G, like all-ones; the random
    upstream gradient exposes it."""
    x = np.arange(9.0).reshape(3, 3)
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda t: _apply(IdentityTransposedGrad(), t), x)
    bad = Tensor(x, requires_grad=True)
    _apply(IdentityTransposedGrad(), bad).sum().backward()
    np.testing.assert_array_equal(bad.grad, np.ones((3, 3)))  # the all-ones check would pass


# ---------------------------------------------------------------- kinks

def test_gradcheck_flags_relu_at_zero_as_a_kink():
    x = np.array([-1.0, 0.0, 2.0])
    res = gradcheck(lambda t: t.relu(), x)
    assert res.ok
    assert [m.index for m in res.kinks] == [(1,)]
    k = res.kinks[0]
    assert min(k.forward, k.backward) <= k.analytic <= max(k.forward, k.backward)
    assert "kink" in str(res)


def test_gradcheck_flags_a_kink_within_eps():
    x = np.array([3e-7, 1.0])  # the central difference straddles relu's kink
    res = gradcheck(lambda t: (t.relu() * t.relu()).sum() + t.relu().sum(), x)
    assert res.ok and [m.index for m in res.kinks] == [(0,)]


def test_gradcheck_max_tie_and_abs_at_zero_pass():
    x = np.array([[1.0, 1.0, 0.5], [0.0, -2.0, 0.0]])
    assert gradcheck(lambda t: t.max(axis=1), x)  # ties split evenly: the central difference
    assert gradcheck(lambda t: t.abs(), np.array([0.0, 1.0, -1.0]))


def test_gradcheck_kink_does_not_hide_a_wrong_gradient():
    """At x = 0 the one-sided slopes of relu are 0 and 1: an autograd value of 5 lies outside them,
    so it is reported as wrong, not excused as a kink."""
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: _apply(ReLUTimesFive(), t), np.array([1e-7, 1.0]), seed=1)
    assert info.value.result.n_bad[0] == 2


def test_gradcheck_nan_gradient_is_a_failure():
    class NaNGrad(ops.Function):
        def forward(self, x):
            return x * 1.0

        def backward(self, grad):
            return (grad * np.nan,)

    res = gradcheck(lambda t: _apply(NaNGrad(), t), np.ones(2), raise_exception=False)
    assert not res and np.isnan(res.failures[0].analytic)
