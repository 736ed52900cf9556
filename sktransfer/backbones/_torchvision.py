"""torchvision backbones through the multi-weight API.

The weights enum couples weights to their preprocessing (``Weights.transforms()``),
so the crop size, resize, mean/std and interpolation always match the checkpoint.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._spec import BackboneSpec, ImagePreprocessing
from sktransfer.backbones._weights import (
    RANDOM_ID,
    Attempts,
    file_identity,
    is_random,
    load_state_dict,
    load_weights,
    seeded_init,
    weights_path,
)

__all__ = ["list_torchvision", "load_torchvision", "strip_classifier"]

_HEAD_ATTRS = ("fc", "classifier", "heads", "head")


def list_torchvision() -> list[str]:
    """Names of torchvision's image-classification builders."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def strip_classifier(model: nn.Module) -> nn.Module:
    """Replace the final classification layer by ``nn.Identity`` (in place).

    The model then returns its pooled penultimate features.
    """
    for attr in _HEAD_ATTRS:
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model
        if isinstance(head, nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Identity()
                    return model
    raise ValueError(
        f"Could not find the classifier of {type(model).__name__} "
        f"(looked for a Linear layer in {_HEAD_ATTRS}); pass the model as a ready "
        "nn.Module that returns features instead."
    )


def _weights_enum(spec: BackboneSpec, weights):
    from torchvision.models import get_model_weights

    enum = get_model_weights(spec.model_id)
    tag = weights if isinstance(weights, str) and not weights_path(weights) else None
    if is_random(tag):  # the architecture's preprocessing, no weights
        tag = None
    tag = tag or spec.weights or "DEFAULT"
    try:
        return enum[tag] if tag != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(
            f"{spec.name!r} has no weights {tag!r}; choose one of "
            f"{[w.name for w in enum]} or pass a weights file path."
        ) from None


def _preprocessing(w) -> ImagePreprocessing:
    t = w.transforms()
    size = t.crop_size[0]
    return ImagePreprocessing(
        size=size,
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
        crop_pct=size / t.resize_size[0],
    )


def load_torchvision(spec: BackboneSpec, weights=None) -> LoadedBackbone:
    """Build ``spec.model_id`` and load its weights (path, hub cache, download)."""
    from torchvision.models import get_model

    with seeded_init():
        model = get_model(spec.model_id, weights=None)
    w = _weights_enum(spec, weights)
    pre = _preprocessing(w)
    attempts = Attempts(spec.name)
    path = weights_path(weights)
    if is_random(weights):
        weights_id = RANDOM_ID
    elif path is not None:
        load_weights(model, load_state_dict(path), repr(str(path)))
        weights_id = file_identity(path)
    else:
        attempts.add("weights=", "not given")
        cached = os.path.join(
            torch.hub.get_dir(), "checkpoints", os.path.basename(w.url)
        )
        if os.path.isfile(cached):
            load_weights(model, load_state_dict(cached), repr(str(cached)))
            weights_id = file_identity(cached)
        else:
            attempts.add("torch hub cache", f"{cached} not found")
            state = attempts.download_or_fail(
                lambda: w.get_state_dict(progress=False),
                f"Pass weights='/path/to/{os.path.basename(w.url)}', or put that file "
                f"in {os.path.dirname(cached)}, or allow downloads.",
            )
            load_weights(model, state, f"torchvision's {w.url}")
            weights_id = f"torchvision:{w.url}"
    strip_classifier(model)
    return LoadedBackbone(spec.replace(preprocessing=pre), model, None, weights_id)
