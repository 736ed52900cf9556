"""Feature modules: one ``nn.Module`` per modality that turns a batch into features.

:func:`build_feature_model` is the one factory that wraps a network in the module
of its modality, and :func:`feature_width` the one way to learn its output width.

They wrap a loaded network (never copy it) and add the parts every backbone needs
the same way: input normalisation on the device, layer selection by forward hook,
and pooling. The extractor and the fine-tuning estimators both use them, so a
backbone embeds identically whether it is frozen or being trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sktransfer._text import length_groups

__all__ = [
    "ImageFeatureModel",
    "TabularFeatureModel",
    "TextFeatureModel",
    "block_names",
    "build_feature_model",
    "feature_width",
    "pool",
]

_BLOCK_CONTAINERS = (
    "blocks",
    "stages",
    "layers",
    "features",
    "encoder.layer",
    "encoder.layers",
    "encoder.blocks",
    "transformer.layer",
    "transformer.layers",
    "trunk_output",
)


class _StopForward(Exception):
    """Raised by a forward hook to end the pass once the wanted layer has run."""


def pool(
    x: torch.Tensor,
    pooling: str,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pool a feature map or a token sequence to one vector per sample.

    Parameters
    ----------
    x : Tensor
        ``(N, C, H, W)`` feature map, ``(N, T, C)`` token sequence or ``(N, C)``.
    pooling : {"avg", "mean", "max", "cls"}
        ``"avg"`` and ``"mean"`` are the same average (over space or over tokens,
        masked when ``mask`` is given); ``"cls"`` takes the first token.
    mask : Tensor, optional
        ``(N, T)`` attention mask, 1 for real tokens.

    Returns
    -------
    Tensor of shape ``(N, C)``.
    """
    if x.ndim == 2:
        return x
    if x.ndim == 4:
        if pooling in ("avg", "mean"):
            return x.mean(dim=(2, 3))
        if pooling == "max":
            return x.amax(dim=(2, 3))
        raise ValueError(
            f"pooling={pooling!r} needs a token sequence, but this layer returns a "
            "(N, C, H, W) feature map; use pooling='avg' or 'max'."
        )
    if x.ndim == 3:
        if pooling == "cls":
            return x[:, 0]
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        m = mask.to(x.dtype).unsqueeze(-1)
        if pooling in ("avg", "mean"):
            return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if pooling == "max":
            return x.masked_fill(m == 0, torch.finfo(x.dtype).min).amax(1)
        raise ValueError(f"unknown pooling {pooling!r}")
    return x.flatten(1)


def _named(module: nn.Module, name: str) -> nn.Module:
    try:
        return module.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n]
        import difflib

        close = difflib.get_close_matches(name, names, n=5)
        hint = f" Close matches: {close}." if close else ""
        raise ValueError(
            f"layer={name!r} is not a module of this backbone.{hint} "
            "Use sktransfer.backbones.block_names(...) to list the blocks."
        ) from None


def block_names(model) -> list[str]:
    """Names of the model's repeated blocks, input to output.

    They are what ``layer=<int>`` indexes in the extractor and what the
    ``"last_n"`` / ``"gradual"`` fine-tuning strategies unfreeze.

    Parameters
    ----------
    model : nn.Module, str, path or BackboneSpec
        A module, or a backbone as the extractor's ``backbone=`` takes it
        (``"efficientnet_lite0"``): then its network is loaded (once per
        process, as the estimators load it).

    Returns
    -------
    list of str
        e.g. ``["blocks.0", ..., "blocks.6"]`` for an EfficientNet, or
        ``["layer1", ..., "layer4"]`` for a ResNet.

    Examples
    --------
    >>> import torchvision
    >>> block_names(torchvision.models.resnet18())
    ['layer1', 'layer2', 'layer3', 'layer4']
    >>> block_names("efficientnet_lite0")[-2:]
    ['blocks.5', 'blocks.6']
    """
    if not isinstance(model, nn.Module):
        from sktransfer.backbones._factory import load_backbone
        from sktransfer.backbones._registry import get_backbone_spec

        spec = get_backbone_spec(model)
        if spec.modality == "tabular":
            raise ValueError(
                f"{spec.name} is a tabular backbone whose width comes from the "
                "data; pass the fitted estimator's network instead."
            )
        model = load_backbone(spec).model
    inner = getattr(model, "sktransfer_inner", model)
    prefix = "sktransfer_inner." if inner is not model else ""
    for attr in _BLOCK_CONTAINERS:
        try:
            container = inner.get_submodule(attr)
        except AttributeError:
            continue
        if isinstance(container, nn.ModuleList | nn.Sequential) and len(container) > 1:
            return [f"{prefix}{attr}.{i}" for i in range(len(container))]
    numbered = [
        n for n, _ in inner.named_children() if n.rstrip("0123456789") == "layer"
    ]
    if len(numbered) > 1:
        return [prefix + n for n in numbered]
    return [prefix + n for n, _ in inner.named_children()]


