"""The closed-form two-layer net: gradients checked three ways, and the wrong derivations caught.

`hand_grads` below is a second, independent derivation of the gradients (written here, not
imported), with switches that reproduce the common mistakes of docs/derivations.md; `check_grads`
is the property test that must accept the right derivation and reject every wrong one.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mini.nn.functional as F
from nets.two_layer import TwoLayerNet, softmax, softmax_cross_entropy
from tinygrad_mini import Tensor
from tinygrad_mini.gradcheck import numerical_grad, rel_error
from tinygrad_mini.testing import assert_grads_match, two_layer_problem

NAMES = ("W1", "b1", "W2", "b2")


# ---------------------------------------------------------------- strategies and references

@st.composite
def two_layer_cases(draw, max_n=6, max_d=5, max_h=5, max_c=5):
    """Random sizes, float64 weights and inputs in [-2, 2], labels in range and reg in [0, 1]."""
    n, d, h = (draw(st.integers(1, m)) for m in (max_n, max_d, max_h))
    c = draw(st.integers(2, max_c))
    el = st.floats(-2, 2, allow_nan=False, allow_subnormal=False)

    def arr(shape):
        return draw(hnp.arrays(np.float64, shape, elements=el))

    params = {"W1": arr((d, h)), "b1": arr((h,)), "W2": arr((h, c)), "b2": arr((c,))}
    X = arr((n, d))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    reg = draw(st.floats(0, 1))
    return params, X, y, reg


def net_with(params: dict) -> TwoLayerNet:
    d, h = params["W1"].shape
    net = TwoLayerNet(d, h, params["W2"].shape[1], dtype=np.float64)
    net.params = {k: v.copy() for k, v in params.items()}
    return net


def autograd_loss_and_grads(params, X, y, reg):
    """The same loss built from tinygrad_mini ops; gradients by reverse-mode autograd (float64)."""
    t = {k: Tensor(v, requires_grad=True) for k, v in params.items()}
    hidden = F.relu(F.affine(Tensor(X), t["W1"], t["b1"]))
    scores = F.affine(hidden, t["W2"], t["b2"])
    loss = F.cross_entropy(scores, y) + reg * ((t["W1"] * t["W1"]).sum()
                                               + (t["W2"] * t["W2"]).sum())
    loss.backward()
    return loss.item(), {k: v.grad for k, v in t.items()}


MISTAKES = {
    "w1_gets_w2_reg": "the reg gradient of W2 is sent back through the hidden layer into dW1",
    "w1_missing_xT": "dW1 written without the input: 1^T dA1 instead of X^T dA1",
    "mean_over_classes": "the loss gradient divided by the number of classes C, not samples N",
    "bias_sum_over_classes": "db2 summed over the class index c instead of the sample index n",
    "bias_regularised": "b1 and b2 given a reg gradient 2 reg b",
    "reg_without_2": "the L2 gradient written reg W instead of 2 reg W",
}


def hand_grads(params, X, y, reg, mistake=None):
    """An independent derivation of the two-layer net's gradients; `mistake` injects one error."""
    W1, b1, W2, b2 = (params[k] for k in NAMES)
    n, c = X.shape[0], W2.shape[1]
    a1 = X @ W1 + b1  # (N, D) @ (D, H) -> (N, H)
    h1 = np.maximum(a1, 0)
    s = h1 @ W2 + b2  # (N, H) @ (H, C) -> (N, C)
    z = s - s.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), y].mean() + reg * (np.sum(W1 ** 2) + np.sum(W2 ** 2))

    onehot = np.eye(c)[y]  # (N, C)
    ds = (np.exp(logp) - onehot) / (c if mistake == "mean_over_classes" else n)
    k = 1 if mistake == "reg_without_2" else 2
    dW2 = h1.T @ ds + k * reg * W2  # (H, N) @ (N, C) -> (H, C)
    db2 = ds.sum(axis=1) if mistake == "bias_sum_over_classes" else ds.sum(axis=0)
    W2_back = W2 + 2 * reg * W2 if mistake == "w1_gets_w2_reg" else W2
    dh1 = ds @ W2_back.T  # (N, C) @ (C, H) -> (N, H)
    da1 = dh1 * (a1 > 0)
    X_left = np.ones_like(X) if mistake == "w1_missing_xT" else X
    dW1 = X_left.T @ da1 + k * reg * W1  # (D, N) @ (N, H) -> (D, H)
    db1 = da1.sum(axis=0)
    if mistake == "bias_regularised":
        db1, db2 = db1 + 2 * reg * b1, db2 + 2 * reg * b2
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def assert_same_grads(got, want, rtol=1e-9, atol=1e-12):
    for k in NAMES:
        assert got[k].shape == want[k].shape, (
            f"{k}: gradient of shape {got[k].shape}, expected {want[k].shape}")
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


