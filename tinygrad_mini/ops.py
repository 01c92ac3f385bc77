"""Primitive ops on numpy arrays: each forward sits beside its backward.

An op never sees a Tensor and never un-broadcasts: `backward` returns one gradient per input in
the broadcast output shape (None where `self.needs[i]` is False) and the engine sums it back.
"""
from __future__ import annotations

import numpy as np


class Function:
    """A node of the graph: forward saves what backward needs as attributes; the engine owns slots."""

    __slots__ = ("srcs", "needs", "shape", "dtype", "freed", "seq", "trace", "__dict__")
    # True: backward returns every gradient in its input's own shape and dtype, so the engine
    # skips its un-broadcast and cast checks (tests/test_ops.py holds each such op to it)
    exact = False

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> tuple:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    def release(self) -> None:
        """Drop the saved arrays and the edges; a later backward through this node raises."""
        self.__dict__.clear()
        self.srcs = ()
        self.freed = True


# ---------------------------------------------------------------- unary

class Neg(Function):
    """z = -x;  dz/dx = -1"""

    exact = True

    def forward(self, x):
        return np.negative(x)

    def backward(self, grad):
        return (np.negative(grad),)


class Exp(Function):
    """z = e^x;  dz/dx = z"""

    exact = True

    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def backward(self, grad):
        return (grad * self.out,)


class Log(Function):
    """z = ln x;  dz/dx = 1/x"""

    exact = True

    def forward(self, x):
        self.x = x
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x)

    def backward(self, grad):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (grad / self.x,)


class Pow(Function):
    """z = x^p (p a constant);  dz/dx = p x^(p-1)"""

    def __init__(self, p: float):
        self.p = p

    def forward(self, x):
        self.x = x
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.power(x, x.dtype.type(self.p))

    def backward(self, grad):
        x, p = self.x, self.x.dtype.type(self.p)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (grad * (p * np.power(x, p - 1)),)


class ReLU(Function):
    """z = max(x, 0);  dz/dx = 1[x > 0]  (relu'(0) is taken as 0; NaN in gives NaN grad)"""

    exact = True

    def forward(self, x):
        self.out = np.maximum(x, 0)
        return self.out

    def backward(self, grad):
        d = np.sign(self.out)  # 1 where x > 0, 0 where x <= 0 and NaN where x is NaN
        d *= grad
        return (d,)


class LeakyReLU(Function):
    """z = x if x > 0 else s x;  dz/dx = 1 if x > 0 else s  (at 0: s; NaN in gives NaN grad)"""

    exact = True

    def __init__(self, slope: float):
        self.slope = slope

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, x * x.dtype.type(self.slope))

    def backward(self, grad):
        x = self.x
        d = np.where(x > 0, x.dtype.type(1), x.dtype.type(self.slope))
        d[np.isnan(x)] = np.nan
        return (grad * d,)


class Tanh(Function):
    """z = tanh x;  dz/dx = 1 - z^2"""

    exact = True

    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        out = self.out
        return (grad * (1 - out * out),)


class Sigmoid(Function):
    """z = 1 / (1 + e^-x);  dz/dx = z (1 - z)   (primitive for numerics: no overflow at -1e4)"""

    exact = True

    def forward(self, x):
        # 1 / (1 + e^-x) = exp(-log(1 + e^-x)); logaddexp never overflows
        self.out = np.exp(-np.logaddexp(x.dtype.type(0), -x))
        return self.out

    def backward(self, grad):
        out = self.out
        return (grad * out * (1 - out),)


# ---------------------------------------------------------------- binary

class Add(Function):
    """z = x + y;  dz/dx = 1,  dz/dy = 1"""

    def forward(self, x, y):
        return x + y

    def backward(self, grad):
        return grad, grad


class Mul(Function):
    """z = x y;  dz/dx = y,  dz/dy = x"""

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, grad):
        nx, ny = self.needs
        return (grad * self.y if nx else None), (grad * self.x if ny else None)


class Div(Function):
    """z = x / y;  dz/dx = 1/y,  dz/dy = -x/y^2   (primitive for numerics: one rounding, as numpy)"""

    def forward(self, x, y):
        self.x, self.y = x, y
        with np.errstate(divide="ignore", invalid="ignore"):
            return x / y

    def backward(self, grad):
        nx, ny = self.needs
        with np.errstate(divide="ignore", invalid="ignore"):
            gx = grad / self.y
            return (gx if nx else None), (-gx * self.x / self.y if ny else None)


class MatMul(Function):
    """Z = X @ Y (2-D or batched);  dX = G Y^T,  dY = X^T G   (batch dims un-broadcast by the engine)"""

    def forward(self, x, y):
        self.x, self.y = x, y
        return x @ y

    def backward(self, grad):
        nx, ny = self.needs
        return (grad @ np.swapaxes(self.y, -1, -2) if nx else None,
                np.swapaxes(self.x, -1, -2) @ grad if ny else None)


