"""tinygrad_mini.data on tiny CIFAR-shaped archives written here: reading (folder, .tar.gz, .tar;
str and bytes keys), validation and file faults, the cache and a loopback-only download,
preprocessing and the split, DataLoader and sampling with replacement."""
import contextlib
import errno
import hashlib
import io
import os
import pathlib
import pickle
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_mini.data.download as download_mod
from tinygrad_mini import Tensor
from tinygrad_mini._io import atomic_write
from tinygrad_mini.data import (CIFAR10, CLASSES, DataLoader, DownloadError, TensorDataset,
                                cifar10_path, default_cache_dir, download_url, get_cifar10_data,
                                load_cifar10, md5sum, mean_image, normalize_torch, read_batches,
                                sample_batches, split_cifar10)

TRAIN_NAMES = [f"data_batch_{i}" for i in range(1, 6)]
SIZES = {**{n: 6 for n in TRAIN_NAMES}, "test_batch": 8}  # 30 train, 8 test images
TIMEOUT = 5.0


# ------------------------------------------------------------------ tiny archives
def make_batches(seed=0, keys=str):
    """{name: batch dict} in the official layout, plus the truth (rows, labels) concatenated."""
    rng = np.random.default_rng(seed)
    batches, rows, labels = {}, {}, {}
    for k, name in enumerate(TRAIN_NAMES + ["test_batch"]):
        n = SIZES[name]
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        lab = [int(v) for v in rng.integers(0, 10, n)]
        d = {"batch_label": f"batch {k}", "labels": lab, "data": data,
             "filenames": [f"img_{k}_{i}.png" for i in range(n)]}
        batches[name] = {key.encode() if keys is bytes else key: v for key, v in d.items()}
        rows[name], labels[name] = data, np.array(lab)
    truth = (np.concatenate([rows[n] for n in TRAIN_NAMES]),
             np.concatenate([labels[n] for n in TRAIN_NAMES]), rows["test_batch"],
             labels["test_batch"])
    return batches, truth


def _payload(obj):
    return obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)


def write_folder(root, batches):
    folder = pathlib.Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, obj in batches.items():
        (folder / name).write_bytes(_payload(obj))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}, 2))
    return folder