class _LayerTap:
    """Capture the output of one named submodule, and stop the pass there."""

    def __init__(self, model: nn.Module, layer: str | int | None):
        if isinstance(layer, int):
            blocks = block_names(model)
            try:
                layer = blocks[layer]
            except IndexError:
                raise ValueError(
                    f"layer={layer} is out of range: this backbone has "
                    f"{len(blocks)} blocks {blocks}."
                ) from None
            layer = layer.removeprefix("sktransfer_inner.")
        self.name = layer
        self.module = None if layer is None else _named(model, layer)

    def run(self, fn, *args, **kwargs) -> torch.Tensor:
        if self.module is None:
            return fn(*args, **kwargs)
        captured: list[torch.Tensor] = []

        def hook(_mod, _inp, out):
            captured.append(out[0] if isinstance(out, tuple | list) else out)
            raise _StopForward

        handle = self.module.register_forward_hook(hook)
        try:
            fn(*args, **kwargs)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured[0]


class ImageFeatureModel(nn.Module):
    """Images in, pooled features out.

    Parameters
    ----------
    model : nn.Module
        The network. timm models (with ``forward_features`` / ``forward_head``) use
        their own pooling for ``pooling="auto"``; other models are called directly
        and must return features (their classifier already removed).
    mean, std : sequence of float
        Normalisation, applied here (on the device) to uint8 or [0, 1] input.
    layer : str or int, optional
        Which block's output to take (a module name, or an index into
        :func:`block_names`). Default: the pooled penultimate features.
    pooling : {"auto", "avg", "max", "cls", "mean"}
        How to pool a feature map or token sequence. Anything but ``"auto"`` with
        ``layer=None`` pools the last block's output (timm: ``forward_features``).
    channels_last : bool
        Convert the input to channels-last memory format (faster for convnets).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        layer: str | int | None = None,
        pooling: str = "auto",
        channels_last: bool = False,
    ):
        super().__init__()
        self.sktransfer_inner = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255)
        self.layer = layer
        self.pooling = pooling
        self.channels_last = channels_last
        self._is_timm = hasattr(model, "forward_features") and hasattr(
            model, "forward_head"
        )
        if layer is None and pooling != "auto" and not self._is_timm:
            # the model's output is already pooled: pool the last block instead
            layer = -1
        self._tap = _LayerTap(model, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() if x.dtype == torch.uint8 else x * 255.0
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model = self.sktransfer_inner
        if self._tap.module is None and self._is_timm:
            feats = model.forward_features(x)
            if self.pooling == "auto":
                return model.forward_head(feats, pre_logits=True)
            return pool(feats, self.pooling)
        out = self._tap.run(model, x)
        if isinstance(out, dict):  # e.g. a model returning named outputs
            out = next(iter(out.values()))
        return pool(out, "avg" if self.pooling == "auto" else self.pooling)


class TextFeatureModel(nn.Module):
    """Token batches in, pooled features out (Hugging Face encoders).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        An encoder returning ``last_hidden_state`` (and ``hidden_states``).
    pooling : {"mean", "cls", "max"}
        Token pooling; masked so padding never counts.
    layer : int, optional
        Index into ``hidden_states`` (0 = embeddings, -1 = last layer). Default:
        the last hidden state.
    group_by_length : bool, default=True
        On the CPU, run a right-padded batch whose lengths differ a lot in
        groups of similar length, each cut to its own longest row
        (:func:`sktransfer._text.length_groups`), and put the rows back in
        order. Each row's features are the same (padding is masked out), up
        to float rounding; the work on padding is not done. Batches drawn at
        random for training were half padding: on 2 CPU cores a forward and
        backward pass of MiniLM over 28 random Rotten Tomatoes snippets ran
        1.26x faster, over 64 snippets 1.61x (``bench_training_step.py``;
        the fine-tuners' batches, already grouped by length, rarely
        split). Not done on other devices (padding is nearly free there, one
        more pass is not; unmeasured), nor while tracing or exporting.
    """

    def __init__(
        self,
        model: nn.Module,
        pooling: str = "mean",
        layer=None,
        group_by_length: bool = True,
    ):
        super().__init__()
        self.sktransfer_inner = model
        self.pooling = pooling
        if layer is not None and not isinstance(layer, int):
            raise ValueError(
                f"layer={layer!r}: for a text backbone, layer is an index into the "
                "hidden states (0 = embeddings, -1 = last layer)."
            )
        self.layer = layer
        self.group_by_length = group_by_length

    def forward(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        groups = self._length_groups(input_ids, attention_mask, kwargs)
        if groups is None:
            return self._features(input_ids, attention_mask, **kwargs)
        parts, order = [], []
        for rows, width in groups:
            idx = torch.as_tensor(rows, device=input_ids.device)
            order.append(idx)
            parts.append(
                self._features(
                    input_ids[idx, :width],
                    attention_mask[idx, :width],
                    **{k: v[idx, :width] for k, v in kwargs.items()},
                )
            )
        order = torch.cat(order)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return torch.cat(parts)[inverse]

    def _length_groups(self, input_ids, attention_mask, kwargs):
        """``[(rows, width), ...]`` when splitting by length pays, else None."""
        if (  # tracing first: a shape test would specialise the traced graph
            torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or torch.compiler.is_exporting()
            or torch.onnx.is_in_onnx_export()
            or not getattr(self, "group_by_length", True)  # pickled before it existed
            or input_ids.device.type != "cpu"
            or input_ids.ndim != 2
            or len(input_ids) < 2
            or any(
                not torch.is_tensor(v) or v.shape != input_ids.shape
                for v in kwargs.values()
            )
        ):
            return None
        mask = attention_mask != 0
        lengths = mask.sum(1)
        positions = torch.arange(mask.shape[1], device=mask.device)
        if not torch.equal(mask, positions < lengths[:, None]):
            return None  # not right-padded: cutting columns would drop tokens
        lengths = lengths.numpy()
        groups = length_groups(lengths)
        if len(groups) < 2:
            return None
        return [(rows, max(int(lengths[rows].max()), 1)) for rows in groups]

    def _features(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        out = self.sktransfer_inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=self.layer is not None,
            **kwargs,
        )
        if self.layer is None:
            hidden = out.last_hidden_state
        else:
            states = out.hidden_states
            if not -len(states) <= self.layer < len(states):
                raise ValueError(
                    f"layer={self.layer} is out of range: this backbone has "
                    f"{len(states)} hidden states (0 = embeddings)."
                )
            hidden = states[self.layer]
        return pool(hidden, self.pooling, attention_mask)


class TabularFeatureModel(nn.Module):
    """Float rows in, features out (for numeric test backbones)."""

    def __init__(self, model: nn.Module, layer=None, pooling: str = "auto"):
        super().__init__()
        self.sktransfer_inner = model
        self._tap = _LayerTap(model, layer)
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._tap.run(self.sktransfer_inner, x.float())
        return pool(out, "avg" if self.pooling == "auto" else self.pooling)


def _is_convnet(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def build_feature_model(
    spec,
    model: nn.Module,
    layer=None,
    pooling: str = "auto",
    channels_last: bool = True,
) -> nn.Module:
    """Wrap ``model`` in the feature module of ``spec``'s modality.

    Parameters
    ----------
    spec : BackboneSpec
        The (loaded) spec: modality and preprocessing.
    model : nn.Module
        The network; wrapped, not copied.
    layer, pooling
        As in :class:`~sktransfer.PretrainedFeatureExtractor`.
    channels_last : bool
        Use channels-last memory for convnets (faster on CPU and GPU).

    Returns
    -------
    nn.Module
    """
    if spec.option("tower") is not None:  # CLIP / SigLIP: projected embeddings
        from sktransfer.backbones._dual import DualTowerFeatureModel

        if spec.modality == "image":
            pre = spec.preprocessing
            return DualTowerFeatureModel(model, "image", pre.mean, pre.std)
        pad_to = None
        if spec.option("dual") == "siglip":  # trained on max_length padding
            pad_to = spec.preprocessing.max_length
        pad_id = spec.option("pad_id", 0)
        return DualTowerFeatureModel(model, "text", pad_to=pad_to, pad_id=pad_id)
    if spec.modality == "image":
        pre = spec.preprocessing
        use_cl = channels_last and _is_convnet(model)
        if use_cl:
            model.to(memory_format=torch.channels_last)
        return ImageFeatureModel(model, pre.mean, pre.std, layer, pooling, use_cl)
    if spec.modality == "text":
        if pooling == "auto":
            pooling = spec.preprocessing.pooling
        return TextFeatureModel(model, pooling, layer)
    return TabularFeatureModel(model, layer, pooling)


def feature_width(
    features: nn.Module, spec, tokenizer=None, n_features_in: int | None = None
) -> int:
    """Output width of ``features``, from one tiny forward pass on the CPU.

    The module's train/eval mode and the global RNG are left as they were.
    """
    if spec.modality == "image":
        size = spec.preprocessing.size
        inputs: tuple = (torch.zeros((1, 3, size, size), dtype=torch.uint8),)
        kwargs = {}
    elif spec.modality == "text":
        enc = tokenizer(["probe"], return_tensors="pt")
        inputs = ()
        kwargs = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
        }
    else:
        inputs = (torch.zeros((1, int(n_features_in)), dtype=torch.float32),)
        kwargs = {}
    was_training = features.training
    features.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            out = features(*inputs, **kwargs)
    finally:
        features.train(was_training)
    return int(out.shape[-1])
