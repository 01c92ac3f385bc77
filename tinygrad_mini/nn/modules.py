"""Layers with state: Module (the bookkeeping), Parameter, and torch.nn's basic layers.

A Module registers Parameters, buffers (non-trained state such as BatchNorm's running statistics)
and sub-Modules as they are assigned, so `named_parameters()` and `state_dict()` need no listing.
"""
from __future__ import annotations

import math
import numbers
from collections import namedtuple
from typing import Any, Iterator, Mapping

import numpy as np

from ..tensor import Tensor, affine, as_tensor, get_default_dtype
from . import functional as F

__all__ = ["Parameter", "Module", "Linear", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Identity",
           "Flatten", "Dropout", "BatchNorm1d", "Sequential"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A leaf Tensor that a Module registers as trainable (requires_grad=True by default)."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True, dtype=None):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad, dtype)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _make_rng(rng: np.random.Generator | int | None, who: str) -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed, or None (fresh OS entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"{who}: rng must be a numpy Generator, an int seed or None, "
                    f"got {type(rng).__name__}")


def _float_dtype(dtype, who: str) -> np.dtype:
    d = get_default_dtype() if dtype is None else np.dtype(dtype)
    if d.kind != "f":
        raise TypeError(f"{who}: dtype must be floating, got {d}")
    return d


def _count(n: Any, name: str, who: str) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"{who}: {name} must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{who}: {name} must be >= 0, got {n}")
    return int(n)


