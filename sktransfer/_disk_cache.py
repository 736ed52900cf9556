"""The on-disk embedding store: crash-safe, self-healing, shared by processes.

One ``.npy`` file per key, so it needs nothing but atomic renames and also works
on network file systems shared by several machines.

- **Atomic and durable writes.** A row is written under a temporary name,
  flushed and ``fsync``-ed, renamed over its final name, and the directory is
  ``fsync``-ed after each batch: a reader sees a whole row or none, and a kill
  (Ctrl-C, SIGKILL, a lost node) loses at most the batch being written.
- **Checked reads.** Every row read must be a readable ``.npy`` holding a 1-D
  float32 vector of the expected width; anything else (truncated, empty, a
  foreign file) is deleted, counted in ``replaced`` and recomputed.
- **Orphans.** Temporary files of writers that died are removed when a process
  first uses the directory (same host: the writer's pid is gone; another host:
  older than an hour).
- **Degrades to a warning.** A directory that cannot be created or written
  (read-only, full) raises a :class:`~sktransfer.exceptions.CacheWarning` once;
  the embeddings are still computed and returned.
- **Size.** Counted as allocated disk blocks. One scan per process learns the
  total; writes add to it; only when it passes ``max_bytes`` is the tree
  rescanned and pruned (oldest first, down to 90 %).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from sktransfer._orphans import HOST, is_orphan
from sktransfer._store import Store
from sktransfer.exceptions import CacheWarning

__all__ = ["DEFAULT_DISK_BYTES", "DiskCache"]

DEFAULT_DISK_BYTES = 10 << 30


class DiskCache(Store):
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
                if is_orphan(tmp, host, pid, now):
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


def _write_atomic(path: Path, row: np.ndarray) -> int:
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"{path.stem}.{HOST}.{os.getpid()}.", suffix=".tmp"
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
