"""`python -m nets.train` on a tiny CIFAR-shaped archive written into tmp_path: usage errors, the
JSON summary, bit-exact resume, the NaN stop, the plot, the sweep, checkpoint mismatches."""
import io
import json
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from nets import train as T
from nets.two_layer import TwoLayerNet
from tinygrad_mini import nn

PER_BATCH, N_TEST, N_VAL = 40, 40, 40


def write_archive(path, per_batch=PER_BATCH, n_test=N_TEST, seed=0):
    """A cifar-10-python.tar.gz look-alike: 5 train batches + test batch of class-coded images."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(10, 3072))

    def batch(n):
        y = rng.integers(0, 10, size=n)
        X = np.clip(protos[y] * 0.6 + rng.integers(0, 100, size=(n, 3072)), 0, 255)
        return {"data": X.astype(np.uint8), "labels": [int(v) for v in y],
                "batch_label": "synthetic", "filenames": [f"{i}.png" for i in range(n)]}

    names = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    with tarfile.open(path, "w:gz") as tf:
        for name, n in names:
            blob = pickle.dumps(batch(n), protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz")


def run(archive, *args, model="two_layer"):
    """main() in-process on the tiny archive, small nets; returns the exit status."""
    small = {"two_layer": ["--hidden", "8", "--std", "0.01", "--lr", "1e-4", "--reg", "0.01"],
             "two_layer_tg": ["--hidden", "8", "--std", "0.01", "--lr", "1e-4", "--reg", "0.01"],
             "mlp": ["--hidden", "16", "8", "--std", "0.01"]}[model]
    argv = ["--data", str(archive), "--model", model, "--val-size", str(N_VAL), "--test-size",
            str(N_TEST), "--batch-size", "40", "--no-progress", *small, *args]
    return T.main(argv)


def arrays_of(path):
    """Every array in a checkpoint, flattened to {dotted key: array}, plus its iteration."""
    ckpt = nn.load(path)
    flat = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, np.ndarray):
            flat[prefix[:-1]] = node
    walk({"model": ckpt["model"], "optimizer": ckpt["optimizer"]["state"]}, "")
    return flat, ckpt


def assert_bit_identical(a_path, b_path):
    a, ca = arrays_of(a_path)
    b, cb = arrays_of(b_path)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert ca["iteration"] == cb["iteration"]
    assert ca["sampler_rng"] == cb["sampler_rng"] and ca["dropout_rng"] == cb["dropout_rng"]
    assert ca["optimizer"]["param_groups"] == cb["optimizer"]["param_groups"]
    assert ca["scheduler"] == cb["scheduler"]
    assert ca["history"]["loss"] == cb["history"]["loss"]


# ---------------------------------------------------------------- bad options

@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet"], "invalid choice"),
    (["--lr", "-1"], "must be > 0"),
    (["--lr", "nan"], "must be finite"),
    (["--epochs", "0"], "must be >= 1"),
    (["--epochs", "2", "--iters", "5"], "not allowed with argument"),
    (["--batch-size", "abc"], "expected int"),
    (["--hidden", "0"], "must be >= 1"),
    (["--model", "two_layer", "--hidden", "10", "20"], "one hidden layer"),
    (["--model", "two_layer", "--dropout", "0.5"], "applies to --model mlp"),
    (["--model", "mlp", "--reg", "0.1"], "use --weight-decay"),
    (["--model", "mlp", "--dropout", "1.0"], "must be < 1"),
    (["--model", "mlp", "--optimizer", "adam", "--momentum", "0.9"], "--optimizer sgd"),
    (["--data", "/no/such/cifar.tar.gz"], "no such file"),
    (["--save", "/no/such/folder/ckpt.npz"], "does not exist"),
    (["--resume", "/no/such/ckpt.npz"], "no such file"),
    (["--sweep", "--resume", "x.npz"], "cannot be combined"),
    (["--sweep", "bayes"], "invalid choice"),
    (["--plot", "curves.txt"], "--plot curves.txt: the suffix .txt is not an image format "
                               "matplotlib writes; end the name with one of "),
    (["--plot", "curves"], "--plot curves: no suffix names an image format"),
])
def test_bad_options_give_usage_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        T.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err


def test_bad_option_from_the_shell_is_a_usage_message_not_a_traceback():
    r = subprocess.run([sys.executable, "-m", "nets.train", "--lr", "fast"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert "usage:" in r.stderr and "--lr" in r.stderr and "Traceback" not in r.stderr


def test_plot_suffix_error_lists_what_matplotlib_writes(capsys):
    with pytest.raises(SystemExit):
        T.main(["--plot", "curves.png.bak"])
    accepted = capsys.readouterr().err.split("end the name with one of ")[1].split()
    assert {".png", ".pdf", ".svg", ".jpg"} <= set(accepted) and ".pgf" not in accepted
    assert accepted == ["." + f for f in T.plot_formats()]


def test_plot_without_matplotlib_is_a_clear_message(archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as e:
        run(archive, "--plot", str(tmp_path / "p.png"))
    assert e.value.code == 2
    assert "--plot needs matplotlib: pip install matplotlib" in capsys.readouterr().err


def test_unreadable_archive_is_an_error_naming_it(tmp_path, capsys):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    assert T.main(["--data", str(bad), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read CIFAR-10") and str(bad) in err


def test_too_few_images_for_the_split_is_an_error(archive, capsys):
    assert run(archive, "--subset", "500") == 1
    assert "not enough for 500 training" in capsys.readouterr().err


# ---------------------------------------------------------------- the summary

def test_json_summary_matches_a_recomputation_from_the_checkpoint(archive, tmp_path, capsys):
    js, ck = tmp_path / "s.json", tmp_path / "c.npz"
    assert run(archive, "--epochs", "3", "--json", str(js), "--save", str(ck)) == 0
    out = capsys.readouterr().out
    s = json.loads(js.read_text())
    assert s["status"] == "ok"
    for key in ("val_acc", "test_acc", "test_acc_10k", "train_acc"):
        assert 0.0 <= s[key] <= 1.0
    assert (s["num_train"], s["num_val"], s["num_test"], s["num_test_full"]) == (
        5 * PER_BATCH - N_VAL, N_VAL, N_TEST, N_TEST)
    assert s["config"]["model"] == "two_layer" and s["config"]["hidden"] == [8]
    assert s["epochs"] == 3 and s["iterations"] == 3 * ((5 * PER_BATCH - N_VAL) // 40)
    assert set(s["timings"]) >= {"data_s", "train_s", "eval_s", "total_s"}
    assert len(s["history"]["val_acc"]) == 3
    assert f"validation accuracy: {s['val_acc']:.4f}" in out
    assert "epoch 3/3" in out

    # recompute the accuracies from the saved weights and the same split
    cfg = json.loads(js.read_text())["config"]
    data, _ = T.load_data(cfg, str(archive), progress=False)
    net = TwoLayerNet(3072, 8, 10)
    ckpt = nn.load(ck)
    net.params = {k: ckpt["model"][k] for k in ("W1", "b1", "W2", "b2")}
    assert np.mean(net.predict(data.X_val) == data.y_val) == s["val_acc"]
    assert np.mean(net.predict(data.X_test) == data.y_test) == s["test_acc"]
    assert np.mean(net.predict(data.X_test_full) == data.y_test_full) == s["test_acc_10k"]


def test_learns_the_synthetic_classes(archive, tmp_path):
    js = tmp_path / "s.json"
    assert run(archive, "--epochs", "6", "--json", str(js), model="mlp") == 0
    assert json.loads(js.read_text())["val_acc"] > 0.5  # 10 classes: chance is 0.1


def test_data_from_environment_and_cache(archive, tmp_path, monkeypatch, capsys):
    """No --data: $TINYGRAD_MINI_DATA, else the cache directory's archive."""
    common = ["--model", "two_layer", "--hidden", "4", "--iters", "1", "--val-size", "40",
              "--test-size", "40", "--no-progress"]
    monkeypatch.setenv("TINYGRAD_MINI_DATA", str(archive))
    assert T.main(common) == 0
    assert f"data: {archive}" in capsys.readouterr().out
    monkeypatch.delenv("TINYGRAD_MINI_DATA")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes())
    monkeypatch.setenv("TINYGRAD_MINI_CACHE", str(cache))
    assert T.main(common) == 0
    assert f"data: {cache / 'cifar-10-python.tar.gz'}" in capsys.readouterr().out


