"""Layers (torch.nn's names) built on Tensor; `functional` holds the stateless forms."""
from . import functional
from .modules import (BatchNorm1d, Dropout, Flatten, Identity, IncompatibleKeys, LeakyReLU, Linear,
                      Module, Parameter, ReLU, Sequential, Sigmoid, Tanh)
from .serialization import load, save

__all__ = ["functional", "Module", "Parameter", "Linear", "ReLU", "LeakyReLU", "Tanh", "Sigmoid",
           "Identity", "Flatten", "Dropout", "BatchNorm1d", "Sequential", "IncompatibleKeys",
           "save", "load"]
