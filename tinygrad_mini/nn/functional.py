"""Functional forms of the layers and losses (torch.nn.functional's names), on top of Tensor."""
from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor, affine as _affine, as_tensor, cross_entropy

__all__ = ["relu", "leaky_relu", "tanh", "sigmoid", "softmax", "log_softmax", "affine", "linear",
           "cross_entropy", "dropout", "batch_norm", "mse_loss"]


def relu(x: Tensor) -> Tensor:
    """max(x, 0)"""
    return as_tensor(x).relu()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x"""
    return as_tensor(x).leaky_relu(negative_slope)


def tanh(x: Tensor) -> Tensor:
    return as_tensor(x).tanh()


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x)"""
    return as_tensor(x).sigmoid()


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """e^x / sum e^x along dim"""
    return as_tensor(x).softmax(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along dim"""
    return as_tensor(x).log_softmax(dim)


def affine(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w + b with w of shape (D, H), as in the hand-derived two-layer net."""
    return _affine(as_tensor(x, "affine x"), as_tensor(w, "affine w"),
                   None if b is None else as_tensor(b, "affine b"))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias with weight of shape (out, in), as torch; x may have leading dims."""
    x, weight = as_tensor(x, "linear input"), as_tensor(weight, "linear weight")
    b = None if bias is None else as_tensor(bias, "linear bias")
    if x.ndim == 2 or weight.ndim != 2 or x.ndim == 0:
        return _affine(x, weight, b, wt=True)
    lead = x.shape[:-1]
    if x.shape[-1] != weight.shape[1]:  # checked here so the message names x's own shape
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape "
                         f"{weight.shape} ({x.shape[-1]} features vs {weight.shape[1]})")
    n = int(np.prod(lead))  # not -1: that is ambiguous when in_features is 0
    out = _affine(x.reshape(n, x.shape[-1]), weight, b, wt=True)  # (N..., in) -> (N, in)
    return out.reshape(lead + (weight.shape[0],))


def _probability(p: float, who: str) -> float:
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"{who}: p must be a number, got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: p must be between 0 and 1, got {p!r}")
    return float(p)


def dropout(x: Tensor, p: float = 0.5, training: bool = True,
            rng: np.random.Generator | None = None) -> Tensor:
    """x * m / (1 - p) with m_i ~ Bernoulli(1 - p) (inverted dropout); x itself when not training.

    p = 1 zeroes everything, as torch. `rng` (a numpy Generator) draws the mask; None uses fresh
    OS entropy, so pass one for reproducible runs.
    """
    p = _probability(p, "dropout")
    x = as_tensor(x, "dropout input")
    if not training or p == 0.0:
        return x
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: input must be floating, got dtype {x.dtype}")
    if rng is None:
        rng = np.random.default_rng()
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout: rng must be a numpy Generator, got {type(rng).__name__}")
    if p == 1.0:
        return x * np.zeros(x.shape, dtype=x.dtype)
    draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    mask = (rng.random(x.shape, dtype=draw_dtype) >= p).astype(x.dtype)  # 1 with prob. 1 - p
    mask *= x.dtype.type(1.0 / (1.0 - p))
    return x * mask


def _stat_array(t, name: str, c: int) -> np.ndarray:
    """The ndarray behind a running-statistic buffer (updated in place), checked to be (C,)."""
    arr = t.data if isinstance(t, Tensor) else t
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise TypeError(f"batch_norm: {name} must be a floating Tensor or ndarray, got "
                        f"{type(t).__name__}")
    if arr.shape != (c,):
        raise ValueError(f"batch_norm: {name} has shape {arr.shape}, expected ({c},)")
    return arr


def batch_norm(x: Tensor, running_mean, running_var, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """(x - mu) / sqrt(var + eps) * weight + bias per channel, x (N, C) or (N, C, L).

    Training: mu, var are the batch's (biased var); the running buffers, if given, are updated in
    place as r = (1 - momentum) r + momentum s, with the unbiased variance (torch's rule).
    Otherwise mu, var are the running buffers. Composed from Tensor ops (no primitive needed).
    """
    x = as_tensor(x, "batch_norm input")
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, L), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm: input must be floating, got dtype {x.dtype}")
    for name, v, lo, hi in (("momentum", momentum, 0.0, 1.0), ("eps", eps, 0.0, np.inf)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"batch_norm: {name} must be a number in [{lo}, {hi}], got {v!r}")
    c = x.shape[1]
    axes = (0,) if x.ndim == 2 else (0, 2)
    bshape = (1, c) if x.ndim == 2 else (1, c, 1)
    rm = None if running_mean is None else _stat_array(running_mean, "running_mean", c)
    rv = None if running_var is None else _stat_array(running_var, "running_var", c)
    if training:
        n = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        for name, arr in (("running_mean", rm), ("running_var", rv)):
            if arr is not None and not arr.flags.writeable:
                raise ValueError(f"batch_norm: {name} is read-only; training updates it in place")
        mean = x.mean(axes, keepdims=True)  # (1, C[, 1])
        xc = x - mean
        var = (xc * xc).mean(axes, keepdims=True)  # biased: used to normalise
        if rm is not None:
            rm *= 1.0 - momentum
            rm += momentum * mean.data.reshape(c)
        if rv is not None:
            rv *= 1.0 - momentum
            rv += momentum * (var.data.reshape(c) * (n / (n - 1)))  # unbiased for the estimate
    else:
        if rm is None or rv is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when not "
                             "training")
        xc = x - Tensor(rm.reshape(bshape))
        var = Tensor(rv.reshape(bshape))
    out = xc * (var + eps) ** -0.5
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        t = as_tensor(t, f"batch_norm {name}")
        if t.shape != (c,):
            raise ValueError(f"batch_norm: {name} has shape {t.shape}, expected ({c},) for input "
                             f"of shape {x.shape}")
        out = out * t.reshape(bshape) if name == "weight" else out + t.reshape(bshape)
    return out


def mse_loss(x: Tensor, target, reduction: str = "mean") -> Tensor:
    """mean (x - target)^2 (or the sum, or elementwise for 'none'); shapes must match exactly."""
    x, target = as_tensor(x, "mse_loss input"), as_tensor(target, "mse_loss target")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if x.shape != target.shape:
        raise ValueError(f"mse_loss: input of shape {x.shape} and target of shape {target.shape} "
                         "differ (no broadcasting: it would silently average the wrong pairs)")
    d = x - target
    sq = d * d
    return sq if reduction == "none" else (sq.mean() if reduction == "mean" else sq.sum())
