"""PretrainedFeatureExtractor: a frozen pretrained backbone as a sklearn transformer."""

from __future__ import annotations

import os
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from sktransfer._cache import (
    DiskCache,
    MemoryCache,
    fingerprint,
    get_cache,
    image_path_key,
    sample_key,
)
from sktransfer._compat import Interval, StrOptions, _fit_context
from sktransfer._embed import (
    Embedder,
    build_feature_model,
    compiled_feature_model,
    model_on_device,
)
from sktransfer._inputs import Samples, as_samples
from sktransfer._runtime import (
    AutoBatchSize,
    default_batch_size,
    resolve_device,
    resolve_precision,
)
from sktransfer.backbones._registry import get_backbone_spec, load_backbone
from sktransfer.backbones._spec import BackboneSpec
from sktransfer.exceptions import InputError, InputWarning

__all__ = ["PretrainedFeatureExtractor"]


# Output width per network (weights identity, name, input width), layer and
# pooling: fit probes once per process, not once per CV fold and grid point.
# User modules (which may change in place) are always probed.
_WIDTHS: dict[tuple, int] = {}


def modality_tags(tags, backbone):
    """Input tags for ``backbone``'s modality (2-D arrays only for tabular)."""
    try:
        modality = get_backbone_spec(backbone).modality
    except Exception:  # an invalid backbone is reported by fit, not by tags
        modality = "image"
    tags.input_tags.two_d_array = modality == "tabular"
    tags.input_tags.string = modality == "text"
    return tags


