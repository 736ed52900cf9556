"""Backbone names: registration, resolution to a :class:`BackboneSpec`, listing.

Naming
------
- a registered short name: ``"efficientnet_lite0"``, ``"all-MiniLM-L6-v2"``,
  ``"resnet50"``, ``"test-cnn"`` (case-insensitive);
- a qualified name: ``"torchvision:<builder>"``, ``"timm:<architecture>"``,
  ``"hf:<hub id or local folder>"``;
- a local folder (a transformers / sentence-transformers folder, or a timm folder
  with ``config.json`` + ``model.safetensors``);
- a ready ``nn.Module`` (see :func:`from_module`) or a :class:`BackboneSpec`.

Nothing here loads a network: that is :mod:`sktransfer.backbones._factory`.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from typing import Any

from torch import nn

from sktransfer.backbones._catalogue import builtin_specs
from sktransfer.backbones._custom import from_module, local_spec
from sktransfer.backbones._spec import BackboneSpec
from sktransfer.exceptions import BackboneNotFoundError

__all__ = [
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
]

_REGISTRY: dict[str, BackboneSpec] = {}


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


for _spec in builtin_specs():
    register_backbone(_spec)


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
            return local_spec(ident).replace(name=backbone)
        from sktransfer.backbones._dual import (
            DUAL_MODEL_TYPES,
            cached_hub_config,
            dual_spec,
        )

        cached = cached_hub_config(ident)
        if cached is not None and cached[1].get("model_type") in DUAL_MODEL_TYPES:
            return dual_spec(ident, cached[1], name=backbone, folder=cached[0])
        return BackboneSpec(backbone, "text", "hf", ident)
    if os.path.exists(backbone):
        return local_spec(backbone)
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
        f"Unknown backbone {name!r}.{hint} List the registered names with "
        "sktransfer.list_backbones() in Python or `sktransfer backbones` in a "
        "shell; use 'torchvision:<name>', 'timm:<name>' or 'hf:<hub id or "
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
