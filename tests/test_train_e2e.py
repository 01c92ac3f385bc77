"""End-to-end on the shared CIFAR-10 copy ($TINYGRAD_MINI_DATA): a brief real training run through
the command line, and bit-exact resume on a small real subset."""
import json
import subprocess
import sys

import numpy as np
import pytest

from nets import train as T
from tinygrad_mini import nn
from tinygrad_mini.data import load_cifar10

pytestmark = pytest.mark.e2e


def test_command_line_trains_to_40_percent_validation(cifar_path, tmp_path):
    """Two epochs of a [100] MLP with the reference recipe (Adam, weight decay, lr x0.95)."""
    js = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, "-m", "nets.train", "--data", str(cifar_path), "--model",
                        "mlp", "--hidden", "100", "--epochs", "2", "--no-progress", "--json",
                        str(js)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(js.read_text())
    assert (s["num_train"], s["num_val"], s["num_test"], s["num_test_full"]) == (
        49000, 1000, 1000, 10000)
    assert s["val_acc"] >= 0.40, r.stdout
    assert 0.3 <= s["test_acc"] <= 1 and 0.3 <= s["test_acc_10k"] <= 1
    assert "validation accuracy:" in r.stdout and "(10,000 images)" in r.stdout


@pytest.fixture(scope="module")
def real_arrays(cifar_path):
    """The shared archive, read once for the resume runs below."""
    return load_cifar10(cifar_path, flatten=True)


@pytest.mark.parametrize("model, extra", [
    ("two_layer", ["--batch-size", "200"]),
    ("mlp", ["--hidden", "64", "32", "--dropout", "0.2", "--batch-size", "100"]),
])
def test_resume_is_bit_identical_on_a_real_subset(cifar_path, real_arrays, tmp_path, monkeypatch,
                                                  model, extra):
    monkeypatch.setattr(T, "load_cifar10", lambda path, flatten: real_arrays)
    full, part, resumed = (tmp_path / n for n in ("full.npz", "part.npz", "resumed.npz"))
    base = ["--data", str(cifar_path), "--model", model, "--subset", "1000", "--val-size", "500",
            "--no-progress", *extra]
    assert T.main([*base, "--epochs", "3", "--save", str(full)]) == 0
    assert T.main([*base, "--epochs", "1", "--save", str(part)]) == 0
    assert T.main(["--data", str(cifar_path), "--epochs", "3", "--no-progress", "--resume",
                   str(part), "--save", str(resumed)]) == 0
    a, b = nn.load(full), nn.load(resumed)
    assert a["iteration"] == b["iteration"] == 3 * (10 if model == "mlp" else 5)
    for k in a["model"]:
        assert np.array_equal(a["model"][k], b["model"][k]), k
    for i, st in a["optimizer"]["state"].items():
        for k, v in st.items():
            assert np.array_equal(v, b["optimizer"]["state"][i][k]), (i, k)
    assert a["history"]["loss"] == b["history"]["loss"]
    assert a["sampler_rng"] == b["sampler_rng"] and a["dropout_rng"] == b["dropout_rng"]
