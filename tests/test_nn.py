"""tinygrad_mini.nn: Module bookkeeping, state dicts, save/load atomicity, and each layer checked
against a closed form written here, central differences (gradcheck) and torch in float64."""
import os
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor, nn
from tinygrad_mini.gradcheck import gradcheck

RNG = np.random.default_rng(1234)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def t64(torch, a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


class Net(nn.Module):
    """fc1 -> block (Linear, ReLU, Linear) -> head, with `tied` reusing fc1 and a buffer."""

    def __init__(self, seed=0):
        super().__init__()
        self.fc1 = nn.Linear(3, 4, dtype=np.float64, rng=seed)
        self.block = nn.Sequential(nn.Linear(4, 4, dtype=np.float64, rng=seed + 1), nn.ReLU(),
                                   nn.Linear(4, 4, bias=False, dtype=np.float64, rng=seed + 2))
        self.tied = self.fc1
        self.scale = nn.Parameter(np.array([2.0]))
        self.register_buffer("count", Tensor(np.zeros(1)))
        self.register_buffer("cache", Tensor(np.zeros(2)), persistent=False)

    def forward(self, x):
        return self.block(self.fc1(x)) * self.scale


# ---------------------------------------------------------------- Module bookkeeping

def test_named_parameters_are_dotted_and_unique():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "block.0.weight", "block.0.bias",
                     "block.2.weight"]
    assert len(list(net.parameters())) == 6
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]


def test_shared_parameter_is_listed_once():
    a = nn.Linear(2, 2)
    b = nn.Linear(2, 2)
    b.weight = a.weight
    seq = nn.Sequential(a, b)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_children_and_modules_visit_each_once():
    net = Net()
    assert [n for n, _ in net.named_children()] == ["fc1", "block", "tied"]
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "fc1", "block", "block.0", "block.1", "block.2"]
    assert next(net.modules()) is net


def test_train_eval_propagate_to_every_module():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(2)))
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="bool"):
        net.train("yes")


