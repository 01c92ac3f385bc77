"""python -m nets.train: train the closed-form two-layer net or an MLP on CIFAR-10 from one command.

Per-epoch progress, loss and accuracies; final validation and test accuracy; atomic checkpoints
that resume bit-exactly; curves and first-layer weights as a PNG; a JSON summary; a sweep.
Run `python -m nets.train --help` for the options.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import textwrap
import time
from typing import Any, Callable, Sequence

import numpy as np

from tinygrad_mini import no_grad, nn, optim
from tinygrad_mini._io import atomic_write
from tinygrad_mini.data import (DataLoader, cifar10_path, load_cifar10, sample_batches,
                                split_cifar10)
from tinygrad_mini.data import CIFAR10Split as Data  # the split the run trains on
from tinygrad_mini.nn import Module, Parameter

from .mlp import ACTIVATIONS, MLP
from .two_layer import TwoLayerNet
from .two_layer_tgm import TwoLayerNetTG

__all__ = ["main", "build_parser", "DEFAULTS", "TrainingDiverged"]

CHECKPOINT_FORMAT = "nets.train checkpoint v1"
INPUT_SIZE, NUM_CLASSES = 3072, 10
EVAL_CHUNK = 2000
TRAIN_ACC_ROWS = 1000  # train accuracy is measured on the first 1,000 training images

# Each model's defaults reproduce its reference setup (/work/shared/data/README.md). The MLPs'
# "N(0, 1e-3)" init is read as variance 1e-3 (std 0.0316): with std 1e-3 a net of three hidden
# layers stays at chance (in PyTorch too), so the reference's deepest net cannot have used it.
MLP_STD = math.sqrt(1e-3)  # = nets.mlp.MLP's default
_TWO_LAYER = {"hidden": [80], "batch_size": 200, "lr": 1e-3, "lr_decay": 0.95, "reg": 0.25,
              "weight_decay": 0.0, "optimizer": "sgd", "momentum": 0.0, "iters": 5000,
              "epochs": None, "init": "normal", "std": 1e-4, "normalize": "mean",
              "sampling": "replacement", "activation": "relu", "dropout": 0.0,
              "batchnorm": False}
DEFAULTS: dict[str, dict] = {
    "two_layer": _TWO_LAYER,
    "two_layer_tg": dict(_TWO_LAYER),
    "mlp": {"hidden": [512, 256], "batch_size": 100, "lr": 1e-3, "lr_decay": 0.95, "reg": 0.0,
            "weight_decay": 1e-3, "optimizer": "adam", "momentum": 0.0, "iters": None,
            "epochs": 10, "init": "normal", "std": MLP_STD, "normalize": "torch",
            "sampling": "shuffle", "activation": "relu", "dropout": 0.0, "batchnorm": False},
}
DEFAULT_MODEL = "mlp"
COMMON_DEFAULTS = {"seed": 0, "subset": None, "val_size": 1000, "test_size": 1000}
# options that a resumed run may change; the structural ones are checked by load_state_dict
_FREE_ON_RESUME = {"epochs", "iters"}
_STRUCTURAL = {"model", "hidden", "batchnorm"}
SWEEP_DEFAULTS = {"two_layer": {"lr": [1e-3, 2e-3], "reg": [0.1, 0.25], "hidden": ["80", "120"]},
                  "mlp": {"lr": [1e-3, 3e-4], "reg": [1e-3, 1e-4], "hidden": ["512,256"]}}
SWEEP_DEFAULTS["two_layer_tg"] = SWEEP_DEFAULTS["two_layer"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; names the epoch and iteration (1-based)."""

    def __init__(self, loss: float, epoch: int, iteration: int, overall: int):
        super().__init__(f"the loss became {loss} at epoch {epoch}, iteration {iteration} "
                         f"(iteration {overall} overall)")
        self.loss, self.epoch, self.iteration, self.overall = loss, epoch, iteration, overall


class UserError(Exception):
    """A problem with the user's files or data, reported as `error: ...` with exit status 1."""


# ---------------------------------------------------------------- command line