class Module:
    """Base class of layers and models: subclasses set attributes in __init__ and define forward."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward(): define it")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ registration
    def _registries(self) -> tuple[dict, dict, dict]:
        try:
            return self._parameters, self._buffers, self._modules
        except AttributeError:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning parameters, buffers or modules") from None

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        registered = any(name in d.get(r, ()) for r in ("_parameters", "_buffers", "_modules"))
        if not registered and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # a plain attribute
            return
        params, buffers, modules = self._registries()
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} "
                                "(a Parameter or None is expected)")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer {name!r} "
                                "(a Tensor or None is expected)")
            buffers[name] = value
        else:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule {name!r} "
                                "(a Module or None is expected)")
            modules[name] = None

    def _forget(self, name: str) -> None:
        self.__dict__.pop(name, None)
        for reg in self._registries():
            reg.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: parameters, buffers and modules live in registries
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                return d[reg][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if any(name in reg for reg in self._registries()):
            self._forget(name)
        else:
            object.__delattr__(self, name)

    @staticmethod
    def _check_name(name: Any, kind: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise ValueError(f"{kind} name must be non-empty and contain no '.', got {name!r}")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"parameter {name!r} must be a Parameter or None, "
                            f"got {type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | np.ndarray | None,
                        persistent: bool = True) -> None:
        """A non-trained Tensor kept in state_dict() (unless persistent=False): running stats."""
        self._check_name(name, "buffer")
        if isinstance(tensor, np.ndarray):
            tensor = Tensor(tensor)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"buffer {name!r} must be a Tensor, an ndarray or None, "
                            f"got {type(tensor).__name__}")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"module {name!r} must be a Module or None, "
                            f"got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, each module once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()
                    if c is not None]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return ((k, m) for k, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def _named_members(self, registry: str, prefix: str, recurse: bool):
        seen: set[int] = set()
        mods = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for mname, m in mods:
            for k, t in getattr(m, registry).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mname}.{k}" if mname else k), t

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter), each shared Parameter once, under its first name."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True
                      ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse=recurse))

    # ------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> Module:
        """Set training mode here and in every descendant (Dropout, BatchNorm depend on it)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (torch's default), or set it to fresh zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = np.zeros_like(p.data)

    # ------------------------------------------------------------ state
    def _state_tensors(self) -> dict[str, Tensor]:
        """Every Parameter and persistent buffer by dotted name: what state_dict() holds."""
        out: dict[str, Tensor] = {}
        for mname, m in self.named_modules():
            pre = f"{mname}." if mname else ""
            for k, p in m._parameters.items():
                if p is not None:
                    out.setdefault(pre + k, p)
            for k, b in m._buffers.items():
                if b is not None and k not in m._non_persistent:
                    out.setdefault(pre + k, b)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and persistent buffers by dotted name, as ndarray copies."""
        return {k: t.data.copy() for k, t in self._state_tensors().items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True
                        ) -> IncompatibleKeys:
        """Copy arrays into the parameters and buffers, in place; all checked before any is copied.

        Raises RuntimeError (as torch) listing missing keys, unexpected keys and shape mismatches
        (name, expected shape, got shape); with strict=False missing/unexpected keys are returned
        instead, but a shape mismatch still raises. A non-numeric value or one that cannot be cast
        to the target's dtype (a float into an integer buffer) raises TypeError naming the key.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of name -> array, "
                            f"got {type(state_dict).__name__}")
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        arrays, mismatched = {}, []
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v.data if isinstance(v, Tensor) else np.asarray(v)
            if arr.dtype.kind not in "fiub" or not np.can_cast(arr.dtype, t.dtype, "same_kind"):
                raise TypeError(f"load_state_dict: {k!r} has dtype {arr.dtype}, which cannot be "
                                f"loaded into {t.dtype}")
            if arr.shape != t.shape:
                mismatched.append((k, t.shape, arr.shape))
            arrays[k] = arr
        if mismatched or (strict and (missing or unexpected)):
            lines = [f"Error(s) in loading state_dict for {type(self).__name__}:"]
            if strict and missing:
                lines.append("  missing keys: " + ", ".join(repr(k) for k in missing))
            if strict and unexpected:
                lines.append("  unexpected keys: " + ", ".join(repr(k) for k in unexpected))
            for k, want, got in mismatched:
                lines.append(f"  size mismatch for {k!r}: expected shape {want}, got {got}")
            raise RuntimeError("\n".join(lines))
        for k, arr in arrays.items():
            t = own[k]
            if t.data.flags.writeable:
                np.copyto(t.data, arr, casting="same_kind")
            else:
                t.data = arr.astype(t.dtype, copy=True)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(kids) + "\n)" if kids else ")")


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features), as torch.

    init="kaiming": torch's default (kaiming-uniform with a = sqrt 5): W and b ~ U(-k, k),
    k = 1/sqrt(in_features). init="normal": W = std * N(0, 1) and b = 0, the reference's init
    (std defaults to 1e-3). `rng` (a numpy Generator or an int seed) makes the init reproducible.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str = "kaiming", std: float | None = None, dtype=None,
                 rng: np.random.Generator | int | None = None):
        super().__init__()
        self.in_features = _count(in_features, "in_features", "Linear")
        self.out_features = _count(out_features, "out_features", "Linear")
        d = _float_dtype(dtype, "Linear")
        gen = _make_rng(rng, "Linear")
        shape = (self.out_features, self.in_features)
        if init == "kaiming":
            if std is not None:
                raise ValueError("Linear: std applies only to init='normal'")
            k = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
            w = gen.uniform(-k, k, shape)
            b = gen.uniform(-k, k, self.out_features) if bias else None
        elif init == "normal":
            std = 1e-3 if std is None else std
            if not isinstance(std, numbers.Real) or isinstance(std, bool) \
                    or not 0 <= std < math.inf:
                raise ValueError(f"Linear: std must be a number >= 0, got {std!r}")
            w = float(std) * gen.standard_normal(shape)
            b = np.zeros(self.out_features) if bias else None
        else:
            raise ValueError(f"Linear: init must be 'kaiming' or 'normal', got {init!r}")
        self.weight = Parameter(w.astype(d))
        if bias:
            self.bias = Parameter(b.astype(d))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        p = self._parameters  # read directly: the attribute path goes through __getattr__
        if type(x) is Tensor and x.data.ndim == 2:  # the common case: straight to the primitive
            return affine(x, p["weight"], p["bias"], wt=True)
        return F.linear(x, p["weight"], p["bias"])

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    """max(x, 0)"""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu() if type(x) is Tensor else F.relu(x)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x"""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + e^-x)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Merge dims start_dim..end_dim (default: all but the batch dim), as torch.nn.Flatten."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim, self.end_dim)


class Dropout(Module):
    """Zero each element with probability p in training and scale the rest by 1/(1 - p);
    the identity in eval mode. p = 1 zeroes everything (as torch).

    The mask comes from `self.rng` (a numpy Generator; give a seed or a shared Generator for
    reproducible runs, and save `rng.bit_generator.state` to resume one exactly).
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | int | None = None):
        super().__init__()
        self.p = F._probability(p, "Dropout")
        self.rng = _make_rng(rng, "Dropout")

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Per-feature normalisation of (N, C) or (N, C, L) input, as torch.nn.BatchNorm1d.

    Training: normalise with the batch mean and biased variance, and update running_mean and
    running_var (with the unbiased variance) by `momentum` (None: a cumulative average over
    num_batches_tracked). Eval: normalise with the running statistics, unless
    track_running_stats=False (then the batch's, always).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=None):
        super().__init__()
        self.num_features = _count(num_features, "num_features", "BatchNorm1d")
        if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"BatchNorm1d: eps must be a number > 0, got {eps!r}")
        if momentum is not None and (not isinstance(momentum, numbers.Real)
                                     or isinstance(momentum, bool) or not 0 <= momentum <= 1):
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        d = _float_dtype(dtype, "BatchNorm1d")
        c = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(c, dtype=d))
            self.bias = Parameter(np.zeros(c, dtype=d))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(c, dtype=d)))
            self.register_buffer("running_var", Tensor(np.ones(c, dtype=d)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x: Tensor) -> Tensor:
        x = as_tensor(x, "BatchNorm1d input")
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expected input (N, "
                             f"{self.num_features}) or (N, {self.num_features}, L), got shape "
                             f"{x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        update = self.training and self.track_running_stats
        if update:
            if x.shape[0] * (x.shape[2] if x.ndim == 3 else 1) <= 1:
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when "
                                 f"training, got input of shape {x.shape}")
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean if (update or not batch_stats) else None,
                            self.running_var if (update or not batch_stats) else None,
                            self.weight, self.bias, batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class Sequential(Module):
    """Modules applied in order: Sequential(m0, m1, ...) or Sequential({name: module, ...})."""

    def __init__(self, *modules: Module | Mapping[str, Module]):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            for name, m in modules[0].items():
                self._add(name, m)
        else:
            for i, m in enumerate(modules):
                self._add(str(i), m)

    def _add(self, name: str, m: Any) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential: item {name} must be a Module, got {type(m).__name__}")
        self.add_module(name, m)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m.forward(x)  # what m(x) calls: Modules here have no hooks to run
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int | slice) -> Module:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(dict(items[idx]))
        if not isinstance(idx, numbers.Integral) or isinstance(idx, bool):
            raise TypeError(f"Sequential indices must be ints or slices, got {type(idx).__name__}")
        if not -len(items) <= idx < len(items):
            raise IndexError(f"index {idx} is out of range for a Sequential of {len(items)}")
        return items[idx][1]

    def append(self, module: Module) -> Sequential:
        self._add(str(len(self._modules)), module)
        return self