def check_grads(grad_fn, shrink=True):
    """The property test: grad_fn(params, X, y, reg) -> (loss, grads) must equal autograd's.

    With shrink=False the first failing example is reported as found (faster, less readable).
    """
    kw = {} if shrink else {"phases": [Phase.explicit, Phase.generate]}

    @settings(database=None, report_multiple_bugs=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **kw)
    @given(two_layer_cases())
    def prop(case):
        params, X, y, reg = case
        want_loss, want = autograd_loss_and_grads(params, X, y, reg)
        got_loss, got = grad_fn(params, X, y, reg)
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-10)
        assert_same_grads(got, want)

    prop()


def closed_form(params, X, y, reg):
    return net_with(params).loss(X, y, reg=reg)


# ---------------------------------------------------------------- the gradients, three ways

def test_closed_form_equals_autograd():
    check_grads(closed_form)


def test_hand_derivation_in_this_file_equals_autograd():
    check_grads(hand_grads)


@settings(database=None)
@given(case=two_layer_cases())
def test_closed_form_equals_independent_hand_derivation(case):
    params, X, y, reg = case
    loss, grads = closed_form(params, X, y, reg)
    want_loss, want = hand_grads(params, X, y, reg)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert_same_grads(grads, want)


@settings(database=None)
@given(seed=st.integers(0, 2 ** 32 - 1), reg=st.floats(0, 1),
       sizes=st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4),
                       st.integers(2, 4)))
def test_closed_form_passes_central_differences(seed, reg, sizes):
    """All closed-form gradients within rel_error < 1e-8 of central differences (float64).

    rel_error is taken over all parameters at once: a gradient that is ~0 everywhere (a dead ReLU
    unit) has no significant digits left for a per-array ratio, so each element is also held to
    an absolute 1e-8.
    """
    n, d, h, c = sizes
    rng = np.random.default_rng(seed)
    net = TwoLayerNet(d, h, c, std=1.0, seed=seed, dtype=np.float64)
    net.params["b1"] = rng.standard_normal(h)
    net.params["b2"] = rng.standard_normal(c)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, size=n)
    a1 = X @ net.params["W1"] + net.params["b1"]
    assume(np.abs(a1).min() > 1e-3)  # no ReLU kink within reach of eps
    _, grads = net.loss(X, y, reg=reg)
    num = {k: numerical_grad(lambda _p: net.loss(X, y, reg=reg)[0], net.params[k], eps=1e-6)
           for k in NAMES}
    flat = [np.concatenate([g[k].ravel() for k in NAMES]) for g in (grads, num)]
    assert rel_error(*flat) < 1e-8
    for k in NAMES:
        np.testing.assert_allclose(grads[k], num[k], rtol=0, atol=1e-8, err_msg=k)


