"""The on-disk embedding store: crash-safe, self-healing, shared by processes.

Rows are written in groups of batches: a background writer thread turns the
rows that ``put_many`` buffered into one immutable *segment* file (its keys, a
float32 matrix and a CRC-32 of the matrix) under ``seg/``, by a temporary
name and an atomic rename. It needs nothing but
atomic renames, so it works on network file systems shared by several
machines, and costs one file per batch instead of one file (and one ``fsync``)
per row, which made the first pass several times slower than no cache.

- **Atomic writes; durability by interval.** A reader sees a whole segment or
  none. ``put_many`` only buffers; the writer thread writes what is buffered
  once ``WRITE_SECONDS`` (25 ms) have passed since its last segment, so a
  killed process (Ctrl-C, SIGKILL, OOM) loses at most the batches of the last
  25 ms or so (and the one being written): renamed files are in the kernel's
  page cache whatever happens to the process. Against a machine crash (power,
  kernel), the same thread ``fsync``-s the segments it wrote, in rounds at
  most every ``SYNC_SECONDS`` (0.1 s), and ``flush`` (called when an
  embedding call ends) writes the rest and waits until all are synced, as
  Redis's ``appendfsync everysec`` and SQLite's WAL at ``synchronous=NORMAL``
  take the sync off the writer's path for a bounded window; the embedding
  thread never touches the disk until ``flush`` (each file call there gave
  the interpreter lock away to the image-preparing threads, measured dearer
  than the write itself). ``durability="batch"`` writes and syncs every batch
  before ``put_many`` returns (the old per-batch guarantee, slower).
- **Checked reads.** A segment is served only if its header parses, its size
  matches, its width is the expected one and its CRC-32 matches; anything else
  (truncated, empty, a foreign or half-synced file) is deleted, its rows
  counted in ``replaced`` and recomputed.
- **An index per process.** The keys of every segment are read once (headers
  only) when a process first uses the directory; a lookup that misses
  re-lists the directory, so segments written by other processes are found.
- **Old folders still read.** Rows of the one-file-per-row layout
  (``<2 hex>/<key>.npy``) are served as before; new rows go to segments.
- **Orphans.** Temporary files of writers that died are removed when a process
  first uses the directory (same host: the writer's pid is gone; another host:
  older than an hour).
- **Degrades to a warning.** A directory that cannot be created or written
  (read-only, full) raises a :class:`~sktransfer.exceptions.CacheWarning` once;
  the embeddings are still computed and returned.
- **Size.** Counted as allocated disk blocks. One scan per process learns the
  total; writes add to it; only when it passes ``max_bytes`` is the tree
  rescanned and pruned (oldest segments first, down to 90 %).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import struct
import tempfile
import threading
import time
import uuid
import warnings
import weakref
import zlib
from pathlib import Path

import numpy as np

from sktransfer._orphans import HOST, is_orphan
from sktransfer._store import Store
from sktransfer.exceptions import CacheWarning

__all__ = ["DEFAULT_DISK_BYTES", "DiskCache"]

DEFAULT_DISK_BYTES = 10 << 30
MAGIC = b"SKTSEG1\n"
SEGMENTS = "seg"
WRITE_SECONDS = 0.025  # faster batches are grouped into one segment
WRITE_ROWS = 4096  # ... of at most this many rows
SYNC_SECONDS = 0.1  # the writer fsyncs what it wrote at most this often
WRITER_IDLE_SECONDS = 2.0  # the writer thread waits this long for more work


# handles whose writer thread ran: their buffered rows are written at exit
# (a daemon thread does not outlive the interpreter, and its reference to the
# handle keeps __del__ from running first); entries go with their handles
_WRITING: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for store in list(_WRITING):
        with contextlib.suppress(Exception):
            store.flush()


class DiskCache(Store):
    """Embedding rows in batch segment files under ``directory`` (shared by
    processes and machines).

    Parameters
    ----------
    directory : str or PathLike
        Created if missing. Safe to share between processes, runs and machines.
    max_bytes : int
        Past this much disk space (allocated blocks, not file sizes), the least
        recently written segments are removed.
    durability : {"interval", "batch"}, default="interval"
        When batches are written and ``fsync``-ed. ``"interval"``: by a
        background thread, the batches of every 25 ms as one segment, synced
        in rounds at most every 0.1 s, and all of them before an embedding
        call returns; a killed process keeps every batch but those of its
        last 25 ms or so, a machine crash loses at most the segments not yet
        synced (a damaged segment is detected and recomputed); the embedding
        never waits for the disk until the call ends. ``"batch"``: each batch
        written and synced before ``put_many`` returns (a killed process or
        crashed machine keeps every finished batch; one ``fsync`` per batch,
        which on a fast network can dominate the run).

    Attributes
    ----------
    hits, misses : int
        Lookups served and not served.
    replaced : int
        Rows of corrupt, truncated or foreign entries found, deleted and
        recomputed.

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
        self,
        directory: str | os.PathLike,
        max_bytes: int = DEFAULT_DISK_BYTES,
        durability: str = "interval",
    ):
        if durability not in ("interval", "batch"):
            raise ValueError(
                "The 'durability' parameter of DiskCache must be 'interval' or "
                f"'batch'. Got {durability!r} instead."
            )
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.durability = durability
        self.hits = 0
        self.misses = 0
        self.replaced = 0
        self._lock = threading.RLock()
        self._used: int | None = None  # bytes on disk, learnt by one scan
        self._opened = False
        self._writable = True
        self._index: dict[str, tuple[str, int]] = {}  # key -> (segment, row)
        self._segments: dict[str, list[str]] = {}  # segment -> its keys
        self._legacy = False  # one-file-per-row rows are present
        self._pending: list[int] = []  # written, not yet fsync-ed
        self._idle = threading.Condition(self._lock)  # the writer went idle
        self._work = threading.Condition(self._lock)  # rows are due
        self._write_lock = threading.Lock()  # one segment written at a time
        self._writer: threading.Thread | None = None  # writes and fsyncs
        self._busy = False  # the writer is writing or syncing a group
        self._due = False  # buffered rows wait for the writer
        self._failure: str | None = None  # a failed write, not yet warned
        self._pid = os.getpid()
        self._buffer: dict[str, np.ndarray] = {}  # put, not yet written
        self._last_write = 0.0
        self._last_sync = 0.0  # when the writer last fsync-ed
        self._register()

    def _settings(self) -> dict:
        return {
            "directory": str(self.directory),
            "max_bytes": self.max_bytes,
            "durability": self.durability,
        }

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    def __del__(self):
        with contextlib.suppress(Exception):
            self.flush()

    # ------------------------------------------------------------ opening
    @property
    def _seg_dir(self) -> Path:
        return self.directory / SEGMENTS

    def _own_process(self) -> None:
        """After a fork, the parent's lock (which its writer thread may have
        held), writer and unsynced files are not this process's: start anew
        (the parent syncs its own files)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        for fd in self._pending:  # the child's copies of the parent's fds
            with contextlib.suppress(OSError):
                os.close(fd)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._work = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._writer, self._pending, self._busy = None, [], False

    def _open(self) -> None:
        self._own_process()
        with self._lock:
            if self._opened:
                return
            self._opened = True
            try:
                self._seg_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._warn(f"cannot create {self.directory} ({exc})")
                return
            self._remove_orphans()
            self._legacy = any(
                p.is_dir() and len(p.name) == 2 for p in self.directory.iterdir()
            )
            self._scan()

    def _scan(self) -> None:
        """Index the segments not seen yet; forget those that are gone."""
        try:
            names = {
                e.name for e in os.scandir(self._seg_dir) if e.name.endswith(".seg")
            }
        except OSError:
            return
        with self._lock:
            for gone in set(self._segments) - names:
                self._forget(gone)
            for name in sorted(names - set(self._segments)):
                keys = _read_keys(self._seg_dir / name)
                if keys is None:  # renamed only when whole: damaged since
                    with contextlib.suppress(OSError):
                        (self._seg_dir / name).unlink()
                    continue
                self._segments[name] = keys
                for row, key in enumerate(keys):
                    self._index[key] = (name, row)

    def _forget(self, name: str) -> None:
        for key in self._segments.pop(name, []):
            if self._index.get(key, (None,))[0] == name:
                del self._index[key]

    def _remove_orphans(self) -> None:
        """Delete temporary files whose writer is dead (killed mid-write)."""
        now = time.time()
        for tmp in self.directory.glob("*/*.tmp"):
            parts = tmp.name.split(".")  # <name>.<host>.<pid>.<random>.tmp
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
            self._emit(why)
        self._writable = False

    def _emit(self, why: str) -> None:
        warnings.warn(
            f"the embedding cache at {self.directory} is not written: {why}. "
            "Embeddings are still computed and returned; pass another "
            "directory (or cache=None) to silence this.",
            CacheWarning,
            stacklevel=5,
        )

    def _path(self, key: str) -> Path:
        """Where the one-file-per-row layout kept ``key``'s row."""
        return self.directory / key[:2] / f"{key}.npy"

    # ------------------------------------------------------------ rows
    def get_many(
        self, keys: list[str | None], width: int | None = None
    ) -> list[np.ndarray | None]:
        """The stored row of each key; bad entries are deleted (and counted)."""
        self._open()
        if self._buffer or self._busy:  # rows put: indexed before lookups
            self._write_buffer()
        with self._lock:
            if any(k is not None and k not in self._index for k in keys):
                self._scan()  # other processes may have written since
            where = [self._index.get(k) if k is not None else None for k in keys]
        out: list[np.ndarray | None] = [None] * len(keys)
        by_segment: dict[str, list[int]] = {}
        for i, w in enumerate(where):
            if w is not None:
                by_segment.setdefault(w[0], []).append(i)
        for name, positions in by_segment.items():
            matrix = self._read_segment(name, width, len(positions))
            if matrix is not None:
                for i in positions:
                    out[i] = matrix[where[i][1]].copy()
        if self._legacy:
            for i, k in enumerate(keys):
                if out[i] is None and k is not None:
                    out[i] = self._read_legacy(k, width)
        for row in out:
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        return out

    def _read_segment(self, name: str, width: int | None, n_wanted: int):
        path = self._seg_dir / name
        matrix = _read_matrix(path)
        if matrix is not None and (width is None or matrix.shape[1] == width):
            return matrix
        if matrix is None and not path.exists():  # pruned by another process
            with self._lock:
                self._forget(name)
            return None
        with self._lock:  # damaged or foreign: delete, recompute its rows
            self.replaced += n_wanted
            self._forget(name)
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def _read_legacy(self, key: str, width: int | None) -> np.ndarray | None:
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
        """Store the rows of one batch.

        With ``durability="batch"`` they are one segment, synced, when this
        returns. Otherwise the rows are buffered and the background writer
        thread writes what is buffered as one segment once ``WRITE_SECONDS``
        have passed since its last write (or ``WRITE_ROWS`` rows wait), then
        syncs it; :meth:`flush` writes the rest. The caller never touches the
        disk: on a busy CPU each file call of the embedding thread gave the
        interpreter lock away to the image-preparing threads, and waiting to
        get it back cost more than the write.
        """
        self._open()
        self._report()
        if not self._writable:
            return
        rows = np.asarray(rows, dtype=np.float32)
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys for {len(rows)} rows.")
        with self._lock:
            for k, row in zip(keys, rows, strict=True):
                if k is not None and k not in self._buffer:
                    self._buffer[k] = row
            if self.durability != "batch" and (
                len(self._buffer) >= WRITE_ROWS
                or time.monotonic() - self._last_write >= WRITE_SECONDS
            ):
                self._last_write = time.monotonic()  # one wake-up per interval
                self._due = True
                self._wake_writer()
        if self.durability == "batch":
            self.flush()

    def _write_buffer(self) -> None:
        """Write the buffered rows as one segment (in the calling thread; one
        writer at a time, so a row is never in neither the buffer nor the
        index while a lookup waits for it)."""
        with self._write_lock:
            with self._lock:
                buffered, self._buffer = self._buffer, {}
                self._last_write = time.monotonic()
                if not buffered or not self._writable:
                    return
            names = list(buffered)
            matrix = np.stack([buffered[k] for k in names]).reshape(len(names), -1)
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.seg"
            try:
                fd, written = _write_segment(self._seg_dir / name, names, matrix)
            except OSError as exc:
                self._fail(str(exc))
                return
            with self._lock:
                self._segments[name] = names
                for row, key in enumerate(names):
                    self._index[key] = (name, row)
                self._pending.append(fd)
                if self._used is not None:
                    self._used += written
                prune = self._used is None or self._used > self.max_bytes
        if prune:
            self.prune()

    def flush(self) -> None:
        """Write the buffered rows, then ``fsync`` every segment written so far
        (and their directory): the ones left here, and whatever the background
        writer is doing (waited for). Called by the extractor when an
        embedding call ends."""
        self._own_process()
        self._write_buffer()
        with self._lock:
            pending, self._pending = self._pending, []
        _sync(pending, self._seg_dir)
        with self._idle:
            while self._busy and _alive(self._writer):
                self._idle.wait(0.05)
        self._report()

    def _wake_writer(self) -> None:
        """Tell the writer thread rows are due; start it if none runs (the
        caller holds the lock). One thread serves a whole run: starting a
        thread per segment cost about a millisecond each on a busy CPU."""
        self._work.notify()
        if not _alive(self._writer):
            _WRITING.add(self)
            self._writer = threading.Thread(
                target=self._write_in_background,
                name="sktransfer-cache-writer",
                daemon=True,
            )
            self._writer.start()

    def _write_in_background(self) -> None:
        """The writer thread: write the due rows as a segment, sync what is
        pending (what was written since its last sync), again; it stops once
        nothing came for ``WRITER_IDLE_SECONDS`` (the next batch starts
        another)."""
        me = threading.current_thread()
        while True:
            with self._lock:
                write = self._next_work(me)
                if write is None:
                    return
                self._due, self._busy = False, True
            try:
                if write:
                    self._write_buffer()
                with self._lock:
                    pending = []
                    if time.monotonic() - self._last_sync >= SYNC_SECONDS:
                        pending, self._pending = self._pending, []
                        self._last_sync = time.monotonic()
                _sync(pending, self._seg_dir)
            finally:
                with self._lock:
                    self._busy = False
                    self._idle.notify_all()

    def _next_work(self, me) -> bool | None:
        """Wait (holding the lock) until rows are due (True) or written
        segments are due a sync (False); None: stop (idle, or replaced by a
        fork's child). Syncing at most every ``SYNC_SECONDS`` groups the
        segments of many batches into one ``fsync`` round (each round also
        makes the file system commit its journal, work the cores share)."""
        idle_until = time.monotonic() + WRITER_IDLE_SECONDS
        while self._writer is me:
            now = time.monotonic()
            if self._due:
                return True
            if self._pending:
                wait = self._last_sync + SYNC_SECONDS - now
                if wait <= 0:
                    return False
            elif now >= idle_until:
                self._writer = None
                return None
            else:
                wait = idle_until - now
            self._work.wait(wait)
        return None

    def _fail(self, why: str) -> None:
        """A write failed (in whichever thread): stop writing, and warn in the
        caller's thread at its next call (a warning raised in the writer
        thread would reach neither ``warnings.catch_warnings`` nor the log of
        the call it belongs to)."""
        with self._lock:
            if self._writable and self._failure is None:
                self._failure = why
            self._writable = False

    def _report(self) -> None:
        with self._lock:
            why, self._failure = self._failure, None
        if why is not None:
            self._emit(why)

    # ------------------------------------------------------------ size
    def files(self) -> list[Path]:
        """The segment files (and old one-row files) now on disk, the rows
        this handle buffered written first."""
        self._open()
        self._write_buffer()
        return self._files()

    def _files(self) -> list[Path]:
        return list(self._seg_dir.glob("*.seg")) + list(
            self.directory.glob("[0-9a-f][0-9a-f]/*.npy")
        )

    @property
    def nbytes(self) -> int:
        """Disk space the rows take (allocated blocks)."""
        return sum(_disk_size(p)[1] for p in self.files())

    def prune(self) -> None:
        """Rescan; remove the oldest files until the total fits in
        ``max_bytes`` (then to 90 % of it, so the next writes do not rescan)."""
        entries = [e for e in map(_disk_size, self._files()) if e[0] is not None]
        total = sum(size for _, size, _ in entries)
        if total > self.max_bytes:
            target = int(self.max_bytes * 0.9)
            for _, size, p in sorted(entries, key=lambda e: e[0]):
                if total <= target:
                    break
                p.unlink(missing_ok=True)
                total -= size
                with self._lock:
                    self._forget(p.name)
        with self._lock:
            self._used = total

    def clear(self) -> None:
        """Delete every row file."""
        self.flush()
        for p in self._files():
            p.unlink(missing_ok=True)
        with self._lock:
            self._index.clear()
            self._segments.clear()
            self._used = 0

    def __len__(self) -> int:
        """The number of distinct rows stored."""
        self._open()
        self._write_buffer()
        with self._lock:
            self._scan()
            keys = set(self._index)
        keys.update(p.stem for p in self.directory.glob("[0-9a-f][0-9a-f]/*.npy"))
        return len(keys)


