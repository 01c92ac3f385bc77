"""The hand-derived two-layer net (affine - ReLU - affine - softmax), numpy only: the oracle.

Each layer's forward returns (out, cache) and its backward(dout, cache) sits right below it, so the
closed-form gradients can be read next to the forward pass. No tinygrad_mini import, on purpose.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TwoLayerNet", "affine_forward", "affine_backward", "relu_forward", "relu_backward",
           "softmax", "softmax_cross_entropy", "l2_penalty", "check_inputs"]


# ---------------------------------------------------------------- layers

def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple:
    """out = x @ w + b"""
    out = x @ w  # (N, D) @ (D, H) -> (N, H)
    out += b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: tuple, need_dx: bool = True) -> tuple:
    """dx = dout @ w^T,  dw = x^T @ dout,  db = sum_n dout"""
    x, w = cache
    dx = dout @ w.T if need_dx else None  # (N, H) @ (H, D) -> (N, D)
    dw = x.T @ dout  # (D, N) @ (N, H) -> (D, H)
    db = dout.sum(axis=0)  # sum over the samples n: (N, H) -> (H,)
    return dx, dw, db


def relu_forward(x: np.ndarray) -> tuple:
    """out = max(x, 0)"""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout * 1[x > 0]"""
    return np.where(cache > 0, dout, 0)  # relu'(0) is taken as 0, as torch


def softmax(scores: np.ndarray) -> np.ndarray:
    """p_nc = e^{s_nc} / sum_k e^{s_nk}, shifted by the row max so large scores cannot overflow"""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple:
    """L = (1/N) sum_n -log p_{n, y_n};  dL/ds = (p - onehot(y)) / N"""
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C)
    log_sum = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    rows = np.arange(n)
    loss = float(np.mean(log_sum - shifted[rows, y]))
    dscores = np.exp(shifted - log_sum[:, None])  # p, (N, C)
    dscores[rows, y] -= 1
    dscores /= n  # the mean runs over the samples n, not the classes
    return loss, dscores


def l2_penalty(weights: list, reg: float) -> tuple:
    """R = reg * sum_W ||W||^2;  dR/dW = 2 reg W  (biases are not regularised)"""
    return reg * sum(float(np.sum(w * w)) for w in weights), [2 * reg * w for w in weights]


# ---------------------------------------------------------------- input checks