def write_tar(path, batches, mode="w:gz"):
    files = {**batches, "batches.meta": {"label_names": list(CLASSES)}, "readme.html": b"<html>"}
    with tarfile.open(path, mode) as tf:
        for name, obj in files.items():
            blob = _payload(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return pathlib.Path(path)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the caller's data/cache variables or writes under the real home."""
    monkeypatch.delenv("TINYGRAD_MINI_DATA", raising=False)
    monkeypatch.delenv("TINYGRAD_MINI_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A tiny .tar.gz in the official layout, its bytes' md5, and the truth arrays."""
    batches, truth = make_batches(seed=1)
    path = write_tar(tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz", batches)
    return path, hashlib.md5(path.read_bytes()).hexdigest(), truth


def assert_matches_truth(loaded, truth):
    X_train, y_train, X_test, y_test = loaded
    assert X_train.dtype == np.uint8 and X_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    np.testing.assert_array_equal(X_train.reshape(len(X_train), -1), truth[0])
    np.testing.assert_array_equal(y_train, truth[1])
    np.testing.assert_array_equal(X_test.reshape(len(X_test), -1), truth[2])
    np.testing.assert_array_equal(y_test, truth[3])


# ------------------------------------------------------------------ reading
@pytest.mark.parametrize("keys", [str, bytes])
@pytest.mark.parametrize("form", ["folder", "parent", "tar.gz", "tar"])
def test_reads_every_form_and_key_style(tmp_path, keys, form):
    batches, truth = make_batches(keys=keys)
    if form in ("folder", "parent"):
        folder = write_folder(tmp_path, batches)
        root = folder if form == "folder" else tmp_path
    else:
        root = write_tar(tmp_path / f"c.{form}", batches, "w:gz" if form == "tar.gz" else "w")
    loaded = load_cifar10(root)
    assert loaded[0].shape == (30, 3, 32, 32) and loaded[2].shape == (8, 3, 32, 32)
    assert_matches_truth(loaded, truth)
    flat = load_cifar10(root, flatten=True)
    assert flat[0].shape == (30, 3072) and flat[2].shape == (8, 3072)
    assert_matches_truth(flat, truth)


def test_image_layout_is_red_then_green_then_blue_planes(archive):
    X_train, _, _, _ = load_cifar10(archive[0])
    rows = archive[2][0]
    for c in range(3):  # row = R plane (1024) | G plane | B plane, each row-major 32x32
        np.testing.assert_array_equal(X_train[:, c], rows[:, c * 1024:(c + 1) * 1024]
                                      .reshape(-1, 32, 32))
    assert X_train[3, 1, 2, 5] == rows[3, 1024 + 2 * 32 + 5]


def test_directory_holding_the_archive_is_accepted(tmp_path, archive):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive[0].read_bytes())
    assert_matches_truth(load_cifar10(tmp_path), archive[2])


def test_dataset_class_train_and_test(archive):
    train = CIFAR10(archive[0], train=True)
    test = CIFAR10(archive[0], train=False, transform=lambda im: im.astype(np.float64) / 255,
                   target_transform=lambda t: t + 100)
    assert len(train) == 30 and len(test) == 8 and train.classes == CLASSES
    image, target = train[7]
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8 and isinstance(target, int)
    np.testing.assert_array_equal(image.reshape(-1), archive[2][0][7])
    assert target == archive[2][1][7]
    image, target = test[-1]
    np.testing.assert_allclose(image.reshape(-1), archive[2][2][-1] / 255)
    assert target == archive[2][3][-1] + 100
    with pytest.raises(IndexError, match="8"):
        test[8]
    with pytest.raises(TypeError, match="int"):
        test[1.0]


def test_read_batches_reads_only_the_named_files(tmp_path):
    batches, truth = make_batches()
    del batches["data_batch_2"]  # absent, but not asked for
    folder = write_folder(tmp_path, batches)
    got = read_batches(folder, ("test_batch",))
    assert set(got) == {"test_batch"}
    np.testing.assert_array_equal(got["test_batch"][0], truth[2])
    with pytest.raises(ValueError, match="data_batch_9"):
        read_batches(folder, ("data_batch_9",))


# ------------------------------------------------------------------ bad files
def test_missing_batch_file_named(tmp_path):
    batches, _ = make_batches()
    del batches["data_batch_3"]
    folder = write_folder(tmp_path / "f", batches)
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(folder)
    archive = write_tar(tmp_path / "c.tar.gz", batches)
    with pytest.raises(ValueError, match=r"c\.tar\.gz.*data_batch_3"):
        load_cifar10(archive)


BAD_BATCHES = [
    ("wrong shape", lambda d: {**d, "data": d["data"][:, :3000]}, r"\(N, 3072\).*\(6, 3000\)"),
    ("3-d data", lambda d: {**d, "data": d["data"].reshape(6, 3, 1024)}, r"\(6, 3, 1024\)"),
    ("float data", lambda d: {**d, "data": d["data"].astype(np.float32)}, "float32"),
    ("no images", lambda d: {**d, "data": d["data"][:0], "labels": []}, r"\(0, 3072\)"),
    ("label 10", lambda d: {**d, "labels": d["labels"][:4] + [10, 0]}, "label 10 at index 4"),
    ("label -1", lambda d: {**d, "labels": [-1] + d["labels"][1:]}, "label -1 at index 0"),
    ("float labels", lambda d: {**d, "labels": [0.5] * 6}, "integers.*float64"),
    ("label count", lambda d: {**d, "labels": d["labels"][:5]}, "5 labels for 6 images"),
    ("no labels key", lambda d: {k: v for k, v in d.items() if k != "labels"}, "'labels'"),
    ("not a dict", lambda d: [d["data"]], "expected a pickled dict, got list"),
]


@pytest.mark.parametrize("form", ["folder", "tar.gz"])
@pytest.mark.parametrize("case, change, message", BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
def test_bad_batch_content_named(tmp_path, form, case, change, message):
    batches, _ = make_batches()
    batches["data_batch_4"] = change(batches["data_batch_4"])
    if form == "folder":
        root = write_folder(tmp_path, batches)
    else:
        root = write_tar(tmp_path / "c.tar.gz", batches)
    with pytest.raises(ValueError, match=message) as info:
        load_cifar10(root)
    assert "data_batch_4" in str(info.value)


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_archive_is_an_error(tmp_path, archive, cut):
    blob = archive[0].read_bytes()
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(blob[:int(len(blob) * cut)])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        load_cifar10(path)
    assert str(path) in str(info.value)


def _truncated(archive, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(archive[0].read_bytes()[:200])
    return path


@pytest.mark.parametrize("how", ["root", "env", "read_batches"])
def test_a_bad_file_of_yours_is_described_not_deleted(tmp_path, archive, monkeypatch, how):
    """Your own file (root, $TINYGRAD_MINI_DATA, read_batches): say what a valid one is; never
    advise deleting it."""
    path = _truncated(archive, tmp_path / "mine" / "cifar-10-python.tar.gz")
    with pytest.raises(ValueError) as info:
        if how == "root":
            load_cifar10(path)
        elif how == "env":
            monkeypatch.setenv("TINYGRAD_MINI_DATA", str(path))
            CIFAR10(train=False)
        else:
            read_batches(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a readable CIFAR-10 archive, truncated or corrupt (")
    assert "expected the official python version, cifar-10-python.tar.gz (https://www.cs." in msg
    assert "or the cifar-10-batches-py/ folder extracted from it" in msg
    assert "delete" not in msg and path.read_bytes()  # still there


@pytest.mark.parametrize("how", ["cache_dir", "env_cache", "default_cache"])
def test_a_bad_archive_in_the_download_cache_is_to_be_deleted(tmp_path, archive, monkeypatch,
                                                              how):
    """The library's own copy: deleting it makes the next load download a fresh one."""
    cache = tmp_path / "cache" if how != "default_cache" else tmp_path / "home/.cache/tinygrad_mini"
    path = _truncated(archive, cache / "cifar-10-python.tar.gz")
    if how == "env_cache":
        monkeypatch.setenv("TINYGRAD_MINI_CACHE", str(cache))
    kwargs = {"cache_dir": cache} if how == "cache_dir" else {}
    with pytest.raises(ValueError) as info:
        load_cifar10(download=False, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a readable CIFAR-10 archive, truncated or corrupt (")
    assert msg.endswith("it is the download cache's copy: delete it and the next load "
                        "downloads it again")
    with pytest.raises(ValueError, match="delete it"):
        read_batches(path) if how != "cache_dir" else CIFAR10(cache_dir=cache, download=False)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_corrupted_archive_is_an_error(tmp_path, archive, where):
    blob = bytearray(archive[0].read_bytes())
    at = int(len(blob) * where)
    blob[at:at + 16] = bytes(b ^ 0x5A for b in blob[at:at + 16])
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupt"):
        load_cifar10(path)


def test_gzip_crc_is_checked(tmp_path, archive):
    """Damage the stored CRC only: every byte inflates fine, the trailer check must catch it."""
    blob = bytearray(archive[0].read_bytes())
    blob[-8] ^= 0xFF
    path = tmp_path / "badcrc.tar.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupt"):
        load_cifar10(path)


@pytest.mark.parametrize("content", [b"", b"not an archive at all" * 10, b"\x1f\x8b" + b"x" * 50])
def test_not_an_archive(tmp_path, content):
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="junk.tar.gz"):
        load_cifar10(path)


def test_corrupt_pickle_named(tmp_path):
    batches, _ = make_batches()
    batches["test_batch"] = pickle.dumps(batches["test_batch"], 2)[:-200]
    folder = write_folder(tmp_path, batches)
    with pytest.raises(ValueError, match="test_batch.*not a readable CIFAR-10 batch"):
        load_cifar10(folder)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_with_foreign_globals_is_refused(tmp_path, monkeypatch):
    batches, _ = make_batches()
    batches["data_batch_1"] = pickle.dumps({**batches["data_batch_1"], "evil": _Boom()}, 2)
    folder = write_folder(tmp_path, batches)
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    with pytest.raises(ValueError, match="refusing to load global"):
        load_cifar10(folder)
    assert calls == []


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols_load(tmp_path, protocol):
    batches, truth = make_batches()
    batches = {n: pickle.dumps(d, protocol=protocol) for n, d in batches.items()}
    assert_matches_truth(load_cifar10(write_folder(tmp_path, batches)), truth)


# ------------------------------------------------------------------ where the data comes from
def test_explicit_root_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_cifar10(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no CIFAR-10"):
        load_cifar10(tmp_path / "empty")


def test_explicit_file_skips_md5(archive):
    # the shared copy's md5 differs from the official one: a given file is used as it is
    assert_matches_truth(load_cifar10(archive[0], md5="0" * 32), archive[2])


def test_env_data_variable_is_used(monkeypatch, archive, tmp_path):
    monkeypatch.setenv("TINYGRAD_MINI_DATA", str(archive[0]))
    assert cifar10_path() == archive[0]
    assert_matches_truth(load_cifar10(download=False), archive[2])
    # an explicit cache_dir beats the variable
    batches, truth = make_batches(seed=5)
    write_folder(tmp_path / "cache", batches)
    assert_matches_truth(load_cifar10(cache_dir=tmp_path / "cache", download=False), truth)
    monkeypatch.setenv("TINYGRAD_MINI_DATA", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=r"\$TINYGRAD_MINI_DATA=.*gone"):
        load_cifar10()


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tinygrad_mini"
    with pytest.raises(FileNotFoundError, match=r"home/\.cache/tinygrad_mini.*TINYGRAD_MINI_DATA"):
        cifar10_path(download=False)
    monkeypatch.setenv("TINYGRAD_MINI_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    batches, truth = make_batches(seed=3)
    write_folder(tmp_path / "c", batches)
    assert cifar10_path(download=False) == tmp_path / "c" / "cifar-10-batches-py"
    assert_matches_truth(load_cifar10(download=False), truth)


def test_cache_dir_that_is_a_file(tmp_path, archive):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        load_cifar10(cache_dir=tmp_path / "f", url=archive[0].as_uri(), md5=archive[1])


def test_unreadable_cache_dir(monkeypatch, tmp_path, archive):
    (tmp_path / "c").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode: False if pathlib.Path(p) == tmp_path / "c"
                        else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"'.*/c' is not readable.*TINYGRAD_MINI_CACHE"):
        load_cifar10(cache_dir=tmp_path / "c", url=archive[0].as_uri(), md5=archive[1])


def test_read_only_cache_dir(monkeypatch, tmp_path, archive):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not (mode & os.W_OK)
                        and real_access(p, mode))
    with pytest.raises(PermissionError, match="is not writable"):
        load_cifar10(cache_dir=tmp_path / "c", url=archive[0].as_uri(), md5=archive[1])


def test_cache_dir_cannot_be_created(monkeypatch, tmp_path, archive):
    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))
    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    with pytest.raises(PermissionError, match="cannot be created.*Read-only file system"):
        load_cifar10(cache_dir=tmp_path / "c", url=archive[0].as_uri(), md5=archive[1])


# ------------------------------------------------------------------ downloads (loopback only)
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        kind, body = route
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "full":
            self.wfile.write(body)
        elif kind == "drop":  # half the promised bytes, then the connection closes
            self.wfile.write(body[:len(body) // 2])
        elif kind == "stall":  # some bytes, then silence until the test is over
            self.wfile.write(body[:100])
            self.wfile.flush()
            self.server.release.wait(30)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(archive):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    blob = archive[0].read_bytes()
    srv.routes = {"/cifar.tar.gz": ("full", blob), "/drop": ("drop", blob),
                  "/stall": ("stall", blob)}
    srv.hits, srv.release = [], threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def folder_listing(path):
    return sorted(p.name for p in pathlib.Path(path).iterdir())


def test_download_into_cache_then_reuse(server, archive, tmp_path):
    cache = tmp_path / "cache"
    url = server.base + "/cifar.tar.gz"
    before = len(server.hits)
    loaded = load_cifar10(cache_dir=cache, url=url, md5=archive[1], timeout=TIMEOUT,
                          progress=False)
    assert_matches_truth(loaded, archive[2])
    assert folder_listing(cache) == ["cifar-10-python.tar.gz"]
    assert md5sum(cache / "cifar-10-python.tar.gz") == archive[1]
    assert_matches_truth(load_cifar10(cache_dir=cache, url=url, md5=archive[1], timeout=TIMEOUT),
                         archive[2])
    assert server.hits[before:] == ["/cifar.tar.gz"]  # the second load did not download


def test_download_via_env_cache(monkeypatch, server, archive, tmp_path):
    monkeypatch.setenv("TINYGRAD_MINI_CACHE", str(tmp_path / "envcache"))
    path = cifar10_path(url=server.base + "/cifar.tar.gz", md5=archive[1], timeout=TIMEOUT,
                        progress=False)
    assert path == tmp_path / "envcache" / "cifar-10-python.tar.gz" and path.is_file()


def test_download_wrong_md5_leaves_nothing(server, archive, tmp_path):
    with pytest.raises(DownloadError, match=f"expected {'a' * 32}, got {archive[1]}"):
        load_cifar10(cache_dir=tmp_path, url=server.base + "/cifar.tar.gz", md5="A" * 32,
                     timeout=TIMEOUT, progress=False)
    assert folder_listing(tmp_path) == []


def test_download_connection_dropped_leaves_nothing(server, archive, tmp_path):
    with pytest.raises(DownloadError, match="/drop") as info:
        load_cifar10(cache_dir=tmp_path, url=server.base + "/drop", md5=archive[1],
                     timeout=TIMEOUT, progress=False)
    assert f"of {archive[0].stat().st_size}" in str(info.value)
    assert folder_listing(tmp_path) == []


def test_download_stall_times_out(server, archive, tmp_path):
    with pytest.raises(DownloadError, match="timed out"):
        download_url(server.base + "/stall", tmp_path / "x.tar.gz", archive[1], timeout=0.5,
                     progress=False)
    assert folder_listing(tmp_path) == []


def test_download_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_url(server.base + "/missing", tmp_path / "x", timeout=TIMEOUT, progress=False)
    assert folder_listing(tmp_path) == []


def test_download_refused_connection(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_address[1]
    srv.server_close()  # the port is now closed
    with pytest.raises(DownloadError, match="refused"):
        download_url(f"http://127.0.0.1:{port}/x", tmp_path / "x", timeout=TIMEOUT,
                     progress=False)


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"),
                                 KeyboardInterrupt()])
def test_failing_writer_keeps_previous_file(monkeypatch, server, archive, tmp_path, exc):
    target = tmp_path / "cifar-10-python.tar.gz"
    target.write_bytes(b"previous good file")

    class FailingFile:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += 1
            if self.n > 1:
                raise exc
            return self.f.write(b)

    @contextlib.contextmanager
    def failing_atomic_write(path, mode="wb"):
        with atomic_write(path, mode) as f:
            yield FailingFile(f)

    monkeypatch.setattr(download_mod, "_CHUNK", 4096)
    monkeypatch.setattr(download_mod, "atomic_write", failing_atomic_write)
    with pytest.raises(DownloadError if isinstance(exc, OSError) else KeyboardInterrupt):
        download_url(server.base + "/cifar.tar.gz", target, archive[1], timeout=TIMEOUT,
                     progress=False)
    assert target.read_bytes() == b"previous good file"
    assert folder_listing(tmp_path) == ["cifar-10-python.tar.gz"]


def test_download_from_file_url(archive, tmp_path):
    out = download_url(archive[0].as_uri(), tmp_path / "copy.tar.gz", archive[1], progress=False)
    assert out.read_bytes() == archive[0].read_bytes()


def test_progress_bar_tqdm_and_plain(monkeypatch, capsys, archive, tmp_path):
    download_url(archive[0].as_uri(), tmp_path / "a.tar.gz", archive[1], progress=True)
    assert "a.tar.gz" in capsys.readouterr().err
    monkeypatch.setattr(download_mod, "_tqdm", None)
    monkeypatch.setattr(download_mod, "_CHUNK", 1024)
    download_url(archive[0].as_uri(), tmp_path / "b.tar.gz", archive[1], progress=True)
    err = capsys.readouterr().err
    assert "b.tar.gz: 50%" in err and "b.tar.gz: 100%" in err
    download_url(archive[0].as_uri(), tmp_path / "c.tar.gz", archive[1], progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "ftp://127.0.0.1/x"}, "url must be"),
    ({"url": 5}, "url must be"),
    ({"md5": "xyz"}, "md5 must be 32 hex digits"),
    ({"timeout": 0}, "timeout must be a positive"),
    ({"timeout": float("inf")}, "timeout must be a positive"),
    ({"timeout": True}, "timeout must be a positive"),
])
def test_download_argument_errors(tmp_path, kwargs, message):
    args = {"url": "http://127.0.0.1:9/x", "md5": None, "timeout": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        download_url(args["url"], tmp_path / "x", args["md5"], timeout=args["timeout"])


def test_no_download_when_disabled(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(cache_dir=tmp_path, download=False)
    assert folder_listing(tmp_path) == []


# ------------------------------------------------------------------ preprocessing and split
@pytest.fixture(scope="module")
def raw(archive):
    return load_cifar10(archive[0])


def test_split_rows_and_mean_from_train_only(raw):
    s = split_cifar10(*raw, num_training=20, num_validation=6, num_test=5)
    rows_train, rows_test = raw[0].reshape(30, -1), raw[2].reshape(8, -1)
    mean = rows_train[:20].astype(np.float64).sum(axis=0) / 20
    np.testing.assert_allclose(s.mean_image, mean, rtol=1e-6)
    np.testing.assert_allclose(s.X_train, rows_train[:20] - mean, atol=1e-4)
    np.testing.assert_allclose(s.X_val, rows_train[20:26] - mean, atol=1e-4)
    np.testing.assert_allclose(s.X_test, rows_test[:5] - mean, atol=1e-4)
    np.testing.assert_allclose(s.X_test_full, rows_test - mean, atol=1e-4)
    np.testing.assert_array_equal(s.y_train, raw[1][:20])
    np.testing.assert_array_equal(s.y_val, raw[1][20:26])
    np.testing.assert_array_equal(s.y_test, raw[3][:5])
    np.testing.assert_array_equal(s.y_test_full, raw[3])
    assert s.X_train.dtype == np.float32 and s.y_train.dtype == np.int64
    assert s.X_train.shape == (20, 3072) and s.X_val.shape == (6, 3072)
    assert s.X_test.shape == (5, 3072) and s.X_test_full.shape == (8, 3072)
    assert set(s.as_dict()) >= {"X_train", "y_train", "X_val", "y_val", "X_test", "y_test"}


def test_mean_ignores_validation_and_test_rows(raw):
    X_train, y_train, X_test, y_test = (a.copy() for a in raw)
    kw = {"num_training": 20, "num_validation": 6, "num_test": 8}
    base = split_cifar10(X_train, y_train, X_test, y_test, **kw)
    X_train[20:] = 255
    X_test[:] = 255
    changed = split_cifar10(X_train, y_train, X_test, y_test, **kw)
    np.testing.assert_array_equal(base.mean_image, changed.mean_image)
    X_train[0] = 255 - X_train[0]  # a training row does move it
    moved = split_cifar10(X_train, y_train, X_test, y_test, **kw)
    assert not np.array_equal(base.mean_image, moved.mean_image)


def test_no_uint8_overflow():
    X = np.zeros((4, 3072), np.uint8)
    X[:2] = 255  # mean 127.5: 0 - 127.5 must be -127.5, not a wrapped 128.5
    y = np.zeros(4, np.int64)
    s = split_cifar10(X, y, X[:2].copy(), y[:2], num_training=4, num_validation=0, num_test=2)
    np.testing.assert_array_equal(s.X_train[2:], -127.5)
    np.testing.assert_array_equal(s.X_train[:2], 127.5)
    assert mean_image(X).dtype == np.float32 and mean_image(X, np.float64)[0] == 127.5
    none = split_cifar10(X, y, X, y, num_training=4, num_validation=0, num_test=4,
                         normalize="none")
    np.testing.assert_array_equal(none.X_train, X.astype(np.float32))
    assert none.mean_image is None


def test_torch_normalisation_closed_form_and_torch():
    X = np.array([[0, 51, 127, 128, 255]], np.uint8)
    np.testing.assert_allclose(normalize_torch(X, np.float64), [[-1, -0.6, -1 / 255, 1 / 255, 1]])
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(0).integers(0, 256, (7, 3072), dtype=np.uint8)
    ref = torch.from_numpy(X).float().div(255).sub(0.5).div(0.5).numpy()
    np.testing.assert_array_equal(normalize_torch(X), ref)  # bit-identical to torch's order


def test_split_torch_and_shapes(raw):
    s = split_cifar10(*raw, num_training=25, num_validation=5, num_test=None,
                      normalize="torch", dtype=np.float64, flatten=False)
    assert s.X_train.shape == (25, 3, 32, 32) and s.X_val.shape == (5, 3, 32, 32)
    assert s.X_test.shape == s.X_test_full.shape == (8, 3, 32, 32)
    assert s.X_train.dtype == np.float64 and s.mean_image is None
    np.testing.assert_allclose(s.X_val, (raw[0][25:] / 255 - 0.5) / 0.5)
    m = split_cifar10(*raw, num_training=25, num_validation=5, num_test=8, flatten=False)
    assert m.mean_image.shape == (3, 32, 32)


def test_get_cifar10_data(archive):
    s = get_cifar10_data(archive[0], num_training=28, num_validation=2, num_test=3)
    rows = archive[2][0]
    np.testing.assert_allclose(s.X_val, rows[28:] - rows[:28].mean(axis=0), atol=1e-4)
    assert s.X_test.shape == (3, 3072) and s.X_test_full.shape == (8, 3072)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"num_training": 29, "num_validation": 2}, ValueError, "num_training=29 \\+ num_valid"),
    ({"num_test": 9}, ValueError, "num_test=9 exceeds the 8"),
    ({"num_training": -1}, ValueError, "num_training must be >= 0, got -1"),
    ({"num_validation": 1.5}, TypeError, "num_validation must be an int"),
    ({"num_test": True}, TypeError, "num_test must be an int"),
    ({"num_training": 0, "num_validation": 0}, ValueError, "needs num_training >= 1"),
    ({"normalize": "zscore"}, ValueError, "normalize must be one of"),
    ({"dtype": np.int32}, TypeError, "floating dtype, got int32"),
    ({"dtype": "nonsense"}, TypeError, "floating dtype"),
])
def test_split_argument_errors(raw, kwargs, error, message):
    args = {"num_training": 20, "num_validation": 5, "num_test": 5, **kwargs}
    with pytest.raises(error, match=message):
        split_cifar10(*raw, **args)


