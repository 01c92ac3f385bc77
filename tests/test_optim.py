"""tinygrad_mini.optim: update rules against hand-written first steps and against torch.optim
trajectories (float64), schedulers, bad input, and bit-exact resume from a saved state."""
import copy

import numpy as np
import pytest

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor, nn, optim

RNG = np.random.default_rng(99)
X = RNG.standard_normal((24, 6))
Y = RNG.integers(0, 3, 24)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def make_model(seed=0, dtype=np.float64):
    return nn.Sequential(nn.Linear(6, 8, dtype=dtype, rng=seed), nn.Tanh(),
                         nn.Linear(8, 3, dtype=dtype, rng=seed + 1))


def loss_and_backward(model, opt, batch=slice(None)):
    opt.zero_grad()
    loss = F.cross_entropy(model(Tensor(X[batch].astype(model[0].weight.dtype))), Y[batch])
    loss.backward()
    return loss


# ---------------------------------------------------------------- trajectories against torch

CONFIGS = {  # name: (optimizer class name, kwargs, scheduler name or None, scheduler kwargs)
    "sgd": ("SGD", {"lr": 0.1}, None, {}),
    "sgd_momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}, None, {}),
    "sgd_dampening": ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}, None, {}),
    "sgd_nesterov_wd": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                "weight_decay": 1e-2}, None, {}),
    "sgd_wd_steplr": ("SGD", {"lr": 0.2, "weight_decay": 1e-3}, "StepLR",
                      {"step_size": 4, "gamma": 0.5}),
    "adam": ("Adam", {"lr": 1e-2}, None, {}),
    "adam_wd_explr": ("Adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6,
                               "weight_decay": 1e-2}, "ExponentialLR", {"gamma": 0.9}),
    "adam_amsgrad": ("Adam", {"lr": 1e-2, "amsgrad": True}, None, {}),
    "adamw_steplr": ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}, "StepLR",
                     {"step_size": 3, "gamma": 0.7}),
}


