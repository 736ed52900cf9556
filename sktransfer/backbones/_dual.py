"""Image-text dual encoders (CLIP, SigLIP): one model, two towers.

A transformers ``CLIPModel`` or ``SiglipModel`` folder (or hub id) is one
backbone with two towers that embed into one space: its spec is the *image*
tower (what :class:`~sktransfer.PretrainedFeatureExtractor` embeds images
with), and :func:`tower` gives the *text* tower's spec. Each tower's features
are the model's projected embeddings (``get_image_features`` /
``get_text_features``), so an image and a class name can be compared by
cosine similarity. The tower is a loader option, so it is part of the spec
and of the cache key.

Text batches are padded the way each model was trained: CLIP pools its
end-of-text token under the attention mask (batch padding changes nothing);
SigLIP pools the last position of a sequence padded to ``max_length``, so its
tower pads every batch to that length itself (an embedding never depends on
the batch it came in).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sktransfer.backbones._spec import BackboneSpec, ImagePreprocessing

__all__ = [
    "DUAL_MODEL_TYPES",
    "DualTowerFeatureModel",
    "cached_hub_config",
    "dual_image_preprocessing",
    "dual_spec",
    "is_dual",
    "save_tiny_dual_encoder",
    "tower",
]

DUAL_MODEL_TYPES = ("clip", "siglip")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def is_dual(spec: BackboneSpec) -> bool:
    """Whether ``spec`` is a tower of an image-text dual encoder."""
    return spec.option("tower") is not None


def cached_hub_config(ident: str) -> tuple[Path, dict] | None:
    """``(snapshot folder, config)`` of a hub id in the Hugging Face cache
    (``HF_HUB_CACHE``), read offline; None when it is not cached."""
    import os

    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            ident, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE") or None
        )
    except Exception:  # not a valid repo id, or no huggingface_hub
        return None
    if not isinstance(found, str):
        return None
    path = Path(found)
    return path.parent, json.loads(path.read_text())


def dual_spec(
    path: str, cfg: dict, name: str | None = None, folder: Path | None = None
) -> BackboneSpec:
    """The image tower's spec of a CLIP / SigLIP folder or hub id (``cfg``:
    its ``config.json``; ``folder``: where its files are, if not ``path``)."""
    folder = Path(path) if folder is None else folder
    return BackboneSpec(
        name or str(path),
        "image",
        "hf",
        str(path),
        preprocessing=dual_image_preprocessing(folder, cfg),
        feature_dim=cfg.get("projection_dim") or _text_width(cfg),
        description=f"{cfg['model_type']} image-text dual encoder from {path}",
        options=(("tower", "image"), ("dual", cfg["model_type"])),
    )


def _text_width(cfg: dict) -> int | None:
    return (cfg.get("text_config") or {}).get("hidden_size")


def dual_image_preprocessing(folder: Path, cfg: dict) -> ImagePreprocessing:
    """The image tower's input contract from ``preprocessor_config.json``
    (CLIP: shorter side to ``shortest_edge``, centre crop; SigLIP: a square
    resize, here a resize of the shorter side and a centre crop, the same on
    square images), its mean, std and resampling filter."""
    pre_file = folder / "preprocessor_config.json"
    pre = json.loads(pre_file.read_text()) if pre_file.is_file() else {}
    vision = cfg.get("vision_config") or {}
    side = int(vision.get("image_size", 224))
    crop = pre.get("crop_size") or pre.get("size") or {}
    if isinstance(crop, dict):
        side = int(crop.get("height") or crop.get("shortest_edge") or side)
    elif isinstance(crop, int):
        side = crop
    size = pre.get("size") or {}
    shortest = size.get("shortest_edge", side) if isinstance(size, dict) else side
    return ImagePreprocessing(
        size=side,
        mean=tuple(pre.get("image_mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(pre.get("image_std", (0.26862954, 0.26130258, 0.27577711))),
        interpolation=_RESAMPLE.get(pre.get("resample", 3), "bicubic"),
        crop_pct=min(side / max(int(shortest), 1), 1.0),
    )


def tower(spec: BackboneSpec, which: str) -> BackboneSpec:
    """The spec of the ``"image"`` or ``"text"`` tower of a dual encoder.

    Examples
    --------
    >>> import tempfile
    >>> folder = save_tiny_dual_encoder(tempfile.mkdtemp())
    >>> from sktransfer.backbones import get_backbone_spec
    >>> image = get_backbone_spec(folder)
    >>> image.modality, tower(image, "text").modality
    ('image', 'text')
    """
    if not is_dual(spec):
        raise ValueError(f"{spec.name!r} is not an image-text dual encoder.")
    if which not in ("image", "text"):
        raise ValueError(f"which must be 'image' or 'text'; got {which!r}.")
    if spec.option("tower") == which:
        return spec
    keep = ("tower", "image_preprocessing", "pad_id")
    options = tuple((k, v) for k, v in spec.options if k not in keep)
    if which == "image":
        return spec.replace(
            modality="image",
            preprocessing=spec.option("image_preprocessing"),
            options=(("tower", "image"), *options),
        )
    return spec.replace(
        modality="text",
        preprocessing=None,  # the tokenizer's, filled in when it loads
        options=(
            ("tower", "text"),
            *options,
            ("image_preprocessing", spec.preprocessing),
        ),
    )


class DualTowerFeatureModel(nn.Module):
    """One tower of a dual encoder: inputs in, projected embeddings out.

    Images come as uint8 (or 0-1 float) ``(N, 3, H, W)`` tensors, normalised
    here with the tower's mean and std; texts as ``input_ids`` /
    ``attention_mask``.
    """

    def __init__(self, model: nn.Module, which: str, mean=None, std=None,
                 pad_to: int | None = None, pad_id: int = 0):  # fmt: skip
        super().__init__()
        self.sktransfer_inner = model
        self.which = which
        self.pad_to, self.pad_id = pad_to, pad_id
        if which == "image":
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, x=None, input_ids=None, attention_mask=None, **kwargs):
        model = self.sktransfer_inner
        if self.which == "image":
            x = x.float() if x.dtype == torch.uint8 else x * 255.0
            out = model.get_image_features(pixel_values=(x - self.mean) / self.std)
        else:
            if self.pad_to is not None:  # SigLIP: the last position of max_length
                input_ids = input_ids[:, : self.pad_to]
                extra = self.pad_to - input_ids.shape[1]
                if extra > 0:
                    pad = input_ids.new_full((len(input_ids), extra), self.pad_id)
                    input_ids = torch.cat([input_ids, pad], dim=1)
                out = model.get_text_features(input_ids=input_ids)
            else:
                out = model.get_text_features(
                    input_ids=input_ids, attention_mask=attention_mask
                )
        # transformers 5 returns the output object, 4 the projected tensor
        return getattr(out, "pooler_output", out)


def save_tiny_dual_encoder(folder, kind: str = "clip", seed: int = 0) -> str:
    """Write a tiny, randomly initialised CLIP or SigLIP folder (model,
    tokenizer, image processor), as ``save_pretrained`` writes a real one.

    No image-text weights ship in any package, so tests, docs and demos build
    this one (32x32 images, 16-dimensional embeddings, a word-level tokenizer
    of a few hundred English words). Its predictions mean nothing; the code
    path is the one real CLIP and SigLIP folders take.

    Parameters
    ----------
    folder : str or path
        Where to write (created).
    kind : {"clip", "siglip"}, default="clip"
    seed : int, default=0

    Returns
    -------
    str
        The folder.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if kind not in DUAL_MODEL_TYPES:
        raise ValueError(f"kind must be one of {DUAL_MODEL_TYPES}; got {kind!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(set(_WORDS.split()))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    if kind == "clip":
        tok.post_processor = processors.TemplateProcessing(
            single="[BOS] $A [EOS]",
            special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])],
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
        bos_token="[BOS]", eos_token="[EOS]", model_max_length=16,
    )  # fmt: skip
    text = {
        "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
        "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 16, "pad_token_id": 0,
        "bos_token_id": vocab["[BOS]"], "eos_token_id": vocab["[EOS]"],
    }  # fmt: skip
    vision = {
        "image_size": 32, "patch_size": 8, "hidden_size": 32,
        "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
    }  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "clip":
            from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

            config = CLIPConfig(
                text_config=text, vision_config=vision, projection_dim=16
            )
            model = CLIPModel(config)
            processor = CLIPImageProcessor(
                size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
            )
        else:
            from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

            text["projection_size"] = 32
            config = SiglipConfig(text_config=text, vision_config=vision)
            model = SiglipModel(config)
            processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


_WORDS = """
a an the of and or in on at with photo picture image drawing sketch painting
this is that it its there here text about kind type sort class label
cat dog bird fish horse cow sheep pig duck chicken mouse rabbit lion tiger bear
car truck bus bicycle boat plane train ship road street house building tree
flower leaf grass sky cloud sun moon star water sea river lake mountain
face person man woman child people hand eye smile hair
red green blue yellow black white dark light big small round square
digit number zero one two three four five six seven eight nine
letter word sign symbol icon logo clip art glyph font
good bad great awful fine dull film movie story plot actor
apple banana orange food cake bread cup plate table chair door window book
"""
