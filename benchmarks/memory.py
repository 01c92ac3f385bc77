"""Memory of the training step: the arrays a forward pass keeps for backward, and a probe run in a
fresh process (so earlier work cannot hide in the allocator) of a step's RSS and tracemalloc
footprint and their growth over many steps. `python -m benchmarks.memory NET CONTENDER STEPS`
prints the probe as JSON; benchmarks/run.py calls it once per net and contender.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import tracemalloc

import numpy as np

import tinygrad_mini as tm
from tinygrad_mini import ops
from tinygrad_mini.nn import functional as F

if __package__:
    from . import steps
else:  # run as a script: this file's folder is sys.path[0]
    import steps

MAKERS = {"tinygrad_mini": steps.tinygrad_mini_step, "numpy": steps.numpy_step}
LR = 1e-3


def rss_bytes() -> int:
    """Resident set size now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns a's memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def saved_for_backward(loss: tm.Tensor) -> list[np.ndarray]:
    """The distinct arrays (by owning buffer) that the graph's Function nodes hold for backward."""
    seen_fn, seen_buf, arrays = set(), set(), []
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if not isinstance(fn, ops.Function) or id(fn) in seen_fn:
            continue
        seen_fn.add(id(fn))
        for v in vars(fn).values():
            if isinstance(v, np.ndarray) and id(_root(v)) not in seen_buf:
                seen_buf.add(id(_root(v)))
                arrays.append(v)
        stack.extend(fn.srcs)
    return arrays


def saved_report(key: str, dtype: str) -> dict:
    """Bytes a forward pass keeps for backward, by kind, against the closed form's minimum: the
    hidden activations (which also give the ReLU masks) and the softmax probabilities."""
    sizes, n = steps.NETS[key]
    x, y = steps.batch(sizes, n, dtype)
    model = steps.tinygrad_mini_model(steps.init_params(sizes), dtype)
    params = [p.data for p in model.parameters()]
    loss = F.cross_entropy(model(tm.Tensor(x)), y)
    kinds = {"parameters": 0, "input batch": 0, "labels": 0, "activations": 0}
    for a in saved_for_backward(loss):
        nbytes = _root(a).nbytes
        if any(np.shares_memory(a, p) for p in params):
            kinds["parameters"] += nbytes
        elif np.shares_memory(a, x):
            kinds["input batch"] += nbytes
        elif np.shares_memory(a, y) or a.dtype.kind in "iu":
            kinds["labels"] += nbytes
        else:
            kinds["activations"] += nbytes
    item = np.dtype(dtype).itemsize
    minimum = sum(n * h * item for h in sizes[1:-1]) + n * sizes[-1] * item
    return {"net": key, "dtype": dtype, "held_bytes": kinds, "minimum_activation_bytes": minimum,
            "activations_vs_minimum": kinds["activations"] / minimum}


def _build(key: str, contender: str):
    sizes, n = steps.NETS[key]
    x, y = steps.batch(sizes, n, "float32")
    return MAKERS[contender](steps.init_params(sizes), "float32", LR), x, y


def probe(key: str, contender: str, n_steps: int) -> dict:
    """Two phases on fresh models. RSS: resident growth while building and running 10 steps, then
    over n_steps more. tracemalloc (numpy reports its buffers to it), started before the model
    is built: the peak during one step, what stays between steps (params, grads, optimizer
    buffers), and the traced growth over n_steps more steps. Float32."""
    gc.collect()
    rss0 = rss_bytes()
    step, x, y = _build(key, contender)
    for _ in range(10):
        step(x, y)
    gc.collect()
    rss10 = rss_bytes()
    for _ in range(n_steps):
        step(x, y)
    gc.collect()
    rss_end = rss_bytes()
    del step, x, y
    gc.collect()

    tracemalloc.start()
    step, x, y = _build(key, contender)
    for _ in range(3):
        step(x, y)
    gc.collect()
    tracemalloc.reset_peak()
    step(x, y)
    resting, peak = tracemalloc.get_traced_memory()
    for _ in range(n_steps):
        step(x, y)
    gc.collect()
    traced_end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    sizes, _ = steps.NETS[key]
    param_bytes = sum(d_in * d_out + d_out for d_in, d_out in zip(sizes, sizes[1:])) * 4
    live = sum(issubclass(type(o), ops.Function) for o in gc.get_objects())
    return {"net": key, "contender": contender, "steps": n_steps, "param_bytes": param_bytes,
            "batch_bytes": x.nbytes + y.nbytes, "rss_after_10_steps": rss10 - rss0,
            "rss_growth_bytes": rss_end - rss10, "step_peak_bytes": peak,
            "resting_bytes": resting, "traced_growth_bytes": traced_end - resting,
            "live_function_nodes": live}


if __name__ == "__main__":
    net, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(probe(net, who, count)))
