"""Models trained on CIFAR-10: the closed-form two-layer net (numpy only) and nets on tinygrad_mini.

`python -m nets.train` is the training command; importing this package loads only numpy.
"""
from .two_layer import TwoLayerNet

__all__ = ["TwoLayerNet"]
