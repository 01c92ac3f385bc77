"""tinygrad_mini: a small reverse-mode autograd on numpy, written to be read."""
from .tensor import (Tensor, detect_anomaly, enable_grad, get_default_dtype, is_grad_enabled,
                     no_grad, set_default_dtype)

__version__ = "0.1.0"
__all__ = ["Tensor", "no_grad", "enable_grad", "detect_anomaly", "is_grad_enabled",
           "set_default_dtype", "get_default_dtype", "__version__"]