def check_inputs(X, y, n_features: int, n_classes: int, dtype) -> tuple:
    """X as a 2-D float array of `dtype` with n_features columns and y as int64 labels in range."""
    if isinstance(X, np.ndarray):
        xa = X
    else:
        try:
            xa = np.asarray(X)
        except ValueError as e:
            raise ValueError(f"X must be a rectangular 2-D array: {e}") from None
    if xa.dtype.kind not in "fiu":
        raise TypeError(f"X must hold real numbers, got dtype {xa.dtype}")
    if xa.ndim != 2 or xa.shape[1] != n_features:
        raise ValueError(f"X must have shape (N, {n_features}), got {xa.shape}")
    xa = np.asarray(xa, dtype=dtype)
    if y is None:
        return xa, None
    ya = np.asarray(y)
    if ya.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class labels, got dtype {ya.dtype}")
    if ya.shape != (xa.shape[0],):
        raise ValueError(f"y must have shape ({xa.shape[0]},) to match X of shape {xa.shape}, "
                         f"got {ya.shape}")
    if ya.size:
        bad = (ya < 0) | (ya >= n_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"label {int(ya[i])} at position {i} is out of range for "
                             f"{n_classes} classes (valid: 0..{n_classes - 1})")
    return xa, ya.astype(np.int64, copy=False)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _nonneg_float(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


# ---------------------------------------------------------------- the net

class TwoLayerNet:
    """input -> affine (W1 (D, H), b1) -> ReLU -> affine (W2 (H, C), b2) -> softmax.

    Loss: mean softmax cross-entropy + reg * (||W1||^2 + ||W2||^2). Parameters live in
    `self.params` as numpy arrays of `dtype` (float32 by default, for speed; float64 for checks).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, std: float = 1e-4,
                 seed: int | None = None, dtype=np.float32):
        d = _positive_int(input_size, "input_size")
        h = _positive_int(hidden_size, "hidden_size")
        c = _positive_int(output_size, "output_size")
        std = _nonneg_float(std, "std")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"dtype must be a floating dtype, got {self.dtype}")
        init_seq, sample_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seq)
        self.params = {
            "W1": (std * rng.standard_normal((d, h))).astype(self.dtype),
            "b1": np.zeros(h, dtype=self.dtype),
            "W2": (std * rng.standard_normal((h, c))).astype(self.dtype),
            "b2": np.zeros(c, dtype=self.dtype),
        }
        self.rng = np.random.default_rng(sample_seq)  # draws the minibatches in train()

    @property
    def sizes(self) -> tuple:
        """(D, H, C)"""
        d, h = self.params["W1"].shape
        return d, h, self.params["W2"].shape[1]

    def _scores(self, X: np.ndarray) -> tuple:
        p = self.params
        a1, cache1 = affine_forward(X, p["W1"], p["b1"])  # (N, D) -> (N, H)
        h1, cache_relu = relu_forward(a1)
        scores, cache2 = affine_forward(h1, p["W2"], p["b2"])  # (N, H) -> (N, C)
        return scores, (cache1, cache_relu, cache2)

    def loss(self, X, y=None, reg: float = 0.0):
        """Class probabilities (N, C) when y is None, else (loss, grads) with grads like params."""
        d, _, c = self.sizes
        X, y = check_inputs(X, y, d, c, self.dtype)
        reg = _nonneg_float(reg, "reg")
        scores, (cache1, cache_relu, cache2) = self._scores(X)
        if y is None:
            return softmax(scores)
        if X.shape[0] == 0:
            raise ValueError("loss needs at least one sample, got X of shape "
                             f"{X.shape}")
        data_loss, dscores = softmax_cross_entropy(scores, y)
        reg_loss, (dW1_reg, dW2_reg) = l2_penalty([self.params["W1"], self.params["W2"]], reg)

        dh1, dW2, db2 = affine_backward(dscores, cache2)
        da1 = relu_backward(dh1, cache_relu)
        _, dW1, db1 = affine_backward(da1, cache1, need_dx=False)
        grads = {"W1": dW1 + dW1_reg, "b1": db1, "W2": dW2 + dW2_reg, "b2": db2}
        return data_loss + reg_loss, grads

    def step(self, X_batch, y_batch, learning_rate: float, reg: float) -> float:
        """One SGD step W -= lr * dL/dW on a minibatch; returns the loss before the step."""
        loss, grads = self.loss(X_batch, y_batch, reg=reg)
        lr = self.dtype.type(learning_rate)
        for name, g in grads.items():
            self.params[name] -= lr * g.astype(self.dtype, copy=False)
        return loss

    def train(self, X, y, X_val, y_val, learning_rate: float = 1e-3,
              learning_rate_decay: float = 0.95, reg: float = 0.25, num_iters: int = 5000,
              batch_size: int = 200, verbose: bool = False) -> dict:
        """Minibatch SGD with batches drawn with replacement; lr *= decay once per epoch.

        Returns {'loss_history': per iteration, 'train_acc_history', 'val_acc_history': per epoch
        (train accuracy measured on that iteration's minibatch, as the reference did)}.
        """
        d, _, c = self.sizes
        X, y = check_inputs(X, y, d, c, self.dtype)
        X_val, y_val = check_inputs(X_val, y_val, d, c, self.dtype)
        num_iters = _positive_int(num_iters, "num_iters")
        batch_size = _positive_int(batch_size, "batch_size")
        lr = _nonneg_float(learning_rate, "learning_rate")
        decay = _nonneg_float(learning_rate_decay, "learning_rate_decay")
        reg = _nonneg_float(reg, "reg")
        n = X.shape[0]
        if n == 0:
            raise ValueError(f"train needs at least one training sample, got X of shape {X.shape}")
        iters_per_epoch = max(n // batch_size, 1)

        history: dict = {"loss_history": [], "train_acc_history": [], "val_acc_history": []}
        for it in range(num_iters):
            idx = self.rng.integers(0, n, size=batch_size)  # with replacement
            X_batch, y_batch = X[idx], y[idx]
            loss = self.step(X_batch, y_batch, lr, reg)
            history["loss_history"].append(loss)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at iteration {it}; "
                                         "lower the learning rate")
            if verbose and it % 100 == 0:
                print(f"iteration {it} / {num_iters}: loss {loss:.6f}")
            if (it + 1) % iters_per_epoch == 0:
                train_acc = float(np.mean(self.predict(X_batch) == y_batch))
                history["train_acc_history"].append(train_acc)
                history["val_acc_history"].append(float(np.mean(self.predict(X_val) == y_val)))
                lr *= decay
        return history

    def predict(self, X) -> np.ndarray:
        """Predicted class per row: argmax of the scores (softmax is monotonic), int64 (N,)."""
        X, _ = check_inputs(X, None, self.sizes[0], self.sizes[2], self.dtype)
        scores, _ = self._scores(X)
        return np.argmax(scores, axis=1)
