"""The torch side of an export: what goes in, the network, what comes out.

Images enter as ``uint8 (N, H, W, 3)`` already at the backbone's input size
(the decode, resize and crop stay outside the graph, where Pillow does them);
the layout change and the normalisation are inside. Texts enter as token ids
and an attention mask (``int64 (N, T)``). The graph is exported by torch's
``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9:
the TorchScript one gave wrong outputs on our backbones), with a dynamic batch
(and sequence) dimension.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

__all__ = ["ClassifierGraph", "FeatureGraph", "RegressorGraph", "export_graph"]


class FeatureGraph(nn.Module):
    """Inputs to embeddings: the extractor's forward pass as one module.

    Parameters
    ----------
    features : nn.Module
        An ``ImageFeatureModel`` / ``TextFeatureModel``.
    modality : {"image", "text"}
    normalize : bool
        L2-normalise the embeddings (the extractor's ``normalize``).
    """

    def __init__(self, features: nn.Module, modality: str, normalize: bool = False):
        super().__init__()
        self.features = features
        self.modality = modality
        self.normalize = normalize

    def embed(self, *inputs) -> torch.Tensor:
        if self.modality == "image":
            out = self.features(inputs[0].permute(0, 3, 1, 2))
        else:
            out = self.features(input_ids=inputs[0], attention_mask=inputs[1])
        out = out.float()
        if self.normalize:
            out = nn.functional.normalize(out, dim=1)
        return out

    def forward(self, *inputs):
        return self.embed(*inputs)


class ClassifierGraph(FeatureGraph):
    """A fine-tuned classifier: embeddings, class probabilities (softmax of
    the head's logits, as ``predict_proba``) and the index of the top class.

    Parameters
    ----------
    features : FeatureGraph
        Inputs to the embeddings the head reads.
    head : nn.Module
        Embeddings to logits (in eval mode: dropout is the identity).
    """

    def __init__(self, features: FeatureGraph, head: nn.Module):
        super().__init__(features.features, features.modality, features.normalize)
        self.head = head

    def forward(self, *inputs):
        feats = self.embed(*inputs)
        proba = torch.softmax(self.head(feats), dim=1)
        return feats, proba, proba.argmax(dim=1)


class RegressorGraph(ClassifierGraph):
    """A fine-tuned regressor: embeddings and predictions in ``y``'s units
    (the head's output times ``target_scale`` plus ``target_mean``)."""

    def __init__(self, features: FeatureGraph, head: nn.Module, mean, scale):
        super().__init__(features, head)
        self.register_buffer("mean", torch.as_tensor(mean).float().clone())
        self.register_buffer("scale", torch.as_tensor(scale).float().clone())

    def forward(self, *inputs):
        feats = self.embed(*inputs)
        return feats, self.head(feats) * self.scale + self.mean


def example_inputs(loaded) -> tuple[tuple, dict]:
    """Example inputs for ``loaded``'s backbone and their dynamic dimensions,
    by input name."""
    from sktransfer._text import pad_tokens, token_ids

    batch = torch.export.Dim("batch", min=1, max=65536)
    if loaded.spec.modality == "image":
        size = loaded.spec.preprocessing.size
        images = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
        return (images,), {"images": {0: batch}}
    seq = torch.export.Dim("sequence", min=2, max=8192)
    tok = loaded.tokenizer
    ids = token_ids(tok, ["an example", "a longer example of a text"], 64)
    feed = pad_tokens(ids, tok.pad_token_id)
    dims = {0: batch, 1: seq}
    return (
        (feed["input_ids"], feed["attention_mask"]),
        {"input_ids": dims, "attention_mask": dims},
    )


def export_graph(module: nn.Module, loaded, output_names, opset: int):
    """Export ``module`` (on the CPU, in eval mode) to an ``onnx.ModelProto``."""
    args, dynamic = example_inputs(loaded)
    modality = loaded.spec.modality
    module = module.cpu().eval()
    # torch.export names the inputs after forward's parameters
    wrapper = (_ImageInputs if modality == "image" else _TextInputs)(module)
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):  # the exporter prints its progress and warns about its own internals
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper,
            args,
            input_names=list(dynamic),
            output_names=list(output_names),
            dynamic_shapes=dynamic,
            dynamo=True,
            opset_version=opset,
            verbose=False,
        )
    return program.model_proto


class _ImageInputs(nn.Module):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, images):
        return self.module(images)


class _TextInputs(_ImageInputs):
    def forward(self, input_ids, attention_mask):
        return self.module(input_ids, attention_mask)
