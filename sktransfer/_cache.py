"""A content-addressed embedding cache: one forward pass per unique sample.

Key = a fingerprint of everything that changes the output (weights identity,
preprocessing, layer, pooling, precision, max length, normalisation) + the
sample's content:

- text: its UTF-8 bytes;
- a file path: absolute path + size + modification time (a changed file gets a new
  key, so it is never served stale);
- bytes / arrays / PIL images: their bytes (plus dtype, shape or mode).

Two stores share one interface:

- :class:`MemoryCache` (``cache="memory"``, the default): bounded by bytes, LRU,
  process-wide, so clones, CV folds and grid points in one process share it.
- :class:`DiskCache` (``cache="/some/dir"``): one ``.npy`` file per key, written
  to a temporary name and renamed atomically, so concurrent writers (loky workers,
  separate runs) never corrupt it; pruned oldest-first past ``max_bytes``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DiskCache",
    "MemoryCache",
    "clear_memory_cache",
    "get_cache",
    "sample_key",
]

DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB of float32 embeddings
DEFAULT_DISK_BYTES = 10 << 30


def fingerprint(*parts: Any) -> str:
    """Hash of the settings that change an embedding."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def sample_key(prefix: str, value: Any) -> str | None:
    """The cache key of one sample, or None if it cannot be keyed safely."""
    h = hashlib.blake2b(prefix.encode(), digest_size=20)
    if isinstance(value, str):
        h.update(b"s")
        h.update(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, os.PathLike):
        try:
            st = os.stat(value)
        except OSError:
            return None
        h.update(f"p{os.path.abspath(value)}:{st.st_size}:{st.st_mtime_ns}".encode())
    elif isinstance(value, bytes | bytearray | memoryview):
        h.update(b"b")
        h.update(value)
    elif isinstance(value, np.ndarray):
        h.update(f"a{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).data)
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            return None
        if not isinstance(value, Image.Image):
            return None
        h.update(
            f"i{value.mode}{value.size}{sorted(value.info.items())!r:.200}".encode()
        )
        h.update(value.tobytes())
    return h.hexdigest()


def image_path_key(prefix: str, value: str) -> str | None:
    """Key of a str that names an image file: path + size + mtime."""
    return sample_key(prefix, Path(value))


class MemoryCache:
    """A thread-safe LRU of embedding rows, bounded by their total bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES):
        self.max_bytes = int(max_bytes)
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str | None]) -> list[np.ndarray | None]:
        out = []
        with self._lock:
            for k in keys:
                row = self._rows.get(k) if k is not None else None
                if row is not None:
                    self._rows.move_to_end(k)
                    self.hits += 1
                else:
                    self.misses += 1
                out.append(row)
        return out

    def put_many(self, keys: list[str], rows: np.ndarray) -> None:
        with self._lock:
            for k, row in zip(keys, rows, strict=True):
                if k in self._rows:
                    continue
                row = np.array(row, dtype=np.float32, copy=True)
                row.setflags(write=False)
                self._rows[k] = row
                self._bytes += row.nbytes
            while self._bytes > self.max_bytes and self._rows:
                _, old = self._rows.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._rows)


class DiskCache:
    """Embedding rows as ``.npy`` files under ``directory`` (shared by processes).

    Parameters
    ----------
    directory : str or PathLike
        Created if missing. Safe to share between processes and runs.
    max_bytes : int
        Past this total, the least recently written files are removed.
    """

    def __init__(
        self, directory: str | os.PathLike, max_bytes: int = DEFAULT_DISK_BYTES
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get_many(self, keys: list[str | None]) -> list[np.ndarray | None]:
        out = []
        for k in keys:
            row = None
            if k is not None:
                try:
                    row = np.load(self._path(k), allow_pickle=False)
                except (OSError, ValueError):  # missing, or a partial foreign file
                    row = None
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
            out.append(row)
        return out

    def put_many(self, keys: list[str], rows: np.ndarray) -> None:
        for k, row in zip(keys, rows, strict=True):
            path = self._path(k)
            if path.exists():
                continue
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, np.asarray(row, dtype=np.float32), allow_pickle=False)
                os.replace(tmp, path)  # atomic: readers see all or nothing
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self.prune()

    def files(self) -> list[Path]:
        return list(self.directory.glob("*/*.npy"))

    @property
    def nbytes(self) -> int:
        return sum(_size(p) for p in self.files())

    def prune(self) -> None:
        """Remove the oldest files until the total is within ``max_bytes``."""
        files = []
        for p in self.files():
            try:
                st = p.stat()
            except FileNotFoundError:  # removed by another process
                continue
            files.append((st.st_mtime_ns, st.st_size, p))
        total = sum(s for _, s, _ in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size

    def clear(self) -> None:
        for p in self.files():
            p.unlink(missing_ok=True)


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0


_MEMORY = MemoryCache()
_DISK: dict[str, DiskCache] = {}


def get_cache(cache: Any) -> MemoryCache | DiskCache | None:
    """The store for an extractor's ``cache`` parameter."""
    if cache is None:
        return None
    if isinstance(cache, MemoryCache | DiskCache):
        return cache
    if cache == "memory":
        return _MEMORY
    path = os.path.abspath(os.fspath(cache))
    if path not in _DISK:
        _DISK[path] = DiskCache(path)
    return _DISK[path]


def clear_memory_cache() -> None:
    """Empty the process-wide in-memory embedding cache."""
    _MEMORY.clear()


def memory_cache() -> MemoryCache:
    """The process-wide in-memory cache behind ``cache="memory"``.

    Read its ``hits`` / ``misses``, or size it: a new ``max_bytes`` applies from
    the next insertion (least recently used rows go first).

    Examples
    --------
    >>> from sktransfer import memory_cache
    >>> store = memory_cache()
    >>> store.max_bytes = 256 * 2**20  # 256 MiB instead of the default 1 GiB
    >>> store.max_bytes
    268435456
    >>> store.max_bytes = 2**30
    """
    return _MEMORY
