"""Multi-layer perceptrons on tinygrad_mini: Linear -> [BatchNorm1d] -> activation -> [Dropout],
repeated per hidden layer, then a Linear to the class scores."""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from tinygrad_mini import Tensor, no_grad
from tinygrad_mini.nn import (BatchNorm1d, Dropout, LeakyReLU, Linear, Module, ReLU, Sequential,
                              Sigmoid, Tanh)

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def _width(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"MLP: {what} must be a positive integer, got {value!r}")
    return int(value)


class MLP(Module):
    """MLP(3072, [512, 256], 10): scores = Linear(256 -> 10)(relu(Linear(512 -> 256)(relu(...)))).

    init="normal" draws every weight from std * N(0, 1) with zero biases; the default std is
    sqrt(1e-3), the reference's N(0, 1e-3) read as a variance (with std 1e-3 three hidden layers
    stay at chance). init="kaiming" is torch's default Linear init. `seed` fixes the initial weights
    and the dropout masks (the masks come from `self.rng`, whose state a checkpoint can save).
    """

    def __init__(self, input_size: int, hidden_layers: Sequence[int], num_classes: int,
                 activation: str = "relu", dropout: float = 0.0, batchnorm: bool = False,
                 init: str = "normal", std: float = math.sqrt(1e-3), seed: int | None = None,
                 dtype=np.float32):
        super().__init__()
        sizes = [_width(input_size, "input_size")]
        if isinstance(hidden_layers, (str, bytes)) or not isinstance(hidden_layers, Sequence):
            raise TypeError(f"MLP: hidden_layers must be a list of widths, got {hidden_layers!r}")
        sizes += [_width(h, f"hidden_layers[{i}]") for i, h in enumerate(hidden_layers)]
        sizes.append(_width(num_classes, "num_classes"))
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be a probability in [0, 1), got {dropout!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError(f"MLP: seed must be None or an integer >= 0, got {seed!r}")
        init_seq, mask_seq = np.random.SeedSequence(seed).spawn(2)
        init_rng = np.random.default_rng(init_seq)
        self.rng = np.random.default_rng(mask_seq)  # dropout masks
        self.hidden_layers = sizes[1:-1]
        self.activation, self.dropout, self.batchnorm = activation, float(dropout), bool(batchnorm)
        std_kw = {"std": std} if init == "normal" else {}
        layers: list[Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, init=init, dtype=dtype, rng=init_rng, **std_kw))
            if i == len(sizes) - 2:
                break
            if self.batchnorm:
                layers.append(BatchNorm1d(n_out, dtype=dtype))
            layers.append(ACTIVATIONS[activation]())
            if self.dropout > 0:
                layers.append(Dropout(self.dropout, rng=self.rng))
        self.layers = Sequential(*layers)

    def forward(self, x) -> Tensor:
        """class scores (N, C) for inputs (N, D)"""
        return self.layers(x)

    def predict(self, x) -> np.ndarray:
        """argmax of the scores in eval mode (dropout off, BatchNorm's running statistics), (N,)"""
        shape = np.shape(x.data if isinstance(x, Tensor) else x)
        if len(shape) != 2:
            raise ValueError(f"MLP.predict: x must be a batch of shape (N, D), got {shape}")
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                return np.argmax(self(x).data, axis=1)
        finally:
            self.train(was_training)

    @property
    def first_layer(self) -> Linear:
        return self.layers[0]