def test_closed_form_matches_torch_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    params = {"W1": rng.standard_normal((6, 5)), "b1": rng.standard_normal(5),
              "W2": rng.standard_normal((5, 4)), "b2": rng.standard_normal(4)}
    X, y, reg = rng.standard_normal((8, 6)), rng.integers(0, 4, size=8), 0.3
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    scores = torch.relu(torch.tensor(X) @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"]
    loss = (torch.nn.functional.cross_entropy(scores, torch.tensor(y))
            + reg * ((t["W1"] ** 2).sum() + (t["W2"] ** 2).sum()))
    loss.backward()
    got_loss, got = closed_form(params, X, y, reg)
    assert got_loss == pytest.approx(loss.item(), rel=1e-12)
    assert_same_grads(got, {k: v.grad.numpy() for k, v in t.items()})


# ---------------------------------------------------------------- wrong derivations are caught

@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_wrong_derivation_is_caught(mistake):
    """Feed each common wrong derivation (docs/derivations.md) to the checker: it must fail."""
    with pytest.raises(AssertionError):
        check_grads(lambda p, X, y, reg: hand_grads(p, X, y, reg, mistake=mistake), shrink=False)


def student_loss(X, y, W1, b1, W2, b2, reg):
    """The forward pass a student writes for assert_grads_match (Tensors in, scalar out)."""
    hidden = F.affine(X, W1, b1).relu()
    return F.cross_entropy(F.affine(hidden, W2, b2), y) + reg * ((W1 * W1).sum()
                                                                 + (W2 * W2).sum())


def student_grads(mistake=None):
    def grads(X, y, W1, b1, W2, b2, reg):
        params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
        return hand_grads(params, X, y, reg, mistake=mistake)[1]
    return grads


def test_assert_grads_match_accepts_the_closed_form_net():
    def net_grads(X, y, W1, b1, W2, b2, reg):
        return closed_form({"W1": W1, "b1": b1, "W2": W2, "b2": b2}, X, y, reg)[1]

    assert_grads_match(student_loss, net_grads, two_layer_problem())


@pytest.mark.parametrize("mistake", ["mean_over_classes", "bias_sum_over_classes"])
def test_assert_grads_match_catches_wrong_derivation(mistake):
    """The user-facing checker (tinygrad_mini.testing) reports a mistake as a student meets it.

    Two mistakes only; check_grads above covers all six. shrink=False: only finding one matters
    here (tests/test_testing.py checks the shrinking).
    """
    with pytest.raises(AssertionError, match="your gradient for"):
        assert_grads_match(student_loss, student_grads(mistake), two_layer_problem(),
                           shrink=False)


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_wrong_derivation_is_wrong_on_a_plain_example(mistake):
    """A concrete witness, independent of hypothesis: the mistake changes some gradient here."""
    rng = np.random.default_rng(3)
    params = {"W1": rng.standard_normal((4, 3)), "b1": rng.standard_normal(3),
              "W2": rng.standard_normal((3, 5)), "b2": rng.standard_normal(5)}
    X, y = rng.standard_normal((2, 4)), np.array([1, 4])
    _, right = hand_grads(params, X, y, 0.5)
    _, wrong = hand_grads(params, X, y, 0.5, mistake=mistake)
    assert any(right[k].shape != wrong[k].shape or not np.allclose(right[k], wrong[k])
               for k in NAMES)


# ---------------------------------------------------------------- the net's API

def test_loss_without_labels_returns_probabilities():
    net = TwoLayerNet(6, 5, 4, std=1.0, seed=0, dtype=np.float64)
    X = np.random.default_rng(0).standard_normal((7, 6))
    p = net.loss(X)
    assert p.shape == (7, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert (p >= 0).all()
    np.testing.assert_array_equal(net.predict(X), p.argmax(axis=1))


def test_softmax_is_stable_at_huge_scores():
    s = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]])
    p = softmax(s)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-12)
    loss, ds = softmax_cross_entropy(s, np.array([2, 0]))
    assert np.isfinite(loss) and np.isfinite(ds).all()
    assert loss == pytest.approx((2e4 + np.log(3)) / 2)


def test_default_dtype_is_float32_and_float64_is_kept():
    net = TwoLayerNet(3, 2, 2, seed=0)
    assert all(v.dtype == np.float32 for v in net.params.values())
    _, grads = net.loss(np.ones((2, 3)), np.array([0, 1]), reg=0.1)
    assert all(g.dtype == np.float32 for g in grads.values())
    net64 = TwoLayerNet(3, 2, 2, seed=0, dtype=np.float64)
    assert all(v.dtype == np.float64 for v in net64.params.values())


def test_same_seed_same_init_and_training():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((50, 8)), rng.integers(0, 3, size=50)
    runs = []
    for _ in range(2):
        net = TwoLayerNet(8, 6, 3, std=0.1, seed=42, dtype=np.float64)
        hist = net.train(X, y, X[:10], y[:10], learning_rate=0.1, num_iters=30, batch_size=10)
        runs.append((net.params, hist))
    for k in NAMES:
        np.testing.assert_array_equal(runs[0][0][k], runs[1][0][k])
    assert runs[0][1] == runs[1][1]
    other = TwoLayerNet(8, 6, 3, std=0.1, seed=43, dtype=np.float64)
    assert not np.array_equal(other.params["W1"], TwoLayerNet(8, 6, 3, std=0.1, seed=42,
                                                              dtype=np.float64).params["W1"])


