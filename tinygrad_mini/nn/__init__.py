"""Layers (torch.nn's names) built on Tensor; `functional` holds the stateless forms."""
from . import functional

__all__ = ["functional"]