def _number(kind: Callable, low: float | None = None, low_open: bool = False,
            high: float | None = None, high_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: kind(text) checked to be finite and within [low, high] (or open ends)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if low is not None and (v < low or (low_open and v == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, "
                                             f"got {text!r}")
        if high is not None and (v > high or (high_open and v == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high}, "
                                             f"got {text!r}")
        return v
    parse.__name__ = kind.__name__
    return parse


_pos_int = _number(int, 1)
_pos_float = _number(float, 0, low_open=True)
_nonneg_float = _number(float, 0)


def _widths(text: str) -> list:
    """'512,256' or '80' -> [512, 256] / [80] (the --sweep-hidden form)."""
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 80 or 512,256, got {text!r}") \
            from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nets.train",
        description="Train a net on CIFAR-10 and report validation and test accuracy. Each model's "
                    "defaults reproduce the reference setup.",
        epilog="Model defaults -- two_layer / two_layer_tg: hidden 80, batch 200, SGD lr 1e-3, "
               "decay 0.95/epoch, reg 0.25, 5000 iterations, batches drawn with replacement, "
               "mean image subtracted. mlp: hidden 512 256, batch 100, Adam lr 1e-3, weight decay "
               "1e-3, decay 0.95/epoch, 10 epochs, N(0, 1e-3) init (variance 1e-3, std 0.0316), "
               "inputs (x/255-0.5)/0.5. "
               "Exit status: 0 done, 1 unreadable data or checkpoint, 2 bad options, 3 the loss "
               "became NaN/inf (the last good checkpoint is kept).")
    a = p.add_argument
    a("--model", choices=sorted(DEFAULTS), default=None,
      help=f"two_layer: the closed-form numpy net; two_layer_tg: the same net on tinygrad_mini; "
           f"mlp: nn.Linear layers (default {DEFAULT_MODEL})")
    a("--hidden", type=_pos_int, nargs="+", metavar="N", help="hidden layer widths")
    a("--activation", choices=sorted(ACTIVATIONS), help="mlp activation (default relu)")
    a("--dropout", type=_number(float, 0, high=1, high_open=True), help="mlp dropout probability")
    a("--batchnorm", action="store_true", default=None, help="mlp: BatchNorm1d after each Linear")
    a("--init", choices=["normal", "kaiming"], help="weight init: std*N(0,1) or torch's kaiming")
    a("--std", type=_nonneg_float, help="std of the normal init")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_pos_int, help="epochs to train")
    length.add_argument("--iters", type=_pos_int, help="iterations (minibatches) to train")
    a("--batch-size", type=_pos_int)
    a("--lr", type=_pos_float, help="learning rate")
    a("--lr-decay", type=_pos_float, help="learning rate multiplier applied after every epoch")
    a("--reg", type=_nonneg_float, help="L2 strength reg*(|W1|^2+|W2|^2) (two_layer models)")
    a("--weight-decay", type=_nonneg_float, help="optimizer weight decay (mlp)")
    a("--optimizer", choices=["sgd", "adam"])
    a("--momentum", type=_number(float, 0, high=1, high_open=True), help="SGD momentum")
    a("--sampling", choices=["replacement", "shuffle"],
      help="minibatches drawn with replacement, or one shuffled pass per epoch")
    a("--seed", type=_number(int, 0), help="seed for init, data order and dropout (default 0)")
    a("--data", metavar="PATH", help="cifar-10-batches-py folder or cifar-10-python.tar.gz "
      "(default: $TINYGRAD_MINI_DATA, else the cache directory, downloading there if needed)")
    a("--subset", type=_pos_int, metavar="N", help="train on the first N training images only")
    a("--val-size", type=_pos_int, help="validation images, the last of the training batches "
      "(default 1000)")
    a("--test-size", type=_pos_int, help="test images for test_acc (default 1000; test_acc_10k "
      "always uses the whole test batch)")
    a("--save", metavar="CKPT", help="write a checkpoint after every epoch and at the end")
    a("--resume", metavar="CKPT", help="continue a run from its checkpoint, bit-exactly")
    a("--plot", metavar="FILE", help="write loss/accuracy curves and first-layer weights, in "
      "the format its suffix names (.png, .pdf, .svg, ...)")
    a("--json", metavar="PATH", help="write a JSON summary (val_acc, test_acc, config, timings)")
    a("--sweep", nargs="?", const="grid", choices=["grid", "random"],
      help="hyperparameter search over --sweep-lr/--sweep-reg/--sweep-hidden; keeps the best")
    a("--sweep-lr", type=_pos_float, nargs="+", metavar="LR")
    a("--sweep-reg", type=_nonneg_float, nargs="+", metavar="REG",
      help="reg (two_layer models) or weight decay (mlp) values")
    a("--sweep-hidden", type=_widths, nargs="+", metavar="W", help="e.g. 80 120 or 512,256")
    a("--trials", type=_pos_int, help="random sweep: number of trials (default 6)")
    a("--no-progress", action="store_true", help="no progress bars")
    return p


def _check_out_path(parser, flag: str, path: str | None) -> None:
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"{flag} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        parser.error(f"{flag} {path}: is a folder, expected a file name")