def test_train_learns_a_separable_problem_and_reports_histories():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 10)) * 3
    y = rng.integers(0, 3, size=300)
    X = centers[y] + 0.3 * rng.standard_normal((300, 10))
    net = TwoLayerNet(10, 16, 3, std=0.1, seed=0, dtype=np.float64)
    hist = net.train(X[:250], y[:250], X[250:], y[250:], learning_rate=0.5,
                     learning_rate_decay=0.9, reg=1e-4, num_iters=100, batch_size=50)
    assert len(hist["loss_history"]) == 100
    assert len(hist["train_acc_history"]) == len(hist["val_acc_history"]) == 100 // (250 // 50)
    assert hist["loss_history"][-1] < 0.5 * hist["loss_history"][0]
    assert np.mean(net.predict(X[250:]) == y[250:]) > 0.9


def test_train_samples_with_replacement_and_decays_lr_once_per_epoch(monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 2, size=20)
    net = TwoLayerNet(4, 3, 2, std=0.1, seed=0, dtype=np.float64)
    seen_lr, batches = [], []
    real_step = net.step

    def spy(Xb, yb, lr, reg):
        seen_lr.append(lr)
        batches.append(Xb)
        return real_step(Xb, yb, lr, reg)

    monkeypatch.setattr(net, "step", spy)
    net.train(X, y, X, y, learning_rate=1.0, learning_rate_decay=0.5, num_iters=9,
              batch_size=15)  # 20 // 15 = 1 iteration per epoch
    assert seen_lr == [0.5 ** i for i in range(9)]
    net.train(X, y, X, y, learning_rate=1.0, learning_rate_decay=0.5, num_iters=6, batch_size=5)
    assert seen_lr[9:] == [1.0] * 4 + [0.5] * 2  # 4 iterations per epoch
    # 9 batches of 15 drawn from 20 rows: without replacement no row could repeat within a batch
    assert any(len(np.unique(b, axis=0)) < len(b) for b in batches[:9])


@pytest.mark.parametrize("X, y, match", [
    (np.zeros((3, 5)), np.array([0, 1, 2]), r"shape \(N, 4\)"),
    (np.zeros(4), np.array([0]), r"shape \(N, 4\)"),
    (np.zeros((3, 4)), np.array([0, 1, 3]), "label 3 at position 2"),
    (np.zeros((3, 4)), np.array([0, -1, 1]), "label -1 at position 1"),
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "integer class labels"),
    (np.zeros((3, 4)), np.array([[0], [1], [2]]), r"y must have shape \(3,\)"),
    (np.zeros((3, 4)), np.array([0, 1]), r"y must have shape \(3,\)"),
    (np.zeros((0, 4)), np.zeros(0, dtype=int), "at least one sample"),
])
def test_bad_inputs_raise_value_error(X, y, match):
    net = TwoLayerNet(4, 3, 3, seed=0)
    with pytest.raises(ValueError, match=match):
        net.loss(X, y)


@pytest.mark.parametrize("X", [np.zeros((2, 4), dtype=bool), np.zeros((2, 4), dtype=complex),
                               np.array([["a"] * 4] * 2)])
def test_non_numeric_input_raises_type_error(X):
    with pytest.raises(TypeError, match="X must hold real numbers"):
        TwoLayerNet(4, 3, 3, seed=0).loss(X)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"input_size": 0}, ValueError, "input_size"),
    ({"hidden_size": 2.5}, ValueError, "hidden_size"),
    ({"output_size": True}, ValueError, "output_size"),
    ({"std": -1.0}, ValueError, "std"),
    ({"std": float("nan")}, ValueError, "std"),
    ({"dtype": np.int32}, TypeError, "floating dtype"),
])
def test_bad_constructor_arguments(kwargs, err, match):
    args = {"input_size": 4, "hidden_size": 3, "output_size": 2, **kwargs}
    with pytest.raises(err, match=match):
        TwoLayerNet(**args)


def test_bad_reg_and_train_arguments():
    net = TwoLayerNet(4, 3, 2, seed=0)
    X, y = np.zeros((4, 4)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="reg"):
        net.loss(X, y, reg=-0.1)
    with pytest.raises(ValueError, match="batch_size"):
        net.train(X, y, X, y, batch_size=0)
    with pytest.raises(ValueError, match="num_iters"):
        net.train(X, y, X, y, num_iters=-3)


def test_nan_input_propagates_and_train_stops_on_non_finite_loss():
    net = TwoLayerNet(4, 3, 2, std=0.1, seed=0, dtype=np.float64)
    X = np.ones((2, 4))
    X[:, 0] = np.nan
    loss, grads = net.loss(X, np.array([0, 1]))
    assert np.isnan(loss)
    with pytest.raises(FloatingPointError, match="iteration 0"):
        net.train(X, np.array([0, 1]), X, np.array([0, 1]), num_iters=3, batch_size=2)
