"""Optimizers (SGD, Adam, AdamW) and learning-rate schedulers with torch.optim's update rules.

Updates are made in place on `p.data`: SGD's `p -= lr g` is one BLAS axpy pass for a large
parameter (see _blas.py), else numpy through a per-parameter scratch buffer (no new arrays per
step); `p.grad` is only read, never written, since a leaf's gradient may be shared with the caller.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ._blas import MIN_SIZE, axpy
from .tensor import Tensor, enable_grad

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "ExponentialLR", "StepLR"]


Params = Iterable[Any]  # Tensors, or dicts {"params": Tensors, <hyperparameter>: value}


def _real(value: Any, name: str, who: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{who}: {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be finite, got {value!r}")
    return float(value)


class Optimizer:
    """Holds param_groups (dicts with "params" and the hyperparameters, e.g. "lr") and per-param
    state. Params: an iterable of Tensors or of dicts {"params": ..., <hyperparameter>: ...}.

    Every param must be a floating leaf Tensor with writable data, appearing once. A param that
    does not require grad is accepted (as torch) and left alone while its grad is None.
    """

    def __init__(self, params: Params, defaults: dict):
        who = type(self).__name__
        if isinstance(params, (Tensor, np.ndarray)):
            raise TypeError(f"{who}: params must be an iterable of Tensors or dicts, got a "
                            f"{type(params).__name__} (wrap it in a list)")
        if hasattr(params, "parameters") and callable(params.parameters):
            raise TypeError(f"{who}: params must be an iterable of Tensors; got a "
                            f"{type(params).__name__}: pass model.parameters()")
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(f"{who}: params must be an iterable of Tensors or dicts, got "
                            f"{type(params).__name__}") from None
        if not groups:
            raise ValueError(f"{who} got an empty parameter list")
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        self._scratch: dict[Tensor, list[np.ndarray]] = {}
        self._step_count = 0
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        """Add a group; hyperparameters it lacks are taken from the optimizer's defaults."""
        who = type(self).__name__
        if not isinstance(group, dict):
            raise TypeError(f"{who}: a param group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"{who}: a param group needs a 'params' entry")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{who}: unknown hyperparameter(s) {sorted(unknown)} in a param group")
        ps = group["params"]
        if not isinstance(ps, Tensor) and not hasattr(ps, "__iter__"):
            raise TypeError(f"{who}: a param group's 'params' must be a Tensor or an iterable of "
                            f"Tensors, got {type(ps).__name__}")
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        if not ps:
            raise ValueError(f"{who}: a param group has an empty parameter list")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"{who}: param {i} must be a Tensor, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{who}: param {i} is not a leaf Tensor (it was computed from "
                                 "others); optimize the leaves, or detach() it")
            if p.dtype.kind != "f":
                raise ValueError(f"{who}: param {i} must be floating, got dtype {p.dtype}")
            if not p.data.flags.writeable:
                raise ValueError(f"{who}: param {i} has read-only data (shape {p.shape}); the "
                                 "optimizer updates it in place: give it a writable copy")
            if id(p) in seen:
                raise ValueError(f"{who}: param {i} (shape {p.shape}) appears more than once "
                                 "in the parameter list")
            seen.add(id(p))
        new = {k: v for k, v in self.defaults.items()}
        new.update({k: v for k, v in group.items() if k != "params"})
        self._check_group(new)
        new["params"] = ps
        self.param_groups.append(new)

    def _check_group(self, group: dict) -> None:
        """Validate a group's hyperparameters (each optimizer adds its own rules)."""
        lr = _real(group["lr"], "lr", type(self).__name__)
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate lr={group['lr']!r}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every param's gradient (torch's default), or set it to fresh zeros."""
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None if (set_to_none or p.grad is None) else np.zeros_like(p.data)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every param that has a gradient; closure (optional) recomputes the loss."""
        loss = None
        if closure is not None and not callable(closure):
            raise TypeError(f"{type(self).__name__}.step: closure must be callable or None, got "
                            f"{type(closure).__name__}")
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update(group)
        self._step_count += 1
        return loss

    def _update(self, group: dict) -> None:
        raise NotImplementedError

    def _grad(self, p: Tensor) -> np.ndarray | None:
        g = p.grad
        if g is None:
            return None
        who = type(self).__name__
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            what = f"ndarray of dtype {g.dtype}" if isinstance(g, np.ndarray) else type(g).__name__
            raise TypeError(f"{who}: the grad of a param of shape {p.shape} must be a floating "
                            f"ndarray, got {what}")
        if g.shape != p.data.shape:
            raise ValueError(f"{who}: the grad of a param of shape {p.shape} has shape {g.shape}")
        return g

    def _buffers(self, p: Tensor, n: int) -> list[np.ndarray]:
        """n scratch arrays shaped like p, reused across steps (not part of the state)."""
        bufs = self._scratch.get(p)
        if bufs is None or len(bufs) < n or bufs[0].shape != p.data.shape \
                or bufs[0].dtype != p.data.dtype:
            bufs = self._scratch[p] = [np.empty_like(p.data) for _ in range(n)]
        return bufs

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """{"state": {param index: {name: value}}, "param_groups": [{..., "params": [index]}]},
        with arrays copied: what load_state_dict needs to continue bit-exactly."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in g["params"]]
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore hyperparameters and per-param state from state_dict(); checked before applying.

        The optimizer must have been built over params of the same count, order and shapes.
        """
        who = type(self).__name__
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{who}.load_state_dict: expected a dict with keys 'state' and "
                             f"'param_groups', got {type(state_dict).__name__}"
                             + (f" with keys {sorted(map(str, state_dict))}"
                                if isinstance(state_dict, Mapping) else ""))
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, Mapping):
            raise ValueError(f"{who}.load_state_dict: 'param_groups' must be a list and 'state' "
                             f"a dict, got {type(saved_groups).__name__} and "
                             f"{type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{who}.load_state_dict: the state has {len(saved_groups)} param "
                             f"group(s), the optimizer {len(self.param_groups)}")
        by_index: dict[int, Tensor] = {}
        new_groups = []
        for gi, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(sg, Mapping) \
                    or not isinstance(sg.get("params"), (list, tuple, np.ndarray)) \
                    or not all(isinstance(i, (int, np.integer)) for i in sg["params"]):
                raise ValueError(f"{who}.load_state_dict: param group {gi} is not a dict with "
                                 "'params' (a list of param indices)")
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(f"{who}.load_state_dict: param group {gi} has "
                                 f"{len(sg['params'])} params in the state, {len(g['params'])} "
                                 "in the optimizer")
            missing = set(self.defaults) - set(sg)
            if missing:
                raise ValueError(f"{who}.load_state_dict: param group {gi} lacks "
                                 f"{sorted(missing)}")
            for idx, p in zip(sg["params"], g["params"]):
                by_index[int(idx)] = p
            ng = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sg.items()
                  if k != "params"}
            self._check_group(ng)
            ng["params"] = g["params"]
            new_groups.append(ng)
        new_state: dict[Tensor, dict] = {}
        for idx, st in saved_state.items():
            key = int(idx) if isinstance(idx, (int, np.integer)) or str(idx).isdigit() else None
            p = by_index.get(key)
            if p is None:
                raise ValueError(f"{who}.load_state_dict: state for param {idx!r}, which no group "
                                 "holds")
            if not isinstance(st, Mapping):
                raise ValueError(f"{who}.load_state_dict: the state of param {idx} must be a dict, "
                                 f"got {type(st).__name__}")
            entry = {}
            for k, v in st.items():
                if isinstance(v, np.ndarray) and v.ndim > 0:
                    if v.shape != p.shape:
                        raise ValueError(f"{who}.load_state_dict: state {k!r} of param {idx} has "
                                         f"shape {v.shape}, the param {p.shape}")
                    entry[k] = np.array(v, dtype=p.dtype)  # a copy, in the param's dtype
                else:
                    entry[k] = v.item() if isinstance(v, (np.ndarray, np.generic)) else v
            new_state[p] = entry
        self.param_groups = new_groups
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 decay.

    g = grad + weight_decay p;  b = g (first step) else momentum b + (1 - dampening) g;
    g = g + momentum b (nesterov) or b;  p = p - lr g   (torch.optim.SGD's rule)
    """

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False):
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        _real(group["dampening"], "dampening", "SGD")
        for name in ("momentum", "weight_decay"):
            if _real(group[name], name, "SGD") < 0:
                raise ValueError(f"SGD: invalid {name}={group[name]!r} (must be >= 0)")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={group['momentum']!r}, "
                             f"dampening={group['dampening']!r}")

    def _update(self, group: dict) -> None:
        lr, mu, damp = group["lr"], group["momentum"], group["dampening"]
        wd, nesterov = group["weight_decay"], group["nesterov"]
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if type(g) is not np.ndarray or g.shape != p.data.shape or g.dtype is not p.data.dtype:
                g = self._grad(p)  # raises on a bad grad, naming the param and what its grad is
            s = None
            if wd != 0:
                s = self._buffers(p, 1)[0]
                np.multiply(p.data, wd, out=s)
                s += g  # g + wd p, in the scratch buffer: p.grad stays untouched
                g = s
            if mu != 0:
                st = self.state.setdefault(p, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = g.copy()
                else:
                    buf *= mu
                    if damp == 0:
                        buf += g
                    else:
                        buf += (1 - damp) * g
                if nesterov:
                    if g is s:
                        s += mu * buf
                    else:
                        s = self._buffers(p, 1)[0]
                        np.multiply(buf, mu, out=s)
                        s += g
                    g = s
                else:
                    g = buf
            if g.size < MIN_SIZE:
                p.data -= g * lr  # a small temporary costs less than finding a scratch buffer
            elif not axpy(-lr, g, p.data):  # p -= lr g: one BLAS pass for a large p
                s = self._buffers(p, 1)[0] if s is None else s
                np.multiply(g, lr, out=s)
                p.data -= s


class Adam(Optimizer):
    """Adam (torch.optim.Adam's rule); weight_decay is L2 added to the gradient, or decoupled
    (AdamW) with decoupled_weight_decay=True.

    t += 1;  g = grad + wd p;  m = m + (1 - b1)(g - m);  v = b2 v + (1 - b2) g^2;
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": amsgrad,
                                  "decoupled_weight_decay": decoupled_weight_decay})

    def _check_group(self, group: dict) -> None:
        super()._check_group(group)
        who = type(self).__name__
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{who}: betas must be a pair of numbers, got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= _real(b, f"betas[{i}]", who) < 1.0:
                raise ValueError(f"{who}: invalid beta parameter at index {i}: {b!r} "
                                 "(must be in [0, 1))")
        group["betas"] = (float(betas[0]), float(betas[1]))
        if _real(group["eps"], "eps", who) < 0:
            raise ValueError(f"{who}: invalid epsilon value eps={group['eps']!r}")
        if _real(group["weight_decay"], "weight_decay", who) < 0:
            raise ValueError(f"{who}: invalid weight_decay value {group['weight_decay']!r}")

    def _update(self, group: dict) -> None:
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        wd, amsgrad, decoupled = (group["weight_decay"], group["amsgrad"],
                                  group["decoupled_weight_decay"])
        for p in group["params"]:
            g = self._grad(p)
            if g is None:
                continue
            st = self.state.get(p)
            if st is None:
                st = self.state[p] = {"step": 0, "exp_avg": np.zeros_like(p.data),
                                      "exp_avg_sq": np.zeros_like(p.data)}
                if amsgrad:
                    st["max_exp_avg_sq"] = np.zeros_like(p.data)
            st["step"] += 1
            t = st["step"]
            s, d = self._buffers(p, 2)
            if wd != 0:
                if decoupled:
                    p.data *= 1 - lr * wd
                else:
                    np.multiply(p.data, wd, out=d)
                    d += g  # g + wd p, in scratch: p.grad stays untouched
                    g = d
            m, v = st["exp_avg"], st["exp_avg_sq"]
            # the products and sums are rounded in torch's order
            np.subtract(g, m, out=s)
            s *= 1 - b1
            m += s  # lerp(m, g, 1 - b1) = m + (1 - b1)(g - m)
            v *= b2
            np.multiply(g, 1 - b2, out=s)
            s *= g
            v += s  # addcmul: v + ((1 - b2) g) g
            if amsgrad:
                np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
                v = st["max_exp_avg_sq"]
            bias1, bias2 = 1 - b1 ** t, 1 - b2 ** t
            np.sqrt(v, out=d)
            d /= bias2 ** 0.5
            d += eps  # the denominator
            np.multiply(m, -(lr / bias1), out=s)
            s /= d
            p.data += s  # addcdiv: p + (-step_size m) / denom


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p (1 - lr wd) before the Adam step (torch's AdamW)."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         decoupled_weight_decay=True)


# ---------------------------------------------------------------- schedulers

class LRScheduler:
    """Sets each group's "lr" per step() (call it after optimizer.step(), e.g. once per epoch).

    Built at epoch 0 with each group's "initial_lr" recorded; the learning rates are updated by
    multiplying the current ones (torch's chainable form), so several schedulers compose.
    """

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = -1
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        if self._step_count == 1 and self.optimizer._step_count == 0:
            warnings.warn(f"{type(self).__name__}.step() was called before optimizer.step(): "
                          "the first learning rate of the schedule is skipped (call "
                          "optimizer.step() first)", UserWarning, stacklevel=2)
        self._step_count += 1
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last step()."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k != "optimizer"}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore what state_dict() returned (the optimizer's own state is loaded separately)."""
        own = self.state_dict()
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(own):
            got = sorted(map(str, state_dict)) if isinstance(state_dict, Mapping) else \
                type(state_dict).__name__
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected keys "
                             f"{sorted(own)}, got {got}")
        for k, v in state_dict.items():
            self.__dict__[k] = list(v) if isinstance(v, (list, tuple)) else v


class ExponentialLR(LRScheduler):
    """lr = lr * gamma at every step()."""

    def __init__(self, optimizer: Optimizer, gamma: float):
        g = _real(gamma, "gamma", "ExponentialLR")
        if g < 0:
            raise ValueError(f"ExponentialLR: gamma must be >= 0, got {gamma!r}")
        self.gamma = g
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        return lrs if self.last_epoch == 0 else [lr * self.gamma for lr in lrs]


class StepLR(LRScheduler):
    """lr = lr * gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if not isinstance(step_size, numbers.Integral) or isinstance(step_size, bool):
            raise TypeError(f"StepLR: step_size must be an int, got {step_size!r}")
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        g = _real(gamma, "gamma", "StepLR")
        if g < 0:
            raise ValueError(f"StepLR: gamma must be >= 0, got {gamma!r}")
        self.step_size, self.gamma = int(step_size), g
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]
