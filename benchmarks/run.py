"""Benchmarks: tinygrad_mini beside hand-written numpy and PyTorch, in one run.

Contenders are interleaved round by round (the order rotating), with a pause between them because
OpenBLAS worker threads keep spinning after a call. Prints Markdown tables, writes a JSON record.
Run from the repository root: `python -m benchmarks [--quick] [--json PATH]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

import numpy as np

import tinygrad_mini as tm
from tinygrad_mini._io import atomic_write
from tinygrad_mini.nn import functional as F

if __package__:
    from . import memory, steps
else:  # `python benchmarks/run.py`: this file's folder is sys.path[0]
    import memory
    import steps

try:
    import torch
except ImportError:  # the optional extra: `pip install -e ".[torch]"`
    torch = None

NETS = steps.NETS
DTYPES = ("float32", "float64")
LR = 1e-3
TG, NP, NP_IO, MM = "tinygrad_mini", "numpy", "numpy W (in, out)", "matmuls only"
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS")


@dataclasses.dataclass
class Budget:
    rounds: int  # interleaved rounds per training-step case
    block_s: float  # timed steps per contender per round fill at least this long
    pause_s: float  # sleep between contenders (OpenBLAS threads spin ~0.1 s after a call)
    epoch_rows: int  # rows of the random CIFAR-10-sized set
    epoch_rounds: int
    overhead_rounds: int
    chain_ops: int
    chain_rounds: int
    mem_steps: int  # steps over which memory must stay flat
    soak_steps: int


FULL = Budget(rounds=15, block_s=0.05, pause_s=0.15, epoch_rows=49_000, epoch_rounds=3,
              overhead_rounds=7, chain_ops=100_000, chain_rounds=3, mem_steps=1000,
              soak_steps=5000)
QUICK = Budget(rounds=5, block_s=0.02, pause_s=0.15, epoch_rows=4_900, epoch_rounds=1,
               overhead_rounds=3, chain_ops=100_000, chain_rounds=1, mem_steps=1000,
               soak_steps=1000)

Contender = tuple  # (step, hook run before each timed block, or None)


# ---------------------------------------------------------------- timing

def _rotation(names: list, r: int) -> list:
    """The contenders in round r, each round starting one later, so drift hits all alike."""
    return names[r % len(names):] + names[:r % len(names)]


def _pause(b: Budget) -> None:
    time.sleep(b.pause_s)


def _stats(samples: list[float], scale: float = 1e3) -> dict:
    """Median, min and max of per-step times, in ms by default."""
    a = np.asarray(samples) * scale
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()),
            "n": int(a.size)}


def interleaved(contenders: dict[str, Contender], x: np.ndarray, y: np.ndarray, b: Budget
                ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per-step times (s) of each contender, one list per round, and each one's first loss."""
    first_loss, reps = {}, {}
    for name, (step, before) in contenders.items():
        if before:
            before()
        first = step(x, y)
        first_loss[name] = None if first is None else steps.loss_value(first)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            step(x, y)
            times.append(time.perf_counter() - t0)
        reps[name] = max(1, min(5000, int(b.block_s / min(times))))
        _pause(b)
    samples: dict[str, list[list[float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(b.rounds):
        for name in _rotation(names, r):
            step, before = contenders[name]
            if before:
                before()
            step(x, y)  # untimed: lets a thread-count switch settle
            block = []
            for _ in range(reps[name]):
                t0 = time.perf_counter()
                step(x, y)
                block.append(time.perf_counter() - t0)
            samples[name].append(block)
            _pause(b)
    return samples, first_loss


def paired_ratio(samples: dict, a: str, b: str) -> float:
    """Median over rounds of (a's median / b's median) within the round: drift cancels."""
    return float(np.median([np.median(p) / np.median(q) for p, q in zip(samples[a], samples[b])]))


def _contenders(params, dtype, with_torch: bool, matmuls: bool) -> dict[str, Contender]:
    """tinygrad_mini, numpy with W (out, in) as nn.Linear and with W (in, out), PyTorch with 1 and
    2 threads, and (for the GFLOPS peak) the bare matmuls."""
    c: dict[str, Contender] = {TG: (steps.tinygrad_mini_step(params, dtype, LR), None),
                               NP: (steps.numpy_step(params, dtype, LR), None),
                               NP_IO: (steps.numpy_step(params, dtype, LR, w_in_out=True), None)}
    if with_torch:
        for threads in (1, 2):
            c[f"torch {threads}T"] = steps.torch_step(params, dtype, LR, threads)
    if matmuls:
        c[MM] = (steps.matmul_only_step(params, dtype, LR), None)
    return c


def _fastest(results: dict, prefix: str) -> str | None:
    """The contender whose name starts with prefix and whose median time is lowest."""
    names = [k for k in results if k.startswith(prefix)]
    return min(names, key=lambda k: results[k]["median"]) if names else None


# ---------------------------------------------------------------- sections

def bench_steps(b: Budget, nets: list[str], with_torch: bool) -> list[dict]:
    """One training step per net and dtype: medians, min-max, ratios and GFLOPS."""
    rows = []
    for key in nets:
        sizes, n = NETS[key]
        for dt in DTYPES:
            params = steps.init_params(sizes)
            x, y = steps.batch(sizes, n, dt)
            cont = _contenders(params, dt, with_torch, matmuls=key != "d")
            samples, first = interleaved(cont, x, y, b)
            _check_losses(first, key, dt)
            res = {name: _stats([t for block in s for t in block]) for name, s in samples.items()}
            fastest_np = _fastest(res, NP)
            row = {"net": key, "sizes": sizes, "batch": n, "dtype": dt, "ms": res,
                   "first_loss": first, "numpy_best": fastest_np,
                   "ratio_numpy": res[TG]["median"] / res[fastest_np]["median"],
                   "paired_ratio_numpy": paired_ratio(samples, TG, fastest_np),
                   "ratio_numpy_same_layout": res[TG]["median"] / res[NP]["median"]}
            best = _fastest(res, "torch")
            if best:
                row["torch_best"] = best
                row["ratio_torch"] = res[TG]["median"] / res[best]["median"]
                row["paired_ratio_torch"] = paired_ratio(samples, TG, best)
            if MM in res:
                flops = steps.matmul_flops(sizes, n)
                gf = {name: flops / (r["median"] * 1e-3) / 1e9 for name, r in res.items()}
                row["matmul_flops"] = flops
                row["gflops"] = gf
                row["pct_of_matmul_peak"] = {name: g / gf[MM] for name, g in gf.items()
                                             if name != MM}
            rows.append(row)
            print(f"  step ({key}) {dt}: " + ", ".join(
                f"{name} {r['median']:.3f} ms" for name, r in res.items()), file=sys.stderr)
    return rows


def _check_losses(first: dict, key: str, dt: str) -> None:
    """All contenders start from the same weights and batch: their first losses must agree."""
    vals = {k: v for k, v in first.items() if v is not None}
    ref = vals[NP]
    tol = 1e-4 if dt == "float32" else 1e-10
    for name, v in vals.items():
        if not abs(v - ref) <= tol * max(1.0, abs(ref)):
            raise RuntimeError(f"net ({key}) {dt}: {name}'s first loss {v!r} differs from numpy's "
                               f"{ref!r}: the contenders do not compute the same step")


def bench_gemm_peak(b: Budget) -> dict:
    """GFLOPS of one large square matmul (2048^3) in each dtype, interleaved: the machine's peak."""
    n = 2048
    rng = np.random.default_rng(0)
    mats = {dt: (rng.standard_normal((n, n)).astype(dt), rng.standard_normal((n, n)).astype(dt))
            for dt in DTYPES}
    times: dict[str, list[float]] = {dt: [] for dt in DTYPES}
    for _ in range(max(3, b.rounds // 3)):
        for dt, (p, q) in mats.items():
            p @ q
            t0 = time.perf_counter()
            p @ q
            times[dt].append(time.perf_counter() - t0)
            _pause(b)
    return {dt: 2 * n ** 3 / float(np.median(t)) / 1e9 for dt, t in times.items()}


def bench_epoch(b: Budget, with_torch: bool) -> list[dict]:
    """A shuffled epoch of random CIFAR-10-sized data (rows x 3072, float32, batch 200)."""
    rows_out = []
    rng = np.random.default_rng(2)
    data = rng.standard_normal((b.epoch_rows, 3072), dtype=np.float32)
    labels = rng.integers(0, 10, b.epoch_rows)
    bs = 200
    for key in ("a", "c"):
        sizes = NETS[key][0]
        cont = _contenders(steps.init_params(sizes), "float32", with_torch, matmuls=False)
        times: dict[str, list[float]] = {name: [] for name in cont}
        names = list(cont)
        for r in range(b.epoch_rounds):
            for name in _rotation(names, r):
                step, before = cont[name]
                if before:
                    before()
                step(data[:bs], labels[:bs])
                perm = np.random.default_rng(r).permutation(b.epoch_rows)
                t0 = time.perf_counter()
                for i in range(0, b.epoch_rows, bs):
                    idx = perm[i:i + bs]
                    step(data[idx], labels[idx])
                times[name].append(time.perf_counter() - t0)
                _pause(b)
        res = {name: {"images_per_s": b.epoch_rows / float(np.median(t)),
                      "min": b.epoch_rows / max(t), "max": b.epoch_rows / min(t),
                      "epoch_s": float(np.median(t)), "n": len(t)} for name, t in times.items()}
        rows_out.append({"net": key, "sizes": sizes, "batch": bs, "rows": b.epoch_rows,
                         "dtype": "float32", "results": res})
        print(f"  epoch ({key}): " + ", ".join(
            f"{name} {r['images_per_s']:.0f} img/s" for name, r in res.items()), file=sys.stderr)
    return rows_out


def _chain_ops() -> dict[str, tuple[Callable, Callable, Callable]]:
    """op name: (tinygrad_mini op, numpy forward, torch op) on (h, w) with h, w of shape (4, 4)."""
    return {
        "add": (lambda h, w: h + w, np.add, lambda h, w: h + w),
        "mul": (lambda h, w: h * w, np.multiply, lambda h, w: h * w),
        "relu": (lambda h, w: h.relu(), lambda h, w: np.maximum(h, 0), lambda h, w: h.relu()),
        "tanh": (lambda h, w: h.tanh(), lambda h, w: np.tanh(h), lambda h, w: h.tanh()),
        "matmul": (lambda h, w: h @ w, np.matmul, lambda h, w: h @ w),
        "linear": (F.linear, lambda h, w: h @ w.T, lambda h, w: torch.nn.functional.linear(h, w)),
    }


def _time_chain(make: Callable[[], tuple], op: Callable, k: int, backward: bool) -> float:
    """Seconds to apply op k times along a chain (and backward through it when asked)."""
    h0, w = make()
    t0 = time.perf_counter()
    h = h0
    for _ in range(k):
        h = op(h, w)
    if backward:
        h.sum().backward()
    return time.perf_counter() - t0


def bench_overhead(b: Budget, with_torch: bool) -> list[dict]:
    """Per-op cost on (4, 4) tensors: a chain of k ops built and back-propagated, per op."""
    k = 200
    rng = np.random.default_rng(3)
    h_np = rng.uniform(0.5, 1.0, (4, 4))
    w_np = np.eye(4) * 0.9 + 0.01

    def tg_make():
        return tm.Tensor(h_np, requires_grad=True), tm.Tensor(w_np, requires_grad=True)

    def torch_make():
        return (torch.tensor(h_np, requires_grad=True), torch.tensor(w_np, requires_grad=True))

    rows = []
    for name, (tg_op, np_op, torch_op) in _chain_ops().items():
        runs: dict[str, tuple] = {
            "tinygrad_mini fwd+bwd": (tg_make, tg_op, True),
            "numpy fwd": (lambda: (h_np, w_np), np_op, False),
        }
        if with_torch:
            runs["torch fwd+bwd"] = (torch_make, torch_op, True)
        samples: dict[str, list[float]] = {r: [] for r in runs}
        for _ in range(b.overhead_rounds):
            for r, (make, op, bwd) in runs.items():
                if r.startswith("torch"):
                    torch.set_num_threads(1)
                for _ in range(20):
                    samples[r].append(_time_chain(make, op, k, bwd) / k)
        rows.append({"op": name, "us_per_op": {r: float(np.median(s)) * 1e6
                                               for r, s in samples.items()}})
    return rows


def bench_chain(b: Budget, with_torch: bool) -> dict:
    """Build and back-propagate a chain of `chain_ops` multiplications (a deep graph)."""
    n = b.chain_ops
    out: dict = {"ops": n}
    contenders = {"tinygrad_mini": lambda: (tm.Tensor(np.ones(4), requires_grad=True),
                                            tm.Tensor(np.ones(4), requires_grad=True))}
    if with_torch:
        contenders["torch"] = lambda: (torch.ones(4, dtype=torch.float64, requires_grad=True),
                                       torch.ones(4, dtype=torch.float64, requires_grad=True))
    for name, make in contenders.items():
        builds, backs = [], []
        for _ in range(b.chain_rounds):
            if name == "torch":
                torch.set_num_threads(1)
            h0, w = make()
            gc.collect()
            t0 = time.perf_counter()
            h = h0
            for _ in range(n):
                h = h * w
            t1 = time.perf_counter()
            h.sum().backward()
            t2 = time.perf_counter()
            builds.append(t1 - t0)
            backs.append(t2 - t1)
            if not float(w.grad[0]) == float(n):  # d/dw of w^n at w = 1, summed over the chain
                raise RuntimeError(f"{name}: 100k-chain gradient {float(w.grad[0])} != {n}")
            del h, h0, w
            _pause(b)
        out[name] = {"build_s": float(np.median(builds)), "backward_s": float(np.median(backs)),
                     "us_per_op": (float(np.median(builds)) + float(np.median(backs))) / n * 1e6}
    return out


# ---------------------------------------------------------------- memory

def bench_memory(b: Budget) -> dict:
    """Each contender's memory probe in a fresh process (benchmarks/memory.py), and the arrays a
    forward pass keeps for backward against the closed form's minimum."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    out: dict = {"steps": b.mem_steps, "per_step": [], "saved_for_backward": []}
    for key, n_steps in (("a", b.mem_steps), ("c", max(10, b.mem_steps // 10))):
        for name in (TG, NP):
            run = subprocess.run([sys.executable, "-m", "benchmarks.memory", key, name,
                                  str(n_steps)], cwd=root, env=env, capture_output=True,
                                 text=True)
            if run.returncode:
                raise RuntimeError(f"memory probe ({key}, {name}) failed:\n{run.stderr}")
            out["per_step"].append(json.loads(run.stdout))
    for key in ("a", "c"):
        for dt in DTYPES:
            out["saved_for_backward"].append(memory.saved_report(key, dt))
    return out


def bench_soak(b: Budget) -> dict:
    """Thousands of steps of net (a), float32, over rotating batches, in windows interleaved with
    numpy's step: per-window median time (and its ratio to numpy's, which cancels machine load)
    and RSS must stay flat."""
    sizes, n = NETS["a"]
    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((n, sizes[0])).astype(np.float32),
                rng.integers(0, sizes[-1], n)) for _ in range(16)]
    params = steps.init_params(sizes)
    cont = {TG: steps.tinygrad_mini_step(params, "float32", LR),
            NP: steps.numpy_step(params, "float32", LR)}
    n_windows = 10
    per_window = max(1, b.soak_steps // n_windows)
    windows: dict[str, list[float]] = {name: [] for name in cont}
    rss = []
    done = 0
    for w in range(n_windows):
        for name, step in cont.items():
            times = []
            for i in range(per_window):
                xb, yb = batches[(done + i) % len(batches)]
                t0 = time.perf_counter()
                step(xb, yb)
                times.append(time.perf_counter() - t0)
            windows[name].append(float(np.median(times)) * 1e3)
            _pause(b)
        done += per_window
        gc.collect()
        rss.append(memory.rss_bytes())
    ratio = [t / u for t, u in zip(windows[TG], windows[NP])]
    third = max(1, n_windows // 3)
    return {"steps": per_window * n_windows, "windows": n_windows, "window_median_ms": windows,
            "ratio_per_window": ratio, "rss_bytes": rss,
            "rss_growth_bytes": rss[-1] - rss[0],
            # drift: the tgm/numpy ratio in the last third of the windows over the first third
            "drift": float(np.median(ratio[-third:]) / np.median(ratio[:third])),
            "ratio_spread": max(ratio) / min(ratio)}


# ---------------------------------------------------------------- machine

def machine_info() -> dict:
    info: dict = {"platform": platform.platform(), "python": platform.python_version(),
                  "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                  "numpy": np.__version__, "tinygrad_mini": tm.__version__,
                  "torch": torch.__version__ if torch else None,
                  "env": {v: os.environ.get(v) for v in ENV_VARS},
                  "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = threadpool_info()
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "tinygrad_mini"],
                               capture_output=True, text=True, cwd=os.path.dirname(
                                   os.path.abspath(__file__)) + "/..")
        info["git"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        info["git"] = None
    return info


# ---------------------------------------------------------------- report

def _ms(r: dict) -> str:
    return f"{r['median']:.3f} ({r['min']:.3f}–{r['max']:.3f})"


def _mb(nbytes: float) -> str:
    return f"{nbytes / 2 ** 20:.2f} MB"


def targets(res: dict) -> list[dict]:
    """Each issue-4 target with its measured figure and whether it is met."""
    out = []

    def add(name: str, value: float, limit: float, fmt: str, ok: bool) -> None:
        out.append({"target": name, "measured": fmt.format(value), "limit": limit, "met": ok})

    for row in res.get("steps", []):
        key, dt = row["net"], row["dtype"]
        if key in "abc":
            add(f"({key}) {dt}: tgm / numpy ≤ 1.10", row["ratio_numpy"], 1.10, "{:.3f}",
                row["ratio_numpy"] <= 1.10)
            if "ratio_torch" in row:
                lim = 0.70 if key == "a" else 1.0
                ok = row["ratio_torch"] <= lim if key == "a" else row["ratio_torch"] < lim
                add(f"({key}) {dt}: tgm / torch {'≤' if key == 'a' else '<'} {lim:.2f}",
                    row["ratio_torch"], lim, "{:.3f}", ok)
        else:
            add(f"(d) {dt}: tgm / numpy ≤ 1.5", row["ratio_numpy"], 1.5, "{:.3f}",
                row["ratio_numpy"] <= 1.5)
            if "ratio_torch" in row:
                add(f"(d) {dt}: tgm / torch ≤ 0.5", row["ratio_torch"], 0.5, "{:.3f}",
                    row["ratio_torch"] <= 0.5)
        if key == "c" and "pct_of_matmul_peak" in row:
            pct = row["pct_of_matmul_peak"][TG]
            add(f"(c) {dt}: GFLOPS ≥ 65% of matmul peak", pct * 100, 65, "{:.1f}%", pct >= 0.65)
    mem = res.get("memory")
    if mem:
        for row in mem["per_step"]:
            if row["contender"] == TG:
                g = row["traced_growth_bytes"]
                add(f"({row['net']}) memory flat over {row['steps']} steps (traced growth ≤ 64 KB)",
                    g / 1024, 64, "{:.1f} KB", g <= 64 * 1024)
        worst = max(r["activations_vs_minimum"] for r in mem["saved_for_backward"])
        add("saved for backward ≤ closed-form minimum", worst, 1.0, "{:.2f}× minimum",
            worst <= 1.0)
    soak = res.get("soak")
    if soak:
        add(f"soak {soak['steps']:,} steps: tgm/numpy time ratio, last third / first third "
            "of the run ≤ 1.10", soak["drift"], 1.10, "{:.3f}", soak["drift"] <= 1.10)
        growth = soak["rss_growth_bytes"]
        add(f"soak {soak['steps']:,} steps: RSS growth ≤ 1 MB", growth / 2 ** 20, 1.0, "{:.2f} MB",
            growth <= 2 ** 20)
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cpus']} CPUs; Python {m['python']}, numpy {m['numpy']}, "
             f"torch {m['torch']}, tinygrad_mini {m['tinygrad_mini']} ({m['git']}); "
             f"mode {res['mode']}"
             + (f"; numpy's BLAS limited to {res['blas_threads']} thread(s)."
                if res.get("blas_threads") else "."), ""]
    load = (m.get("loadavg_start") or [0.0])[0]
    if load > 0.75 * (m["cpus"] or 1):
        lines += [f"**Warning: the machine was busy (1-minute load average {load:.1f} on "
                  f"{m['cpus']} CPUs at the start): times are inflated and ratios noisy.**", ""]
    if res.get("steps"):
        lines += ["Training step (forward + backward + SGD), ms per step: median (min–max). "
                  "Ratios are tinygrad_mini over the faster numpy layout and the faster torch "
                  "thread count; GFLOPS = 2·M·N·K per matmul / median time; % of peak = tgm "
                  "GFLOPS / the same matmuls run alone.", "",
                  "| net | dtype | tinygrad_mini | numpy W (out, in) | numpy W (in, out) | torch 1T "
                  "| torch 2T | tgm / numpy | tgm / torch | GFLOPS tgm / numpy / matmuls only "
                  "| tgm % of peak |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in res["steps"]:
            r = row["ms"]
            cells = [f"({row['net']}) {'→'.join(map(str, row['sizes']))}, N={row['batch']}",
                     row["dtype"]] + [_ms(r[k]) if k in r else "–"
                                      for k in (TG, NP, NP_IO, "torch 1T", "torch 2T")]
            cells += [f"{row['ratio_numpy']:.3f}",
                      f"{row['ratio_torch']:.3f}" if "ratio_torch" in row else "–"]
            if "gflops" in row:
                g = row["gflops"]
                cells += [f"{g[TG]:.1f} / {g[row['numpy_best']]:.1f} / {g[MM]:.1f}",
                          f"{row['pct_of_matmul_peak'][TG] * 100:.0f}%"]
            else:
                cells += ["–", "–"]
            lines.append("| " + " | ".join(cells) + " |")
        if res.get("gemm_peak"):
            lines += ["", "Square 2048³ matmul: " + ", ".join(
                f"{dt} {g:.1f} GFLOPS" for dt, g in res["gemm_peak"].items()) + "."]
        lines.append("")
    if res.get("epoch"):
        lines += ["Epoch of random CIFAR-10-sized data (shuffled, batch 200, float32), images/s: "
                  "median (min–max).", "", "| net | rows | " + " | ".join(
                      res["epoch"][0]["results"]) + " |",
                  "|---|---|" + "---|" * len(res["epoch"][0]["results"])]
        for row in res["epoch"]:
            lines.append(f"| ({row['net']}) | {row['rows']} | " + " | ".join(
                f"{r['images_per_s']:.0f} ({r['min']:.0f}–{r['max']:.0f})"
                for r in row["results"].values()) + " |")
        lines.append("")
    if res.get("overhead"):
        cols = list(res["overhead"][0]["us_per_op"])
        lines += ["Per-op cost on (4, 4) float64 tensors, µs per op (chain of 200).", "",
                  "| op | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for row in res["overhead"]:
            lines.append(f"| {row['op']} | " + " | ".join(
                f"{row['us_per_op'][c]:.2f}" for c in cols) + " |")
        lines.append("")
    if res.get("chain"):
        ch = res["chain"]
        lines += [f"Chain of {ch['ops']:,} multiplications: graph build + backward.", "",
                  "| contender | build s | backward s | µs per op |", "|---|---|---|---|"]
        for name, r in ch.items():
            if isinstance(r, dict):
                lines.append(f"| {name} | {r['build_s']:.3f} | {r['backward_s']:.3f} | "
                             f"{r['us_per_op']:.2f} |")
        lines.append("")
    if res.get("memory"):
        mem = res["memory"]
        lines += ["Memory of a float32 step, each contender in a fresh process. tracemalloc: the "
                  "peak during one step and what stays between steps (params, batch, grads, "
                  "optimizer buffers); RSS: resident growth over building and 10 steps. Growth "
                  "is measured over the next `steps` steps.", "",
                  "| net | contender | params + batch | step peak | resting | RSS after 10 steps "
                  "| steps | traced growth | RSS growth | graph nodes left |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in mem["per_step"]:
            lines.append(f"| ({r['net']}) | {r['contender']} | "
                         f"{_mb(r['param_bytes'] + r['batch_bytes'])} | "
                         f"{_mb(r['step_peak_bytes'])} | {_mb(r['resting_bytes'])} | "
                         f"{_mb(r['rss_after_10_steps'])} | {r['steps']} | "
                         f"{r['traced_growth_bytes'] / 1024:.1f} KB | "
                         f"{r['rss_growth_bytes'] / 1024:.0f} KB | {r['live_function_nodes']} |")
        lines += ["", "Kept for backward by a forward pass (bytes held by the graph's Function "
                  "nodes; parameters and the input batch are referenced, not copied).", "",
                  "| net | dtype | activations | closed-form minimum | ratio | parameters "
                  "(referenced) | input batch (referenced) | labels |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in mem["saved_for_backward"]:
            h = r["held_bytes"]
            lines.append(f"| ({r['net']}) | {r['dtype']} | {_mb(h['activations'])} | "
                         f"{_mb(r['minimum_activation_bytes'])} | "
                         f"{r['activations_vs_minimum']:.2f} | {_mb(h['parameters'])} | "
                         f"{_mb(h['input batch'])} | {h['labels']} B |")
        lines.append("")
    if res.get("soak"):
        s = res["soak"]
        w = s["window_median_ms"]
        lines += [f"Soak: {s['steps']:,} steps of net (a) float32 in {s['windows']} windows, "
                  "interleaved with numpy's step.", "",
                  "| | first window | last window | min | max |", "|---|---|---|---|---|",
                  f"| tgm ms/step | {w[TG][0]:.3f} | {w[TG][-1]:.3f} | {min(w[TG]):.3f} | "
                  f"{max(w[TG]):.3f} |",
                  f"| numpy ms/step | {w[NP][0]:.3f} | {w[NP][-1]:.3f} | {min(w[NP]):.3f} | "
                  f"{max(w[NP]):.3f} |",
                  f"| tgm / numpy | {s['ratio_per_window'][0]:.3f} | "
                  f"{s['ratio_per_window'][-1]:.3f} | {min(s['ratio_per_window']):.3f} | "
                  f"{max(s['ratio_per_window']):.3f} |",
                  f"| RSS | {_mb(s['rss_bytes'][0])} | {_mb(s['rss_bytes'][-1])} | "
                  f"{_mb(min(s['rss_bytes']))} | {_mb(max(s['rss_bytes']))} |", ""]
    if res.get("targets"):
        lines += ["Targets (issue 4):", "", "| target | measured | met |", "|---|---|---|"]
        for t in res["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

SECTIONS = ("steps", "epoch", "overhead", "memory", "soak")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds, a 4,900-row epoch, a 1,000-step soak (under two "
                         "minutes on a quiet 2-core machine; the full run takes about five)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "results.json"),
                    help="where to write the JSON record (default: benchmarks/results.json)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run, from {','.join(SECTIONS)}")
    ap.add_argument("--nets", default="a,b,c,d", help="training-step nets to run (a,b,c,d)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--blas-threads", type=int, default=None, metavar="N",
                    help="limit numpy's OpenBLAS to N threads (default: its own setting); "
                         "recorded in the JSON. PyTorch runs with 1 and 2 threads regardless")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"--only: unknown section(s) {bad}; choose from {','.join(SECTIONS)}")
    nets = [s.strip() for s in args.nets.split(",") if s.strip()]
    if [s for s in nets if s not in NETS]:
        ap.error(f"--nets: choose from a,b,c,d, got {args.nets!r}")
    with_torch = torch is not None and not args.no_torch
    if torch is None and not args.no_torch:
        print("PyTorch is not installed: its columns are left out (pip install -e '.[torch]')",
              file=sys.stderr)
    if args.blas_threads is not None:
        if args.blas_threads < 1:
            ap.error(f"--blas-threads must be >= 1, got {args.blas_threads}")
        from threadpoolctl import ThreadpoolController
        ThreadpoolController().select(internal_api="openblas").limit(limits=args.blas_threads)
    b = QUICK if args.quick else FULL
    res: dict = {"mode": "quick" if args.quick else "full", "machine": machine_info(),
                 "budget": dataclasses.asdict(b), "blas_threads": args.blas_threads}
    t_start = time.perf_counter()
    if "steps" in only:
        res["steps"] = bench_steps(b, nets, with_torch)
        res["gemm_peak"] = bench_gemm_peak(b)
    if "epoch" in only:
        res["epoch"] = bench_epoch(b, with_torch)
    if "overhead" in only:
        res["overhead"] = bench_overhead(b, with_torch)
        res["chain"] = bench_chain(b, with_torch)
    if "memory" in only:
        res["memory"] = bench_memory(b)
    if "soak" in only:
        res["soak"] = bench_soak(b)
    res["targets"] = targets(res)
    res["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    res["seconds"] = time.perf_counter() - t_start
    print(markdown(res))
    with atomic_write(args.json, "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(f"wrote {args.json} ({res['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
