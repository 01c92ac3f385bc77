"""Gradient checking: autograd against central differences, in float64, with a readable report.

`gradcheck` is the user-facing check (torch's name); `numerical_grad` and `rel_error` are the
building blocks, usable on their own (e.g. to check a hand-derived numpy backward).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .tensor import Tensor, get_default_dtype, no_grad, set_default_dtype

__all__ = ["numerical_grad", "rel_error", "gradcheck", "GradcheckError", "GradcheckResult",
           "Mismatch"]

_TINY = 1e-300


def rel_error(a: Any, b: Any) -> float:
    """max|a - b| / max(|a| + |b|), the denominator floored at a tiny number (0 when both are 0).

    Norm-wise, not element-wise, so an element that is ~0 in both does not dominate. NaN in
    either gives NaN. Shapes must match exactly: a broadcast comparison would hide a shape bug.
    """
    x, y = (np.asarray(v.data if isinstance(v, Tensor) else v) for v in (a, b))
    for name, v in (("a", x), ("b", y)):
        if v.dtype.kind not in "fiub":
            raise TypeError(f"rel_error: {name} must hold real numbers, got dtype {v.dtype}")
    x, y = x.astype(np.float64), y.astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes {x.shape} and {y.shape} differ")
    if x.size == 0:
        return 0.0
    num = np.max(np.abs(x - y))
    den = np.max(np.abs(x) + np.abs(y))
    return float(num / max(den, _TINY))


def _scalar(value: Any, who: str) -> float:
    """A Python float from f's result (a one-element Tensor, ndarray or number)."""
    v = value.data if isinstance(value, Tensor) else value
    arr = np.asarray(v)
    if arr.size != 1:
        raise ValueError(f"{who}: f must return a scalar (one element), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{who}: f must return a number, got dtype {arr.dtype}")
    return float(arr.reshape(()))


def _writable_array(x: Any, who: str) -> np.ndarray:
    arr = x.data if isinstance(x, Tensor) else x
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{who}: x must be a numpy array or a Tensor, got {type(x).__name__}")
    if arr.dtype.kind != "f":
        raise TypeError(f"{who}: x must be floating point, got dtype {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{who}: x is read-only; pass a writable copy (x.copy())")
    return arr


def _differences(f: Callable[[Any], Any], x: Any, eps: float, one_sided: bool):
    """Central (and, if asked, forward and backward) differences of scalar f at every element of x.

    x is perturbed in place and restored; f is called as f(x) under no_grad.
    """
    arr = _writable_array(x, "numerical_grad")
    if not isinstance(eps, (int, float, np.integer, np.floating)) or isinstance(eps, bool):
        raise TypeError(f"numerical_grad: eps must be a number, got {eps!r}")
    if not eps > 0:
        raise ValueError(f"numerical_grad: eps must be positive, got {eps!r}")
    central = np.zeros(arr.shape, dtype=np.float64)
    fwd = np.zeros_like(central) if one_sided else None
    bwd = np.zeros_like(central) if one_sided else None
    with no_grad():
        f0 = _scalar(f(x), "numerical_grad") if one_sided else 0.0
        for idx in np.ndindex(arr.shape):
            orig = arr[idx]
            arr[idx] = orig + eps
            hi = arr[idx]  # the step actually taken, after rounding to x's dtype
            f_plus = _scalar(f(x), "numerical_grad")
            arr[idx] = orig - eps
            lo = arr[idx]
            f_minus = _scalar(f(x), "numerical_grad")
            arr[idx] = orig
            central[idx] = (f_plus - f_minus) / float(hi - lo)
            if one_sided:
                fwd[idx] = (f_plus - f0) / float(hi - orig)
                bwd[idx] = (f0 - f_minus) / float(orig - lo)
    return central, fwd, bwd