def test_zero_grad_sets_none_or_zeros():
    net = Net()
    net(Tensor(RNG.standard_normal((5, 3)))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_call_runs_forward_and_base_forward_raises():
    lin = nn.Linear(3, 2, rng=0)
    x = Tensor(RNG.standard_normal((4, 3)).astype(np.float32))
    np.testing.assert_array_equal(lin(x).data, lin.forward(x).data)
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(x)


def test_registration_errors():
    class NoSuper(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(RuntimeError, match="super"):
        NoSuper()
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        lin.weight = Tensor(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="buffer"):
        nn.BatchNorm1d(2).running_mean = np.zeros(2)
    with pytest.raises(ValueError, match="'.'"):
        lin.register_buffer("a.b", Tensor(np.zeros(1)))
    with pytest.raises(AttributeError, match="nothing"):
        lin.nothing  # noqa: B018 -- the normal protocol for a missing attribute


def test_reassign_and_delete_keep_registries_consistent():
    lin = nn.Linear(2, 3)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    lin.extra = nn.Parameter(np.ones(3))
    del lin.weight
    assert [n for n, _ in lin.named_parameters()] == ["extra"]
    lin.plain = Tensor(np.ones(2))  # a plain Tensor is an attribute, not a parameter (as torch)
    assert "plain" not in dict(lin.named_parameters())


def test_repr_lists_children():
    r = repr(nn.Sequential(nn.Linear(3, 2), nn.LeakyReLU(0.2), nn.Dropout(0.1)))
    assert "(0): Linear(in_features=3, out_features=2, bias=True)" in r
    assert "(1): LeakyReLU(negative_slope=0.2)" in r and "(2): Dropout(p=0.1)" in r


# ---------------------------------------------------------------- state dicts

def test_state_dict_holds_params_and_persistent_buffers_as_copies():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["scale", "count", "fc1.weight", "fc1.bias", "block.0.weight",
                        "block.0.bias", "block.2.weight"]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["fc1.weight"][...] = 99.0
    assert not np.any(net.fc1.weight.data == 99.0)


def test_state_dict_round_trip_restores_outputs_in_place():
    a, b = Net(seed=0), Net(seed=10)
    x = Tensor(RNG.standard_normal((4, 3)))
    assert not np.allclose(a(x).data, b(x).data)
    w_obj, w_arr = b.fc1.weight, b.fc1.weight.data
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert b.fc1.weight is w_obj and b.fc1.weight.data is w_arr  # copied in place


def test_load_state_dict_lists_missing_unexpected_and_mis_shaped_keys():
    net = Net()
    before = net.state_dict()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["head.weight"] = np.zeros(3)
    sd["block.0.weight"] = np.zeros((5, 4))
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: 'fc1.bias'" in msg
    assert "unexpected keys: 'head.weight'" in msg
    assert "size mismatch for 'block.0.weight': expected shape (4, 4), got (5, 4)" in msg
    for k, v in net.state_dict().items():  # nothing was half-loaded
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict_returns_keys_but_shapes_still_raise():
    net = Net()
    sd = net.state_dict()
    del sd["count"]
    sd["extra"] = np.ones(1)
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["count"] and res.unexpected_keys == ["extra"]
    sd["scale"] = np.ones(2)
    with pytest.raises(RuntimeError, match=r"'scale': expected shape \(1,\), got \(2,\)"):
        net.load_state_dict(sd, strict=False)


def test_load_state_dict_rejects_bad_values_and_casts_floats():
    bn = nn.BatchNorm1d(3)  # float32
    with pytest.raises(TypeError, match="mapping"):
        bn.load_state_dict([("weight", np.ones(3))])
    sd = bn.state_dict()
    sd["weight"] = np.array(["a", "b", "c"])
    with pytest.raises(TypeError, match="'weight' has dtype <U1"):
        bn.load_state_dict(sd)
    sd = bn.state_dict()
    sd["num_batches_tracked"] = np.array(2.5)
    with pytest.raises(TypeError, match="num_batches_tracked"):
        bn.load_state_dict(sd)
    sd = bn.state_dict()
    sd["weight"] = np.full(3, 0.5, dtype=np.float64)
    bn.load_state_dict(sd)
    assert bn.weight.dtype == np.float32 and np.all(bn.weight.data == 0.5)


def test_state_dict_keys_match_torch_and_torch_weights_load(torch):
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                             torch.nn.Linear(4, 3)).double()
    tm.train()
    tm(t64(torch, RNG.standard_normal((8, 5))))  # move the running statistics off their init
    ours = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    torch_sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert list(ours.state_dict()) == list(torch_sd)
    ours.load_state_dict(torch_sd)
    ours.eval()
    tm.eval()
    x = RNG.standard_normal((6, 5))
    with torch.no_grad():
        want = tm(t64(torch, x)).numpy()
    got = ours(Tensor(x, dtype=np.float32)).data  # a float32 model takes float32 input, as torch
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- save / load

def _same(a, b):
    """Deep equality of nested checkpoints (types included, NaN equal to NaN)."""
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return np.isnan(b)
    return a == b


def test_save_load_module_round_trip_readable_by_numpy(tmp_path):
    net = Net()
    path = tmp_path / "net.npz"
    nn.save(net, path)
    loaded = nn.load(path)
    assert _same(loaded, net.state_dict())
    with np.load(path) as z:  # a plain .npz: each key is a member
        np.testing.assert_array_equal(z["fc1.weight"], net.fc1.weight.data)
    fresh = Net(seed=5)
    fresh.load_state_dict(loaded)
    x = Tensor(RNG.standard_normal((2, 3)))
    np.testing.assert_array_equal(fresh(x).data, net(x).data)


def test_save_load_nested_checkpoint(tmp_path):
    gen = np.random.default_rng(7)
    gen.random(3)
    ckpt = {"model": Net().state_dict(),
            "optimizer": {"state": {0: {"step": 3, "exp_avg": np.arange(3.0)}},
                          "param_groups": [{"lr": 0.1 / 3, "betas": (0.9, 0.999), "params": [0]}]},
            "epoch": 4, "rng": gen.bit_generator.state, "note": None, "tag": "run-1",
            "nan": float("nan"), "flag": True}
    path = tmp_path / "ckpt.npz"
    nn.save(ckpt, path)
    back = nn.load(path)
    assert _same(back, ckpt)
    restored = np.random.default_rng()
    restored.bit_generator.state = back["rng"]
    np.testing.assert_array_equal(restored.random(5), gen.random(5))


tree_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)))
trees = st.recursive(tree_leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.tuples(kids, kids),
    st.dictionaries(st.one_of(st.text("abc_.", min_size=1, max_size=4), st.integers(0, 9)),
                    kids, max_size=3)), max_leaves=8)