def build(lib, params, name):
    opt_name, kw, sched_name, skw = CONFIGS[name]
    opt = getattr(lib, opt_name)(params, **kw)
    sched_lib = getattr(lib, "lr_scheduler", lib)
    sched = getattr(sched_lib, sched_name)(opt, **skw) if sched_name else None
    return opt, sched


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trajectory_matches_torch_float64(torch, name):
    model = make_model()
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        for p, tp in zip(model.parameters(), tmodel.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    opt, sched = build(optim, list(model.parameters()), name)
    topt, tsched = build(torch.optim, list(tmodel.parameters()), name)
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
    for step in range(25):
        batch = slice(4 * (step % 6), 4 * (step % 6) + 8)
        loss = loss_and_backward(model, opt, batch)
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(tx[batch]), ty[batch])
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) < 1e-12
        if sched:
            sched.step()
            tsched.step()
            assert sched.get_last_lr() == tsched.get_last_lr()
    for p, tp in zip(model.parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- first steps by hand

def _param(values, grad):
    p = nn.Parameter(np.array(values, dtype=np.float64))
    p.grad = np.array(grad, dtype=np.float64)
    return p


def test_sgd_steps_by_hand():
    p = _param([1.0, -2.0], [0.5, 0.25])
    optim.SGD([p], lr=0.1, weight_decay=0.2).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.1 * (0.5 + 0.2), -2.0 - 0.1 * (0.25 - 0.4)])
    p = _param([1.0], [2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True)
    opt.step()  # b = 2; step with g + 0.5 b = 3
    np.testing.assert_allclose(p.data, [1.0 - 0.3])
    opt.step()  # b = 0.5 * 2 + 2 = 3; step with 2 + 1.5 = 3.5
    np.testing.assert_allclose(p.data, [0.7 - 0.35])


def test_adam_first_steps_by_hand():
    g = np.array([0.3, -2.0, 1e-3])
    p = _param([1.0, 1.0, 1.0], g)
    opt = optim.Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    opt.step()  # bias-corrected m = g, v = g^2: the first step is lr * g / (|g| + eps)
    np.testing.assert_allclose(p.data, 1.0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-14)
    opt.step()  # same gradient again: m and v stay at g and g^2 after correction
    np.testing.assert_allclose(p.data, 1.0 - 0.02 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    assert opt.state[p]["step"] == 2


def test_adam_weight_decay_is_l2_and_adamw_is_decoupled():
    p = _param([2.0], [0.0])
    optim.Adam([p], lr=0.1, weight_decay=0.5).step()  # g = 0 + 0.5 * 2 = 1: a full lr step
    np.testing.assert_allclose(p.data, [2.0 - 0.1 * 1 / (1 + 1e-8)])
    q = _param([2.0], [0.0])
    optim.AdamW([q], lr=0.1, weight_decay=0.5).step()  # p (1 - lr wd), then a zero Adam step
    np.testing.assert_allclose(q.data, [2.0 * (1 - 0.05)])


# ---------------------------------------------------------------- in-place, no aliasing

@pytest.mark.parametrize("name", list(CONFIGS))
def test_step_updates_in_place_and_never_writes_grad(name):
    model = make_model()
    opt, _ = build(optim, model.parameters(), name)
    for _ in range(2):
        loss_and_backward(model, opt)
        params = list(model.parameters())
        arrays = [p.data for p in params]
        grads = [p.grad for p in params]
        grad_copies = [g.copy() for g in grads]
        opt.step()
        assert all(p.data is a for p, a in zip(params, arrays))
        assert all(p.grad is g for p, g in zip(params, grads))
        for g, c in zip(grads, grad_copies):
            np.testing.assert_array_equal(g, c)


def test_momentum_buffer_is_not_the_grad():
    p = _param([1.0, 1.0], [1.0, 2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    p.grad[...] = 100.0  # the caller reuses its gradient array
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], [1.0, 2.0])


def test_float32_params_and_state_stay_float32():
    model = make_model(dtype=np.float32)
    opt = optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(2):
        loss_and_backward(model, opt)
        opt.step()
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(v.dtype == np.float32 for st in opt.state.values()
               for v in st.values() if isinstance(v, np.ndarray))


def test_params_without_grad_are_skipped():
    used, unused = _param([1.0], [1.0]), nn.Parameter(np.array([5.0]))
    frozen = Tensor(np.array([3.0]))  # requires_grad=False: accepted (as torch), never updated
    opt = optim.Adam([used, unused, frozen], lr=0.1)
    opt.step()
    assert unused.data[0] == 5.0 and frozen.data[0] == 3.0 and used.data[0] != 1.0
    assert unused not in opt.state and frozen not in opt.state


def test_zero_grad_and_closure():
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss = opt.step(lambda: loss_and_backward(model, opt))
    assert isinstance(loss, Tensor) and np.isfinite(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_param_groups_have_their_own_lr():
    a, b = _param([1.0], [1.0]), _param([1.0], [1.0])
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1)
    sched = optim.ExponentialLR(opt, gamma=0.5)
    opt.step()
    sched.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.5])
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.25]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.5]


# ---------------------------------------------------------------- bad input