def numerical_grad(f: Callable[[Any], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """df/dx by central differences, (f(x + eps e_i) - f(x - eps e_i)) / 2 eps, for every element i.

    f takes x (called as f(x)) and returns a scalar; x is an ndarray or a Tensor whose data is
    perturbed in place and restored. Returns a float64 array of x's shape. Use float64 x: in
    float32 an eps of 1e-6 is below the rounding step (try eps=1e-3 there).
    """
    return _differences(f, x, eps, one_sided=False)[0]


@dataclass
class Mismatch:
    """One coordinate where autograd and central differences disagree (or a kink was found)."""

    input_index: int
    index: tuple
    analytic: float
    numerical: float
    forward: float
    backward: float


@dataclass
class GradcheckResult:
    """Truthy when every checked gradient matched; `str()` is the full report."""

    ok: bool
    failures: list = field(default_factory=list)  # worst Mismatch per failing input
    kinks: list = field(default_factory=list)  # Mismatch at coordinates flagged non-differentiable
    rel_errors: dict = field(default_factory=dict)  # input position -> rel_error(analytic, numeric)
    n_bad: dict = field(default_factory=dict)  # input position -> number of failing coordinates
    shapes: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = ["gradcheck passed" if self.ok else "gradcheck FAILED: the gradient is wrong"]
        for m in self.failures:
            i = m.input_index
            lines.append(
                f"  input {i} (shape {self.shapes[i]}): {self.n_bad[i]} coordinate(s) differ; "
                f"worst at index {m.index}: autograd {m.analytic:.10g} vs numerical "
                f"{m.numerical:.10g}; rel_error over the input {self.rel_errors[i]:.3g}")
        if self.kinks:
            where = ", ".join(f"input {m.input_index} index {m.index}" for m in self.kinks[:5])
            more = f" and {len(self.kinks) - 5} more" if len(self.kinks) > 5 else ""
            lines.append(
                f"  {len(self.kinks)} coordinate(s) sit within eps of a kink (one-sided "
                f"differences disagree, autograd lies between them), not counted as errors: "
                f"{where}{more}")
            m = self.kinks[0]
            lines.append(f"    e.g. input {m.input_index} index {m.index}: autograd "
                         f"{m.analytic:.6g}, left slope {m.backward:.6g}, right slope "
                         f"{m.forward:.6g}")
        return "\n".join(lines)


class GradcheckError(RuntimeError):
    """Raised by gradcheck on a wrong gradient; `.result` holds the GradcheckResult."""

    def __init__(self, result: GradcheckResult):
        super().__init__(str(result))
        self.result = result


def _float64_copy(x: Any) -> Any:
    """Tensors and floating arrays become fresh float64 leaf Tensors; anything else is passed on."""
    if isinstance(x, Tensor):
        if x.dtype.kind == "f":
            return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)
        return Tensor(x.data.copy())
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return Tensor(x.astype(np.float64), requires_grad=True)
    return x


def gradcheck(f: Callable[..., Tensor], *inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, seed: int = 0,
              raise_exception: bool = True) -> GradcheckResult:
    """Check autograd's gradient of f(*inputs) against central differences, in float64.

    Checked: every Tensor input with requires_grad=True and every floating ndarray input (made a
    Tensor that requires grad); other inputs (labels, Python numbers) are passed through. Inputs are
    copied to float64 (so float32 data is checked at full precision) and the default dtype is
    float64 while f runs. f's output is contracted with a random upstream gradient u (seeded), so
    the scalar checked is sum(f(*inputs) * u). A coordinate fails when |autograd - numerical| >
    atol + rtol |numerical|, unless its one-sided differences disagree (a kink within eps, such as
    relu at 0, a tie in max, |x| at 0) and autograd lies between them: those are reported as kinks.

    Returns a truthy GradcheckResult; on failure raises GradcheckError naming the input, the worst
    index, both values and the relative error (or, with raise_exception=False, returns the falsy
    result).
    """
    if not callable(f):
        raise TypeError(f"gradcheck: f must be callable, got {type(f).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"gradcheck: seed must be an integer >= 0, got {seed!r}")
    prev_dtype = get_default_dtype()
    set_default_dtype(np.float64)
    try:
        args = [_float64_copy(x) for x in inputs]
        checked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not checked:
            raise ValueError("gradcheck: no input requires grad (pass Tensors with "
                             "requires_grad=True or floating numpy arrays)")
        out = f(*args)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: f must return a Tensor, got {type(out).__name__}")
        if out.dtype.kind != "f":
            raise TypeError(f"gradcheck: f must return a floating Tensor, got dtype {out.dtype}")
        upstream = np.random.default_rng(seed).standard_normal(out.shape)
        if out.requires_grad:
            out.backward(upstream)
        analytic = {i: (np.zeros(args[i].shape) if args[i].grad is None
                        else np.asarray(args[i].grad, dtype=np.float64)) for i in checked}

        result = GradcheckResult(ok=True)
        for i in checked:
            def phi(_x, _i=i):
                return float(np.sum(np.asarray(f(*args).data, dtype=np.float64) * upstream))
            num, fwd, bwd = _differences(phi, args[i], eps, one_sided=True)
            a = analytic[i]
            result.shapes[i] = a.shape
            result.rel_errors[i] = rel_error(a, num)
            bad = ~(np.abs(a - num) <= atol + rtol * np.abs(num))  # NaN counts as bad
            # a kink: the one-sided slopes disagree and autograd is a value between them
            gap = np.abs(fwd - bwd) > atol + rtol * np.maximum(np.abs(fwd), np.abs(bwd))
            lo, hi = np.minimum(fwd, bwd), np.maximum(fwd, bwd)
            tol = atol + rtol * np.abs(hi)
            between = (a >= lo - tol) & (a <= hi + tol)
            kink = bad & gap & between
            wrong = bad & ~kink
            for idx in zip(*np.nonzero(kink)):
                result.kinks.append(Mismatch(i, tuple(int(k) for k in idx), float(a[idx]),
                                             float(num[idx]), float(fwd[idx]), float(bwd[idx])))
            if wrong.any():
                err = np.where(wrong, np.abs(a - num), -1.0)
                err = np.where(np.isnan(err), np.inf, err)
                idx = np.unravel_index(int(np.argmax(err)), a.shape)
                result.ok = False
                result.n_bad[i] = int(wrong.sum())
                result.failures.append(Mismatch(i, tuple(int(k) for k in idx), float(a[idx]),
                                                float(num[idx]), float(fwd[idx]), float(bwd[idx])))
    finally:
        set_default_dtype(prev_dtype)
    if not result.ok and raise_exception:
        raise GradcheckError(result)
    return result
