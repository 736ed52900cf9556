"""Embedding on a Dask cluster: :func:`embed`.

A fitted :class:`~sktransfer.PretrainedFeatureExtractor` embeds a Dask
collection partition by partition on the workers and returns a Dask Array with
known chunks, rows in input order. Built on ``dask`` / ``distributed`` directly
(dask-ml's ``ParallelPostFit`` assumes as many output columns as input ones,
probes ``transform`` on a row of zeros and fails on empty partitions).

How the work is placed:

- the extractor is one node of the task graph (``dask.delayed(..., pure=True)``),
  shipped once to each worker that needs it; it holds the backbone's *name*
  and settings, never its weights (a user's ``nn.Module`` backbone is the
  exception: it is pickled into that node; save it to a folder to avoid it);
- each worker process loads the backbone once, into its own backbone cache
  (:func:`sktransfer.backbones.load_backbone`'s LRU), and every partition it
  runs reuses it;
- a :class:`~sktransfer.DiskCache` given as ``cache=`` is shared by all workers
  (its handle pickles as its settings; writes are atomic), so a re-run or a
  second job on the same files embeds nothing twice;
- ``on_error`` keeps its meaning: ``"raise"`` fails the computation with an
  :class:`~sktransfer.exceptions.InputError` naming the row's position in the
  whole collection and, for a Dask Series or DataFrame, its index label (as
  the in-memory path does); ``"nan"`` / ``"zero"`` fill the failed rows
  (``da.isnan(out).any(axis=1)`` finds them).

Speed: distributed's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``,
which made embedding 1.5x slower here (freed buffers are handed back to the
system and faulted in again every batch); start the cluster under
``dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_":
None})`` (see the scaling guide).

Needs ``pip install 'sktransfer[dask]'``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["embed"]


def _embed_partition(extractor, part, offset: int, expected=None) -> np.ndarray:
    """Embed one partition (runs on a worker)."""
    width = extractor._n_features_out
    if hasattr(part, "to_numpy") and getattr(part, "ndim", 1) == 2:
        part = part.iloc[:, 0]  # a one-column DataFrame partition
    n = len(part)
    if expected is not None and n != expected:
        raise ValueError(
            f"a partition has {n} rows, but lengths= said {expected}; pass the "
            "partitions' real lengths, or lengths='compute'."
        )
    if n == 0:
        return np.empty((0, width), np.float32)
    index = getattr(part, "index", None)  # a pandas partition's labels
    if hasattr(part, "to_numpy") and not isinstance(part, np.ndarray):
        part = part.to_numpy()
        if part.dtype == object:
            part = part.tolist()
    elif not isinstance(part, np.ndarray):
        part = list(part)
    extractor._check_fitted()
    samples = extractor._check_samples(part, reset=False)
    samples.offset = offset  # errors name the row's place in the whole collection
    if index is not None and samples.labels is None:
        samples.labels = index  # ... and its index label, as in memory
    rows, _ = extractor._embed_samples(extractor._load_backbone(), samples)
    return rows


def _partitions(collection):
    """The collection's partitions as delayed objects, and their lengths (None
    where unknown)."""
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd

    if isinstance(collection, da.Array):
        if collection.ndim < 2:
            raise ValueError(
                "a Dask Array of images must be (n, height, width[, channels]); "
                f"got {collection.ndim} dimension(s). Texts and paths go in a Dask "
                "Series or Bag."
            )
        whole = {axis: -1 for axis in range(1, collection.ndim)}
        arr = collection.rechunk(whole)  # one image is never split across blocks
        lengths = list(arr.chunks[0])
        if any(np.isnan(n) for n in lengths):
            lengths = None
        return list(arr.to_delayed().ravel()), lengths
    if isinstance(collection, dd.DataFrame):
        if len(collection.columns) != 1:
            raise ValueError(
                "embed takes one column; got a DataFrame with columns "
                f"{list(collection.columns)}. Select it: df['path']."
            )
        collection = collection[collection.columns[0]]
    if isinstance(collection, dd.Series | db.Bag):
        return list(collection.to_delayed()), None
    raise TypeError(
        "embed takes a Dask Series, a one-column Dask DataFrame, a Dask Bag or a "
        f"Dask Array of images; got {type(collection).__name__}."
    )


def embed(extractor, collection, *, lengths="auto"):
    """Embed a Dask collection with a fitted extractor, on the workers.

    Parameters
    ----------
    extractor : fitted PretrainedFeatureExtractor
    collection : dask Series, one-column dask DataFrame, dask Bag or dask Array
        File paths, texts, bytes (Series / Bag), or images as an
        ``(n, height, width[, channels])`` Array (chunked along the first axis
        only; other axes are merged).
    lengths : "auto", "compute" or sequence of int, default="auto"
        The partitions' lengths. ``"auto"``: those the collection knows (a Dask
        Array's chunks); otherwise the result has unknown chunk sizes (as
        dask's own ``to_dask_array()``), and each partition's row offset (for
        error messages) is counted inside the same graph, so the collection is
        computed once. ``"compute"``: count them first, in a separate pass, for
        known chunks (persist the collection first if producing it is
        expensive; distributed may warn "Detected different `run_spec`" when
        the two graphs are optimised differently, as for a filtered Bag). A
        sequence: the lengths, checked on the workers.

    Returns
    -------
    dask.array.Array of shape (n_samples, n_features), float32
        One chunk per partition, rows in input order (``out.compute_chunk_sizes()``
        learns unknown sizes).

    Examples
    --------
    >>> import dask
    >>> import dask.bag as db
    >>> from sktransfer import PretrainedFeatureExtractor
    >>> from sktransfer.dask import embed
    >>> texts = ["a cat", "a dog", "a bird", "a fish", "a frog"]
    >>> ext = PretrainedFeatureExtractor("test-text").fit(texts)
    >>> out = embed(ext, db.from_sequence(texts, npartitions=2), lengths="compute")
    >>> out.chunks[0], out.shape[1] == ext.transform(texts).shape[1]
    ((3, 2), True)
    >>> with dask.config.set(scheduler="synchronous"):
    ...     bool(abs(out.compute() - ext.transform(texts)).max() < 1e-5)
    True
    """
    import dask
    import dask.array as da

    from sktransfer._extractor import PretrainedFeatureExtractor

    if not isinstance(extractor, PretrainedFeatureExtractor):
        raise TypeError(
            "embed needs a fitted PretrainedFeatureExtractor (or an estimator "
            f"whose transform is one); got {type(extractor).__name__}."
        )
    extractor._check_fitted()
    width = extractor._n_features_out
    parts, known = _partitions(collection)
    if not parts:
        return da.empty((0, width), dtype=np.float32, chunks=((0,), (width,)))
    node = dask.delayed(extractor, pure=True, traverse=False)
    checked = None
    if isinstance(lengths, str) and lengths == "compute" and known is None:
        known = dask.compute(*[dask.delayed(len)(p) for p in parts])
    elif not isinstance(lengths, str):
        known = checked = [int(n) for n in lengths]
        if len(known) != len(parts):
            raise ValueError(
                f"lengths= has {len(known)} entries for {len(parts)} partitions."
            )
    elif lengths not in ("auto", "compute"):
        raise ValueError(
            "The 'lengths' parameter of embed must be 'auto', 'compute' or a "
            f"sequence of int. Got {lengths!r} instead."
        )
    if known is not None:
        offsets = np.concatenate([[0], np.cumsum(known)[:-1]]).astype(int).tolist()
        sizes = [int(n) for n in known]
    else:  # offsets counted in the same graph: the collection is computed once
        counts = [dask.delayed(len, pure=True)(p) for p in parts]
        offsets = [0] + [
            dask.delayed(sum, pure=True)(counts[:i]) for i in range(1, len(parts))
        ]
        sizes = [np.nan] * len(parts)
    expected = checked or [None] * len(parts)
    blocks = [
        da.from_delayed(
            dask.delayed(_embed_partition, pure=True)(node, part, offset, exp),
            shape=(n, width),
            dtype=np.float32,
        )
        for part, n, offset, exp in zip(parts, sizes, offsets, expected, strict=True)
    ]
    return da.concatenate(blocks, axis=0, allow_unknown_chunksizes=True)
