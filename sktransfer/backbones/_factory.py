"""The factory: specs to loaded backbones, once per process, bounded.

Dispatches to one loader per source (torchvision, timm, Hugging Face, packaged
weights, test backbones, a user's module) and keeps up to ``MAX_LOADED`` loaded
backbones (least recently used out). Evicting one, or :func:`clear_loaded`,
releases everything derived from it (:meth:`LoadedBackbone.release`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from typing import Any

from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._registry import get_backbone_spec
from sktransfer.backbones._weights import file_identity, weights_path

__all__ = ["MAX_LOADED", "clear_loaded", "load_backbone", "loaded_backbones"]

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
        _keep_decoding_choice(loaded, spec)
        loaded.model.eval()
        if spec.source != "module":  # never change a user's own module's flags
            loaded.model.requires_grad_(False)
        _LOADED[key] = loaded
        while len(_LOADED) > MAX_LOADED:
            _, evicted = _LOADED.popitem(last=False)
            evicted.release()
        return loaded


def _keep_decoding_choice(loaded: LoadedBackbone, spec) -> None:
    """Loaders take the preprocessing from the weights' own config (size,
    interpolation, normalisation); how images are decoded is the spec's choice
    (``reduced_decode``), so it is carried over."""
    ours, theirs = spec.preprocessing, loaded.spec.preprocessing
    choice = getattr(ours, "reduced_decode", None)
    if choice is not None and getattr(theirs, "reduced_decode", choice) != choice:
        loaded.spec = loaded.spec.replace(
            preprocessing=dataclasses.replace(theirs, reduced_decode=choice)
        )


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
        # never cached (it may change in place), so no identity is needed
        return LoadedBackbone(
            spec, spec.option("module"), spec.option("tokenizer"), "user-module"
        )
    raise ValueError(f"unknown backbone source {spec.source!r}")  # pragma: no cover


def clear_loaded() -> None:
    """Forget every loaded backbone and what derives from it (frees memory)."""
    with _LOCK:
        for loaded in _LOADED.values():
            loaded.release()
        _LOADED.clear()


def loaded_backbones() -> list[LoadedBackbone]:
    """The backbones loaded now, least recently used first.

    Examples
    --------
    >>> clear_loaded()
    >>> _ = load_backbone("test-cnn")
    >>> [b.spec.name for b in loaded_backbones()]
    ['test-cnn']
    """
    with _LOCK:
        return list(_LOADED.values())