def _p():
    return nn.Parameter(np.zeros(2))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda: optim.Adam(iter([])), ValueError, "empty parameter list"),
    (lambda: optim.SGD(_p(), lr=0.1), TypeError, "wrap it in a list"),
    (lambda: optim.SGD(make_model(), lr=0.1), TypeError, r"model.parameters\(\)"),
    (lambda: optim.SGD(5, lr=0.1), TypeError, "iterable"),
    (lambda: optim.SGD([_p(), np.zeros(2)], lr=0.1), TypeError, "param 1 must be a Tensor"),
    (lambda: optim.SGD([_p()], lr=-0.1), ValueError, "lr=-0.1"),
    (lambda: optim.SGD([_p()], lr="fast"), TypeError, "lr must be a number"),
    (lambda: optim.SGD([_p()], lr=float("nan")), ValueError, "lr must be finite"),
    (lambda: optim.SGD([_p()], lr=0.1, momentum=-0.5), ValueError, "momentum=-0.5"),
    (lambda: optim.SGD([_p()], lr=0.1, nesterov=True), ValueError, "Nesterov"),
    (lambda: optim.SGD([_p()], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     ValueError, "dampening=0.1"),
    (lambda: optim.Adam([_p()], betas=(1.0, 0.999)), ValueError, "index 0: 1.0"),
    (lambda: optim.Adam([_p()], betas=(0.9, -0.1)), ValueError, "index 1: -0.1"),
    (lambda: optim.Adam([_p()], betas=0.9), TypeError, "pair"),
    (lambda: optim.Adam([_p()], eps=-1e-8), ValueError, "eps=-1e-08"),
    (lambda: optim.Adam([_p()], weight_decay=-1.0), ValueError, "weight_decay value -1.0"),
    (lambda: optim.SGD([{"params": [_p()], "momentom": 0.9}], lr=0.1), ValueError, "momentom"),
    (lambda: optim.SGD([{"lr": 0.1}], lr=0.1), ValueError, "'params'"),
    (lambda: optim.SGD([Tensor(np.zeros(2), requires_grad=True) * 2], lr=0.1), ValueError,
     "not a leaf"),
    (lambda: optim.SGD([Tensor(np.zeros(2, dtype=np.int64))], lr=0.1), ValueError, "int64"),
])
def test_constructor_rejects_bad_input(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_duplicate_params_are_rejected():
    p, q = _p(), _p()
    with pytest.raises(ValueError, match="param 1 .* more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.Adam([{"params": [p, q]}, {"params": [q]}])


def test_read_only_param_is_rejected():
    arr = np.zeros(3)
    arr.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD([Tensor(arr, requires_grad=True)], lr=0.1)


def test_grad_of_the_wrong_shape_is_a_clear_error():
    p = _param([1.0, 2.0], [1.0, 2.0])
    p.grad = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"shape \(2,\) has shape \(2, 2\)"):
        optim.SGD([p], lr=0.1).step()


@pytest.mark.parametrize("make", ["SGD", "SGD momentum", "Adam", "AdamW"])
@pytest.mark.parametrize("grad, what", [
    (lambda: Tensor(np.ones(2)), "Tensor"), (lambda: [1.0, 1.0], "list"),
    (lambda: np.ones(2, dtype=complex), "dtype complex128"), (lambda: np.ones(2, dtype=int), "int64"),
    (lambda: np.array(["a", "b"]), "dtype <U1")])
def test_grad_that_is_not_a_floating_array_is_a_type_error(make, grad, what):
    """As the README's convention: a bad type is a TypeError naming it, never numpy's own error;
    the param is left untouched."""
    p = _param([1.0, 2.0], [1.0, 2.0])
    p.grad = grad()
    name, *extra = make.split()
    opt = getattr(optim, name)([p], lr=0.1, **({"momentum": 0.9} if extra else {}))
    with pytest.raises(TypeError, match=rf"grad of a param of shape \(2,\) must be a floating "
                                        rf"ndarray, got .*{what}"):
        opt.step()
    np.testing.assert_array_equal(p.data, [1.0, 2.0])


# ---------------------------------------------------------------- state dicts and resume

def _run(name, steps, state=None, seed=0):
    """A model, optimizer and scheduler (state loaded if given) after `steps` more steps."""
    model = make_model(seed=seed)
    opt, sched = build(optim, model.parameters(), name)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched:
            sched.load_state_dict(state["scheduler"])
    for _ in range(steps):
        loss_and_backward(model, opt)
        opt.step()
        if sched:
            sched.step()
    return model, opt, sched


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "sgd_wd_steplr", "adam_wd_explr",
                                  "adam_amsgrad", "adamw_steplr"])