# ---------------------------------------------------------------- exact resume

@pytest.mark.parametrize("model, extra", [
    ("two_layer", []),
    ("two_layer_tg", ["--optimizer", "sgd", "--momentum", "0.9"]),
    ("mlp", ["--dropout", "0.3", "--batchnorm"]),
])
def test_resume_after_k_epochs_is_bit_identical(archive, tmp_path, model, extra):
    full, part, resumed = (tmp_path / n for n in ("full.npz", "part.npz", "resumed.npz"))
    assert run(archive, "--epochs", "3", "--save", str(full), *extra, model=model) == 0
    assert run(archive, "--epochs", "1", "--save", str(part), *extra, model=model) == 0
    assert run(archive, "--epochs", "3", "--resume", str(part), "--save", str(resumed),
               model=model) == 0
    assert_bit_identical(full, resumed)
    a, _ = arrays_of(full)
    b, _ = arrays_of(part)
    assert not all(np.array_equal(a[k], b[k]) for k in a)  # training did move the weights


def test_resume_in_the_middle_of_an_epoch_is_bit_identical(archive, tmp_path):
    full, part, resumed = (tmp_path / n for n in ("full.npz", "part.npz", "resumed.npz"))
    assert run(archive, "--iters", "10", "--save", str(full)) == 0  # 4 iterations per epoch
    assert run(archive, "--iters", "6", "--save", str(part)) == 0
    assert run(archive, "--iters", "10", "--resume", str(part), "--save", str(resumed)) == 0
    assert_bit_identical(full, resumed)


