"""Embedding stores: one forward pass per unique sample, in memory or on disk.

Two stores share one interface (``get_many(keys, width)``, ``put_many(keys,
rows)``); keys come from :mod:`sktransfer._keys`.

- :class:`MemoryCache` (``cache="memory"``, the default): bounded by bytes, LRU,
  process-wide, so clones, CV folds and grid points in one process share it.
- :class:`DiskCache` (``cache="/some/dir"``): one ``.npy`` file per key, shared
  by processes, runs and machines (it needs nothing but atomic renames, so it
  also works on network file systems). Each file is written under a temporary
  name, flushed to disk and renamed, so a reader sees a whole row or none, and a
  kill at any moment loses at most the batch being written. Every row read is
  checked (a readable ``.npy``, float32, 1-D, the expected width); a bad one is
  deleted and recomputed. Temporary files left by killed writers are removed.
  A read-only or full directory turns into a :class:`~sktransfer.exceptions.
  CacheWarning`, and the embeddings are still returned.

A store is a *handle*: ``clone`` (and ``copy.deepcopy``) return the same object,
so every clone of an estimator shares the caller's store and its counters.
Pickling carries the settings only (never rows or locks); unpickled in the same
process it is the same object again, and in another process one shared object per
original.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from sktransfer.exceptions import CacheWarning

__all__ = [
    "DiskCache",
    "MemoryCache",
    "clear_store_handles",
    "get_cache",
    "memory_cache",
]

DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB of float32 embeddings
DEFAULT_DISK_BYTES = 10 << 30
_HOST = socket.gethostname().replace(".", "_")
_ORPHAN_AGE_S = 3600  # another machine's temporary file older than this is dead

_HANDLES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _restore(cls, token: str, settings: dict):
    """Unpickle a store: the live one with this token, or a new shared one."""
    store = _HANDLES.get(token)
    if store is None:
        store = cls(**settings)
        store._register(token)
    return store


class _Store:
    """What both stores share: a handle under clone, deepcopy and pickle."""

    def _register(self, token: str | None = None) -> None:
        self._token = token or uuid.uuid4().hex
        _HANDLES[self._token] = self

    def _settings(self) -> dict:
        raise NotImplementedError  # pragma: no cover

    def __reduce__(self):
        return _restore, (type(self), self._token, self._settings())

    def __sklearn_clone__(self):
        return self  # clones share the caller's store

    def __deepcopy__(self, memo):
        return self


class MemoryCache(_Store):
    """A thread-safe LRU of embedding rows, bounded by their total bytes.

    Parameters
    ----------
    max_bytes : int
        Least recently used rows go first past this total.

    Attributes
    ----------
    hits, misses : int
        Lookups served and not served.

    Examples
    --------
    >>> import numpy as np
    >>> store = MemoryCache(max_bytes=1024)
    >>> store.put_many(["a"], np.ones((1, 4), np.float32))
    >>> [r is not None for r in store.get_many(["a", "b"])]
    [True, False]
    """

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES):
        self.max_bytes = int(max_bytes)
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._register()

    def _settings(self) -> dict:
        return {"max_bytes": self.max_bytes}

    def get_many(
        self, keys: list[str | None], width: int | None = None
    ) -> list[np.ndarray | None]:
        """The stored row of each key (None where there is none)."""
        out = []
        with self._lock:
            for k in keys:
                row = self._rows.get(k) if k is not None else None
                if row is not None and width is not None and row.shape != (width,):
                    row = None
                if row is not None:
                    self._rows.move_to_end(k)
                    self.hits += 1
                else:
                    self.misses += 1
                out.append(row)
        return out

    def put_many(self, keys: list[str], rows: np.ndarray) -> None:
        """Store one row per key (read-only copies)."""
        with self._lock:
            for k, row in zip(keys, rows, strict=True):
                if k is None or k in self._rows:
                    continue
                row = np.array(row, dtype=np.float32, copy=True)
                row.setflags(write=False)
                self._rows[k] = row
                self._bytes += row.nbytes
            while self._bytes > self.max_bytes and self._rows:
                _, old = self._rows.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        """Remove every row."""
        with self._lock:
            self._rows.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the stored rows."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._rows)


class DiskCache(_Store):
    """Embedding rows as ``.npy`` files under ``directory`` (shared by processes).

    Parameters
    ----------
    directory : str or PathLike
        Created if missing. Safe to share between processes, runs and machines.
    max_bytes : int
        Past this much disk space (allocated blocks, not file sizes), the least
        recently written files are removed.

    Attributes
    ----------
    hits, misses : int
        Lookups served and not served.
    replaced : int
        Corrupt, truncated or foreign entries found, deleted and recomputed.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> store = DiskCache(tempfile.mkdtemp())
    >>> store.put_many(["ab12"], np.ones((1, 3), np.float32))
    >>> store.get_many(["ab12"], width=3)[0]
    array([1., 1., 1.], dtype=float32)
    >>> store.get_many(["ab12"], width=5)  # a foreign width is never served
    [None]
    """

    def __init__(
        self, directory: str | os.PathLike, max_bytes: int = DEFAULT_DISK_BYTES
    ):
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0
        self.replaced = 0
        self._lock = threading.Lock()
        self._used: int | None = None  # bytes on disk, learnt by one scan
        self._opened = False
        self._writable = True
        self._register()

    def _settings(self) -> dict:
        return {"directory": str(self.directory), "max_bytes": self.max_bytes}

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    # ------------------------------------------------------------ opening
    def _open(self) -> None:
        with self._lock:
            if self._opened:
                return
            self._opened = True
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._warn(f"cannot create {self.directory} ({exc})")
                return
            self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Delete temporary files whose writer is dead (killed mid-write)."""
        now = time.time()
        for tmp in self.directory.glob("*/*.tmp"):
            parts = tmp.name.split(".")  # <key>.<host>.<pid>.<random>.tmp
            try:
                host, pid = parts[1], int(parts[2])
            except (IndexError, ValueError):
                host, pid = "", -1
            try:
                dead = (
                    not _alive(pid)
                    if host == _HOST
                    else now - tmp.stat().st_mtime > _ORPHAN_AGE_S
                )
                if dead:
                    tmp.unlink()
            except OSError:
                continue

    def _warn(self, why: str) -> None:
        if self._writable:
            warnings.warn(
                f"the embedding cache at {self.directory} is not written: {why}. "
                "Embeddings are still computed and returned; pass another "
                "directory (or cache=None) to silence this.",
                CacheWarning,
                stacklevel=4,
            )
        self._writable = False

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    # ------------------------------------------------------------ rows
    def get_many(
        self, keys: list[str | None], width: int | None = None
    ) -> list[np.ndarray | None]:
        """The stored row of each key; bad entries are deleted (and counted)."""
        self._open()
        out = []
        for k in keys:
            row = self._read(k, width) if k is not None else None
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
            out.append(row)
        return out

    def _read(self, key: str, width: int | None) -> np.ndarray | None:
        path = self._path(key)
        try:
            row = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):  # truncated, empty or foreign
            row = None
        good = (
            row is not None
            and row.dtype == np.float32
            and row.ndim == 1
            and (width is None or row.shape[0] == width)
        )
        if good:
            return row
        self.replaced += 1
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put_many(self, keys: list[str | None], rows: np.ndarray) -> None:
        """Write one row per key: atomically, durably, replacing bad entries."""
        self._open()
        if not self._writable:
            return
        dirs, written = set(), 0
        try:
            for k, row in zip(keys, rows, strict=True):
                if k is None:
                    continue
                path = self._path(k)
                path.parent.mkdir(exist_ok=True)
                written += _write_atomic(path, np.asarray(row, dtype=np.float32))
                dirs.add(path.parent)
            for d in dirs:  # make the renames durable too
                _fsync_dir(d)
        except OSError as exc:
            self._warn(str(exc))
            return
        with self._lock:
            if self._used is not None:
                self._used += written
        if self._used is None or self._used > self.max_bytes:
            self.prune()

    # ------------------------------------------------------------ size
    def files(self) -> list[Path]:
        """The row files now on disk."""
        return list(self.directory.glob("*/*.npy"))

    @property
    def nbytes(self) -> int:
        """Disk space the rows take (allocated blocks)."""
        return sum(_disk_size(p)[1] for p in self.files())

    def prune(self) -> None:
        """Rescan; remove the oldest files until the total fits in
        ``max_bytes`` (then to 90 % of it, so the next writes do not rescan)."""
        entries = [e for e in map(_disk_size, self.files()) if e[0] is not None]
        total = sum(size for _, size, _ in entries)
        if total > self.max_bytes:
            target = int(self.max_bytes * 0.9)
            for _, size, p in sorted(entries, key=lambda e: e[0]):
                if total <= target:
                    break
                p.unlink(missing_ok=True)
                total -= size
        with self._lock:
            self._used = total

    def clear(self) -> None:
        """Delete every row file."""
        for p in self.files():
            p.unlink(missing_ok=True)
        with self._lock:
            self._used = 0

    def __len__(self) -> int:
        return len(self.files())


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _write_atomic(path: Path, row: np.ndarray) -> int:
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"{path.stem}.{_HOST}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, row, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see all or nothing
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return _disk_size(path)[1]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _disk_size(p: Path) -> tuple[int | None, int, Path]:
    """(mtime_ns, allocated bytes, path); (None, 0, path) if it is gone."""
    try:
        st = p.stat()
    except FileNotFoundError:
        return None, 0, p
    blocks = getattr(st, "st_blocks", None)
    return st.st_mtime_ns, (blocks * 512 if blocks else st.st_size), p


