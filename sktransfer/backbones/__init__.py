"""Backbones: the registry, specs, loaders and feature modules."""

from sktransfer.backbones._custom import from_module
from sktransfer.backbones._dual import save_tiny_dual_encoder, tower
from sktransfer.backbones._factory import clear_loaded, load_backbone, loaded_backbones
from sktransfer.backbones._features import (
    ImageFeatureModel,
    TabularFeatureModel,
    TextFeatureModel,
    block_names,
    build_feature_model,
    feature_width,
    pool,
)
from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._packaged import map_efficientnet_lite0_keys
from sktransfer.backbones._registry import (
    get_backbone_spec,
    list_backbones,
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
    "build_feature_model",
    "clear_loaded",
    "downloads_allowed",
    "feature_width",
    "from_module",
    "get_backbone_spec",
    "list_backbones",
    "load_backbone",
    "load_state_dict",
    "loaded_backbones",
    "map_efficientnet_lite0_keys",
    "pool",
    "register_backbone",
    "save_tiny_dual_encoder",
    "tower",
]