def test_same_seed_same_run_other_seed_other_run(archive, tmp_path):
    paths = [tmp_path / f"{i}.json" for i in range(3)]
    for p, seed in zip(paths, (5, 5, 6)):
        assert run(archive, "--epochs", "2", "--seed", str(seed), "--json", str(p),
                   model="mlp") == 0
    h = [json.loads(p.read_text())["history"] for p in paths]
    assert h[0] == h[1]
    assert h[0]["loss"] != h[2]["loss"]


def test_mismatched_checkpoint_lists_keys_and_shapes(archive, tmp_path, capsys):
    ck = tmp_path / "c.npz"
    assert run(archive, "--epochs", "1", "--save", str(ck)) == 0
    capsys.readouterr()
    assert run(archive, "--resume", str(ck), "--hidden", "5") == 1
    err = capsys.readouterr().err
    assert "does not match the model" in err
    assert "size mismatch for 'W1': expected shape (3072, 5), got (3072, 8)" in err
    assert run(archive, "--resume", str(ck), "--model", "mlp") == 1
    err = capsys.readouterr().err
    assert "missing keys: 'layers.0.weight'" in err and "unexpected keys: 'W1'" in err


def test_resume_refuses_changed_hyperparameters_and_foreign_files(archive, tmp_path, capsys):
    ck = tmp_path / "c.npz"
    assert run(archive, "--epochs", "1", "--save", str(ck)) == 0
    with pytest.raises(SystemExit) as e:
        run(archive, "--resume", str(ck), "--lr", "0.5")
    assert e.value.code == 2 and "--lr 0.5 differs from the checkpoint's" in \
        capsys.readouterr().err
    other = tmp_path / "weights.npz"
    nn.save({"W1": np.zeros(3)}, other)
    assert run(archive, "--resume", str(other)) == 1
    assert "is not a nets.train checkpoint" in capsys.readouterr().err
    ckpt = nn.load(ck)
    nn.save({k: v for k, v in ckpt.items() if k != "optimizer"}, other)
    assert run(archive, "--resume", str(other)) == 1
    assert "is incomplete: missing optimizer" in capsys.readouterr().err
    del ckpt["config"]["lr"]
    nn.save(ckpt, other)
    assert run(archive, "--resume", str(other)) == 1
    assert "unusable config (model 'two_layer', missing lr)" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 truncated")
    assert run(archive, "--resume", str(junk)) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err