def test_split_defaults_are_not_clipped(raw):
    with pytest.raises(ValueError, match="num_training=49000 \\+ num_validation=1000 exceeds"):
        split_cifar10(*raw)
    with pytest.raises(ValueError, match="num_test=1000 exceeds the 8 test images"):
        split_cifar10(*raw, num_training=20, num_validation=5)


def test_split_input_errors(raw):
    X, y, Xt, yt = raw
    with pytest.raises(ValueError, match="X_train has 30 images but y_train has 29"):
        split_cifar10(X, y[:29], Xt, yt, num_training=20)
    with pytest.raises(TypeError, match="y_test must be a 1-d integer array"):
        split_cifar10(X, y, Xt, yt.astype(float), num_training=20)
    with pytest.raises(TypeError, match="y_train must be a 1-d integer array"):
        split_cifar10(X, y[:, None], Xt, yt, num_training=20)
    with pytest.raises(TypeError, match="X_train must hold real numbers"):
        split_cifar10(X.astype(complex), y, Xt, yt, num_training=20)
    with pytest.raises(TypeError, match="X_test must be a numpy array"):
        split_cifar10(X, y, Xt.tolist(), yt, num_training=20)
    with pytest.raises(ValueError, match="differ in shape"):
        split_cifar10(X, y, Xt.reshape(8, -1), yt, num_training=20)
    with pytest.raises(ValueError, match="at least one training image"):
        mean_image(X[:0])