# ---------------------------------------------------------------- handles
_MEMORY = MemoryCache()
_MEMORY._register("memory")  # unpickled anywhere, it is that process's default
_DISK: dict[str, DiskCache] = {}
_DISK_LOCK = threading.Lock()


def get_cache(cache: Any) -> MemoryCache | DiskCache | None:
    """The store for an estimator's ``cache`` parameter.

    ``"memory"``: the process-wide memory cache; a store object: itself; a path:
    one shared :class:`DiskCache` per directory; None: no cache. A string that
    looks like a typo of ``"memory"`` is an error, never a new directory.
    """
    if cache is None:
        return None
    if isinstance(cache, _Store):
        return cache
    if isinstance(cache, str):
        if cache == "memory":
            return _MEMORY
        if cache == "":
            raise ValueError("cache='' is not a directory; use None for no cache.")
        bare = cache.strip().strip("'\"").lower()
        typo = bare == "memory" or difflib.get_close_matches(bare, ["memory"], 1, 0.8)
        if typo and not os.path.isdir(cache):
            raise ValueError(
                f"cache={cache!r} looks like a typo of 'memory' (the in-memory "
                "cache). To use a directory of that name, pass a path: "
                f"cache=pathlib.Path({cache!r}) or cache='./{cache}'."
            )
    path = os.path.abspath(os.fspath(cache))
    with _DISK_LOCK:
        if path not in _DISK:
            _DISK[path] = DiskCache(path)
        return _DISK[path]


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


def clear_store_handles() -> None:
    """Empty the default memory cache and forget the per-directory handles
    (files on disk are kept: delete them with :meth:`DiskCache.clear`)."""
    _MEMORY.clear()
    with _DISK_LOCK:
        _DISK.clear()