class Affine(Function):
    """Z = X W + b, W (D, H), or X W^T + b with W (H, D) when `wt`;  dX = G W^T, dW = X^T G, db = sum_n G

    A primitive for speed: the bias is added in place and no gradient is formed for an X (the input
    batch) that does not need one.
    """

    exact = True

    def __init__(self, wt: bool = False):
        self.wt = wt

    def forward(self, x, w, b=None):
        needs = self.needs
        self.x = x if needs[1] else None  # (N, D), kept only if W needs a gradient
        self.w = w if needs[0] else None
        out = x @ (w.T if self.wt else w)  # (N, D) @ (D, H) -> (N, H)
        if b is not None:
            out += b  # out is fresh: add the bias in place (affine() checks b has w's dtype)
        return out

    def backward(self, grad):
        needs, wt = self.needs, self.wt
        dx = dw = db = None
        if needs[0]:
            dx = grad @ self.w if wt else grad @ self.w.T  # (N, H) @ (H, D) -> (N, D)
        if needs[1]:
            dw = grad.T @ self.x if wt else self.x.T @ grad  # (D, N) @ (N, H) -> (D, H)
        if len(needs) == 3 and needs[2]:
            db = np.add.reduce(grad, axis=0)  # (H,)
        return dx, dw, db


# ---------------------------------------------------------------- reduce

class Sum(Function):
    """z = sum_axis x;  dz/dx = 1 (the gradient is broadcast back over the summed axes)"""

    def __init__(self, axis, keepdims: bool):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        return np.sum(x, axis=self.axis, keepdims=self.keepdims)

    def backward(self, grad):
        if not self.keepdims and self.axis is not None:
            grad = np.expand_dims(grad, self.axis)
        return (np.broadcast_to(grad, self.in_shape),)


class Max(Function):
    """z = max_axis x;  dz/dx = 1[x = z] / #ties  (ties share the gradient evenly, as torch's amax)"""

    def __init__(self, axis, keepdims: bool):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x = x
        self.out = np.max(x, axis=self.axis, keepdims=True)
        return self.out if self.keepdims else np.squeeze(self.out, axis=self.axis)

    def backward(self, grad):
        if not self.keepdims and self.axis is not None:
            grad = np.expand_dims(grad, self.axis)
        mask = self.x == self.out
        count = mask.sum(axis=self.axis, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            # a slice holding NaN has no tie (count 0): its gradient is 0/0 = NaN, not 0
            return (mask * (grad / count.astype(grad.dtype)),)


# ---------------------------------------------------------------- movement

class Reshape(Function):
    """z = reshape(x);  dz/dx = reshape back"""

    def __init__(self, shape: tuple):
        self.new_shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return np.reshape(x, self.new_shape)

    def backward(self, grad):
        return (np.reshape(grad, self.in_shape),)


class Permute(Function):
    """z = transpose(x, axes);  dz/dx = transpose back by the inverse permutation"""

    def __init__(self, axes: tuple):
        self.axes = axes

    def forward(self, x):
        return np.transpose(x, self.axes)

    def backward(self, grad):
        return (np.transpose(grad, np.argsort(self.axes)),)


class Index(Function):
    """z = x[idx];  dz/dx scatters the gradient back, adding where an index repeats"""

    def __init__(self, idx):
        self.idx = idx

    def forward(self, x):
        self.in_shape = x.shape
        return x[self.idx]

    def backward(self, grad):
        out = np.zeros(self.in_shape, dtype=grad.dtype)
        np.add.at(out, self.idx, grad)
        return (out,)


# ---------------------------------------------------------------- loss

class LogSoftmax(Function):
    """z = x - logsumexp(x);  dx = g - softmax(x) sum(g)   (primitive for numerics: shifted by the max)"""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        shifted = x - np.max(x, axis=self.axis, keepdims=True, initial=-np.inf)  # 0 classes: ok
        lse = np.log(np.sum(np.exp(shifted), axis=self.axis, keepdims=True))
        self.out = shifted - lse
        return self.out

    def backward(self, grad):
        return (grad - np.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


class SoftmaxCrossEntropy(Function):
    """L_n = logsumexp(s_n) - s_n[y_n];  dL/ds = (softmax(s) - onehot(y)) / N for the mean

    A primitive for numerics (shifted log-sum-exp, finite at logits of 1e4) and speed (one pass).
    """

    exact = True

    def __init__(self, target: np.ndarray, reduction: str):
        self.target, self.reduction = target, reduction

    @np.errstate(invalid="ignore", divide="ignore")  # inf logits or N = 0: NaN, as torch, silently
    def forward(self, s):
        n, c = s.shape
        # flat index of s[n, y_n] in a C-ordered (N, C) array: a 1-D gather, cheaper than s[rows, y]
        self.at = np.arange(0, n * c, c) + self.target.astype(np.intp, copy=False)  # (N,)
        shifted = np.subtract(s, np.maximum.reduce(s, axis=1, keepdims=True), order="C")  # (N, C)
        picked = shifted.reshape(-1)[self.at]  # (N,)
        e = np.exp(shifted, out=shifted)  # shifted is not needed past this line
        sum_e = np.add.reduce(e, axis=1, keepdims=True)  # (N, 1)
        losses = np.log(sum_e[:, 0]) - picked  # (N,)
        self.probs = e  # C-ordered, as every array below
        self.probs /= sum_e
        if self.reduction == "none":
            return losses
        total = np.add.reduce(losses)
        return total / n if self.reduction == "mean" else total  # n is weak: total's dtype stays

    def backward(self, grad):
        n = self.probs.shape[0]
        if self.reduction == "none":
            scale, picked = grad[:, None], grad  # (N, 1) for the rows, (N,) at the labels
        else:
            # a Python float: exactly grad / n in grad's dtype (a double quotient of two floats
            # rounds to the same float32 as a float32 division), and numpy's fastest operand
            scale = grad.item()
            if self.reduction == "mean" and n:  # (N = 0: d is empty, any scale will do)
                scale /= n
            picked = scale
        d = np.multiply(self.probs, scale, order="C")  # (N, C), C-ordered for the flat view
        d.reshape(-1)[self.at] -= picked
        return (d,)