def resolve_config(args: argparse.Namespace, parser, saved: dict | None = None) -> dict:
    """Per-model defaults, then the checkpoint's config (on --resume), then the explicit options."""
    explicit = {k: v for k, v in vars(args).items() if v is not None}
    if explicit.get("iters") is not None:
        explicit["epochs"] = None
    elif explicit.get("epochs") is not None:
        explicit["iters"] = None
    if saved is not None:
        for key, value in explicit.items():
            if key in saved and key not in _FREE_ON_RESUME | _STRUCTURAL and value != saved[key]:
                parser.error(f"--{key.replace('_', '-')} {value} differs from the checkpoint's "
                             f"{saved[key]}; a resumed run keeps its settings (only --epochs/"
                             f"--iters, the output options and, for a mismatch check, the "
                             f"model's shape may be given)")
        base = dict(saved)
    else:
        model = explicit.get("model", DEFAULT_MODEL)
        base = {"model": model, **DEFAULTS[model], **COMMON_DEFAULTS}
    cfg = {**base, **{k: v for k, v in explicit.items() if k in base}}
    if cfg["model"] != "mlp":
        if len(cfg["hidden"]) != 1:
            parser.error(f"--model {cfg['model']} has one hidden layer; got --hidden "
                         f"{' '.join(map(str, cfg['hidden']))}")
        for key in ("activation", "dropout", "batchnorm", "weight_decay"):
            if key in explicit and saved is None:
                parser.error(f"--{key.replace('_', '-')} applies to --model mlp "
                             f"(two_layer models use --reg)")
        if cfg["init"] != "normal":
            parser.error("two_layer models use the normal init (--std); --init kaiming is mlp-only")
    elif "reg" in explicit and saved is None:
        parser.error("--reg is the two_layer models' L2 term; use --weight-decay for mlp")
    if cfg["momentum"] and cfg["optimizer"] != "sgd":
        parser.error("--momentum applies to --optimizer sgd")
    return cfg


# ---------------------------------------------------------------- data

def load_data(cfg: dict, data_path: str | None, progress: bool) -> tuple[Data, str]:
    """The reference split: train = first rows, validation = the last val_size rows of the
    training batches (so --subset never changes it), test = the first test_size test rows."""
    try:
        path = cifar10_path(data_path, progress=progress)
        X_all, y_all, X_test, y_test = load_cifar10(path, flatten=True)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        raise UserError(f"cannot read CIFAR-10: {e}") from None
    total, val = len(X_all), cfg["val_size"]
    n_train = total - val if cfg["subset"] is None else cfg["subset"]
    if n_train < 1 or n_train + val > total:
        raise UserError(f"{path} holds {total} training images: not enough for "
                        f"{n_train if n_train > 0 else 0} training + {val} validation images "
                        "(see --subset, --val-size)")
    if cfg["test_size"] > len(X_test):
        raise UserError(f"{path} holds {len(X_test)} test images, fewer than --test-size "
                        f"{cfg['test_size']}")
    if n_train + val < total:
        X_all = np.concatenate([X_all[:n_train], X_all[total - val:]])
        y_all = np.concatenate([y_all[:n_train], y_all[total - val:]])
    s = split_cifar10(X_all, y_all, X_test, y_test, num_training=n_train, num_validation=val,
                      num_test=cfg["test_size"], normalize=cfg["normalize"])
    return s, str(path)


# ---------------------------------------------------------------- models

class ClosedFormTwoLayer(Module):
    """nets.two_layer.TwoLayerNet behind the Module interface: its arrays are the Parameters'
    arrays (shared, not copied), so tinygrad_mini.optim updates the closed-form net in place."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.net = TwoLayerNet(INPUT_SIZE, cfg["hidden"][0], NUM_CLASSES, std=cfg["std"],
                               seed=cfg["seed"], dtype=np.float32)
        for name, arr in self.net.params.items():
            setattr(self, name, Parameter(arr))

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray, reg: float) -> float:
        loss, grads = self.net.loss(X, y, reg=reg)
        for name, g in grads.items():
            getattr(self, name).grad = g
        return loss

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.net.predict(X)


def build_model(cfg: dict) -> Module:
    if cfg["model"] == "two_layer":
        return ClosedFormTwoLayer(cfg)
    if cfg["model"] == "two_layer_tg":
        return TwoLayerNetTG(INPUT_SIZE, cfg["hidden"][0], NUM_CLASSES, std=cfg["std"],
                             seed=cfg["seed"], dtype=np.float32)
    return MLP(INPUT_SIZE, cfg["hidden"], NUM_CLASSES, activation=cfg["activation"],
               dropout=cfg["dropout"], batchnorm=cfg["batchnorm"], init=cfg["init"],
               std=cfg["std"], seed=cfg["seed"], dtype=np.float32)


def loss_step(model: Module, cfg: dict, X: np.ndarray, y: np.ndarray) -> float:
    """Forward and backward on one minibatch: leaves the gradients in .grad, returns the loss."""
    if isinstance(model, ClosedFormTwoLayer):
        return model.loss_and_grads(X, y, cfg["reg"])
    model.zero_grad()
    if isinstance(model, TwoLayerNetTG):
        loss = model.loss(X, y, reg=cfg["reg"])
    else:
        loss = nn.functional.cross_entropy(model(X), y)
    loss.backward()
    return loss.item()


def build_optimizer(model: Module, cfg: dict) -> tuple:
    params = list(model.parameters())
    wd = cfg["weight_decay"]
    if cfg["optimizer"] == "sgd":
        opt = optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=wd)
    else:
        opt = optim.Adam(params, lr=cfg["lr"], weight_decay=wd)
    return opt, optim.ExponentialLR(opt, gamma=cfg["lr_decay"])


def accuracy(model: Module, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows classified correctly, in eval mode, EVAL_CHUNK rows at a time."""
    model.eval()
    with no_grad():
        hits = sum(int(np.sum(model.predict(X[i:i + EVAL_CHUNK]) == y[i:i + EVAL_CHUNK]))
                   for i in range(0, len(X), EVAL_CHUNK))
    model.train()
    return hits / len(X)


