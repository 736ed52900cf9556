"""Embedding stores and their handles: one forward pass per unique sample.

Two stores share one interface (``get_many(keys, width)``, ``put_many(keys,
rows)``); keys come from :mod:`sktransfer._keys`.

- :class:`MemoryCache` (``cache="memory"``, the default): bounded by bytes, LRU,
  process-wide, so clones, CV folds and grid points in one process share it.
- :class:`~sktransfer.DiskCache` (``cache="/some/dir"``): one segment file per
  batch, crash-safe (see :mod:`sktransfer._disk_cache`).

Both are handles (:mod:`sktransfer._store`): clones share the caller's store.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from sktransfer._disk_cache import DiskCache
from sktransfer._store import Store

__all__ = [
    "DiskCache",
    "MemoryCache",
    "Store",
    "clear_store_handles",
    "get_cache",
    "memory_cache",
]

DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB of float32 embeddings


class MemoryCache(Store):
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
    if isinstance(cache, Store):
        return cache
    if isinstance(cache, str):
        if cache == "memory":
            return _MEMORY
        if cache == "":
            raise ValueError("cache='' is not a directory; use None for no cache.")
        bare = cache.strip().strip("'\"").lower()
        looks_like_path = "/" in cache or os.sep in cache
        typo = bare == "memory" or difflib.get_close_matches(bare, ["memory"], 1, 0.81)
        if typo and not looks_like_path and not os.path.isdir(cache):
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
