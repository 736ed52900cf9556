"""Cache keys: everything that changes what the network sees, and nothing less.

A key is ``blake3(prefix + content)`` (160 bits). BLAKE3 is a cryptographic
hash, so no two inputs share a key in practice, and it hashes about 3.5x faster
than ``hashlib.blake2b`` on one core here (0.016 s against 0.056 s for 2,000
arrays of 96x96x3): keying is most of the disk cache's cost on a first pass.
Keys written before the switch (blake2b) are never found again: their rows are
recomputed once, and the old rows, the oldest in the folder, are the first that
pruning removes when the folder passes ``max_bytes`` (``DiskCache.clear()``
empties it at once). The prefix fingerprints the settings
(weights identity, preprocessing, layer, pooling, precision, device type, max
length, normalisation); the content is, per kind of sample:

- a text: its code points (UTF-8, surrogates passed through);
- bytes: all of them;
- a numeric array: dtype, shape and every byte (conversion to an image is a
  deterministic function of these);
- a PIL image: the *prepared* input, i.e. the uint8 crop the network is fed
  (palette, transparency, EXIF orientation and mode are all applied by then);
- a file path: the absolute path, size, modification time, change time (ctime)
  and inode. Any write to a file through the file system updates its ctime,
  which cannot be set back (``os.utime`` restores mtime only), so a rewritten
  file gets a new key even when its size and mtime were restored. The exceptions
  are stated in the reliability guide: a file system whose ctime does not move
  (some network and FUSE mounts), or a system clock set back between writes.

A sample that cannot be keyed (a missing file, an unreadable image) gets None:
it is embedded (or reported) but never cached.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
from blake3 import blake3

from sktransfer._images import prepare_image
from sktransfer.exceptions import InputError

__all__ = ["fingerprint", "keys_ahead", "sample_key", "sample_keys"]


def fingerprint(*parts: Any) -> str:
    """Hash of the settings that change an embedding.

    Examples
    --------
    >>> fingerprint("a", 1) == fingerprint("a", 1) != fingerprint("a", 2)
    True
    """
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def _file_identity(path: str | os.PathLike) -> bytes | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # missing, or an embedded NUL byte
        return None
    if not os.path.isfile(path):
        return None
    return (
        f"p{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:"
        f"{st.st_ino}"
    ).encode("utf-8", "surrogatepass")


def sample_key(prefix: str, value: Any, image_pre=None) -> str | None:
    """The key of one sample, or None if it cannot be keyed safely.

    Parameters
    ----------
    prefix : str
        :func:`fingerprint` of the settings.
    value : object
        One sample.
    image_pre : ImagePreprocessing, optional
        Given for image backbones: a ``str`` is then a file path, and a PIL
        image is keyed by its prepared input.
    """
    h = blake3(prefix.encode())
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and image_pre is not None
    ):
        ident = _file_identity(value)
        if ident is None:
            return None
        h.update(ident)
    elif isinstance(value, str):
        h.update(b"s")
        h.update(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes | bytearray | memoryview):
        h.update(b"b")
        h.update(memoryview(value).cast("B"))  # blake3 takes bytes, not items
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return None
        h.update(f"a{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data)
    elif image_pre is not None and _is_pil(value):
        try:
            prepared = prepare_image(value, "row", image_pre)
        except InputError:
            return None  # reported when it is embedded
        h.update(b"i")
        h.update(prepared.tobytes())
    else:
        return None
    return h.hexdigest(length=20)


# arrays and bytes past this many in all are hashed by several threads
# (blake3 releases the GIL on large buffers)
PARALLEL_BYTES = 8 << 20


def _keys_of(prefix: str, values, image_pre=None) -> list[str | None]:
    """:func:`sample_key` of each value; numeric arrays of one dtype and shape
    (the rows of an ndarray input) share one hasher state for the prefix and
    the header, so each row costs one ``copy`` and one ``update``."""
    if _is_numeric_matrix(values):
        return _row_keys(prefix, values)
    out: list[str | None] = []
    bases: dict[tuple, Any] = {}
    for v in values:
        if type(v) is not np.ndarray or v.dtype.kind not in "biuf":
            out.append(sample_key(prefix, v, image_pre))
            continue
        header = (v.dtype.str, v.shape)
        base = bases.get(header)
        if base is None:
            base = bases[header] = blake3(prefix.encode())
            base.update(f"a{v.dtype.str}{v.shape}".encode())
        h = base.copy()
        h.update(np.ascontiguousarray(v).reshape(-1).view(np.uint8).data)
        out.append(h.hexdigest(length=20))
    return out


def _is_numeric_matrix(values) -> bool:
    return (
        type(values) is np.ndarray
        and values.ndim >= 2
        and values.dtype.kind in "biuf"
        and values.flags.c_contiguous
    )


def _row_keys(prefix: str, matrix: np.ndarray) -> list[str]:
    """The keys of a C-contiguous numeric array's rows, each hashed from a
    slice of one byte view (no per-row array objects): what :func:`sample_key`
    gives each ``matrix[i]``."""
    base = blake3(prefix.encode())
    base.update(f"a{matrix.dtype.str}{matrix.shape[1:]}".encode())
    width = matrix[0].nbytes if len(matrix) else 0
    if width == 0:  # rows without elements: all alike
        return [base.hexdigest(length=20)] * len(matrix)
    flat = memoryview(matrix.reshape(-1).view(np.uint8))
    out = []
    for lo in range(0, len(matrix) * width, width):
        h = base.copy()
        h.update(flat[lo : lo + width])
        out.append(h.hexdigest(length=20))
    return out


def sample_keys(prefix: str, values, image_pre=None) -> list[str | None]:
    """:func:`sample_key` of every value (large arrays by several threads).

    Examples
    --------
    >>> import numpy as np
    >>> values = [np.zeros(3), "a text", b"bytes", np.ones(3, np.uint8)]
    >>> sample_keys("p", values) == [sample_key("p", v) for v in values]
    True
    """
    if _is_numeric_matrix(values) and values.nbytes < PARALLEL_BYTES:
        return _keys_of(prefix, values)
    values = list(values)
    size = sum(
        v.nbytes if isinstance(v, np.ndarray) else len(v)
        for v in values
        if isinstance(v, np.ndarray | bytes | bytearray)
    )
    workers = min(4, os.cpu_count() or 1)
    if size < PARALLEL_BYTES or workers < 2:
        return _keys_of(prefix, values, image_pre)
    from concurrent.futures import ThreadPoolExecutor

    chunks = [values[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda c: _keys_of(prefix, c, image_pre), chunks))
    out: list[str | None] = [None] * len(values)
    for i, part in enumerate(parts):
        out[i::workers] = part
    return out


# the first chunk is keyed before anything is embedded: small, so the network
# starts early; later chunks, each GROWTH times the last (up to LARGEST_CHUNK),
# are keyed by a thread while the previous one is embedded
FIRST_CHUNK = 256
GROWTH = 8
LARGEST_CHUNK = 65536


def keys_ahead(
    prefix: str,
    values,
    image_pre=None,
    first=FIRST_CHUNK,
    growth=GROWTH,
    largest=LARGEST_CHUNK,
):
    """Yield ``(lo, hi, keys)`` over ``values`` in chunks, keying the next chunk
    in a background thread while the caller works on the current one.

    Hashing releases the GIL on large buffers, so keying arrays and images
    overlaps the forward passes of the previous chunk instead of delaying the
    first one (the disk cache's cold pass). Chunks grow geometrically because
    each boundary drains and refills the embedding pipeline (measured: three
    chunks instead of one cost 5 % of a small network's pass), while keying a
    row costs far less than embedding it, so a chunk eight times the last is
    still keyed before the last is embedded.

    Examples
    --------
    >>> import numpy as np
    >>> values = [np.full(3, i, np.uint8) for i in range(5)]
    >>> chunks = list(keys_ahead("p", values, first=1, growth=2, largest=3))
    >>> [(lo, hi) for lo, hi, _ in chunks]
    [(0, 1), (1, 3), (3, 5)]
    >>> [k for *_, keys in chunks for k in keys] == sample_keys("p", values)
    True
    """
    n = len(values)
    bounds, lo, size = [], 0, first
    while lo < n:
        hi = min(n, lo + size)
        bounds.append((lo, hi))
        lo, size = hi, min(largest, size * growth)
    if len(bounds) <= 1:
        for lo, hi in bounds:
            yield lo, hi, sample_keys(prefix, values[lo:hi], image_pre)
        return
    from concurrent.futures import ThreadPoolExecutor

    def key(bound):  # one thread: it already runs beside the network
        return _keys_of(prefix, values[bound[0] : bound[1]], image_pre)

    with ThreadPoolExecutor(1, thread_name_prefix="sktransfer-keys") as pool:
        ahead = pool.submit(key, bounds[0])
        for i, (lo, hi) in enumerate(bounds):
            keys = ahead.result()
            if i + 1 < len(bounds):
                ahead = pool.submit(key, bounds[i + 1])
            yield lo, hi, keys


def _is_pil(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, Image.Image)
