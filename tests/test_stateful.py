"""A hypothesis state machine over a model's life: build an MLP with an optimizer and a scheduler,
then train, accumulate, zero_grad, switch train/eval, save, load and resume in any order, checking
the invariants after every step. A run resumed from a checkpoint (saved to disk, loaded into a
fresh model and optimizer) must continue bit-identically to the original."""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import tinygrad_mini.nn.functional as F
from nets.mlp import MLP
from tinygrad_mini import no_grad, nn, optim

D, H, C, N = 5, 6, 3, 12
# BatchNorm needs two rows per training batch; rows are drawn without repeats
BATCH = st.lists(st.integers(0, N - 1), min_size=2, max_size=6, unique=True)

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.5, nesterov=True),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-2, amsgrad=True),
}


def assert_same_arrays(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: keys {sorted(a)} != {sorted(b)}"
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, f"{what}: {k}"
        assert np.array_equal(a[k], b[k], equal_nan=True), f"{what}: {k} differs"


def assert_same_tree(a, b, where: str = "") -> None:
    """Nested dicts/lists/tuples of arrays and numbers, compared exactly (NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        assert np.array_equal(a, b, equal_nan=True), where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def deep_copy(tree):
    if isinstance(tree, dict):
        return {k: deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(deep_copy(v) for v in tree)
    return tree.copy() if isinstance(tree, np.ndarray) else tree


class ModelLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="tgm_stateful_")
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((N, D)).astype(np.float32)
        self.y = rng.integers(0, C, N)
        self.steps = 0

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ building
    def make(self, seed: int):
        model = MLP(D, [H], C, dropout=self.dropout, batchnorm=self.batchnorm, init="kaiming",
                    seed=seed)
        opt = OPTIMIZERS[self.kind](list(model.parameters()))
        return model, opt, optim.ExponentialLR(opt, gamma=0.9)

    @initialize(kind=st.sampled_from(sorted(OPTIMIZERS)), dropout=st.sampled_from([0.0, 0.3]),
                batchnorm=st.booleans(), seed=st.integers(0, 3))
    def build(self, kind, dropout, batchnorm, seed):
        self.kind, self.dropout, self.batchnorm, self.seed = kind, dropout, batchnorm, seed
        self.model, self.opt, self.sched = self.make(seed)
        self.shapes = {k: v.shape for k, v in self.model.state_dict().items()}

    def loss(self, model, rows):
        return F.cross_entropy(model(self.X[rows]), self.y[rows])

    def train_step(self, model, opt, rows) -> None:
        opt.zero_grad()
        self.loss(model, rows).backward()
        opt.step()

    # ------------------------------------------------------------ rules
    @rule(rows=BATCH)
    def step(self, rows):
        before, opt_before = self.model.state_dict(), self.opt.state_dict()
        kept, opt_kept = deep_copy(before), deep_copy(opt_before)
        self.train_step(self.model, self.opt, rows)
        self.steps += 1
        after = self.model.state_dict()
        assert any(not np.array_equal(before[k], after[k]) for k, _ in
                   self.model.named_parameters()), "a step moved no parameter"
        # state dicts are snapshots: the step must not have changed the ones taken before it
        assert_same_arrays(before, kept, "model.state_dict() snapshot")
        assert_same_tree(opt_before, opt_kept, "optimizer.state_dict() snapshot")

    @rule(rows=BATCH)
    def accumulate(self, rows):
        """backward without a step adds this batch's gradient (taken from a twin with the same
        weights, mode and dropout generator) to whatever .grad held"""
        twin = self.make(self.seed + 1)[0]
        twin.load_state_dict(self.model.state_dict())
        twin.rng.bit_generator.state = self.model.rng.bit_generator.state
        twin.train(self.model.training)
        self.loss(twin, rows).backward()
        old = {k: (None if p.grad is None else p.grad.copy())
               for k, p in self.model.named_parameters()}
        self.loss(self.model, rows).backward()
        for (k, p), q in zip(self.model.named_parameters(), twin.parameters()):
            want = q.grad if old[k] is None else old[k] + q.grad
            np.testing.assert_array_equal(p.grad, want, err_msg=k)

    @rule(through_optimizer=st.booleans())
    def zero_grad(self, through_optimizer):
        (self.opt if through_optimizer else self.model).zero_grad()
        assert all(p.grad is None for p in self.model.parameters())

    @rule(mode=st.booleans())
    def switch_mode(self, mode):
        self.model.train(mode)
        assert all(m.training is mode for m in self.model.modules())

    @precondition(lambda self: self.steps > 0)  # torch's order: optimizer.step() first
    @rule()
    def scheduler_step(self):
        lrs = [g["lr"] for g in self.opt.param_groups]
        self.sched.step()
        assert [g["lr"] for g in self.opt.param_groups] == [lr * 0.9 for lr in lrs]
        assert self.sched.get_last_lr() == [g["lr"] for g in self.opt.param_groups]

    @rule(rows=BATCH)
    def eval_is_deterministic(self, rows):
        """eval mode: no dropout draw, no running-stat update, the same output twice"""
        was, state = self.model.training, self.model.state_dict()
        rng_state = self.model.rng.bit_generator.state
        self.model.eval()
        with no_grad():
            a = self.model(self.X[rows]).data.copy()
            b = self.model(self.X[rows]).data
        np.testing.assert_array_equal(a, b)
        assert_same_arrays(state, self.model.state_dict(), "eval forward changed the state")
        assert self.model.rng.bit_generator.state == rng_state
        np.testing.assert_array_equal(self.model.predict(self.X[rows]), np.argmax(a, axis=1))
        self.model.train(was)

    @rule(batches=st.lists(BATCH, min_size=1, max_size=3), sched_too=st.booleans())
    def save_load_and_resume(self, batches, sched_too):
        """checkpoint to disk, load into a fresh model + optimizer (another init), continue both
        with the same batches: the two runs stay bit-identical"""
        ckpt = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "rng": self.model.rng.bit_generator.state, "training": self.model.training}
        path = os.path.join(self.tmp, "ckpt.npz")
        nn.save(ckpt, path)
        loaded = nn.load(path)
        assert_same_tree(ckpt, loaded)  # the file round-trips exactly
        model, opt, sched = self.make(self.seed + 100)
        model.load_state_dict(loaded["model"])
        opt.load_state_dict(loaded["optimizer"])
        sched.load_state_dict(loaded["scheduler"])
        model.rng.bit_generator.state = loaded["rng"]
        model.train(loaded["training"])
        for rows in batches:
            for m, o, s in ((self.model, self.opt, self.sched), (model, opt, sched)):
                self.train_step(m, o, rows)
                if sched_too:
                    s.step()
        self.steps += len(batches)
        assert_same_arrays(self.model.state_dict(), model.state_dict(), "resumed model")
        assert_same_tree(self.opt.state_dict(), opt.state_dict(), "resumed optimizer")
        assert_same_tree(self.sched.state_dict(), sched.state_dict(), "resumed scheduler")
        self.model, self.opt, self.sched = model, opt, sched  # live on in the restored copy

    @rule()
    def state_dict_round_trips_in_memory(self):
        sd = self.model.state_dict()
        self.model.load_state_dict(sd)
        assert_same_arrays(sd, self.model.state_dict(), "load_state_dict(state_dict())")
        osd = self.opt.state_dict()
        self.opt.load_state_dict(osd)
        assert_same_tree(osd, self.opt.state_dict(), "optimizer round trip")

    # ------------------------------------------------------------ invariants
    @invariant()
    def parameters_finite_and_shapes_unchanged(self):
        if not hasattr(self, "model"):
            return
        sd = self.model.state_dict()
        assert {k: v.shape for k, v in sd.items()} == self.shapes
        for k, p in self.model.named_parameters():
            assert np.isfinite(p.data).all(), k
            assert p.grad is None or (p.grad.shape == p.shape and p.grad.dtype == p.dtype), k

    @invariant()
    def optimizer_holds_the_models_parameters(self):
        if not hasattr(self, "model"):
            return
        held = [p for g in self.opt.param_groups for p in g["params"]]
        assert [id(p) for p in held] == [id(p) for p in self.model.parameters()]


ModelLifecycle.TestCase.settings = settings(max_examples=60, stateful_step_count=20)
TestModelLifecycle = ModelLifecycle.TestCase
