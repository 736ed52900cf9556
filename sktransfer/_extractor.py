"""PretrainedFeatureExtractor: a frozen pretrained backbone as a sklearn transformer."""

from __future__ import annotations

import os
import re
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sktransfer._base import BackboneMixin
from sktransfer._cache import DiskCache, MemoryCache, get_cache
from sktransfer._compat import Interval, StrOptions, _fit_context
from sktransfer._embedder import Embedder
from sktransfer._ids import check_ids, duplicate_ids
from sktransfer._inputs import Samples
from sktransfer._keys import fingerprint, keys_ahead, sample_keys
from sktransfer._runtime import AutoBatchSize, default_batch_size, resolve_device
from sktransfer.backbones._spec import BackboneSpec
from sktransfer.exceptions import InputWarning

__all__ = ["PretrainedFeatureExtractor"]


class PretrainedFeatureExtractor(
    BackboneMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Embed images or texts with a frozen pretrained backbone.

    The backbone is loaded once per process, lazily, in ``fit``; ``transform``
    embeds. Nothing is trained: ``fit`` only resolves the backbone and records the
    output width, so this transformer is cheap to ``clone`` and safe in
    ``Pipeline``, ``ColumnTransformer``, ``GridSearchCV`` and ``cross_validate``.

    Parameters
    ----------
    backbone : str, path, nn.Module or BackboneSpec
        A registered name (``"efficientnet_lite0"``, ``"all-MiniLM-L6-v2"``,
        ``"resnet50"``...), a qualified name (``"torchvision:resnet18"``,
        ``"timm:convnext_tiny"``, ``"hf:<hub id or folder>"``), a local model folder,
        a ready ``nn.Module`` (see :func:`sktransfer.backbones.from_module`) or a
        :class:`~sktransfer.backbones.BackboneSpec`. See
        :func:`sktransfer.list_backbones`.
    weights : str or path, default=None
        None: the backbone's pretrained weights, looked for in an installed package,
        then the framework's local cache, then downloaded. A path: that checkpoint
        (safetensors, or a weights-only torch file). A tag: that torchvision or timm
        weight set (``"IMAGENET1K_V1"``). ``"random"``: random initialisation.
    layer : str or int, default=None
        Which block's output to embed: a module name (``"blocks.4"``) or an index
        into the backbone's blocks (images) / hidden states (texts). None: the
        pooled penultimate features.
    pooling : {"auto", "avg", "max", "cls", "mean"}, default="auto"
        How a feature map or token sequence becomes a vector. ``"auto"`` follows the
        backbone (its own head pooling; a sentence-transformers folder's pooling).
    batch_size : int or "auto", default="auto"
        Samples per forward pass. ``"auto"`` starts at 32 images or 64 texts on
        the CPU and 256 on a GPU, and halves on out-of-memory errors (the CPU's
        too); past one sample it stops with a ``MemoryError`` that says what to
        do.
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast precision. ``"auto"`` is bf16 (or fp16) on a GPU; on the CPU,
        bf16 where the CPU computes it natively (AVX512-BF16, AMX, ARM BF16;
        measured: no accuracy change on the demo tasks, 1.4-2x faster) and
        fp32 elsewhere. The resolved precision is part of the cache key.
    max_length : int, default=None
        Longest token sequence for texts (None: the backbone's own limit).
    normalize : bool or "auto", default="auto"
        L2-normalise each embedding. ``"auto"`` follows the backbone (True for a
        sentence-transformers folder with a ``Normalize`` module).
    cache : "memory", str, path, MemoryCache, DiskCache or None, default="memory"
        Embedding cache. ``"memory"``: a bounded, process-wide in-memory cache, so a
        sample is embedded once across clones, CV folds and grid points. A directory
        path (or a :class:`~sktransfer.DiskCache`): an on-disk cache shared by
        processes and runs, written batch by batch, so an interrupted run resumes
        where it stopped. A cache object is shared by every clone (not copied).
        None: no caching. A string that looks like a typo of ``"memory"`` is an
        error.
    on_error : {"raise", "nan", "zero"}, default="raise"
        What to do with a sample that cannot be read. ``"raise"`` stops with an
        error naming the row. ``"nan"`` / ``"zero"`` keep one output row per input,
        filled with NaN / zeros, warn with an
        :class:`~sktransfer.exceptions.InputWarning` that lists the failures (see
        :meth:`transform_with_errors`).
    num_workers : int or "auto", default="auto"
        Threads decoding and resizing images. ``"auto"``: up to 4. 0: none.
    verbose : bool, default=False
        Show a tqdm progress bar.
    trust_remote_code : bool, default=False
        Allow a Hugging Face model folder to run its own code.
    compile : bool or dict, default=False
        Run the network through ``torch.compile`` (worth it on a GPU for large
        inputs; compiling takes a while). True uses torch's defaults; a dict is
        passed as ``torch.compile``'s keyword arguments (``{"mode":
        "max-autotune"}``...). The compiled network is kept per process, so CV
        folds and grid points compile once. It does not change the cache key.
    feature_prefix : str or None, default=None
        How :meth:`get_feature_names_out` names the columns. None: after the
        backbone and the layer (``efficientnet_lite0_0``...,
        ``efficientnet_lite0_blocks.4_0``...), so a ``ColumnTransformer`` of two
        backbones says which column came from which. ``"short"``:
        scikit-learn's class-name prefix (``pretrainedfeatureextractor0``...).
        Any other string: that prefix (``"img"`` gives ``img0``...).

    Attributes
    ----------
    backbone_spec_ : BackboneSpec
        The resolved backbone, with the preprocessing its weights use.
    device_ : torch.device
        The device embeddings are computed on.
    n_features_in_ : int
        1 for images and texts (one column); the width of ``X`` for tabular
        backbones.
    feature_names_in_ : ndarray of str
        The column name, when fitted on a one-column DataFrame.

    See Also
    --------
    sktransfer.FineTunedClassifier : train the backbone itself.

    Notes
    -----
    ``fit`` does not look at the images or texts and does not train anything; two
    fits are identical. The loaded network is shared by every estimator of the
    process and never stored on the estimator, so pickles stay small: unpickling
    needs the same weights available (e.g. the same packages installed). A
    user-provided ``nn.Module`` is pickled with the estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import PretrainedFeatureExtractor
    >>> images = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3), np.uint8)
    >>> ext = PretrainedFeatureExtractor(backbone="test-cnn").fit(images)
    >>> ext.transform(images).shape
    (4, 32)
    >>> texts = ["a cat", "a dog", ""]
    >>> PretrainedFeatureExtractor(backbone="test-text").fit_transform(texts).shape
    (3, 32)
    """

    _parameter_constraints: dict = {
        "backbone": [str, os.PathLike, nn.Module, BackboneSpec],
        "weights": [None, str, os.PathLike],
        "layer": [None, str, Integral],
        "pooling": [StrOptions({"auto", "avg", "max", "cls", "mean"})],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "max_length": [None, Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean", StrOptions({"auto"})],
        "cache": [None, str, os.PathLike, MemoryCache, DiskCache],
        "on_error": [StrOptions({"raise", "nan", "zero"})],
        "num_workers": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "verbose": ["verbose"],
        "trust_remote_code": ["boolean"],
        "compile": ["boolean", dict],
        "feature_prefix": [None, str],
    }

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        weights=None,
        layer=None,
        pooling="auto",
        batch_size="auto",
        device="auto",
        precision="auto",
        max_length=None,
        normalize="auto",
        cache="memory",
        on_error="raise",
        num_workers="auto",
        verbose=False,
        trust_remote_code=False,
        compile=False,
        feature_prefix=None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.max_length = max_length
        self.normalize = normalize
        self.cache = cache
        self.on_error = on_error
        self.num_workers = num_workers
        self.verbose = verbose
        self.trust_remote_code = trust_remote_code
        self.compile = compile
        self.feature_prefix = feature_prefix

    # ------------------------------------------------------------ sklearn API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve and load the backbone; record the output width.

        Parameters
        ----------
        X : sequence of images or texts, or 2-D array for tabular backbones
            Only validated (its length and type), never embedded.
        y : ignored

        Returns
        -------
        self
        """
        get_cache(self.cache)  # a bad cache parameter fails here, not later
        self._check_samples(X, reset=True)
        self.device_ = resolve_device(self.device)
        loaded = self._load_backbone()
        self.backbone_spec_ = loaded.spec
        self._n_features_out = self._output_width(loaded)
        self._remember_network()
        return self

    def transform(self, X):
        """Embed ``X``.

        Rows that fail with ``on_error="nan"`` / ``"zero"`` are reported by an
        :class:`~sktransfer.exceptions.InputWarning` (its ``errors`` attribute maps
        row to message); :meth:`transform_with_errors` returns them instead.

        Parameters
        ----------
        X : sequence of images or texts (or 2-D array for tabular backbones)
            Images: file paths, bytes, PIL images, arrays (HxW, HxWxC, CxHxW;
            uint8, uint16, bool, or float in [0, 1]) or one (N, H, W[, C]) array.
            Texts: str. A pandas Series or one-column DataFrame of those.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float32
        """
        out, errors = self.transform_with_errors(X)
        if errors:
            shown = "; ".join(list(errors.values())[:3])
            warning = InputWarning(
                f"{len(errors)} of {len(out)} samples could not be embedded and were "
                f"filled with {'zeros' if self.on_error == 'zero' else 'NaN'} "
                f"(on_error={self.on_error!r}). {shown}"
            )
            warning.errors = errors
            warnings.warn(warning, stacklevel=2)
        return out

    def transform_with_errors(self, X):
        """Embed ``X`` and return the rows that could not be embedded.

        Parameters
        ----------
        X : see :meth:`transform`

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features), float32
        errors : dict of int to str
            Position of each failed row and why (empty with ``on_error="raise"``,
            which raises instead).
        """
        self._check_fitted()
        samples = self._check_samples(X, reset=False)
        return self._embed_samples(self._load_backbone(), samples)

    def transform_to_file(
        self,
        X,
        path,
        *,
        ids=None,
        overwrite=False,
        chunk_size=2048,
        skip_errors=False,
        progress=False,
        allow_duplicate_ids=False,
    ):
        """Embed ``X`` straight to a ``.npy`` or ``.parquet`` file, chunk by chunk.

        For outputs larger than memory: ``chunk_size`` rows are embedded, written
        and dropped at a time, so memory stays near the model plus one chunk
        whatever the number of rows (20,000 images: see ``docs/performance.md``).
        The file is written under a temporary name and renamed when complete; an
        existing file is replaced only with ``overwrite=True``. With a disk
        ``cache``, every finished batch is kept, so a run that was interrupted
        resumes where it stopped. Within a chunk each distinct sample is
        embedded once; across chunks the cache finds repeats.

        Parameters
        ----------
        X : see :meth:`transform`
        path : str or path
            Ends with ``.npy`` (float32, ``np.load(path, mmap_mode="r")`` reads
            it without loading it) or ``.parquet`` (columns ``id`` and
            ``embedding``, a fixed-size list of float32; needs pyarrow).
        ids : sequence, default=None
            The ``id`` column of a Parquet file (default: row positions).
            Checked before anything is embedded: one per row, none missing,
            all int, all float or all str (an int id stays an int).
        overwrite : bool, default=False
        chunk_size : int, default=2048
        skip_errors : bool, default=False
            With ``on_error="nan"`` / ``"zero"``: leave the failed rows out of
            the file instead of writing NaN / zero rows.
        progress : bool, default=False
            A progress bar over the rows (tqdm, on stderr).
        allow_duplicate_ids : bool, default=False
            Repeated ids are an error unless this is True (then a warning).

        Returns
        -------
        errors : dict of int to str
            Position (in ``X``) of each row that could not be embedded, and why.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from sktransfer import PretrainedFeatureExtractor
        >>> texts = ["a cat", "a dog", "a cat"]
        >>> ext = PretrainedFeatureExtractor("test-text").fit(texts)
        >>> out = Path(tempfile.mkdtemp()) / "emb.npy"
        >>> ext.transform_to_file(texts, out, chunk_size=2)
        {}
        >>> np.allclose(np.load(out, mmap_mode="r"), ext.transform(texts))
        True
        """
        from sktransfer._writers import check_output_path, write_embeddings

        self._check_fitted()
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size!r}")
        out = check_output_path(path, overwrite)
        samples = self._check_samples(X, reset=False)
        if ids is not None:
            ids = check_ids(ids, len(samples))
            repeated = duplicate_ids(ids)
            if repeated and not allow_duplicate_ids:
                raise ValueError(
                    f"{repeated}. Make the ids unique, or pass "
                    "allow_duplicate_ids=True to keep them."
                )
            if repeated:
                warnings.warn(f"{repeated}; kept.", UserWarning, stacklevel=2)
        loaded = self._load_backbone()
        return write_embeddings(
            lambda chunk: self._embed_samples(loaded, chunk),
            samples,
            out,
            self._n_features_out,
            ids=ids,
            chunk_size=int(chunk_size),
            skip_errors=skip_errors,
            progress=progress,
        )

    def _embed_samples(self, loaded, samples: Samples):
        """Embeddings of ``samples`` through the cache, and the failed rows.

        Keys are computed chunk by chunk, the next chunk by a thread while the
        current one's missing rows are embedded (:func:`keys_ahead`); texts are
        keyed in one go (their keys are cheap, and their batches are grouped by
        length over the whole input)."""
        n, width = len(samples), self._n_features_out
        out = np.empty((n, width), dtype=np.float32)
        store = get_cache(self.cache)
        embedder = self._embedder(loaded)
        errors: dict[int, str] = {}
        copy_of: dict[int, int] = {}
        seen: dict[str, int] = {}
        fill = 0.0 if self.on_error == "zero" else np.nan
        keys: dict[int, str | None] = {}

        def persist(positions, rows):  # finished batches survive a crash
            if store is not None:
                store.put_many([keys[p] for p in positions], rows)

        bar = None  # opened by the first chunk with rows to embed, as before
        try:
            with embedder.workers():  # one pool of threads for every chunk
                for lo, chunk_keys in self._keyed_chunks(loaded, samples, store):
                    keys.update(enumerate(chunk_keys, lo))
                    todo = self._misses(store, chunk_keys, lo, width, out, seen)
                    for i, j in todo.items():
                        if j is not None:
                            copy_of[i] = j
                    todo = [i for i, j in todo.items() if j is None]
                    if not todo:
                        continue
                    if bar is None:
                        bar = embedder.progress(len(todo))
                    else:
                        bar.total += len(todo)
                    feats, errs = embedder.embed(
                        samples, todo, self.on_error, persist, bar=bar
                    )
                    out[todo] = fill if feats is None else feats
                    for p in errs:
                        out[p] = fill
                    errors.update(errs)
        finally:
            if bar is not None:
                bar.close()
            if store is not None:
                store.flush()  # the finished batches, durable
        for i, j in copy_of.items():
            out[i] = out[j]
            if j in errors:
                errors[i] = errors[j]
        return out, errors

    def _keyed_chunks(self, loaded, samples: Samples, store):
        """``(lo, keys)`` for consecutive chunks of ``samples``."""
        n = len(samples)
        if store is None or loaded.is_user_module:  # a user's module may change
            yield 0, [None] * n
            return
        prefix, image_pre = self._key_prefix(loaded)
        if loaded.spec.modality == "text":
            yield 0, sample_keys(prefix, samples.values, image_pre)
            return
        for lo, _, chunk_keys in keys_ahead(prefix, samples.values, image_pre):
            yield lo, chunk_keys

    @staticmethod
    def _misses(store, keys, lo, width, out, seen) -> dict[int, int | None]:
        """Fill ``out`` with the stored rows of one chunk; return the rows left,
        each mapped to None (to embed) or to an earlier row with its key."""
        cached = [None] * len(keys) if store is None else store.get_many(keys, width)
        left: dict[int, int | None] = {}
        for i, (key, row) in enumerate(zip(keys, cached, strict=True), lo):
            if row is not None:
                out[i] = row
            elif key is not None and key in seen:
                left[i] = seen[key]  # embed each distinct sample once
            else:
                if key is not None:
                    seen[key] = i
                left[i] = None
        return left

    def get_feature_names_out(self, input_features=None):
        """Output feature names, after the backbone and the layer.

        ``efficientnet_lite0_0``, ``efficientnet_lite0_1``, ...; with
        ``layer="blocks.4"``, ``efficientnet_lite0_blocks.4_0``, ...; see
        ``feature_prefix`` for the short or a custom prefix.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str

        Examples
        --------
        >>> from sktransfer import PretrainedFeatureExtractor
        >>> ext = PretrainedFeatureExtractor("test-text").fit(["a"])
        >>> ext.get_feature_names_out()[:2].tolist()
        ['test-text_0', 'test-text_1']
        >>> ext.set_params(feature_prefix="short").get_feature_names_out()[0]
        'pretrainedfeatureextractor0'
        """
        self._check_fitted()
        if self.feature_prefix == "short":
            return super().get_feature_names_out(input_features)
        if self.feature_prefix is not None:
            prefix = self.feature_prefix
        else:
            name = re.sub(r"[^\w.\-]+", "_", self.backbone_spec_.name).strip("_")
            layer = "" if self.layer is None else f"{self.layer}_"
            prefix = f"{name}_{layer}"
        return np.asarray(
            [f"{prefix}{i}" for i in range(self._n_features_out)], dtype=object
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # ------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        check_is_fitted(self)
        self._check_network_unchanged()

    def _embedder(self, loaded) -> Embedder:
        run = self._runtime(loaded)
        options = None
        if self.compile is not False:
            options = {} if self.compile is True else dict(self.compile)
        model = loaded.feature_model(run.device, self.layer, self.pooling, options)
        modality = loaded.spec.modality
        auto = self.batch_size == "auto"
        size = default_batch_size(run.device, modality) if auto else self.batch_size
        workers = self.num_workers
        if workers == "auto":
            workers = min(4, os.cpu_count() or 1) if modality == "image" else 0
        return Embedder(
            loaded,
            model,
            run.device,
            run.dtype,
            AutoBatchSize(size, adaptive=auto),
            num_workers=workers,
            max_length=run.max_length,
            normalize=self._normalize(loaded),
            verbose=self.verbose,
        )

    def _normalize(self, loaded) -> bool:
        if self.normalize == "auto":
            return bool(getattr(loaded.spec.preprocessing, "normalize", False))
        return bool(self.normalize)

    def _key_prefix(self, loaded) -> tuple[str, object]:
        """The fingerprint of every setting that changes a row, and the image
        preprocessing that keys a PIL image (None for other backbones)."""
        run = self._runtime(loaded)
        spec = loaded.spec
        prefix = fingerprint(
            loaded.weights_id,
            spec.name,
            spec.preprocessing,
            self.layer,
            self.pooling,
            str(run.dtype),
            run.device.type,
            self._normalize(loaded),
            run.max_length if spec.modality == "text" else None,
        )
        return prefix, (spec.preprocessing if spec.modality == "image" else None)