# ------------------------------------------------------------------ DataLoader
def collect(loader):
    return [tuple(t.numpy().copy() for t in batch) for batch in loader]


@given(n=st.integers(1, 40), batch_size=st.integers(1, 15), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2**32))
def test_loader_epoch_covers_data(n, batch_size, shuffle, drop_last, seed):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    loader = DataLoader((X, y), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
    batches = collect(loader)
    full, rest = divmod(n, batch_size)
    assert len(batches) == len(loader) == full + (rest > 0 and not drop_last)
    for k, (xb, yb) in enumerate(batches):
        expected = rest if (k == full and rest) else batch_size
        assert len(xb) == len(yb) == expected
        np.testing.assert_array_equal(xb, X[yb])  # rows and labels stay paired
    seen = np.concatenate([yb for _, yb in batches]) if batches else np.array([], int)
    np.testing.assert_array_equal(seen, loader.epoch_order(0)[:len(seen)])
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), y)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))


def test_loader_yields_tensors_without_copy():
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = np.arange(10, dtype=np.int64)
    xb, yb = next(iter(DataLoader((X, y), 4)))
    assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
    assert xb.dtype == np.float64 and yb.dtype == np.int64 and not xb.requires_grad
    assert np.shares_memory(xb.numpy(), X) and np.shares_memory(yb.numpy(), y)
    (single,) = [next(iter(DataLoader(Tensor(X), 10)))]
    assert isinstance(single, Tensor) and single.shape == (10, 3)
    xs, ys = next(iter(DataLoader(TensorDataset(X, y), 3, shuffle=True, seed=1)))
    np.testing.assert_array_equal(xs.numpy(), X[ys.numpy()])