def first_layer_weights(model: Module) -> np.ndarray:
    """(H, 3072) rows of the first layer, whatever its storage layout."""
    if isinstance(model, (ClosedFormTwoLayer, TwoLayerNetTG)):
        return model.W1.data.T
    return model.first_layer.weight.data


# ---------------------------------------------------------------- progress

def _log(msg: str = "") -> None:
    print(msg, flush=True)


class _TextBar:
    """Fallback when tqdm is absent: a line per 10% on stderr."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n, self.shown = total, desc, 0, -1

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = 10 * self.n // max(self.total, 1)
        if tenth != self.shown:
            self.shown = tenth
            print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


class _NoBar(_TextBar):
    def update(self, n: int = 1) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar(total, desc)
    try:
        from tqdm import tqdm
    except ImportError:
        return _TextBar(total, desc)
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, unit="it",
                dynamic_ncols=True)


# ---------------------------------------------------------------- the training loop

@dataclasses.dataclass
class RunState:
    """Everything a checkpoint holds besides the model, optimizer and scheduler."""

    iteration: int = 0
    sampler_rng: dict | None = None
    history: dict = dataclasses.field(default_factory=lambda: {
        "loss": [], "epoch_loss": [], "train_acc": [], "val_acc": [], "lr": []})
    last_checkpoint_epoch: int = 0


def iters_per_epoch(n_train: int, cfg: dict) -> int:
    if cfg["sampling"] == "replacement":
        return max(n_train // cfg["batch_size"], 1)  # the reference's epoch
    return math.ceil(n_train / cfg["batch_size"])


def total_iters(n_train: int, cfg: dict) -> int:
    return cfg["iters"] if cfg["iters"] is not None else cfg["epochs"] * iters_per_epoch(n_train,
                                                                                          cfg)


def _batches(data: Data, cfg: dict, sampler: np.random.Generator, epoch: int, start: int,
             count: int):
    """`count` minibatches of `epoch` (0-based) from batch `start` on, as numpy arrays."""
    if cfg["sampling"] == "replacement":
        return sample_batches(data.X_train, data.y_train, cfg["batch_size"], count, rng=sampler)
    loader = DataLoader((data.X_train, data.y_train), cfg["batch_size"], shuffle=True,
                        seed=cfg["seed"])
    loader.load_state_dict({"seed": cfg["seed"], "epoch": epoch, "batch": start,
                            "num_samples": len(data.X_train), "batch_size": cfg["batch_size"]})
    return ((xb.data, yb.data) for xb, yb in itertools.islice(loader, count))


_CHECKPOINT_KEYS = ("config", "iteration", "model", "optimizer", "scheduler", "sampler_rng",
                    "dropout_rng", "history")


def save_checkpoint(path: str, cfg: dict, model: Module, opt, sched, state: RunState,
                    data: Data) -> None:
    ckpt = {"format": CHECKPOINT_FORMAT, "config": cfg, "iteration": state.iteration,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "sampler_rng": state.sampler_rng,
            "dropout_rng": model.rng.bit_generator.state if isinstance(model, MLP) else None,
            "history": state.history,
            "mean_image": None if data.mean_image is None else data.mean_image.reshape(-1),
            # lets --resume check --epochs before it loads the data
            "iters_per_epoch": iters_per_epoch(len(data.X_train), cfg)}
    nn.save(ckpt, path)


def load_checkpoint(path: str) -> dict:
    try:
        ckpt = nn.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"--resume: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"--resume: {path} is not a nets.train checkpoint (written by --save)")
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise UserError(f"--resume: {path} is incomplete: missing {', '.join(missing)}")
    cfg = ckpt["config"]
    model = cfg.get("model") if isinstance(cfg, dict) else None
    lacking = [] if model not in DEFAULTS else [
        k for k in (*DEFAULTS[model], *COMMON_DEFAULTS) if k not in cfg]
    if model not in DEFAULTS or lacking:
        raise UserError(f"--resume: {path} has an unusable config (model {model!r}"
                        + (f", missing {', '.join(lacking)})" if lacking else ")"))
    # iters_per_epoch is absent from checkpoints written before it was added
    for key, low in (("iteration", 0), ("iters_per_epoch", 1)):
        v = ckpt.get(key, low)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserError(f"--resume: {path} has an unusable {key} {v!r}")
    return ckpt


def resume_left(cfg: dict, path: str, done: int, ipe: int | None, parser) -> str | None:
    """On --resume: a usage error when --epochs/--iters ends before the checkpoint's `done`
    iterations; the 'nothing left to train' note when it ends exactly there; else None.
    With ipe None (not known before the data is loaded) only --iters is checked."""
    if cfg["iters"] is not None:
        n, unit, have = cfg["iters"], "iters", f"{done} iterations"
        pass_instead, end = done + 1, cfg["iters"]
    elif ipe is None:
        return None
    else:
        epochs_done, extra = divmod(done, ipe)
        n, unit, end = cfg["epochs"], "epochs", cfg["epochs"] * ipe
        have = f"{epochs_done} epoch{'' if epochs_done == 1 else 's'}" + (
            f" and {extra} of the {ipe} iterations of epoch {epochs_done + 1}" if extra else "")
        pass_instead = epochs_done + 1
    if end < done:
        parser.error(f"--{unit} {n} is fewer than the {have} the checkpoint {path} has "
                     f"already completed; pass --{unit} {pass_instead} or more to train further "
                     f"(--{unit} counts from the start of the run, not from the checkpoint)")
    if end == done:
        return (f"nothing left to train: the checkpoint {path} has already completed the {have} "
                f"of --{unit} {n}; evaluating it (pass --{unit} {pass_instead} or more to train "
                f"further)")
    return None


def restore(ckpt: dict, path: str, model: Module, opt, sched) -> RunState:
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError) as e:
        raise UserError(f"--resume: {path} does not match the model:\n{e}") from None
    try:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
    except (ValueError, TypeError) as e:
        raise UserError(f"--resume: {path}: optimizer/scheduler state does not fit: {e}") \
            from None
    if isinstance(model, MLP) and ckpt["dropout_rng"] is not None:
        model.rng.bit_generator.state = ckpt["dropout_rng"]
    history = {k: list(v) for k, v in ckpt["history"].items()}
    return RunState(iteration=int(ckpt["iteration"]), sampler_rng=ckpt["sampler_rng"],
                    history=history)


def train(model: Module, opt, sched, data: Data, cfg: dict, state: RunState,
          save_path: str | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None) -> RunState:
    """Run from state.iteration to the configured total; raises TrainingDiverged on NaN/inf."""
    # overflow on the way to a NaN loss is reported once, by TrainingDiverged, not as warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(model, opt, sched, data, cfg, state, save_path, progress, log)


def _train(model: Module, opt, sched, data: Data, cfg: dict, state: RunState,
           save_path: str | None, progress: bool, log: Callable[[str], None] | None) -> RunState:
    n = len(data.X_train)
    ipe, total = iters_per_epoch(n, cfg), total_iters(n, cfg)
    n_epochs = math.ceil(total / ipe)
    sampler = np.random.default_rng([cfg["seed"], 1])
    if state.sampler_rng is not None:
        sampler.bit_generator.state = state.sampler_rng
    hist = state.history
    log = log or _log
    model.train()
    while state.iteration < total:
        epoch, start = divmod(state.iteration, ipe)
        count = min(ipe, total - epoch * ipe) - start
        t0, losses = time.perf_counter(), []
        bar = _bar(count, f"epoch {epoch + 1}/{n_epochs}", progress)
        try:
            for i, (Xb, yb) in enumerate(_batches(data, cfg, sampler, epoch, start, count)):
                loss = loss_step(model, cfg, Xb, yb)
                if not math.isfinite(loss):
                    raise TrainingDiverged(loss, epoch + 1, start + i + 1, state.iteration + 1)
                opt.step()
                state.iteration += 1
                losses.append(loss)
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix_str(f"loss {loss:.4f}")
        finally:
            bar.close()
        hist["loss"].extend(losses)
        finished = state.iteration % ipe == 0
        lr = opt.param_groups[0]["lr"]
        if finished:
            sched.step()
        hist["epoch_loss"].append(float(np.mean(losses)))
        hist["train_acc"].append(accuracy(model, data.X_train[:TRAIN_ACC_ROWS],
                                          data.y_train[:TRAIN_ACC_ROWS]))
        hist["val_acc"].append(accuracy(model, data.X_val, data.y_val))
        hist["lr"].append(lr)
        log(f"epoch {epoch + 1}/{n_epochs}  loss {hist['epoch_loss'][-1]:.4f}  "
            f"train acc {hist['train_acc'][-1]:.3f}  val acc {hist['val_acc'][-1]:.3f}  "
            f"lr {lr:.3g}  ({time.perf_counter() - t0:.1f} s)"
            + ("" if finished else f"  [{count} of {ipe} iterations]"))
        state.sampler_rng = sampler.bit_generator.state
        if save_path is not None:
            save_checkpoint(save_path, cfg, model, opt, sched, state, data)
            state.last_checkpoint_epoch = epoch + 1
    return state


# ---------------------------------------------------------------- outputs

def plot_formats() -> list[str]:
    """The file suffixes matplotlib can write, but pgf: it keeps images (the weights) in files
    beside it, so matplotlib refuses it for the single atomically written file used here."""
    from matplotlib.figure import Figure
    return sorted(f for f in Figure().canvas.get_supported_filetypes() if f != "pgf")


def _plot_format(path: str) -> str:
    return os.path.splitext(path)[1][1:].lower()


def write_plot(path: str, history: dict, weights: np.ndarray, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 9))
    ax_loss = fig.add_subplot(2, 2, 1)
    ax_loss.plot(history["loss"], lw=0.5, alpha=0.6, label="minibatch")
    if history["epoch_loss"]:
        per_epoch = len(history["loss"]) / len(history["epoch_loss"])
        ends = (np.arange(1, len(history["epoch_loss"]) + 1) * per_epoch)
        ax_loss.plot(ends, history["epoch_loss"], "o-", label="epoch mean")
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training loss")
    ax_loss.legend()
    ax_acc = fig.add_subplot(2, 2, 2)
    epochs = np.arange(1, len(history["val_acc"]) + 1)
    ax_acc.plot(epochs, history["train_acc"], "o-", label="train (first 1,000)")
    ax_acc.plot(epochs, history["val_acc"], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    ax_w = fig.add_subplot(2, 1, 2)
    ax_w.imshow(weight_grid(weights))
    ax_w.set_axis_off()
    ax_w.set_title(f"first-layer weights ({min(len(weights), 100)} of {len(weights)} units)")
    fig.suptitle("\n".join(textwrap.fill(line, 110) for line in title.split("\n")))
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format=_plot_format(path), dpi=90)
    plt.close(fig)


def weight_grid(weights: np.ndarray, max_units: int = 100, pad: int = 2) -> np.ndarray:
    """Rows (H, 3072) as 32x32 colour tiles, each scaled to [0, 1], in a near-square grid."""
    w = weights[:max_units].astype(np.float64)
    tiles = w.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (H, 32, 32, 3)
    lo = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
    tiles = (tiles - lo) / np.where(span > 0, span, 1)
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.ones((rows * (32 + pad) + pad, cols * (32 + pad) + pad, 3))
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[pad + r * (32 + pad):pad + r * (32 + pad) + 32,
             pad + c * (32 + pad):pad + c * (32 + pad) + 32] = tile
    return grid


def write_json(path: str, summary: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------- sweep

def sweep_configs(cfg: dict, args: argparse.Namespace) -> list[dict]:
    """Grid: every (lr, reg, hidden); random: --trials draws (log-uniform lr and reg)."""
    d = SWEEP_DEFAULTS[cfg["model"]]
    lrs = args.sweep_lr or d["lr"]
    regs = args.sweep_reg or d["reg"]
    hiddens = args.sweep_hidden or [_widths(h) for h in d["hidden"]]
    reg_key = "weight_decay" if cfg["model"] == "mlp" else "reg"
    if args.sweep == "grid":
        combos = list(itertools.product(lrs, regs, hiddens))
    else:
        rng = np.random.default_rng([cfg["seed"], 2])

        def log_uniform(values):
            lo, hi = min(values), max(values)
            if lo == hi:
                return lo
            if lo <= 0:
                return float(rng.uniform(lo, hi))
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        combos = [(log_uniform(lrs), log_uniform(regs), hiddens[int(rng.integers(len(hiddens)))])
                  for _ in range(args.trials or 6)]
    return [{**cfg, "lr": lr, reg_key: reg, "hidden": list(h)} for lr, reg, h in combos]


def run_sweep(cfg: dict, args, parser, data: Data, progress: bool) -> tuple:
    trials = sweep_configs(cfg, args)
    for t in trials:
        if t["model"] != "mlp" and len(t["hidden"]) != 1:
            parser.error(f"--sweep-hidden {','.join(map(str, t['hidden']))}: --model "
                         f"{t['model']} has one hidden layer")
    reg_key = "weight_decay" if cfg["model"] == "mlp" else "reg"
    rows, best, best_row = [], None, -1
    for k, t in enumerate(trials):
        _log(f"\n[trial {k + 1}/{len(trials)}] lr {t['lr']:.3g}  {reg_key} {t[reg_key]:.3g}  "
              f"hidden {' '.join(map(str, t['hidden']))}")
        model = build_model(t)
        opt, sched = build_optimizer(model, t)
        t0 = time.perf_counter()
        status = "ok"
        try:
            state = train(model, opt, sched, data, t, RunState(), progress=progress)
            val = state.history["val_acc"][-1]
        except TrainingDiverged as e:
            _log(f"  diverged: {e}")
            status, val, state = "diverged", float("nan"), None
        rows.append({"lr": t["lr"], reg_key: t[reg_key], "hidden": t["hidden"],
                     "val_acc": val if status == "ok" else None, "status": status,
                     "train_s": round(time.perf_counter() - t0, 2)})
        if status == "ok" and (best is None or val > best[0]):
            best, best_row = (val, t, model, opt, sched, state), k
    _log(f"\n{'lr':>9} {reg_key:>12} {'hidden':>12} {'val_acc':>8} {'time s':>7}")
    for k, r in enumerate(rows):
        acc = "diverged" if r["val_acc"] is None else f"{r['val_acc']:.3f}"
        _log(f"{r['lr']:>9.3g} {r[reg_key]:>12.3g} {','.join(map(str, r['hidden'])):>12} "
              f"{acc:>8} {r['train_s']:>7.1f}{'  <- best' if k == best_row else ''}")
    if best is None:
        raise UserError("every sweep trial diverged; lower the learning rates")
    return best, rows


# ---------------------------------------------------------------- main

def _fmt_cfg(cfg: dict, sep: str = " ") -> str:
    n, unit = (cfg["iters"], "iteration") if cfg["iters"] is not None else (cfg["epochs"],
                                                                            "epoch")
    length = f"{n} {unit}{'' if n == 1 else 's'}"
    extra = ""
    if cfg["model"] == "mlp":
        extra = f", {cfg['activation']}" + (f", dropout {cfg['dropout']}" if cfg["dropout"] else
                                            "") + (", batchnorm" if cfg["batchnorm"] else "")
    hidden = " ".join(map(str, cfg["hidden"]))
    return (f"{cfg['model']} hidden {hidden}{extra};{sep}{length}, batch {cfg['batch_size']}"
            f", {cfg['optimizer']} lr {cfg['lr']:g} x{cfg['lr_decay']:g}/epoch, "
            f"reg {cfg['reg']:g}, weight decay {cfg['weight_decay']:g}, init {cfg['init']}"
            f"{' std %g' % cfg['std'] if cfg['init'] == 'normal' else ''}, inputs "
            f"{cfg['normalize']}, sampling {cfg['sampling']}, seed {cfg['seed']}")


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("save", "plot", "json"):
        _check_out_path(parser, f"--{flag}", getattr(args, flag))
    if args.data is not None and not os.path.exists(args.data):
        parser.error(f"--data {args.data}: no such file or folder")
    if args.sweep is not None and args.resume is not None:
        parser.error("--sweep cannot be combined with --resume")
    if args.resume is not None and not os.path.isfile(args.resume):
        parser.error(f"--resume {args.resume}: no such file")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib "
                         "(or pip install -e '.[plot]')")
        suffix, formats = _plot_format(args.plot), plot_formats()
        if suffix not in formats:
            parser.error(f"--plot {args.plot}: "
                         + (f"the suffix .{suffix} is not" if suffix else "no suffix names")
                         + " an image format matplotlib writes; end the name with one of "
                         + " ".join("." + f for f in formats))
    progress = not args.no_progress
    run_args = {k: v for k, v in vars(args).items() if k not in (
        "data", "save", "resume", "plot", "json", "sweep", "sweep_lr", "sweep_reg",
        "sweep_hidden", "trials", "no_progress")}
    try:
        ckpt = load_checkpoint(args.resume) if args.resume is not None else None
        cfg = resolve_config(argparse.Namespace(**run_args), parser,
                             None if ckpt is None else ckpt["config"])
        if ckpt is not None:
            resume_left(cfg, args.resume, ckpt["iteration"], ckpt.get("iters_per_epoch"), parser)
        return _run(cfg, args, parser, ckpt, progress, t_start)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(cfg: dict, args, parser, ckpt: dict | None, progress: bool, t_start: float) -> int:
    _log(f"config: {_fmt_cfg(cfg)}")
    t0 = time.perf_counter()
    data, source = load_data(cfg, args.data, progress)
    t_data = time.perf_counter() - t0
    _log(f"data: {source}: {len(data.X_train)} train / {len(data.X_val)} validation / "
          f"{len(data.X_test)} test images (+{len(data.X_test_full)} for test_acc_10k), "
          f"loaded in {t_data:.1f} s")
    t0 = time.perf_counter()
    sweep_rows = None
    if args.sweep is not None:
        (_, cfg, model, opt, sched, state), sweep_rows = run_sweep(cfg, args, parser, data,
                                                                   progress)
        _log(f"best: {_fmt_cfg(cfg)}")
        if args.save is not None:
            save_checkpoint(args.save, cfg, model, opt, sched, state, data)
    else:
        model = build_model(cfg)
        opt, sched = build_optimizer(model, cfg)
        state = RunState() if ckpt is None else restore(ckpt, args.resume, model, opt, sched)
        if ckpt is not None:
            done, ipe = state.iteration, iters_per_epoch(len(data.X_train), cfg)
            _log(f"resumed from {args.resume} at iteration {done} (epoch {done // ipe} done)")
            note = resume_left(cfg, args.resume, done, ipe, parser)
            if note is not None:
                _log(note)
        try:
            state = train(model, opt, sched, data, cfg, state, args.save, progress)
        except TrainingDiverged as e:
            where = (f"the last good checkpoint, {args.save} (end of epoch "
                     f"{state.last_checkpoint_epoch}), is kept" if args.save is not None
                     and state.last_checkpoint_epoch else
                     "no checkpoint was written" + ("" if args.save is not None else
                                                    " (--save not given)"))
            print(f"error: {e}; training stopped, {where}. Lower the learning rate.",
                  file=sys.stderr)
            if args.json is not None:
                write_json(args.json, {"status": "diverged", "message": str(e),
                                       "epoch": e.epoch, "iteration": e.iteration,
                                       "val_acc": None, "test_acc": None, "config": cfg})
            return 3
        if args.save is not None and state.last_checkpoint_epoch == 0:
            save_checkpoint(args.save, cfg, model, opt, sched, state, data)  # nothing left to run
    t_train = time.perf_counter() - t0

    t0 = time.perf_counter()
    val_acc = accuracy(model, data.X_val, data.y_val)
    test_acc = accuracy(model, data.X_test, data.y_test)
    test_acc_10k = accuracy(model, data.X_test_full, data.y_test_full)
    train_acc = accuracy(model, data.X_train[:TRAIN_ACC_ROWS], data.y_train[:TRAIN_ACC_ROWS])
    t_eval = time.perf_counter() - t0
    _log(f"validation accuracy: {val_acc:.4f} ({len(data.X_val):,} images)")
    _log(f"test accuracy:       {test_acc:.4f} ({len(data.X_test):,} images), "
          f"{test_acc_10k:.4f} ({len(data.X_test_full):,} images)")
    _log(f"time: data {t_data:.1f} s, training {t_train:.1f} s, evaluation {t_eval:.1f} s")
    if args.save is not None:
        _log(f"checkpoint: {args.save}")
    if args.plot is not None:
        title = f"{_fmt_cfg(cfg, sep=chr(10))}\nval acc {val_acc:.3f}, test acc {test_acc:.3f}"
        write_plot(args.plot, state.history, first_layer_weights(model), title)
        _log(f"plot: {args.plot}")
    if args.json is not None:
        n_iter = state.iteration
        summary = {"status": "ok", "val_acc": val_acc, "test_acc": test_acc,
                   "test_acc_10k": test_acc_10k, "train_acc": train_acc,
                   "num_val": len(data.X_val), "num_test": len(data.X_test),
                   "num_test_full": len(data.X_test_full), "num_train": len(data.X_train),
                   "iterations": n_iter, "epochs": len(state.history["val_acc"]),
                   "config": cfg, "data": source, "resumed_from": args.resume,
                   "checkpoint": args.save, "history": state.history,
                   "timings": {"data_s": t_data, "train_s": t_train, "eval_s": t_eval,
                               "total_s": time.perf_counter() - t_start}}
        if sweep_rows is not None:
            summary["sweep"] = sweep_rows
        write_json(args.json, summary)
        _log(f"summary: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; resume from the last checkpoint with --resume CKPT (if --save was "
              "given)", file=sys.stderr)
        sys.exit(130)
