"""Specs for what users bring: a ready ``nn.Module``, or a local model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from sktransfer.backbones._spec import (
    BackboneSpec,
    ImagePreprocessing,
    TextPreprocessing,
)
from sktransfer.exceptions import BackboneNotFoundError

__all__ = ["from_module", "local_spec"]


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


def local_spec(path: str) -> BackboneSpec:
    """The spec of a local model folder (transformers, sentence-transformers or
    timm); a bare weights file is an error that asks for the architecture."""
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
        from sktransfer.backbones._dual import DUAL_MODEL_TYPES, dual_spec

        if cfg.get("model_type") in DUAL_MODEL_TYPES:  # CLIP, SigLIP
            return dual_spec(str(p), cfg)
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