def test_loader_deterministic_per_seed_and_epoch():
    data = (np.arange(50.0), np.arange(50))
    a = DataLoader(data, 7, shuffle=True, seed=3)
    b = DataLoader(data, 7, shuffle=True, seed=3)
    c = DataLoader(data, 7, shuffle=True, seed=4)
    ea = [np.concatenate([yb.numpy() for _, yb in a]) for _ in range(3)]
    eb = [np.concatenate([yb.numpy() for _, yb in b]) for _ in range(3)]
    for k in range(3):
        np.testing.assert_array_equal(ea[k], eb[k])
        np.testing.assert_array_equal(ea[k], a.epoch_order(k))
    assert not np.array_equal(ea[0], ea[1])  # each epoch has its own order
    assert not np.array_equal(ea[0], c.epoch_order(0))
    assert a.epoch == 3 and a.state_dict()["epoch"] == 3
    assert isinstance(DataLoader(data, 7, shuffle=True).seed, int)


@given(n=st.integers(1, 30), batch_size=st.integers(1, 8), stop=st.integers(0, 80),
       drop_last=st.booleans())
def test_loader_resume_is_exact(n, batch_size, stop, drop_last):
    data = (np.arange(n, dtype=np.float32), np.arange(n))

    def stream(loader, epochs):
        for _ in range(epochs):
            for _, yb in loader:
                yield yb.numpy().tolist()

    a = DataLoader(data, batch_size, shuffle=True, drop_last=drop_last, seed=11)
    reference = list(stream(a, 4))
    a = DataLoader(data, batch_size, shuffle=True, drop_last=drop_last, seed=11)
    it = stream(a, 4)
    head = [next(it) for _ in range(min(stop, len(reference)))]
    state = a.state_dict()
    b = DataLoader(data, batch_size, shuffle=True, drop_last=drop_last, seed=999)
    b.load_state_dict(state)
    tail = list(stream(b, 4))
    assert head + tail[:len(reference) - len(head)] == reference


