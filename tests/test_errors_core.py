"""Bad input to the core (Tensor, ops, F.*) gets a ValueError/TypeError/RuntimeError naming the
offending value or shapes; never a raw numpy message or an internal error."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor


def T(*shape, dtype=np.float64, grad=False):
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=grad)


def _names_shapes(msg: str, *shapes) -> bool:
    return all(str(tuple(s)) in msg for s in shapes)


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_broadcast_mismatch_names_both_shapes(op):
    a, b = T(2, 3), T(4,)
    with pytest.raises(ValueError) as info:
        eval(f"a {op} b")
    msg = str(info.value)
    assert _names_shapes(msg, (2, 3), (4,)) and "broadcast" in msg
    assert "operands could not be broadcast" not in msg  # numpy's own wording stays inside


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4), st.data())
def test_incompatible_shapes_always_raise_value_error(shapes, data):
    """Grow one side of a compatible pair by 1 where it is > 1 to break it."""
    sa, sb = shapes.input_shapes
    grow = [i for i, n in enumerate(sb) if n > 1]
    if not grow:
        return
    i = data.draw(st.sampled_from(grow))
    sb = sb[:i] + (sb[i] + 1,) + sb[i + 1:]
    try:
        np.broadcast_shapes(sa, sb)
        return  # still compatible (the other side had a 1 there)
    except ValueError:
        pass
    with pytest.raises(ValueError) as info:
        T(*sa) * T(*sb)
    assert _names_shapes(str(info.value), sa, sb)


@pytest.mark.parametrize("sa, sb", [((2, 3), (4, 2)), ((3,), (4,)), ((2, 3), (2,)),
                                    ((5, 2, 3), (4, 2))])
def test_matmul_mismatch_names_both_shapes(sa, sb):
    with pytest.raises(ValueError) as info:
        T(*sa) @ T(*sb)
    assert _names_shapes(str(info.value), sa, sb)


def test_matmul_batch_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        T(2, 3, 4) @ T(5, 4, 2)
    assert _names_shapes(str(info.value), (2, 3, 4), (5, 4, 2))


def test_matmul_rejects_0d():
    with pytest.raises(ValueError, match=r"\(\)"):
        T(2, 3) @ Tensor(np.float64(2.0))


@pytest.mark.parametrize("xs, ws, bs, named", [
    ((2, 3), (4, 5), (5,), [(2, 3), (4, 5)]),  # 3 features vs 4
    ((2, 3), (3, 5), (4,), [(4,), (3, 5)]),  # bias vs weight
    ((2, 3), (3, 5), (1, 5), [(1, 5), (3, 5)]),
    ((3,), (3, 5), (5,), [(3,), (3, 5)]),  # not 2-D
    ((2, 3), (3,), None, [(2, 3), (3,)]),
])
def test_affine_mismatch_names_shapes(xs, ws, bs, named):
    b = None if bs is None else T(*bs)
    with pytest.raises(ValueError) as info:
        F.affine(T(*xs), T(*ws), b)
    assert _names_shapes(str(info.value), *named)


def test_linear_mismatch_names_shapes():
    with pytest.raises(ValueError) as info:
        F.linear(T(2, 3), T(3, 2))  # weight is (out, in): in = 2 != 3
    assert _names_shapes(str(info.value), (2, 3), (3, 2))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        F.linear(T(2, 3), T(4, 3), T(3,))


def test_reshape_to_a_wrong_size():
    with pytest.raises(ValueError) as info:
        T(2, 3).reshape(4, 2)
    assert _names_shapes(str(info.value), (4, 2), (2, 3))


@pytest.mark.parametrize("call, err, match", [
    (lambda: T(2, 3).reshape(2.0, 3), TypeError, "2.0"),
    (lambda: T(2, 3).permute(0, 0), ValueError, "repeated"),
    (lambda: T(2, 3).permute(0), ValueError, r"\(0,\)"),
    (lambda: T(2, 3).transpose(0, 1, 2), ValueError, "two dims"),
    (lambda: T(2, 3).flatten(1, 0), ValueError, "start_dim"),
])
def test_movement_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_index_out_of_range_names_the_shape():
    with pytest.raises(IndexError, match=r"5.*\(2, 3\)"):
        T(2, 3)[5]


# ---------------------------------------------------------------- axes

@pytest.mark.parametrize("method", ["sum", "mean", "max", "min", "softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_bad_axis_is_a_value_error_naming_it(method, axis):
    with pytest.raises(ValueError, match=rf"axis {axis}\b.*2 dims"):
        getattr(T(2, 3), method)(axis)


@pytest.mark.parametrize("method", ["sum", "mean", "max"])
def test_repeated_or_non_int_axis(method):
    with pytest.raises(ValueError, match="repeated"):
        getattr(T(2, 3), method)((1, -1))
    with pytest.raises(TypeError, match="1.5"):
        getattr(T(2, 3), method)(1.5)


def test_max_of_empty_tensor():
    with pytest.raises(ValueError, match=r"\(0, 3\)"):
        T(0, 3).max()


# ---------------------------------------------------------------- dtypes and data

@pytest.mark.parametrize("data", [np.array([1 + 2j]), np.array([object(), 1], dtype=object),
                                  np.array(["a", "b"]), ["a", "b"], "abc", {1: 2}, None,
                                  {1.0, 2.0}])
def test_bad_data_is_a_type_error(data):
    with pytest.raises(TypeError, match="Tensor"):
        Tensor(data)


def test_ragged_list_is_a_value_error():
    with pytest.raises(ValueError, match="rectangular"):
        Tensor([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint8, np.bool_])
def test_requires_grad_on_non_float_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        Tensor(np.zeros(2, dtype=dtype), requires_grad=True)


@pytest.mark.parametrize("other", ["a", None, object(), {1: 2}])
def test_unsupported_operand_is_a_type_error(other):
    for op in ("+", "*", "-", "/", "@"):
        with pytest.raises(TypeError):
            eval(f"T(2) {op} other")
        with pytest.raises(TypeError):
            eval(f"other {op} T(2)")


def test_tensor_exponent_is_a_type_error():
    with pytest.raises(TypeError, match="exponent"):
        T(2) ** T(2)


def test_item_of_many_elements():
    with pytest.raises(ValueError, match=r"\(2,\)"):
        T(2).item()


def test_functional_rejects_non_tensor_data():
    with pytest.raises(TypeError, match="str"):
        F.relu("abc")
    with pytest.raises(TypeError, match="affine w"):
        F.affine(T(2, 3), "w")


# ---------------------------------------------------------------- backward

def test_backward_on_a_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        T(2).sum().backward()


def test_backward_non_scalar_without_grad():
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (T(2, 3, grad=True) * 2.0).backward()


def test_backward_grad_shape_and_dtype():
    y = T(2, 3, grad=True) * 2.0
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="numeric"):
        y.backward(np.array([["a"] * 3] * 2))


# ---------------------------------------------------------------- cross_entropy targets

LOGITS = Tensor(np.zeros((3, 4)), requires_grad=True)


@pytest.mark.parametrize("target, match", [
    (np.array([0, 4, 1]), r"target value 4 at position 1 .*4 classes"),
    (np.array([0, 1, 9]), r"target value 9 at position 2"),
    (np.array([-1, 0, 1]), r"target value -1 at position 0"),
    (np.array([0.0, 1.5, 2.0]), r"integer class indices.*1\.5"),
    (np.array([0.0, 1.0, 2.0]), r"integer class indices.*float64"),
    (Tensor(np.array([0.0, 1.0, 2.0])), r"integer class indices"),
    (np.array([True, False, True]), r"integer class indices.*bool"),
    (np.array(["0", "1", "2"]), r"integer class indices"),
    (np.array([0, 1]), r"shape \(3,\).*got \(2,\)"),
    (np.array([[0], [1], [2]]), r"shape \(3,\).*got \(3, 1\)"),
    (np.array(1), r"shape \(3,\).*got \(\)"),
])
def test_cross_entropy_rejects_bad_targets(target, match):
    with pytest.raises(ValueError, match=match):
        F.cross_entropy(LOGITS, target)


def test_cross_entropy_n1_targets_never_broadcast_into_an_nxn_loss():
    with pytest.raises(ValueError):
        F.cross_entropy(LOGITS, np.array([[0], [1], [2]]), reduction="none")


@pytest.mark.parametrize("logits, err, match", [
    (T(4), ValueError, r"2-D.*\(4,\)"),
    (T(2, 3, 4), ValueError, r"2-D.*\(2, 3, 4\)"),
    (Tensor(np.zeros((3, 4), dtype=np.int64)), TypeError, "floating"),
])
def test_cross_entropy_rejects_bad_logits(logits, err, match):
    with pytest.raises(err, match=match):
        F.cross_entropy(logits, np.zeros(logits.shape[0] if logits.ndim else 1, dtype=np.int64))


def test_cross_entropy_rejects_bad_reduction():
    with pytest.raises(ValueError, match="'avg'"):
        F.cross_entropy(LOGITS, np.array([0, 1, 2]), reduction="avg")


@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_cross_entropy_any_out_of_range_label_is_named(n, c, data):
    t = data.draw(hnp.arrays(np.int64, n, elements=st.integers(-3, c + 3)))
    bad = (t < 0) | (t >= c)
    logits = Tensor(np.zeros((n, c)))
    if not bad.any():
        F.cross_entropy(logits, t)
        return
    with pytest.raises(ValueError) as info:
        F.cross_entropy(logits, t)
    i = int(np.argmax(bad))
    assert re.search(rf"target value {t[i]} at position {i}\b", str(info.value))


def test_cross_entropy_accepts_lists_int_tensors_and_unsigned():
    want = F.cross_entropy(LOGITS, np.array([0, 1, 2])).item()
    for t in ([0, 1, 2], Tensor(np.array([0, 1, 2])), np.array([0, 1, 2], dtype=np.uint8)):
        assert F.cross_entropy(LOGITS, t).item() == want