@given(st.dictionaries(st.text("abcxyz.", min_size=1, max_size=6), trees, max_size=4))
def test_save_load_round_trips_any_checkpoint_tree(tree):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.npz")
        nn.save(tree, path)
        assert _same(nn.load(path), tree)


def _broken_writer(member, arr, allow_pickle=False):
    member.write(b"\x93NUMPY partial bytes")  # some bytes reach the temp file, then the disk fills
    raise OSError("No space left on device")


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    nn.save(Net(seed=0), path)
    good = path.read_bytes()
    monkeypatch.setattr(np.lib.format, "write_array", _broken_writer)
    with pytest.raises(OSError, match="No space"):
        nn.save(Net(seed=1), path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.npz"]
    monkeypatch.undo()
    assert _same(nn.load(path), Net(seed=0).state_dict())


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(np.lib.format, "write_array", _broken_writer)
    with pytest.raises(OSError):
        nn.save(Net(), tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


def test_save_rejects_unsavable_values_before_writing(tmp_path):
    with pytest.raises(TypeError, match="cannot save a object at a/b"):
        nn.save({"a": {"b": object()}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="dtype object"):
        nn.save({"a": np.array([1, "x", None], dtype=object)}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="same file member 'a/b'"):
        nn.save({"a/b": np.zeros(1), "a": {"b": np.ones(1)}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="Module or a dict"):
        nn.save([np.zeros(1)], tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_load_missing_or_corrupt_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        nn.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz.*not a readable checkpoint"):
        nn.load(garbage)
    good = tmp_path / "good.npz"
    nn.save(Net(), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        nn.load(truncated)
    flipped = bytearray(data)
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("fc1.weight.npy")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100  # inside the data
    flipped[at] ^= 0xFF
    bad_crc = tmp_path / "bad_crc.npz"
    bad_crc.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="bad_crc.npz"):
        nn.load(bad_crc)


# ---------------------------------------------------------------- Linear

def test_linear_forward_is_x_wt_plus_b_in_its_dtype():
    lin = nn.Linear(4, 3, rng=0)
    assert lin.weight.shape == (3, 4) and lin.bias.shape == (3,)
    assert lin.weight.dtype == np.float32
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    out = lin(Tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, x @ lin.weight.data.T + lin.bias.data, rtol=1e-6)
    x3 = RNG.standard_normal((2, 5, 4)).astype(np.float32)  # leading dims, as torch
    np.testing.assert_allclose(lin(Tensor(x3)).data, x3 @ lin.weight.data.T + lin.bias.data,
                               rtol=1e-5)
    lin64 = nn.Linear(4, 3, bias=False, dtype=np.float64)
    assert lin64.bias is None and lin64(Tensor(x.astype(np.float64))).dtype == np.float64


def test_linear_kaiming_init_is_torchs_default(torch):
    fan_in, fan_out = 400, 300
    lin = nn.Linear(fan_in, fan_out, rng=0)
    w, b = lin.weight.data.astype(np.float64), lin.bias.data.astype(np.float64)
    k = 1 / np.sqrt(fan_in)
    assert np.abs(w).max() <= k and np.abs(w).max() > 0.999 * k
    n = w.size
    assert abs(w.mean()) < 5 * k / np.sqrt(3 * n)  # U(-k, k): var k^2/3
    assert abs(w.var() / (k * k / 3) - 1) < 0.02
    assert np.abs(b).max() <= k and abs(b.mean()) < 5 * k / np.sqrt(3 * fan_out)
    tw = torch.nn.Linear(fan_in, fan_out).weight.detach().numpy()  # the same bound in torch
    assert np.abs(tw).max() <= k and np.abs(tw).max() > 0.999 * k
    assert abs(tw.var() / w.var() - 1) < 0.03


def test_linear_normal_init_and_zero_bias():
    lin = nn.Linear(500, 200, init="normal", std=1e-2, dtype=np.float64, rng=3)
    w = lin.weight.data
    assert abs(w.mean()) < 5 * 1e-2 / np.sqrt(w.size)
    assert abs(w.std() / 1e-2 - 1) < 0.01
    assert np.all(lin.bias.data == 0)
    default = nn.Linear(500, 200, init="normal", dtype=np.float64, rng=3)  # std 1e-3
    np.testing.assert_allclose(default.weight.data * 10, w, rtol=1e-12)


def test_linear_seed_and_generator_make_init_reproducible():
    np.testing.assert_array_equal(nn.Linear(6, 5, rng=42).weight.data,
                                  nn.Linear(6, 5, rng=42).weight.data)
    assert not np.array_equal(nn.Linear(6, 5, rng=1).weight.data,
                              nn.Linear(6, 5, rng=2).weight.data)
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    a = [nn.Linear(3, 3, rng=g1).weight.data for _ in range(2)]
    b = [nn.Linear(3, 3, rng=g2).weight.data for _ in range(2)]
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])  # one generator, two layers: different draws


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((-1, 3), {}, ValueError, "in_features must be >= 0, got -1"),
    ((2.5, 3), {}, TypeError, "in_features must be an int"),
    ((2, 3), {"init": "xavier"}, ValueError, "'xavier'"),
    ((2, 3), {"std": 0.1}, ValueError, "std applies only"),
    ((2, 3), {"init": "normal", "std": -1.0}, ValueError, "std must be a number >= 0, got -1.0"),
    ((2, 3), {"dtype": np.int32}, TypeError, "dtype must be floating"),
    ((2, 3), {"rng": "seed"}, TypeError, "rng must be"),
])
def test_linear_rejects_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.Linear(*args, **kwargs)


def test_linear_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(2, 4\)"):
        nn.Linear(4, 2)(Tensor(np.zeros((5, 3), dtype=np.float32)))


def test_linear_gradients_closed_form_central_differences_and_torch(torch):
    lin = nn.Linear(4, 3, dtype=np.float64, rng=0)
    x = Tensor(RNG.standard_normal((5, 4)), requires_grad=True)
    G = RNG.standard_normal((5, 3))
    lin(x).backward(G)
    W = lin.weight.data
    np.testing.assert_allclose(x.grad, G @ W, rtol=1e-12)  # dX = G W   (W is (out, in))
    np.testing.assert_allclose(lin.weight.grad, G.T @ x.data, rtol=1e-12)  # dW = G^T X
    np.testing.assert_allclose(lin.bias.grad, G.sum(0), rtol=1e-12)  # db = sum_n G
    gradcheck(lambda a, w, b: F.linear(a, w, b), x.data, W, lin.bias.data)
    tx, tw, tb = t64(torch, x.data, True), t64(torch, W, True), t64(torch, lin.bias.data, True)
    torch.nn.functional.linear(tx, tw, tb).backward(t64(torch, G))
    for ours, theirs in ((x.grad, tx), (lin.weight.grad, tw), (lin.bias.grad, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- activations

ACTIVATIONS = [  # (ours, torch's, closed-form derivative)
    (lambda: nn.ReLU(), lambda t: t.nn.ReLU(), lambda x: (x > 0).astype(float)),
    (lambda: nn.LeakyReLU(0.2), lambda t: t.nn.LeakyReLU(0.2), lambda x: np.where(x > 0, 1, 0.2)),
    (lambda: nn.Tanh(), lambda t: t.nn.Tanh(), lambda x: 1 / np.cosh(x) ** 2),
    (lambda: nn.Sigmoid(), lambda t: t.nn.Sigmoid(),
     lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    (lambda: nn.Identity(), lambda t: t.nn.Identity(), lambda x: np.ones_like(x)),
]


@pytest.mark.parametrize("ours, theirs, deriv", ACTIVATIONS,
                         ids=["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
def test_activation_modules_match_closed_form_and_torch(torch, ours, theirs, deriv):
    x = RNG.uniform(0.1, 3, (4, 6)) * RNG.choice([-1, 1], (4, 6))  # away from the kink at 0
    G = RNG.standard_normal((4, 6))
    xt = Tensor(x, requires_grad=True)
    out = ours()(xt)
    out.backward(G)
    tx = t64(torch, x, True)
    tout = theirs(torch)(tx)
    tout.backward(t64(torch, G))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(xt.grad, G * deriv(x), rtol=1e-12)


def test_flatten_module():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4))
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)


# ---------------------------------------------------------------- Dropout

def test_dropout_eval_and_p0_are_identity():
    x = Tensor(RNG.standard_normal((3, 4)))
    d = nn.Dropout(0.5, rng=0).eval()
    assert d(x) is x
    assert nn.Dropout(0.0, rng=0)(x) is x


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_train_zeroes_fraction_p_and_scales_the_rest(p):
    n = 200_000
    x = Tensor(RNG.uniform(1, 2, n), requires_grad=True)
    out = nn.Dropout(p, rng=1)(x)
    kept = out.data != 0
    assert abs((1 - kept.mean()) - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out.data[kept], x.data[kept] / (1 - p), rtol=1e-15)
    G = RNG.standard_normal(n)
    out.backward(G)
    np.testing.assert_allclose(x.grad, G * kept / (1 - p), rtol=1e-15)


def test_dropout_float32_stays_float32():
    x = Tensor(np.ones((10, 10), dtype=np.float32))
    assert nn.Dropout(0.3, rng=0)(x).dtype == np.float32


def test_dropout_scale_and_p1_match_torch(torch):
    x = np.ones(1000)
    for p in (0.3, 0.75):
        t_out = torch.nn.functional.dropout(t64(torch, x), p, training=True).numpy()
        ours = F.dropout(Tensor(x), p, rng=np.random.default_rng(0)).data
        np.testing.assert_allclose(np.unique(ours[ours != 0]), np.unique(t_out[t_out != 0]),
                                   rtol=1e-15)
    xt = Tensor(np.ones(5), requires_grad=True)
    out = nn.Dropout(1.0, rng=0)(xt)
    t_out = torch.nn.functional.dropout(t64(torch, np.ones(5)), 1.0, training=True)
    np.testing.assert_array_equal(out.data, t_out.numpy())
    out.sum().backward()
    np.testing.assert_array_equal(xt.grad, np.zeros(5))


def test_dropout_is_reproducible_with_a_seed_and_gradchecks():
    x = Tensor(RNG.standard_normal((6, 5)))
    np.testing.assert_array_equal(nn.Dropout(0.4, rng=3)(x).data, nn.Dropout(0.4, rng=3)(x).data)
    d = nn.Dropout(0.4, rng=3)
    assert not np.array_equal(d(x).data, d(x).data)  # the generator advances between calls
    gradcheck(lambda a: F.dropout(a, 0.4, rng=np.random.default_rng(5)), x.data)


@pytest.mark.parametrize("p, exc", [(-0.1, ValueError), (1.5, ValueError),
                                    (float("nan"), ValueError), ("0.5", TypeError)])
def test_dropout_rejects_bad_p(p, exc):
    with pytest.raises(exc, match="p must be"):
        nn.Dropout(p)
    with pytest.raises(exc, match="p must be"):
        F.dropout(Tensor(np.ones(2)), p)


# ---------------------------------------------------------------- BatchNorm1d

def _bn_pair(torch, c, **kw):
    ours = nn.BatchNorm1d(c, dtype=np.float64, **kw)
    theirs = torch.nn.BatchNorm1d(c, **kw).double()
    if ours.affine:  # non-trivial affine parameters, the same in both
        w, b = RNG.uniform(0.5, 2, c), RNG.standard_normal(c)
        ours.weight.data[...] = w
        ours.bias.data[...] = b
        with torch.no_grad():
            theirs.weight.copy_(t64(torch, w))
            theirs.bias.copy_(t64(torch, b))
    return ours, theirs


@pytest.mark.parametrize("shape", [(8, 3), (5, 3, 4)], ids=["NC", "NCL"])
@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"affine": False}, {"momentum": 0.3},
                                {"track_running_stats": False}],
                         ids=["default", "cumulative", "no_affine", "momentum0.3", "untracked"])
