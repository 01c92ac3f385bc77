"""The benchmarked training step -- forward, backward, SGD update -- written four ways: with
tinygrad_mini as a user writes it, in closed form with numpy, with PyTorch, and as the bare matmuls
of the closed form (the floor for the GFLOPS comparison). Each maker returns step(x, y) -> loss.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import tinygrad_mini as tm
from tinygrad_mini import nn, optim
from tinygrad_mini.nn import functional as F

Params = list  # [(W (out, in), b (out,)), ...] in float64: every contender starts from these
Step = Callable[[np.ndarray, np.ndarray], object]

NETS = {  # name: (layer widths, batch size)
    "a": ([3072, 80, 10], 200),
    "b": ([3072, 500, 10], 200),
    "c": ([3072, 512, 256, 128, 10], 256),
    "d": ([16, 8, 3], 8),
}


def init_params(sizes: list[int], seed: int = 0) -> Params:
    """He-initialised weights (out, in) and small biases for the layer widths `sizes`."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((d_out, d_in)) * np.sqrt(2.0 / d_in),
             0.01 * rng.standard_normal(d_out)) for d_in, d_out in zip(sizes, sizes[1:])]


def batch(sizes: list[int], n: int, dtype, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A random input batch (N, D) of `dtype` and int64 labels (N,)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


def matmul_flops(sizes: list[int], n: int) -> int:
    """2 N D H per matmul: forward and dW for every layer, dX for all but the first (the input
    batch needs no gradient)."""
    total = 0
    for i, (d_in, d_out) in enumerate(zip(sizes, sizes[1:])):
        total += 2 * n * d_in * d_out * (2 if i == 0 else 3)
    return total


# ---------------------------------------------------------------- tinygrad_mini

def tinygrad_mini_model(params: Params, dtype) -> nn.Sequential:
    """nn.Sequential of nn.Linear + nn.ReLU holding `params`."""
    layers: list = []
    for i, (w, b) in enumerate(params):
        lin = nn.Linear(w.shape[1], w.shape[0], dtype=dtype, rng=0)
        lin.weight.data[...] = w
        lin.bias.data[...] = b
        layers += [lin, nn.ReLU()] if i < len(params) - 1 else [lin]
    return nn.Sequential(*layers)


def tinygrad_mini_step(params: Params, dtype, lr: float) -> Step:
    """The model above, F.cross_entropy and optim.SGD: the path a user writes."""
    model = tinygrad_mini_model(params, dtype)
    opt = optim.SGD(model.parameters(), lr=lr)

    def step(x: np.ndarray, y: np.ndarray) -> tm.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(tm.Tensor(x)), y)
        loss.backward()
        opt.step()
        return loss

    return step


# ---------------------------------------------------------------- numpy, closed form

def numpy_step(params: Params, dtype, lr: float, w_in_out: bool = False) -> Step:
    """The closed-form step as well as numpy allows: C-contiguous weights used through transposed
    views (BLAS reads them without a copy), bias, ReLU, softmax and the SGD update in place, the
    ReLU mask taken from the saved activation, no gradient for the input batch.

    W is stored (out, in) as torch and nn.Linear store it, or (in, out) when `w_in_out`: the
    layout decides which BLAS transposes run, and either can be the faster one.
    """
    ws = [np.ascontiguousarray(w.T if w_in_out else w, dtype=dtype) for w, _ in params]
    bs = [np.array(b, dtype=dtype) for _, b in params]
    last, scalar = len(ws) - 1, np.dtype(dtype).type

    def step(x: np.ndarray, y: np.ndarray) -> np.floating:
        n = x.shape[0]
        rows = np.arange(n)
        acts = [x]
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = acts[-1] @ (w if w_in_out else w.T)  # (N, D) @ (D, H) -> (N, H)
            h += b
            if i < last:
                np.maximum(h, 0, out=h)
            acts.append(h)
        s = acts.pop()  # logits (N, C), turned into dL/ds in place
        s -= s.max(axis=1, keepdims=True)
        picked = s[rows, y]
        np.exp(s, out=s)
        sums = s.sum(axis=1)
        loss = np.mean(np.log(sums) - picked)
        s /= sums[:, None]
        s[rows, y] -= 1
        s *= scalar(1.0 / n)
        d = s
        for i in range(last, -1, -1):
            a = acts[i]
            if w_in_out:
                dw = a.T @ d  # (D, N) @ (N, H) -> (D, H)
            else:
                dw = d.T @ a  # (H, N) @ (N, D) -> (H, D)
            db = d.sum(axis=0)
            if i:
                d = d @ (ws[i].T if w_in_out else ws[i])  # (N, H) @ (H, D) -> (N, D)
                d *= a > 0
            dw *= scalar(lr)
            ws[i] -= dw
            db *= scalar(lr)
            bs[i] -= db
        return loss

    return step


def matmul_only_step(params: Params, dtype, lr: float) -> Step:
    """Only the matmuls of numpy_step, same shapes and layouts: the machine's matmul peak at the
    step's sizes."""
    ws = [np.ascontiguousarray(w, dtype=dtype) for w, _ in params]
    acts_cache: dict = {}

    def step(x: np.ndarray, y: np.ndarray) -> None:
        n = x.shape[0]
        acts = acts_cache.get(n)
        if acts is None:
            acts = acts_cache[n] = [np.ones((n, w.shape[0]), dtype=dtype) for w in ws]
        a = x
        for w in ws:
            a = a @ w.T
        for i in range(len(ws) - 1, -1, -1):
            d = acts[i]
            d.T @ (x if i == 0 else acts[i - 1])
            if i:
                d @ ws[i]

    return step


# ---------------------------------------------------------------- PyTorch

def torch_step(params: Params, dtype, lr: float, threads: int) -> tuple[Step, Callable[[], None]]:
    """torch.nn.Sequential of Linear + ReLU, F.cross_entropy, torch.optim.SGD; returns the step and
    the hook that sets torch's thread count before each timed block."""
    import torch

    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(dtype)]
    layers: list = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, torch.nn.ReLU()] if i < len(params) - 1 else [lin]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(x: np.ndarray, y: np.ndarray):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return loss

    def before() -> None:
        torch.set_num_threads(threads)

    return step, before


def loss_value(loss) -> float:
    """The loss any contender returned, as a Python float."""
    return float(loss.item()) if hasattr(loss, "item") else float(loss)
