"""nets on tinygrad_mini: TwoLayerNetTG against the closed-form net; MLP against numpy and torch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_mini.nn.functional as F
from nets.mlp import MLP
from nets.two_layer import TwoLayerNet
from nets.two_layer_tgm import TwoLayerNetTG
from tinygrad_mini import Tensor, optim
from tinygrad_mini.gradcheck import numerical_grad, rel_error
from tinygrad_mini.nn import BatchNorm1d, Dropout, Linear, ReLU, Tanh
from tinygrad_mini.testing import two_layer_problem

NAMES = ("W1", "b1", "W2", "b2")


# ---------------------------------------------------------------- TwoLayerNetTG

def test_tg_net_has_the_closed_form_layout_and_initial_weights():
    tg = TwoLayerNetTG(12, 7, 4, std=0.1, seed=3, dtype=np.float64)
    ref = TwoLayerNet(12, 7, 4, std=0.1, seed=3, dtype=np.float64)
    assert [n for n, _ in tg.named_parameters()] == list(NAMES)
    for k in NAMES:
        assert tg.state_dict()[k].shape == ref.params[k].shape
        np.testing.assert_array_equal(tg.state_dict()[k], ref.params[k])


@settings(database=None)
@given(problem=two_layer_problem(max_n=6, max_d=5, max_h=5, max_c=5))
def test_tg_net_loss_and_gradients_equal_the_closed_form(problem):
    d, h = problem["W1"].shape
    c = problem["W2"].shape[1]
    tg = TwoLayerNetTG(d, h, c, dtype=np.float64)
    ref = TwoLayerNet(d, h, c, dtype=np.float64)
    tg.load_state_dict({k: problem[k] for k in NAMES})
    ref.params = {k: problem[k].copy() for k in NAMES}
    loss = tg.loss(problem["X"], problem["y"], reg=problem["reg"])
    loss.backward()
    want_loss, want = ref.loss(problem["X"], problem["y"], reg=problem["reg"])
    assert loss.item() == pytest.approx(want_loss, rel=1e-12)
    for k in NAMES:
        np.testing.assert_allclose(getattr(tg, k).grad, want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(tg.predict(problem["X"]), ref.predict(problem["X"]))


def test_tg_net_trains_like_the_closed_form_net():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 9)), rng.integers(0, 3, size=30)
    tg = TwoLayerNetTG(9, 6, 3, std=0.3, seed=1, dtype=np.float64)
    ref = TwoLayerNet(9, 6, 3, std=0.3, seed=1, dtype=np.float64)
    opt = optim.SGD(tg.parameters(), lr=0.1)
    for i in range(20):
        idx = rng.integers(0, 30, size=10)
        opt.zero_grad()
        tg.loss(X[idx], y[idx], reg=0.05).backward()
        opt.step()
        ref.step(X[idx], y[idx], 0.1, 0.05)
    for k in NAMES:
        np.testing.assert_allclose(getattr(tg, k).data, ref.params[k], rtol=1e-10, atol=1e-13)


def test_tg_net_rejects_bad_reg():
    tg = TwoLayerNetTG(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="reg"):
        tg.loss(np.zeros((1, 3), dtype=np.float32), np.array([0]), reg=-1.0)


# ---------------------------------------------------------------- MLP structure and init

def test_mlp_layers_in_order():
    m = MLP(20, [8, 6], 3, activation="tanh", dropout=0.25, batchnorm=True, seed=0)
    kinds = [type(layer) for layer in m.layers]
    assert kinds == [Linear, BatchNorm1d, Tanh, Dropout, Linear, BatchNorm1d, Tanh, Dropout,
                     Linear]
    shapes = [p.shape for p in m.parameters()]
    assert shapes == [(8, 20), (8,), (8,), (8,), (6, 8), (6,), (6,), (6,), (3, 6), (3,)]
    plain = MLP(20, [8], 3, seed=0)
    assert [type(layer) for layer in plain.layers] == [Linear, ReLU, Linear]


def test_mlp_reference_init_is_normal_with_zero_bias():
    m = MLP(3072, [512], 10, std=1e-3, seed=0)
    w = m.first_layer.weight.data
    assert w.dtype == np.float32
    assert abs(float(w.std()) - 1e-3) < 2e-5 and abs(float(w.mean())) < 2e-5
    assert all(not np.any(m.layers[i].bias.data) for i in (0, 2))
    k = MLP(100, [50], 10, init="kaiming", seed=0).first_layer.weight.data
    assert np.abs(k).max() <= 1 / np.sqrt(100) and np.abs(k).max() > 0.09


def test_mlp_seed_fixes_the_weights():
    a, b, c = (MLP(30, [10, 5], 4, seed=s) for s in (1, 1, 2))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    assert not np.array_equal(a.first_layer.weight.data, c.first_layer.weight.data)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"hidden_layers": "512"}, TypeError, "list of widths"),
    ({"hidden_layers": [10, 0]}, ValueError, r"hidden_layers\[1\]"),
    ({"hidden_layers": [10.5]}, ValueError, r"hidden_layers\[0\]"),
    ({"input_size": 0}, ValueError, "input_size"),
    ({"num_classes": True}, ValueError, "num_classes"),
    ({"activation": "gelu"}, ValueError, "activation must be one of"),
    ({"dropout": 1.0}, ValueError, "dropout"),
    ({"dropout": -0.1}, ValueError, "dropout"),
])
def test_mlp_bad_arguments(kwargs, err, match):
    args = {"input_size": 10, "hidden_layers": [4], "num_classes": 3, **kwargs}
    with pytest.raises(err, match=match):
        MLP(**args)


# ---------------------------------------------------------------- MLP computation

ACT_NUMPY = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
             "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
             "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


@pytest.mark.parametrize("activation", sorted(ACT_NUMPY))
def test_mlp_forward_equals_numpy(activation):
    m = MLP(7, [5, 4], 3, activation=activation, std=0.5, seed=0, dtype=np.float64)
    X = np.random.default_rng(1).standard_normal((6, 7))
    a = X
    linears = [layer for layer in m.layers if isinstance(layer, Linear)]
    for i, lin in enumerate(linears):
        a = a @ lin.weight.data.T + lin.bias.data  # (N, in) @ (in, out) -> (N, out)
        if i < len(linears) - 1:
            a = ACT_NUMPY[activation](a)
    np.testing.assert_allclose(m(X).data, a, rtol=1e-12)
    np.testing.assert_array_equal(m.predict(X), a.argmax(axis=1))


def test_mlp_gradients_match_central_differences():
    """Every parameter of a tanh MLP with BatchNorm (training mode) against numerical_grad."""
    m = MLP(5, [4, 3], 3, activation="tanh", batchnorm=True, init="kaiming", seed=0,
            dtype=np.float64)
    X = np.random.default_rng(2).standard_normal((6, 5))
    y = np.array([0, 1, 2, 0, 1, 2])

    def loss(_p=None):
        return F.cross_entropy(m(X), y)

    m.zero_grad()
    loss().backward()
    params = list(m.parameters())
    num = [numerical_grad(loss, p.data, eps=1e-6) for p in params]
    # over all parameters at once: the Linear biases before BatchNorm have a true gradient of 0
    assert rel_error(np.concatenate([p.grad.ravel() for p in params]),
                     np.concatenate([g.ravel() for g in num])) < 1e-7
    for (name, p), g in zip(m.named_parameters(), num):
        np.testing.assert_allclose(p.grad, g, rtol=0, atol=1e-8, err_msg=name)


def _torch_mlp(torch, m):
    layers = []
    for layer in m.layers:
        if isinstance(layer, Linear):
            lin = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(layer.weight.data))
                lin.bias.copy_(torch.tensor(layer.bias.data))
            layers.append(lin)
        else:
            assert isinstance(layer, ReLU)
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def test_mlp_adam_trajectory_matches_torch_float64():
    """The reference recipe (Adam + weight decay, lr x0.95 per epoch) step for step with torch."""
    torch = pytest.importorskip("torch")
    # no BatchNorm here: a bias in front of it has a true gradient of 0, and Adam scales the
    # ~1e-17 rounding residue of either implementation up to full-size, unrelated steps
    m = MLP(12, [8, 6], 4, std=0.3, seed=0, dtype=np.float64)
    tm = _torch_mlp(torch, m)
    opt = optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-3)
    sched = optim.ExponentialLR(opt, gamma=0.95)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2, weight_decay=1e-3)
    tsched = torch.optim.lr_scheduler.ExponentialLR(topt, gamma=0.95)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 12)), rng.integers(0, 4, size=40)
    for epoch in range(3):
        for b in range(4):
            xb, yb = X[b * 10:(b + 1) * 10], y[b * 10:(b + 1) * 10]
            opt.zero_grad()
            loss = F.cross_entropy(m(xb), yb)
            loss.backward()
            opt.step()
            topt.zero_grad()
            tloss = torch.nn.functional.cross_entropy(tm(torch.tensor(xb)), torch.tensor(yb))
            tloss.backward()
            topt.step()
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
        sched.step()
        tsched.step()
    for (name, p), tp in zip(m.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    m.eval()
    tm.eval()
    np.testing.assert_allclose(m(X).data, tm(torch.tensor(X)).detach().numpy(), rtol=1e-9,
                               atol=1e-12)


def test_mlp_dropout_train_vs_eval_and_seeded_masks():
    X = np.ones((50, 10))
    outs = []
    for seed in (4, 4, 5):
        m = MLP(10, [30], 2, dropout=0.5, std=1.0, seed=seed, dtype=np.float64)
        outs.append(m(X).data)
        assert np.array_equal(m.predict(X), m.predict(X))  # eval: no dropout, deterministic
        m.eval()
        assert np.allclose(m(X).data, m(X).data)
        m.train()
        assert not np.allclose(m(X).data, m(X).data)  # fresh masks each call in training
    np.testing.assert_array_equal(outs[0], outs[1])


@settings(database=None, max_examples=15)
@given(hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3), n=st.integers(2, 5))
def test_mlp_any_depth_gives_scores_of_the_right_shape(hidden, n):
    m = MLP(4, hidden, 3, seed=0, dtype=np.float64)
    X = np.random.default_rng(0).standard_normal((n, 4))
    out = m(X)
    assert out.shape == (n, 3)
    F.cross_entropy(out, np.zeros(n, dtype=np.int64)).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in m.parameters())