# ---------------------------------------------------------------- segment format
# MAGIC, a little-endian uint32 header length, the JSON header
# {"keys": [...], "width": w, "crc32": c}, then the float32 (n, w) matrix.


def _write_segment(path: Path, keys: list[str], matrix: np.ndarray) -> tuple[int, int]:
    """Write a segment by a temporary name, rename it; return the still-open
    file descriptor (to ``fsync`` later) and the bytes allocated."""
    data = matrix.astype("<f4", copy=False).tobytes()
    header = json.dumps(
        {"keys": keys, "width": int(matrix.shape[1]), "crc32": zlib.crc32(data)}
    ).encode()
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f"seg.{HOST}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        view = memoryview(MAGIC + struct.pack("<I", len(header)) + header + data)
        while view:  # one write call, unless the kernel takes less
            view = view[os.write(fd, view) :]
        os.replace(tmp, path)  # atomic: readers see all or nothing
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, _allocated(st)


def _header(fh) -> dict | None:
    start = fh.read(len(MAGIC) + 4)
    if len(start) != len(MAGIC) + 4 or not start.startswith(MAGIC):
        return None
    (size,) = struct.unpack("<I", start[len(MAGIC) :])
    try:
        header = json.loads(fh.read(size))
    except (ValueError, UnicodeDecodeError):
        return None
    ok = (
        isinstance(header, dict)
        and isinstance(header.get("keys"), list)
        and isinstance(header.get("width"), int)
        and isinstance(header.get("crc32"), int)
    )
    return header if ok else None