class PretrainedFeatureExtractor(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
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
        Samples per forward pass. ``"auto"`` starts at 32 (CPU) or 256 (GPU) and
        halves on out-of-memory errors.
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast precision. ``"auto"`` is bf16 (or fp16) on a GPU, fp32 on the CPU.
    max_length : int, default=None
        Longest token sequence for texts (None: the backbone's own limit).
    normalize : bool or "auto", default="auto"
        L2-normalise each embedding. ``"auto"`` follows the backbone (True for a
        sentence-transformers folder with a ``Normalize`` module).
    cache : "memory", str, path or None, default="memory"
        Embedding cache. ``"memory"``: a bounded, process-wide in-memory cache, so a
        sample is embedded once across clones, CV folds and grid points. A directory
        path: an on-disk cache shared by processes and runs. None: no caching.
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
        spec = get_backbone_spec(self.backbone)
        if self.cache == "":
            raise ValueError("cache='' is not a directory; use None for no cache.")
        self._validate(X, spec, reset=True)
        self.device_ = resolve_device(self.device)
        loaded = self._loaded(spec)
        self.backbone_spec_ = loaded.spec
        key = (
            loaded.weights_id,
            loaded.spec.name,
            getattr(self, "n_features_in_", None),
            repr(self.layer),
            self.pooling,
        )
        width = _WIDTHS.get(key)
        if width is None or loaded.spec.source == "module":
            probe = self._probe_input(loaded.spec)
            width = self._embed(loaded, probe, [0])[0].shape[1]
            _WIDTHS[key] = width
        self._n_features_out = width
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
        check_is_fitted(self)
        spec = get_backbone_spec(self.backbone)
        samples = self._validate(X, spec, reset=False)
        loaded = self._loaded(spec)
        n = len(samples)
        out = np.empty((n, self._n_features_out), dtype=np.float32)
        store = get_cache(self.cache)
        keys = self._keys(loaded, samples) if store is not None else [None] * n
        cached = store.get_many(keys) if store is not None else [None] * n
        missing = [i for i, row in enumerate(cached) if row is None]
        for i, row in enumerate(cached):
            if row is not None:
                out[i] = row
        errors: dict[int, str] = {}
        if missing:
            todo, copy_of, seen = [], {}, {}
            for i in missing:  # embed each distinct uncached sample once
                k = keys[i]
                if k is not None and k in seen:
                    copy_of[i] = seen[k]
                    continue
                if k is not None:
                    seen[k] = i
                todo.append(i)
            feats, errors = self._embed(loaded, samples, todo)
            fill = 0.0 if self.on_error == "zero" else np.nan
            out[todo] = fill if feats is None else feats
            for p in errors:
                out[p] = fill
            for i, j in copy_of.items():
                out[i] = out[j]
                if j in errors:
                    errors[i] = errors[j]
            good = [i for i in todo if i not in errors]
            if store is not None and good:
                store.put_many([keys[i] for i in good], out[good])
        return out, errors

    def __sklearn_tags__(self):
        tags = modality_tags(super().__sklearn_tags__(), self.backbone)
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # ------------------------------------------------------------ helpers
    def _validate(self, X, spec: BackboneSpec, reset: bool) -> Samples:
        if spec.modality == "tabular":
            X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
            return Samples(X)
        samples = as_samples(X, spec.modality)
        if reset:
            self.n_features_in_ = 1
            if samples.feature_names is not None:
                self.feature_names_in_ = samples.feature_names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif (
            samples.feature_names is not None
            and hasattr(self, "feature_names_in_")
            and list(samples.feature_names) != list(self.feature_names_in_)
        ):
            raise InputError(
                f"X has column {samples.feature_names[0]!r}, but this extractor was "
                f"fitted on column {self.feature_names_in_[0]!r}."
            )
        return samples

    def _loaded(self, spec: BackboneSpec):
        n_in = self.n_features_in_ if spec.modality == "tabular" else None
        return load_backbone(
            spec,
            self.weights,
            n_features_in=n_in,
            trust_remote_code=self.trust_remote_code,
        )

    def _probe_input(self, spec: BackboneSpec) -> Samples:
        if spec.modality == "image":
            return Samples([np.zeros((spec.preprocessing.size,) * 2 + (3,), np.uint8)])
        if spec.modality == "text":
            return Samples(["probe"])
        return Samples(np.zeros((1, self.n_features_in_), np.float32))

    def _settings(self, loaded):
        device = resolve_device(self.device)
        dtype = resolve_precision(self.precision, device)
        pre = loaded.spec.preprocessing
        normalize = self.normalize
        if normalize == "auto":
            normalize = bool(getattr(pre, "normalize", False))
        max_length = self.max_length or getattr(pre, "max_length", 512)
        return device, dtype, bool(normalize), max_length

    def _embed(self, loaded, samples: Samples, positions: list[int]):
        device, dtype, normalize, max_length = self._settings(loaded)
        if self.compile is not False:
            options = {} if self.compile is True else dict(self.compile)
            model = compiled_feature_model(
                loaded, device, self.layer, self.pooling, options
            )
        else:
            model = build_feature_model(
                loaded, model_on_device(loaded, device), self.layer, self.pooling
            ).to(device)
        modality = loaded.spec.modality
        auto = self.batch_size == "auto"
        size = default_batch_size(device, modality) if auto else self.batch_size
        workers = self.num_workers
        if workers == "auto":
            workers = min(4, os.cpu_count() or 1) if modality == "image" else 0
        embedder = Embedder(
            loaded,
            model,
            device,
            dtype,
            AutoBatchSize(size, adaptive=auto),
            num_workers=workers,
            max_length=max_length,
            normalize=normalize,
            verbose=self.verbose,
        )
        return embedder.embed(samples, positions, self.on_error)

    def _keys(self, loaded, samples: Samples) -> list:
        device, dtype, normalize, max_length = self._settings(loaded)
        prefix = fingerprint(
            loaded.weights_id,
            loaded.spec.name,
            loaded.spec.preprocessing,
            self.layer,
            self.pooling,
            str(dtype),
            device.type,
            normalize,
            max_length if loaded.spec.modality == "text" else None,
        )
        if loaded.spec.source == "module":
            return [None] * len(samples)  # a user's module may change in place
        if loaded.spec.modality == "image":
            return [
                image_path_key(prefix, v)
                if isinstance(v, str)
                else sample_key(prefix, v)
                for v in samples.values
            ]
        return [sample_key(prefix, v) for v in samples.values]