def _no_data_load(monkeypatch):
    def refuse(*args):
        raise AssertionError("the data was loaded")
    monkeypatch.setattr(T, "load_data", refuse)


@pytest.mark.parametrize("length, message", [
    (["--epochs", "2"], "--epochs 2 is fewer than the 3 epochs the checkpoint {ck} has already "
                        "completed; pass --epochs 4 or more to train further (--epochs counts "
                        "from the start of the run, not from the checkpoint)"),
    (["--iters", "11"], "--iters 11 is fewer than the 12 iterations the checkpoint {ck} has "
                        "already completed; pass --iters 13 or more"),
])
def test_resume_to_fewer_epochs_than_done_is_a_usage_error_before_the_data(
        archive, tmp_path, monkeypatch, capsys, length, message):
    ck = tmp_path / "c.npz"
    assert run(archive, "--epochs", "3", "--save", str(ck)) == 0  # 4 iterations per epoch
    _no_data_load(monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run(archive, "--resume", str(ck), *length)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message.format(ck=ck) in err


def test_resume_to_fewer_epochs_names_a_partial_epoch_and_checks_old_checkpoints(
        archive, tmp_path, capsys):
    ck, old = tmp_path / "c.npz", tmp_path / "old.npz"
    assert run(archive, "--iters", "6", "--save", str(ck)) == 0  # 4 iterations per epoch
    ckpt = nn.load(ck)
    del ckpt["iters_per_epoch"]  # as written before the key existed: checked after the data
    nn.save(ckpt, old)
    for path in (ck, old):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            run(archive, "--resume", str(path), "--epochs", "1")
        assert e.value.code == 2
        assert (f"--epochs 1 is fewer than the 1 epoch and 2 of the 4 iterations of epoch 2 the "
                f"checkpoint {path} has already completed; pass --epochs 2 or more") in \
            capsys.readouterr().err
    assert run(archive, "--resume", str(old), "--epochs", "2") == 0


@pytest.mark.parametrize("length", [["--epochs", "3"], []])
def test_resume_with_nothing_left_says_so_and_evaluates(archive, tmp_path, capsys, length):
    ck, first, again = tmp_path / "c.npz", tmp_path / "1.json", tmp_path / "2.json"
    assert run(archive, "--epochs", "3", "--save", str(ck), "--json", str(first)) == 0
    capsys.readouterr()
    assert run(archive, "--resume", str(ck), *length, "--json", str(again)) == 0
    out = capsys.readouterr().out
    assert (f"nothing left to train: the checkpoint {ck} has already completed the 3 epochs of "
            f"--epochs 3; evaluating it (pass --epochs 4 or more to train further)") in out
    assert "epoch 4/" not in out and "validation accuracy:" in out
    a, b = (json.loads(p.read_text()) for p in (first, again))
    assert (b["iterations"], b["history"]) == (a["iterations"], a["history"])
    assert (b["val_acc"], b["test_acc"]) == (a["val_acc"], a["test_acc"])


# ---------------------------------------------------------------- non-finite loss

def test_nan_loss_stops_with_epoch_and_iteration_and_keeps_last_checkpoint(
        archive, tmp_path, monkeypatch, capsys):
    one, ck, js = tmp_path / "one.npz", tmp_path / "c.npz", tmp_path / "s.json"
    assert run(archive, "--epochs", "1", "--save", str(one)) == 0
    real_loss, calls = TwoLayerNet.loss, {"n": 0}

    def loss_nan_at_call_7(self, X, y=None, reg=0.0):
        out = real_loss(self, X, y, reg)
        if y is None:
            return out
        calls["n"] += 1
        return (float("nan"), out[1]) if calls["n"] == 7 else out

    monkeypatch.setattr(TwoLayerNet, "loss", loss_nan_at_call_7)
    capsys.readouterr()
    assert run(archive, "--epochs", "3", "--save", str(ck), "--json", str(js)) == 3
    err = capsys.readouterr().err
    # 4 iterations per epoch: call 7 is epoch 2, iteration 3
    assert "the loss became nan at epoch 2, iteration 3 (iteration 7 overall)" in err
    assert f"the last good checkpoint, {ck} (end of epoch 1), is kept" in err
    assert_bit_identical(one, ck)
    s = json.loads(js.read_text())
    assert (s["status"], s["epoch"], s["iteration"], s["val_acc"]) == ("diverged", 2, 3, None)


def test_a_real_divergence_is_caught(archive, tmp_path, capsys):
    assert run(archive, "--lr", "1e12", "--std", "1", "--epochs", "5") == 3
    err = capsys.readouterr().err
    assert "the loss became" in err and "no checkpoint was written (--save not given)" in err


# ---------------------------------------------------------------- plot, progress, sweep

def test_plot_writes_a_png(archive, tmp_path):
    png = tmp_path / "curves.png"
    assert run(archive, "--epochs", "2", "--plot", str(png), model="mlp") == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("name, head", [("curves.svg", b"<?xml"), ("curves.PDF", b"%PDF-")])
def test_plot_format_follows_the_suffix(archive, tmp_path, name, head):
    assert run(archive, "--iters", "2", "--plot", str(tmp_path / name)) == 0
    assert (tmp_path / name).read_bytes().startswith(head)


def test_progress_falls_back_to_text_without_tqdm(archive, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert T.main(["--data", str(archive), "--model", "two_layer", "--hidden", "4", "--epochs",
                   "1", "--val-size", "40", "--test-size", "40", "--batch-size", "40"]) == 0
    assert "epoch 1/1: 4/4" in capsys.readouterr().err


def test_grid_sweep_keeps_the_best(archive, tmp_path, capsys):
    js, ck = tmp_path / "s.json", tmp_path / "best.npz"
    assert run(archive, "--sweep", "--sweep-lr", "1e-9", "3e-4", "--sweep-reg", "0.01",
               "--sweep-hidden", "4", "8", "--epochs", "3", "--json", str(js),
               "--save", str(ck)) == 0
    out = capsys.readouterr().out
    s = json.loads(js.read_text())
    rows = s["sweep"]
    assert len(rows) == 4 and {(r["lr"], tuple(r["hidden"])) for r in rows} == {
        (lr, (h,)) for lr in (1e-9, 3e-4) for h in (4, 8)}
    best = max(rows, key=lambda r: r["val_acc"])
    assert best["lr"] == 3e-4  # lr 1e-9 cannot move the weights off the initial guess
    assert (s["config"]["lr"], s["config"]["hidden"]) == (best["lr"], best["hidden"])
    assert s["val_acc"] == best["val_acc"]
    assert nn.load(ck)["config"]["hidden"] == best["hidden"]
    assert "<- best" in out and "val_acc" in out


def test_random_sweep_draws_the_requested_trials(archive, tmp_path):
    js = tmp_path / "s.json"
    assert run(archive, "--sweep", "random", "--trials", "3", "--sweep-lr", "1e-5", "1e-3",
               "--iters", "2", "--json", str(js)) == 0
    rows = json.loads(js.read_text())["sweep"]
    assert len(rows) == 3 and all(1e-5 <= r["lr"] <= 1e-3 for r in rows)
    assert len({r["lr"] for r in rows}) == 3