def test_abandoned_pass_counts_as_an_epoch():
    loader = DataLoader((np.arange(20.0), np.arange(20)), 5, shuffle=True, seed=0)
    for _ in loader:
        break
    assert loader.state_dict()["batch"] == 1
    second = np.concatenate([yb.numpy() for _, yb in loader])
    np.testing.assert_array_equal(second, loader.epoch_order(1))


class ListDataset:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((2, 2), i, np.float32), i


def test_loader_collates_a_dataset():
    loader = DataLoader(ListDataset(7), 3, shuffle=True, seed=2)
    batches = list(loader)
    assert [len(yb) for _, yb in batches] == [3, 3, 1]
    for xb, yb in batches:
        assert xb.shape == (len(yb), 2, 2) and yb.dtype == np.int64
        np.testing.assert_array_equal(xb.numpy()[:, 0, 0], yb.numpy())
    samples = [np.arange(3.0), np.arange(3.0) + 1, np.arange(3.0) + 2]  # a list is a dataset
    images = list(DataLoader(samples, 2))
    assert images[0].shape == (2, 3) and images[1].shape == (1, 3)


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((np.arange(5.0),), {"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
    ((np.arange(5.0),), {"batch_size": -3}, ValueError, "got -3"),
    ((np.arange(5.0),), {"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ((np.arange(5.0),), {"batch_size": True}, TypeError, "batch_size must be an int"),
    (((np.arange(5.0), np.arange(4)),), {}, ValueError, r"lengths \[5, 4\]"),
    (((np.zeros((0, 3)), np.zeros(0)),), {}, ValueError, "empty"),
    ((ListDataset(0),), {}, ValueError, "empty"),
    (((np.array(["a", "b"]),),), {}, TypeError, "dtype <U1"),
    (((np.float64(3.0),),), {}, TypeError, "got float64"),
    (((np.array(3.0),),), {}, ValueError, "0-d"),
    ((5,), {}, TypeError, "got int"),
    ((np.arange(5.0),), {"seed": -1}, ValueError, "seed must be >= 0"),
    ((np.arange(5.0),), {"shuffle": "yes"}, TypeError, "shuffle and drop_last must be bools"),
])
def test_loader_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        DataLoader(*args, **kwargs)


def test_loader_state_errors():
    loader = DataLoader((np.arange(10.0), np.arange(10)), 3, shuffle=True, seed=0)
    state = loader.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['seed'\]"):
        loader.load_state_dict({k: v for k, v in state.items() if k != "seed"})
    with pytest.raises(ValueError, match="num_samples=11 but this loader has num_samples=10"):
        loader.load_state_dict({**state, "num_samples": 11})
    with pytest.raises(ValueError, match="state\\['batch'\\]=5 exceeds the 4 batches"):
        loader.load_state_dict({**state, "batch": 5})
    with pytest.raises(TypeError, match="state must be a dict"):
        loader.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="differ in shape"):
        list(DataLoader([np.zeros(2), np.zeros(3)], 2))


# ------------------------------------------------------------------ sampling with replacement
def test_sample_batches_matches_reference_draws():
    X = np.arange(40.0).reshape(20, 2)
    y = np.arange(20)
    batches = list(sample_batches(X, y, 8, 5, np.random.RandomState(42)))
    ref = np.random.RandomState(42)
    assert len(batches) == 5
    for xb, yb in batches:
        idx = ref.choice(20, 8)  # the reference: np.random.choice(num_train, batch_size)
        np.testing.assert_array_equal(yb, idx)
        np.testing.assert_array_equal(xb, X[idx])
    a = [yb for _, yb in sample_batches(X, y, 8, 3, rng=7)]
    b = [yb for _, yb in sample_batches(X, y, 8, 3, rng=np.random.default_rng(7))]
    np.testing.assert_array_equal(a, b)


def test_sample_batches_draws_with_replacement():
    _, yb = next(sample_batches(np.arange(3.0), np.arange(3), 50, 1, rng=0))
    assert len(yb) == 50 and set(yb.tolist()) == {0, 1, 2}
    assert list(sample_batches(np.arange(3.0), np.arange(3), 2, 0)) == []


@pytest.mark.parametrize("args, error, message", [
    ((np.arange(3.0), np.arange(4), 2, 1), ValueError, r"lengths \[3, 4\]"),
    ((np.arange(3.0), np.arange(3), 0, 1), ValueError, "batch_size must be >= 1"),
    ((np.arange(3.0), np.arange(3), 2, -1), ValueError, "num_iters must be >= 0"),
    ((np.zeros(0), np.zeros(0, int), 2, 1), ValueError, "empty"),
    ((np.arange(3.0), np.arange(3), 2, 1, "seed"), TypeError, "rng must be"),
])
def test_sample_batches_errors(args, error, message):
    with pytest.raises(error, match=message):
        sample_batches(*args)
