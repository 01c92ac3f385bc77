"""The two-layer net of nets/two_layer.py on tinygrad_mini: same parameters, autograd backward.

Same layout (W1 (D, H), b1, W2 (H, C), b2, through `F.affine`) and the same initial weights for
the same seed, so its gradients can be compared with the closed form number for number.
"""
from __future__ import annotations

import numpy as np

import tinygrad_mini.nn.functional as F
from tinygrad_mini import Tensor, no_grad
from tinygrad_mini.nn import Module, Parameter

from .two_layer import TwoLayerNet

__all__ = ["TwoLayerNetTG"]


class TwoLayerNetTG(Module):
    """input -> affine (W1 (D, H), b1) -> ReLU -> affine (W2 (H, C), b2); the loss adds
    reg * (||W1||^2 + ||W2||^2) to the mean cross-entropy."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, std: float = 1e-4,
                 seed: int | None = None, dtype=np.float32):
        super().__init__()
        # the closed-form net validates the arguments and draws the initial weights
        ref = TwoLayerNet(input_size, hidden_size, output_size, std=std, seed=seed, dtype=dtype)
        for name in ("W1", "b1", "W2", "b2"):
            setattr(self, name, Parameter(ref.params[name]))

    def forward(self, x) -> Tensor:
        """class scores (N, C)"""
        hidden = F.relu(F.affine(x, self.W1, self.b1))  # (N, D) @ (D, H) -> (N, H)
        return F.affine(hidden, self.W2, self.b2)  # (N, H) @ (H, C) -> (N, C)

    def loss(self, x, y, reg: float = 0.0) -> Tensor:
        """mean cross-entropy + reg * (||W1||^2 + ||W2||^2), a scalar Tensor"""
        if not (isinstance(reg, (int, float, np.floating)) and np.isfinite(reg) and reg >= 0):
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        data_loss = F.cross_entropy(self(x), y)
        if reg == 0:
            return data_loss
        return data_loss + reg * ((self.W1 * self.W1).sum() + (self.W2 * self.W2).sum())

    def predict(self, x) -> np.ndarray:
        """argmax of the scores, int64 (N,)"""
        with no_grad():
            return np.argmax(self(x).data, axis=1)
