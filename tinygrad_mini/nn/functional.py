"""Functional forms of the layers and losses (torch.nn.functional's names), on top of Tensor."""
from __future__ import annotations

from ..tensor import Tensor, affine as _affine, as_tensor, cross_entropy

__all__ = ["relu", "leaky_relu", "tanh", "sigmoid", "softmax", "log_softmax", "affine", "linear",
           "cross_entropy"]


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
    out = _affine(x.reshape(-1, x.shape[-1]), weight, b, wt=True)  # (N..., in) -> (N, in)
    return out.reshape(lead + (weight.shape[0],))