def _read_keys(path: Path) -> list[str] | None:
    try:
        with open(path, "rb") as fh:
            header = _header(fh)
    except OSError:
        return None
    return None if header is None else [str(k) for k in header["keys"]]


def _read_matrix(path: Path) -> np.ndarray | None:
    """The segment's matrix if every check passes, else None."""
    try:
        with open(path, "rb") as fh:
            header = _header(fh)
            if header is None:
                return None
            data = fh.read()
    except OSError:
        return None
    n, width = len(header["keys"]), header["width"]
    if width < 1 or len(data) != n * width * 4 or zlib.crc32(data) != header["crc32"]:
        return None
    return np.frombuffer(data, dtype="<f4").reshape(n, width).astype(np.float32)


def _alive(thread: threading.Thread | None) -> bool:
    """A thread started by this process and still running (after a fork,
    the parent's threads are not alive in the child)."""
    return thread is not None and thread.is_alive()


def _sync(fds: list[int], directory: Path) -> None:
    """``fsync`` and close the segment files ``fds``, then their directory."""
    if not fds:
        return
    try:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.fsync(fd)
        _fsync_dir(directory)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


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
    return st.st_mtime_ns, _allocated(st), p


def _allocated(st: os.stat_result) -> int:
    """Disk space a file takes: its allocated blocks where the system says."""
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks else st.st_size
