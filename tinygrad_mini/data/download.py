"""The cache directory and downloads into it: streamed, md5-checked on the fly, written atomically.
A failed or interrupted download restarts from zero next time: nothing is ever left under the final
name, and the temporary `.<name>.*.part` file is removed (only a killed process can leave one)."""
from __future__ import annotations

import errno
import hashlib
import http.client
import math
import os
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .._io import atomic_write

CACHE_ENV = "TINYGRAD_MINI_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/tinygrad_mini"
_CHUNK = 1 << 20

try:
    from tqdm import tqdm as _tqdm
except ImportError:  # tqdm is optional: a plain progress line on stderr instead
    _tqdm = None


class DownloadError(RuntimeError):
    """A download failed (network error, short read, checksum mismatch); nothing was saved."""


def default_cache_dir() -> pathlib.Path:
    """$TINYGRAD_MINI_CACHE if set, else ~/.cache/tinygrad_mini (not created here)."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _cache_error(path: pathlib.Path, what: str, err: OSError | None = None) -> OSError:
    detail = f" ({err.strerror or err})" if err is not None else ""
    msg = (f"cache directory {str(path)!r} {what}{detail}; pass cache_dir=... or set "
           f"{CACHE_ENV} to another folder, or pass the data path explicitly")
    denied = err is None or isinstance(err, PermissionError) or err.errno == errno.EROFS
    return PermissionError(msg) if denied else OSError(msg)


def check_cache_dir(path: str | os.PathLike, create: bool = False) -> pathlib.Path:
    """The cache folder as a Path, checked readable (and, with create=True, made and writable)."""
    path = pathlib.Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"cache directory {str(path)!r} exists but is not a directory")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _cache_error(path, "cannot be created", e) from e
        if not os.access(path, os.W_OK | os.X_OK):
            raise _cache_error(path, "is not writable")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise _cache_error(path, "is not readable")
    return path


def md5sum(path: str | os.PathLike) -> str:
    """The hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _PlainBar:
    """The progress bar used when tqdm is not installed: a line on stderr at every 10%."""

    def __init__(self, total: int | None, desc: str):
        self.total, self.desc, self.done, self._shown = total, desc, 0, -1

    def update(self, n: int) -> None:
        self.done += n
        if self.total:
            tenth = min(10, self.done * 10 // self.total)
            if tenth > self._shown:
                self._shown = tenth
                print(f"{self.desc}: {tenth * 10}% ({self.done}/{self.total} bytes)",
                      file=sys.stderr, flush=True)

    def __enter__(self) -> "_PlainBar":
        return self

    def __exit__(self, *exc) -> bool:
        if not self.total:
            print(f"{self.desc}: {self.done} bytes", file=sys.stderr, flush=True)
        return False


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc) -> bool:
        return False


def _progress_bar(total: int | None, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    if _tqdm is not None:
        return _tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                     leave=True)
    return _PlainBar(total, desc)


def _check_download_args(url: Any, md5: Any, timeout: Any) -> None:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https",
                                                                            "file"):
        raise ValueError(f"url must be an http://, https:// or file:// address, got {url!r}")
    if md5 is not None and not (isinstance(md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
        raise ValueError(f"md5 must be 32 hex digits or None, got {md5!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def download_url(url: str, path: str | os.PathLike, md5: str | None = None, *,
                 timeout: float = 60.0, progress: bool = True) -> pathlib.Path:
    """Stream url to path, hashing as it goes; path appears only when complete and md5-verified.

    timeout bounds the connection and every read (seconds). md5=None skips verification. Raises
    DownloadError on a network error, a short read or a checksum mismatch, with nothing saved.
    """
    _check_download_args(url, md5, timeout)
    path = pathlib.Path(path)
    digest, received, total = hashlib.md5(), 0, None
    if progress:
        print(f"downloading {url} to {path}", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_write(path) as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress_bar(total, path.name, progress) as bar:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise DownloadError(f"download of {url} stopped after {received} of {total} "
                                    f"bytes; nothing was saved to {str(path)!r}")
            if md5 is not None and digest.hexdigest() != md5.lower():
                raise DownloadError(f"md5 mismatch for {url}: expected {md5.lower()}, got "
                                    f"{digest.hexdigest()} ({received} bytes); nothing was saved "
                                    f"to {str(path)!r}")
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        of_total = f" of {total}" if total is not None else ""
        raise DownloadError(f"download of {url} failed after {received}{of_total} bytes: "
                            f"{e}; nothing was saved to {str(path)!r}") from e
    return path
