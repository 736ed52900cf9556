"""Backbones: the registry, specs, loaders and feature modules."""

from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._modules import (
    ImageFeatureModel,
    TabularFeatureModel,
    TextFeatureModel,
    block_names,
    pool,
)
from sktransfer.backbones._packaged import map_efficientnet_lite0_keys
from sktransfer.backbones._registry import (
    clear_loaded,
    from_module,
    get_backbone_spec,
    list_backbones,
    load_backbone,
    register_backbone,
)
from sktransfer.backbones._spec import (
    BackboneSpec,
    ImagePreprocessing,
    TextPreprocessing,
)
from sktransfer.backbones._weights import downloads_allowed, load_state_dict

__all__ = [
    "BackboneSpec",
    "ImageFeatureModel",
    "ImagePreprocessing",
    "LoadedBackbone",
    "TabularFeatureModel",
    "TextFeatureModel",
    "TextPreprocessing",
    "block_names",
    "clear_loaded",
    "downloads_allowed",
    "from_module",
    "get_backbone_spec",
    "list_backbones",
    "load_backbone",
    "load_state_dict",
    "map_efficientnet_lite0_keys",
    "pool",
    "register_backbone",
]