def test_resume_from_saved_state_is_bit_exact(tmp_path, name):
    full_model, full_opt, full_sched = _run(name, 10)
    model, opt, sched = _run(name, 4)
    path = tmp_path / "ckpt.npz"
    nn.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict() if sched else None}, path)
    resumed, ropt, rsched = _run(name, 6, state=nn.load(path), seed=50)  # other init, overwritten
    for p, q in zip(full_model.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert [g["lr"] for g in ropt.param_groups] == [g["lr"] for g in full_opt.param_groups]
    for p, q in zip(full_model.parameters(), resumed.parameters()):
        want, got = full_opt.state.get(p, {}), ropt.state.get(q, {})
        assert set(want) == set(got)
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v)
    if sched:
        assert rsched.state_dict() == full_sched.state_dict()


def test_state_dict_is_a_snapshot():
    model, opt, _ = _run("adam", 2)
    sd = opt.state_dict()
    frozen = copy.deepcopy(sd)
    loss_and_backward(model, opt)
    opt.step()
    assert sd["state"][0]["step"] == frozen["state"][0]["step"] == 2
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], frozen["state"][0]["exp_avg"])
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3]


def test_state_dict_layout_matches_torch(torch):
    model, opt, _ = _run("adam_wd_explr", 1)
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6,
                            weight_decay=1e-2)
    torch.optim.lr_scheduler.ExponentialLR(topt, 0.9)
    tmodel(torch.zeros(2, 6)).sum().backward()
    topt.step()
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert list(ours["state"]) == list(theirs["state"])
    assert set(ours["state"][0]) == set(theirs["state"][0])
    assert set(ours["param_groups"][0]) <= set(theirs["param_groups"][0])
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]


def test_optimizer_load_state_dict_rejects_mismatches():
    model, opt, _ = _run("adam", 1)
    sd = opt.state_dict()
    small = optim.Adam([_p()])
    with pytest.raises(ValueError, match="4 params in the state, 1 in the optimizer"):
        small.load_state_dict(sd)
    two = optim.Adam([{"params": list(make_model().parameters())[:2]},
                      {"params": list(make_model().parameters())[2:]}])
    with pytest.raises(ValueError, match=r"1 param group\(s\), the optimizer 2"):
        two.load_state_dict(sd)
    bad = copy.deepcopy(sd)
    bad["state"][0]["exp_avg"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"exp_avg.*\(3, 3\).*\(8, 6\)"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["param_groups"][0]["betas"] = (1.5, 0.9)
    with pytest.raises(ValueError, match="1.5"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"],
                                  sd["state"][0]["exp_avg"])  # failed loads changed nothing


# ---------------------------------------------------------------- schedulers

@pytest.mark.parametrize("ours, theirs", [
    (lambda o: optim.ExponentialLR(o, gamma=0.95),
     lambda t, o: t.optim.lr_scheduler.ExponentialLR(o, gamma=0.95)),
    (lambda o: optim.StepLR(o, step_size=3, gamma=0.3),
     lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.3)),
], ids=["exponential", "step"])
def test_scheduler_lrs_equal_torch(torch, ours, theirs):
    opt = optim.SGD([{"params": [_p()]}, {"params": [_p()], "lr": 0.7}], lr=0.1)
    topt = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)]},
                            {"params": [torch.zeros(2, requires_grad=True)], "lr": 0.7}], lr=0.1)
    sched, tsched = ours(opt), theirs(torch, topt)
    assert sched.get_last_lr() == tsched.get_last_lr() == [0.1, 0.7]
    for _ in range(30):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        assert sched.get_last_lr() == tsched.get_last_lr()  # the same float arithmetic
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
    assert sched.last_epoch == tsched.last_epoch == 30


def test_exponential_lr_is_lr_times_gamma_to_the_epoch():
    opt = optim.SGD([_p()], lr=0.5)
    sched = optim.ExponentialLR(opt, gamma=0.5)
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs == [0.25, 0.125, 0.0625, 0.03125]