def test_batchnorm_train_and_eval_match_torch(torch, shape, kw):
    ours, theirs = _bn_pair(torch, shape[1], **kw)
    for step in range(3):
        x = RNG.standard_normal(shape) * 3 + 1
        G = RNG.standard_normal(shape)
        xt = Tensor(x, requires_grad=True)
        out = ours(xt)
        out.backward(G)
        tx = t64(torch, x, True)
        tout = theirs(tx)
        tout.backward(t64(torch, G))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
        if ours.affine:
            np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10)
            ours.zero_grad()
            theirs.zero_grad()
    tsd = theirs.state_dict()
    assert list(ours.state_dict()) == list(tsd)
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, tsd[k].numpy(), rtol=1e-12, err_msg=k)
    ours.eval()
    theirs.eval()
    x = RNG.standard_normal(shape)
    with torch.no_grad():
        want = theirs(t64(torch, x)).numpy()
    np.testing.assert_allclose(ours(Tensor(x)).data, want, rtol=1e-10, atol=1e-12)


def test_batchnorm_closed_form_and_central_differences():
    n, c = 6, 3
    x = RNG.standard_normal((n, c)) * 2
    gamma, beta = RNG.uniform(0.5, 2, c), RNG.standard_normal(c)
    G = RNG.standard_normal((n, c))
    bn = nn.BatchNorm1d(c, dtype=np.float64)
    bn.weight.data[...], bn.bias.data[...] = gamma, beta
    xt = Tensor(x, requires_grad=True)
    bn(xt).backward(G)
    mu, var = x.mean(0), x.var(0)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    # dx = gamma / (N sqrt(var + eps)) * (N G - sum G - xhat sum(G xhat))
    dx = gamma / (n * np.sqrt(var + 1e-5)) * (n * G - G.sum(0) - xhat * (G * xhat).sum(0))
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.weight.grad, (G * xhat).sum(0), rtol=1e-10)
    np.testing.assert_allclose(bn.bias.grad, G.sum(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)
    gradcheck(lambda a, w, b: F.batch_norm(a, None, None, w, b, training=True), x, gamma, beta)
    gradcheck(lambda a: F.batch_norm(a.reshape(2, 3, 3), None, None, training=True), x[:, :3])


def test_batchnorm_float32_stays_float32():
    bn = nn.BatchNorm1d(4)
    out = bn(Tensor(RNG.standard_normal((5, 4)).astype(np.float32)))
    assert out.dtype == np.float32 and bn.running_mean.dtype == np.float32


def test_batchnorm_bad_input_and_arguments():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"expected input \(N, 3\).*got shape \(4, 2\)"):
        bn(Tensor(np.zeros((4, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(Tensor(np.zeros((1, 3), dtype=np.float32)))
    assert bn.num_batches_tracked.data == 0  # the failed call changed nothing
    bn.eval()
    assert bn(Tensor(np.zeros((1, 3), dtype=np.float32))).shape == (1, 3)  # fine in eval
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm1d(3, eps=0)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=2.0)
    with pytest.raises(ValueError, match="running_mean and running_var are needed"):
        F.batch_norm(Tensor(np.zeros((2, 3))), None, None, training=False)
    with pytest.raises(ValueError, match=r"running_mean has shape \(2,\), expected \(3,\)"):
        F.batch_norm(Tensor(np.zeros((2, 3))), np.zeros(2), np.ones(3), training=True)


# ---------------------------------------------------------------- Sequential

def test_sequential_indexing_len_iteration_and_composition():
    layers = [nn.Linear(3, 4, rng=0), nn.Tanh(), nn.Linear(4, 2, rng=1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == layers[1:]
    assert [n for n, _ in sub.named_children()] == ["1", "2"]  # torch keeps the names
    x = Tensor(RNG.standard_normal((5, 3)).astype(np.float32))
    np.testing.assert_array_equal(seq(x).data, layers[2](layers[1](layers[0](x))).data)
    named = nn.Sequential({"fc": nn.Linear(3, 4), "act": nn.ReLU()})
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    named.append(nn.Linear(4, 1))
    assert len(named) == 3 and named[2].out_features == 1
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    with pytest.raises(TypeError, match="ints or slices"):
        seq["0"]
    with pytest.raises(TypeError, match="item 1 must be a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


# ---------------------------------------------------------------- mse_loss

def test_mse_loss_matches_torch_and_rejects_broadcasting(torch):
    x, y = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    for reduction in ("mean", "sum", "none"):
        xt = Tensor(x, requires_grad=True)
        out = F.mse_loss(xt, Tensor(y), reduction)
        G = RNG.standard_normal(out.shape)
        out.backward(G)
        tx = t64(torch, x, True)
        tout = torch.nn.functional.mse_loss(tx, t64(torch, y), reduction=reduction)
        tout.backward(t64(torch, G))
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(xt.grad, tx.grad.numpy(), rtol=1e-13)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 1\)"):
        F.mse_loss(Tensor(x), Tensor(y[:, :1]))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(Tensor(x), Tensor(y), "avg")
