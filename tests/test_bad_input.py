"""Issue 5's list of bad inputs, one readable test each, across the public API: every call gives the
right result or a ValueError/TypeError/RuntimeError naming the offending argument, value or shape.
The documented behaviour per function is in docs/errors.md."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinygrad_mini.nn.functional as F
from nets.mlp import MLP
from nets.two_layer import TwoLayerNet
from tinygrad_mini import Tensor, detect_anomaly, nn, optim
from tinygrad_mini.data import (DataLoader, mean_image, normalize_torch, sample_batches,
                                split_cifar10)
from tinygrad_mini.gradcheck import gradcheck, numerical_grad


def read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def images(n: int, fill: int = 0) -> np.ndarray:
    return np.full((n, 3, 2, 2), fill, dtype=np.uint8)


# ---------------------------------------------------------------- empty batches, zero-size dims

def test_empty_batch_flows_through_layers_with_the_right_shapes():
    lin = nn.Linear(3, 2, rng=0)
    x = Tensor(np.zeros((0, 3), np.float32))
    out = lin(x)
    assert out.shape == (0, 2)
    out.sum().backward()  # an empty batch contributes a zero gradient, not an error
    np.testing.assert_array_equal(lin.weight.grad, np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(lin.bias.grad, np.zeros(2, np.float32))


def test_empty_batch_cross_entropy_is_nan_mean_and_zero_sum_as_torch():
    torch = pytest.importorskip("torch")
    logits, target = np.zeros((0, 4)), np.zeros(0, np.int64)
    for reduction in ("mean", "sum"):
        ours = F.cross_entropy(Tensor(logits), target, reduction=reduction).item()
        theirs = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(target),
                                                   reduction=reduction).item()
        np.testing.assert_equal(ours, theirs)  # nan == nan here
    assert F.cross_entropy(Tensor(logits), target, reduction="none").shape == (0,)


def test_empty_batch_in_batchnorm_training_is_a_value_error_naming_the_shape():
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(0, 3\)"):
        nn.BatchNorm1d(3)(np.zeros((0, 3), np.float32))


def test_empty_dataset_is_a_value_error_for_the_loaders():
    with pytest.raises(ValueError, match="empty"):
        DataLoader((np.zeros((0, 2)), np.zeros(0, np.int64)), batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        sample_batches(np.zeros((0, 2)), np.zeros(0, np.int64), 2, 1)


@np.errstate(divide="ignore")  # log of an empty sum
def test_zero_size_dimensions_follow_numpy_and_torch():
    x = Tensor(np.zeros((2, 0), np.float32), requires_grad=True)
    np.testing.assert_array_equal(x.sum(1).data, [0.0, 0.0])  # an empty sum is 0
    assert np.isnan(x.mean(1).data).all()  # an empty mean is NaN (0/0), as torch
    assert x.log_softmax(1).shape == (2, 0)  # nothing to normalise: empty, as torch
    assert (x @ Tensor(np.ones((0, 3), np.float32))).data.tolist() == [[0.0] * 3] * 2
    assert x.reshape(0, 2).shape == (0, 2)
    with pytest.raises(ValueError, match=r"empty tensor \(shape \(2, 0\)\)"):
        x.max()  # a max has no value over nothing
    with pytest.raises(ValueError, match="no classes"):
        F.cross_entropy(x, np.zeros(2, np.int64))


# ---------------------------------------------------------------- NaN and inf

@np.errstate(all="ignore")  # numpy's warnings about NaN are not the point
def test_nan_and_inf_propagate_through_the_math():
    x = Tensor(np.array([[np.nan, 1.0, -2.0], [np.inf, 0.5, -np.inf]]))
    for out in (x.exp(), x.tanh(), x.sigmoid(), x.relu(), x * 2.0, x.sum(1), x.max(1),
                F.linear(x, np.ones((2, 3)))):
        assert np.isnan(out.data[0]).any(), "a NaN input must not disappear"
    assert np.isnan(F.cross_entropy(x, [0, 1]).item())  # NaN logits give a NaN loss, no error
    assert x.sigmoid().data[1, 0] == 1.0 and x.relu().data[1, 2] == 0.0  # inf is a value


def test_nan_is_reported_with_the_op_and_the_line_under_detect_anomaly():
    x = Tensor(np.array([-1.0, 2.0]), requires_grad=True)
    with detect_anomaly():
        with pytest.raises(RuntimeError, match=r"Log forward produced NaN.*test_bad_input\.py"):
            x.log()


@np.errstate(all="ignore")
def test_nan_loss_in_training_stops_with_the_iteration():
    net = TwoLayerNet(2, 4, 3, std=1.0, seed=0)
    X, y = np.full((10, 2), 1e30), np.zeros(10, np.int64)
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at iteration \d+"):
        net.train(X, y, X[:2], y[:2], learning_rate=1e10, num_iters=5, batch_size=2)


# ---------------------------------------------------------------- wrong dtypes

@pytest.mark.parametrize("bad", [np.array([1, "a"], dtype=object), np.array([1 + 2j, 3j]),
                                 np.array(["1", "2"]), ["a", "b"]])
def test_wrong_dtypes_are_type_errors_naming_the_dtype(bad):
    dtype = str(np.asarray(bad).dtype)
    calls = [lambda: Tensor(bad), lambda: Tensor(np.ones(2)) + bad,
             lambda: F.relu(bad), lambda: DataLoader((np.ones((2, 1)), bad))]
    for call in calls:
        with pytest.raises(TypeError, match=dtype.replace("<", "")):
            call()


def test_a_layer_refuses_input_of_another_dtype_as_torch():
    lin = nn.Linear(3, 2, rng=0)  # float32 weights
    for x, name in ((np.ones((4, 3)), "float64"), (np.ones((4, 3), np.int64), "int64")):
        with pytest.raises(TypeError, match=f"linear: input dtype {name} does not match weight "
                                            "dtype float32"):
            lin(Tensor(x))
    with pytest.raises(TypeError, match="affine: bias dtype float32 does not match weight dtype "
                                        "float64"):
        F.affine(np.ones((4, 3)), np.ones((3, 2)), np.ones(2, np.float32))
    assert lin(Tensor(np.ones((4, 3), np.float32))).dtype == np.float32  # converted: fine


def test_bool_data_is_allowed_but_cannot_require_grad():
    assert (Tensor(np.array([True, False])) * 2).data.tolist() == [2, 0]
    with pytest.raises(TypeError, match="bool"):
        Tensor(np.array([True]), requires_grad=True)
    with pytest.raises(TypeError, match="Neg is not defined for dtype bool"):
        -Tensor(np.array([True]))  # as torch: use ~ on masks


def test_integer_tensors_become_floating_in_float_math_never_truncated():
    t = Tensor(np.array([2, 3]))
    np.testing.assert_allclose((t ** 0.5).data, np.sqrt([2.0, 3.0]), rtol=1e-6)
    np.testing.assert_allclose(t.sqrt().data, np.sqrt([2.0, 3.0]), rtol=1e-6)
    assert (t ** 2).dtype == np.int64 and (t ** 2).data.tolist() == [4, 9]  # int ** int stays
    assert t.exp().dtype == np.float32 and (t * 0.5).data.tolist() == [1.0, 1.5]


def test_non_finite_floats_cannot_become_integers():
    with pytest.raises(ValueError, match="nan.*int64"):
        Tensor([1.0, float("nan")], dtype=np.int64)


# ---------------------------------------------------------------- memory layout

def test_non_contiguous_inputs_give_the_contiguous_result():
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    strided, fortran = base[:, ::2], np.asfortranarray(base[:, :3])
    w = np.linspace(-1, 1, 6).reshape(3, 2)
    for view in (strided, fortran, base[::-1, 1:4]):
        a, b = Tensor(view, requires_grad=True), Tensor(view.copy(), requires_grad=True)
        (F.affine(a, w).tanh().sum()).backward()
        (F.affine(b, w).tanh().sum()).backward()
        np.testing.assert_array_equal(a.grad, b.grad)
    lin = nn.Linear(3, 2, rng=0)
    np.testing.assert_array_equal(lin(strided.astype(np.float32)).data,
                                  lin(np.ascontiguousarray(strided, np.float32)).data)


def test_read_only_inputs_are_read_never_written():
    x = read_only(np.linspace(-1, 1, 6).reshape(2, 3))
    t = Tensor(x, requires_grad=True)
    (t * t).sum().backward()
    (t * t).sum().backward()  # accumulation goes to .grad, never into the input
    np.testing.assert_array_equal(t.grad, 4 * x)
    loader = DataLoader((x, np.arange(2)), batch_size=1, shuffle=True, seed=0)
    assert sorted(int(yb.item()) for _, yb in loader) == [0, 1]


def test_read_only_arrays_that_would_be_written_are_value_errors():
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD([Tensor(read_only(np.ones(3)), requires_grad=True)])
    with pytest.raises(ValueError, match="read-only"):
        numerical_grad(lambda a: a.sum(), read_only(np.ones(3)))
    with pytest.raises(ValueError, match="running_mean is read-only"):
        F.batch_norm(np.random.default_rng(0).random((4, 3)), read_only(np.zeros(3)),
                     np.ones(3), training=True)


# ---------------------------------------------------------------- scalars, 0-d, 1-d

def test_python_scalars_zero_d_and_one_d_are_distinct_and_consistent():
    s, z, v = Tensor(3.0), Tensor(np.array(3.0)), Tensor([3.0])
    assert (s.shape, z.shape, v.shape) == ((), (), (1,))
    assert s.dtype == np.float32 and z.dtype == np.float64  # lists/scalars get the default
    assert s.item() == z.item() == v.item() == 3.0
    assert (Tensor(np.ones(2, np.float32)) * np.float64(0.1)).dtype == np.float32  # no promotion
    assert (z + v).shape == (1,) and (v + z).shape == (1,)
    with pytest.raises(ValueError, match=r"one element.*\(2,\)"):
        Tensor([1.0, 2.0]).item()
    with pytest.raises(TypeError, match="0-d"):
        len(s)


def test_a_scalar_target_for_a_batch_of_one_is_a_shape_error():
    with pytest.raises(ValueError, match=r"shape \(1,\).*got \(\)"):
        F.cross_entropy(Tensor(np.zeros((1, 3))), 2)


# ---------------------------------------------------------------- ndarray <-> list <-> Tensor

def test_arrays_and_lists_where_a_tensor_is_expected_give_the_tensor_result():
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    w, y = np.ones((2, 3)), np.array([1, 0])
    want = F.cross_entropy(F.linear(Tensor(x), Tensor(w)), Tensor(y)).item()
    assert F.cross_entropy(F.linear(x, w), y).item() == want
    assert F.cross_entropy(F.linear(x.tolist(), w.tolist()), y.tolist()).item() == \
        pytest.approx(want, rel=1e-6)  # lists of floats become float32
    np.testing.assert_array_equal((x + Tensor(x)).data, 2 * x)  # ndarray + Tensor -> Tensor


def test_tensors_where_an_array_is_expected():
    x = Tensor(np.zeros((4, 2)))
    assert np.asarray(x).shape == (4, 2)
    assert len(DataLoader(x, batch_size=2)) == 2
    net = TwoLayerNet(2, 3, 2, seed=0)
    assert net.loss(x, Tensor(np.zeros(4, np.int64)))[0] > 0
    with pytest.raises(TypeError, match="X_train must be a numpy array, got Tensor"):
        mean_image(Tensor(images(2)))
    with pytest.raises(TypeError, match="param 0 must be a Tensor, got ndarray"):
        optim.SGD([np.ones(3)])


# ---------------------------------------------------------------- optimizers and schedulers

def test_optimizer_with_no_parameters_is_a_value_error():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD(nn.ReLU().parameters())  # a model with nothing to train
    with pytest.raises(TypeError, match="pass model.parameters()"):
        optim.SGD(nn.Linear(2, 2))


def test_optimizer_with_duplicate_parameters_is_a_value_error():
    p, q = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match=r"param 1 \(shape \(3,\)\) appears more than once"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match="appears more than once"):
        optim.SGD([{"params": [p, q]}, {"params": [q]}])


def test_scheduler_stepped_before_the_optimizer_warns_as_torch():
    """Decided as torch: a UserWarning (the first lr of the schedule is skipped), not an error."""
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.5
    opt2 = optim.SGD([nn.Parameter(np.ones(2))], lr=1.0)
    sched2 = optim.StepLR(opt2, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right order is silent
        opt2.step()
        sched2.step()


# ---------------------------------------------------------------- backward

def test_backward_on_a_tensor_that_does_not_require_grad_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(3)) * 2).sum().backward()
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.arange(3), requires_grad=True)


def test_backward_twice_through_a_freed_graph_is_a_runtime_error():
    x = Tensor(np.ones(2), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


@pytest.mark.parametrize("bad, what", [
    (lambda: np.zeros(4), r"an ndarray of shape \(4,\) and dtype float64"),
    (lambda: np.zeros((6, 4), dtype=np.int64), "dtype int64"),
    (lambda: np.zeros((6, 4), dtype=np.float32), "dtype float32"),
    (lambda: [0.0] * 4, "a list")])
@pytest.mark.parametrize("root", ["through a graph", "on the leaf itself"])
def test_a_grad_set_by_hand_that_does_not_fit_the_leaf_is_a_runtime_error(bad, what, root):
    """backward accumulates into .grad in place: a .grad of another shape, dtype or type is named
    (never numpy's broadcast message, never a list silently extended)."""
    x = Tensor(np.random.default_rng(0).standard_normal((6, 4)), requires_grad=True)
    x.grad = bad()
    with pytest.raises(RuntimeError, match=r"leaf of shape \(6, 4\) and dtype float64 is .*" + what):
        if root == "on the leaf itself":
            x.backward(np.ones((6, 4)))
        else:
            F.cross_entropy(x, np.zeros(6, np.int64)).backward()


def test_the_grad_of_a_0d_leaf_is_a_0d_array_that_accumulates():
    x = Tensor(np.array(2.0), requires_grad=True)
    for _ in range(2):
        (x * x).backward()  # a 0-d op gives numpy scalars; .grad must still be an array
    assert type(x.grad) is np.ndarray and x.grad.shape == () and x.grad == 8.0


# ---------------------------------------------------------------- labels

def test_labels_of_shape_n_by_1_never_broadcast_into_an_n_by_n_loss():
    logits, col = Tensor(np.zeros((3, 4)), requires_grad=True), np.zeros((3, 1), np.int64)
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        F.cross_entropy(logits, col, reduction="none")
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        F.mse_loss(Tensor(np.zeros(3)), col.astype(float))
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        TwoLayerNet(2, 3, 4, seed=0).loss(np.zeros((3, 2)), col)
    with pytest.raises(TypeError, match=r"\(3, 1\)"):
        split_cifar10(images(3), col, images(1), np.zeros(1, np.int64), num_training=2,
                      num_validation=1, num_test=1)


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.7, 2.0])])
def test_float_labels_are_never_truncated(labels):
    with pytest.raises(ValueError, match="float64"):
        F.cross_entropy(Tensor(np.zeros((3, 4))), labels)
    with pytest.raises(ValueError, match="float64"):
        TwoLayerNet(2, 3, 4, seed=0).loss(np.zeros((3, 2)), labels)
    with pytest.raises(TypeError, match="float64"):
        split_cifar10(images(3), labels, images(1), np.zeros(1, np.int64), num_training=2,
                      num_validation=1, num_test=1)
    xb, yb = next(iter(DataLoader((np.zeros((3, 1)), labels), batch_size=3)))
    np.testing.assert_array_equal(yb.data, labels)  # batching passes them on untouched