def test_scheduler_before_optimizer_step_warns():
    sched = optim.StepLR(optim.SGD([_p()], lr=0.1), step_size=2)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()


def test_scheduler_bad_input():
    opt = optim.SGD([_p()], lr=0.1)
    with pytest.raises(TypeError, match="expected an Optimizer"):
        optim.ExponentialLR("opt", gamma=0.9)
    with pytest.raises(ValueError, match="step_size must be >= 1, got 0"):
        optim.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="step_size must be an int"):
        optim.StepLR(opt, step_size=2.5)
    with pytest.raises(TypeError, match="gamma must be a number"):
        optim.ExponentialLR(opt, gamma="0.9")
    with pytest.raises(ValueError, match="gamma must be >= 0, got -1"):
        optim.ExponentialLR(opt, gamma=-1)
    sched = optim.ExponentialLR(opt, gamma=0.9)
    with pytest.raises(ValueError, match="expected keys"):
        sched.load_state_dict({"gamma": 0.9})


# ---------------------------------------------------------------- the BLAS axpy path (large params)

def _blas_expected():
    """numpy's wheels ship OpenBLAS with the ILP64 axpy: there the fast path must be found."""
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return cfg.get("name") == "scipy-openblas"


def test_blas_axpy_is_found_where_numpy_ships_openblas():
    from tinygrad_mini import _blas
    if not _blas_expected():
        pytest.skip("numpy was built against another BLAS: SGD uses its numpy path")
    assert _blas.available()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_axpy_equals_numpy_and_refuses_what_it_cannot_take(dtype):
    from tinygrad_mini import _blas
    if not _blas.available():
        pytest.skip("no BLAS axpy on this numpy build: SGD uses its numpy path")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((130, 200)).astype(dtype)  # 26,000 elements: above MIN_SIZE
    y = rng.standard_normal((130, 200)).astype(dtype)
    want = y - dtype(0.01) * x  # two roundings; BLAS may fuse them into one
    bound = 2 * np.finfo(dtype).eps * (np.abs(y) + np.abs(dtype(0.01) * x))  # rounding error
    assert _blas.axpy(-0.01, x, y)
    assert np.all(np.abs(y - want) <= bound)
    for bad_x, bad_y in [
            (x[:, :100], y[:, :100]),                  # not contiguous
            (np.asfortranarray(x), y),                 # same shape, other layout
            (x.astype(np.float16), y.astype(np.float16)),  # a dtype BLAS has no axpy for
            (x[:10], y[:10]),                          # small: numpy is cheaper
            (y, y)]:                                   # x aliases y
        before = bad_y.copy()
        assert not _blas.axpy(-0.01, bad_x, bad_y)
        np.testing.assert_array_equal(bad_y, before)
    ro = y.copy()
    ro.flags.writeable = False
    assert not _blas.axpy(-0.01, x, ro)


@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True,
                                                              "weight_decay": 1e-2}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_on_large_params_agrees_with_the_numpy_path(monkeypatch, kwargs, dtype):
    """Large params take BLAS axpy; its result is the numpy update's to within rounding, and
    neither path writes p.grad."""
    rng = np.random.default_rng(1)
    w0, g0 = rng.standard_normal((2, 300, 100)).astype(dtype)
    runs = []
    for use_blas in (True, False):
        if not use_blas:
            monkeypatch.setattr(optim, "axpy", lambda *a: False)
        p = nn.Parameter(w0.copy())
        opt = optim.SGD([p], lr=0.05, **kwargs)
        for k in range(3):
            p.grad = g0 * (k + 1)
            grad_before = p.grad.copy()
            opt.step()
            np.testing.assert_array_equal(p.grad, grad_before)
        runs.append(p.data.copy())
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-14)
    if not kwargs:  # plain SGD after three steps: w0 - 0.05 (1 + 2 + 3) g0, by hand
        np.testing.assert_allclose(runs[0], w0 - 0.3 * g0, rtol=1e-5 if dtype == np.float32
                                   else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
