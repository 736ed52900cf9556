"""timm backbones: any ``timm.create_model`` architecture.

Weights come from ``weights=`` (a file), then the Hugging Face cache that timm uses
(``timm/<arch>.<tag>``), then timm's own download. The preprocessing is timm's
``resolve_data_config`` for the model, so it always matches the pretrained config.
"""

from __future__ import annotations

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

__all__ = ["hf_cache_file", "list_timm", "load_timm", "timm_preprocessing"]

_INSTALL = "timm is not installed: pip install 'sktransfer[timm]'"


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return timm


def list_timm(pretrained: bool = False) -> list[str]:
    """timm architecture names ([] when timm is not installed)."""
    try:
        timm = _timm()
    except ImportError:
        return []
    return sorted(timm.list_models(pretrained=pretrained))


def hf_cache_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """The first of ``filenames`` already in the local Hugging Face cache."""
    import os

    from huggingface_hub import try_to_load_from_cache

    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    for name in filenames:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def timm_preprocessing(model) -> ImagePreprocessing:
    """timm's pretrained data config as an :class:`ImagePreprocessing`."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return ImagePreprocessing(
        size=cfg["input_size"][-1],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg["interpolation"],
        crop_pct=cfg.get("crop_pct", 0.875),
    )


def load_timm(spec: BackboneSpec, weights=None) -> LoadedBackbone:
    """Create ``spec.model_id`` with timm and load its weights."""
    timm = _timm()
    arch = spec.model_id
    tag = weights if isinstance(weights, str) and not weights_path(weights) else None
    if tag and not is_random(tag):
        arch = f"{arch.split('.')[0]}.{tag}"
    with seeded_init():
        model = timm.create_model(arch, pretrained=False, **dict(spec.options))
    path = weights_path(weights)
    if is_random(weights):
        weights_id = RANDOM_ID
    elif path is not None:
        load_weights(model, load_state_dict(path), repr(str(path)))
        weights_id = file_identity(path)
    else:
        attempts = Attempts(spec.name)
        attempts.add("weights=", "not given")
        hub_id = model.pretrained_cfg.get("hf_hub_id")
        cached = hub_id and hf_cache_file(
            hub_id, ("model.safetensors", "pytorch_model.bin")
        )
        if cached:
            load_weights(model, load_state_dict(cached), repr(str(cached)))
            weights_id = file_identity(cached)
        else:
            attempts.add("Hugging Face cache", f"{hub_id or arch!r} not cached")

            def download():
                from timm.models import load_pretrained

                load_pretrained(model)
                return model

            attempts.download_or_fail(
                download,
                "Pass weights='/path/to/model.safetensors', or run once with network "
                f"access so that timm caches {hub_id or arch!r}.",
            )
            weights_id = f"timm:{hub_id or arch}"
    pre = timm_preprocessing(model)
    return LoadedBackbone(spec.replace(preprocessing=pre), model, None, weights_id)