@pytest.mark.parametrize("bad", [-1, 4, 255])
def test_negative_or_too_large_labels_never_wrap_around(bad):
    labels = np.array([0, bad, 1], dtype=np.uint8 if bad == 255 else np.int64)
    with pytest.raises(ValueError, match=rf"target value {bad} at position 1"):
        F.cross_entropy(Tensor(np.zeros((3, 4))), labels)
    with pytest.raises(ValueError, match=rf"label {bad} at position 1"):
        TwoLayerNet(2, 3, 4, seed=0).loss(np.zeros((3, 2)), labels)
    if bad != 4:  # 4 is a valid CIFAR-10 class
        with pytest.raises(ValueError, match=rf"label {bad} at index 1"):
            split_cifar10(images(3), labels, images(1), np.zeros(1, np.int64), num_training=2,
                          num_validation=1, num_test=1)


# ---------------------------------------------------------------- preprocessing

def test_pixel_arithmetic_never_overflows_uint8():
    X = np.concatenate([images(2, 255), images(2, 0)])
    assert mean_image(X).max() == 127.5  # summed in float64, not in uint8 (which would wrap)
    s = split_cifar10(X, np.zeros(4, np.int64), X[:1], np.zeros(1, np.int64), num_training=4,
                      num_validation=0, num_test=1)
    np.testing.assert_array_equal(s.X_train[:2], 127.5)
    np.testing.assert_array_equal(s.X_train[2:], -127.5)  # not 256 - 127.5
    np.testing.assert_array_equal(normalize_torch(X)[[0, 2], 0, 0, 0], [1.0, -1.0])


