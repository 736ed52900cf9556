"""Embeddings written to disk chunk by chunk: a memory-mapped ``.npy`` or Parquet.

Used by :meth:`PretrainedFeatureExtractor.transform_to_file` and the
``sktransfer embed`` command, so that an output larger than memory never has to
fit in it. Rows go to a temporary file beside the output, which is renamed when
it is complete: the output is always whole, and an interrupted run leaves no
half-written file under the user's name (the disk cache, if any, keeps the
finished batches for the next run).

Why these formats: ``.npy`` (a header, then the rows appended with plain
writes, so the output's pages never count against the process as a memory map's
would) is readable by ``np.load(path, mmap_mode="r")`` without loading it; Parquet (via
pyarrow, the ``parquet`` extra) is what pandas, Polars, DuckDB and Spark read,
one row group per chunk, with an id column beside a fixed-size-list vector.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sktransfer._orphans import HOST, is_orphan
from sktransfer._progress import advance

__all__ = ["EmbeddingWriter", "check_output_path", "write_embeddings"]

_COPY_ROWS = 8192  # rows copied at a time when trimming a .npy


def check_output_path(path, overwrite: bool) -> Path:
    """The output path, checked: a known suffix, an existing folder, and no file
    replaced unless ``overwrite``."""
    out = Path(path)
    if out.suffix.lower() not in (".npy", ".parquet"):
        raise ValueError(f"the output {out} must end with .npy or .parquet")
    if out.is_dir():
        raise IsADirectoryError(
            f"the output {out} is a folder; pass a file name inside it, e.g. "
            f"{out / ('embeddings' + out.suffix)}"
        )
    if not out.parent.exists():
        raise FileNotFoundError(f"the output folder {out.parent} does not exist")
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} exists; not replacing it (pass overwrite=True to replace it)"
        )
    return out


def remove_orphaned_partials(out: Path) -> list[Path]:
    """Delete the temporary files of earlier writers of ``out`` that died
    (``.<name>.<host>.<pid>.partial``, and their ``.trim``); return them.

    A live writer's file is kept (same host: its pid runs; another host: it
    was touched within the hour, see :mod:`sktransfer._orphans`).
    """
    removed = []
    prefix = f".{out.name}."
    for tmp in out.parent.glob(f"{glob.escape(prefix)}*.partial*"):
        middle = tmp.name[len(prefix) :].split(".partial")[0].split(".")
        try:  # host.pid, or pid alone (files of sktransfer <= 0.1)
            host, pid = (
                (middle[0], int(middle[1]))
                if len(middle) == 2
                else (HOST, int(middle[0]))
            )
        except (IndexError, ValueError):
            continue
        try:
            if is_orphan(tmp, host, pid):
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


class EmbeddingWriter:
    """Rows appended chunk by chunk to a temporary file, renamed by
    :meth:`finish` (or removed by :meth:`abort`).

    Parameters
    ----------
    path : path
        ``.npy`` or ``.parquet``.
    n_rows : int
        Rows expected (``.npy`` preallocates them; fewer written is fine, the
        file is trimmed).
    width : int
        Values per row.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "x.npy"
    >>> w = EmbeddingWriter(out, 3, 2)
    >>> w.write(np.ones((2, 2), np.float32)); w.write(np.zeros((1, 2), np.float32))
    >>> w.finish()
    >>> np.load(out).sum()
    np.float32(4.0)
    """

    def __init__(self, path, n_rows: int, width: int):
        self.out = Path(path)
        remove_orphaned_partials(self.out)
        self.tmp = self.out.with_name(f".{self.out.name}.{HOST}.{os.getpid()}.partial")
        self.row = 0
        self.shape = (n_rows, width)
        self.file = self.parquet = None
        if self.out.suffix.lower() == ".npy":
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by finish/abort
            self._header(self.file, n_rows)
        else:
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise ImportError(
                    "a .parquet output needs pyarrow: pip install 'sktransfer[parquet]'"
                ) from exc
            self.pa, self.pq = pa, pq

    def write(self, rows: np.ndarray, ids=None) -> None:
        """Append ``rows`` (float32, ``(n, width)``); ``ids`` name them in a
        Parquet file (default: their positions)."""
        rows = np.ascontiguousarray(rows, dtype="<f4")
        if self.file is not None:
            self.file.write(rows.tobytes())
        else:
            pa = self.pa
            if ids is None:
                ids = np.arange(self.row, self.row + len(rows), dtype=np.int64)
            vectors = pa.FixedSizeListArray.from_arrays(
                pa.array(rows.reshape(-1), pa.float32()), self.shape[1]
            )
            table = pa.table({"id": pa.array(ids), "embedding": vectors})
            if self.parquet is None:
                self.parquet = self.pq.ParquetWriter(self.tmp, table.schema)
            self.parquet.write_table(table)
        self.row += len(rows)

    def finish(self) -> None:
        """Complete the file and move it to its name."""
        if self.file is not None:
            self.file.close()
            self.file = None
            if self.row != self.shape[0]:  # rows were skipped: copy the kept ones
                self._trim()
        else:
            if self.parquet is None:  # nothing written: an empty, typed file
                self.write(np.empty((0, self.shape[1]), np.float32), [])
            self.parquet.close()
        os.replace(self.tmp, self.out)

    def _header(self, f, n_rows: int) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": (n_rows, self.shape[1]),
        }
        np.lib.format.write_array_header_1_0(f, header)
        self.offset = f.tell()

    def _trim(self) -> None:
        trimmed = self.tmp.with_name(self.tmp.name + ".trim")
        if self.row == 0:  # every row was left out
            with open(trimmed, "wb") as f:
                self._header(f, 0)
            os.replace(trimmed, self.tmp)
            return
        src = np.memmap(
            self.tmp,
            dtype="<f4",
            mode="r",
            offset=self.offset,
            shape=(self.row, self.shape[1]),
        )
        with open(trimmed, "wb") as f:
            self._header(f, self.row)
            for lo in range(0, self.row, _COPY_ROWS):
                f.write(np.ascontiguousarray(src[lo : lo + _COPY_ROWS]).tobytes())
        del src
        os.replace(trimmed, self.tmp)

    def abort(self) -> None:
        """Remove the temporary file (nothing under the output's name)."""
        if self.parquet is not None:
            self.parquet.close()
        if self.file is not None:
            self.file.close()
            self.file = None
        self.tmp.unlink(missing_ok=True)
        self.tmp.with_name(self.tmp.name + ".trim").unlink(missing_ok=True)


def write_embeddings(
    embed, samples, out, width: int, *, ids, chunk_size, skip_errors, progress
) -> dict[int, str]:
    """Embed ``samples`` chunk by chunk with ``embed(chunk) -> (rows, errors)``
    and write each chunk to ``out`` before the next; return the failed rows by
    their position in ``samples``. The body of
    :meth:`PretrainedFeatureExtractor.transform_to_file`."""

    writer = EmbeddingWriter(out, len(samples), width)
    errors: dict[int, str] = {}
    bar = tqdm(total=len(samples), disable=not progress, unit="row", file=sys.stderr)
    try:
        for lo in range(0, len(samples), chunk_size):
            hi = min(lo + chunk_size, len(samples))
            rows, failed = embed(samples.chunk(lo, hi))
            keep = np.arange(hi - lo)
            if skip_errors and failed:
                keep = np.array([j for j in keep if j not in failed], int)
            errors.update({lo + j: msg for j, msg in failed.items()})
            names = [lo + j if ids is None else ids[lo + j] for j in keep]
            writer.write(rows[keep], names)
            advance(bar, hi - lo)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return errors