def test_mean_image_excludes_validation_and_test_rows():
    rng = np.random.default_rng(0)
    X_train = rng.integers(0, 100, size=(6, 3, 2, 2)).astype(np.uint8)
    X_train[4:] = 255  # the validation rows are far from the training rows
    X_test = images(3, 255)
    y = np.zeros(6, np.int64)
    s = split_cifar10(X_train, y, X_test, y[:3], num_training=4, num_validation=2, num_test=3)
    want = X_train[:4].reshape(4, -1).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(s.mean_image, want, rtol=1e-6)
    np.testing.assert_allclose(s.X_val, np.tile(255 - want, (2, 1)), rtol=1e-6)


# ---------------------------------------------------------------- indexing, models, CLI

def test_index_out_of_range_is_an_index_error_naming_index_and_shape():
    with pytest.raises(IndexError, match=r"index 5 .*shape \(2, 3\)"):
        Tensor(np.zeros((2, 3)))[5]
    with pytest.raises(IndexError, match=r"\(2, 3\)"):
        Tensor(np.zeros((2, 3)))[0, 0, 0]


@pytest.mark.parametrize("call, err, named", [
    (lambda: MLP(4, [3], 2, seed="x"), ValueError, "seed"),
    (lambda: MLP(4, [3], 2, seed=-1), ValueError, "seed"),
    (lambda: MLP(4, [0], 2), ValueError, r"hidden_layers\[0\]"),
    (lambda: MLP(4, [3], 2).predict(np.zeros(4, np.float32)), ValueError, r"\(4,\)"),
    (lambda: MLP(4, [3], 2)(np.zeros((2, 5), np.float32)), ValueError, r"\(2, 5\)"),
    (lambda: TwoLayerNet(4, 3, 2, seed=1.5), ValueError, "seed"),
    (lambda: nn.Linear(2, 3, init="normal", std=float("inf")), ValueError, "std"),
    (lambda: optim.SGD([{"params": None}]), TypeError, "params"),
    (lambda: optim.SGD([nn.Parameter(np.ones(2))]).step(closure=3), TypeError, "closure"),
    (lambda: gradcheck(lambda a: a.sum(), np.ones(2), eps="small"), TypeError, "eps"),
    (lambda: DataLoader({"x": np.ones(3)}), TypeError, "dict"),
])
def test_models_and_constructors_name_the_bad_argument(call, err, named):
    with pytest.raises(err, match=named):
        call()


def test_optimizer_state_that_does_not_fit_names_the_problem():
    opt = optim.SGD([nn.Parameter(np.ones(3))], lr=0.1, momentum=0.9)
    good = opt.state_dict()
    for bad, named in [({"state": [], "param_groups": good["param_groups"]}, "'state'"),
                       ({"state": {0: 5}, "param_groups": good["param_groups"]}, "param 0"),
                       ({"state": {"x": {}}, "param_groups": good["param_groups"]}, "'x'"),
                       ({"state": {}, "param_groups": None}, "'param_groups'")]:
        with pytest.raises(ValueError, match=named):
            opt.load_state_dict(bad)


@pytest.mark.parametrize("argv, named", [(["--hidden", "0"], "--hidden"),
                                         (["--batch-size", "x"], "--batch-size"),
                                         (["--lr", "nan"], "--lr"), (["--seed", "-1"], "--seed")])
def test_cli_rejects_bad_options_with_usage_and_exit_2(argv, named, capsys):
    from nets import train
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage:" in err and named in err and "Traceback" not in err
