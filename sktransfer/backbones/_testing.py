"""Tiny, randomly initialised backbones for tests, examples and sklearn's checks.

They build in milliseconds with no file and no network, and are deterministic (a
fixed seed, without touching the global RNG), so two processes get the same
weights. ``test-mlp`` takes 2-D float arrays so that scikit-learn's common estimator
checks can exercise :class:`~sktransfer.PretrainedFeatureExtractor`.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import torch
from torch import nn

from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._spec import (
    BackboneSpec,
    ImagePreprocessing,
    TextPreprocessing,
)

__all__ = ["TESTING_SPECS", "TinyCNN", "TinyMLP", "load_testing"]

_SEED = 0


class TinyCNN(nn.Module):
    """Three conv blocks then global average pooling: 32 features."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(),
                )
                for c_in, c_out in (
                    (3, width),
                    (width, 2 * width),
                    (2 * width, 4 * width),
                )
            ]
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.avgpool(self.blocks(x)).flatten(1)


class TinyMLP(nn.Module):
    """Two tanh layers: ``n_features_in`` -> 16 -> 8 features."""

    def __init__(self, n_features_in: int):
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Linear(n_features_in, 16), nn.Tanh()),
            nn.Sequential(nn.Linear(16, 8), nn.Tanh()),
        )

    def forward(self, x):
        return self.blocks(x)


def _tiny_bert():
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    vocab += [f"##{c}" for c in chars]
    folder = Path(tempfile.mkdtemp(prefix="sktransfer-test-text-"))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=True
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    return BertModel(config, add_pooling_layer=False), tokenizer


def load_testing(
    spec: BackboneSpec, weights=None, n_features_in=None
) -> LoadedBackbone:
    """Build a tiny test backbone with fixed random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        tokenizer = None
        if spec.model_id == "test-cnn":
            model = TinyCNN()
        elif spec.model_id == "test-text":
            model, tokenizer = _tiny_bert()
        elif spec.model_id == "test-mlp":
            if n_features_in is None:
                raise ValueError("test-mlp needs n_features_in")
            model = TinyMLP(int(n_features_in))
        else:  # pragma: no cover - registry and loader are kept in sync
            raise KeyError(spec.model_id)
    return LoadedBackbone(spec, model, tokenizer, f"testing:{spec.model_id}:{_SEED}")


TESTING_SPECS = [
    BackboneSpec(
        "test-cnn",
        "image",
        "testing",
        "test-cnn",
        preprocessing=ImagePreprocessing(size=32, crop_pct=1.0),
        feature_dim=32,
        license="BSD-3-Clause",
        description="tiny random CNN (32 features) for tests and examples",
    ),
    BackboneSpec(
        "test-text",
        "text",
        "testing",
        "test-text",
        preprocessing=TextPreprocessing(max_length=64, pooling="mean"),
        feature_dim=32,
        license="BSD-3-Clause",
        description="tiny random BERT (32 features) for tests and examples",
    ),
    BackboneSpec(
        "test-mlp",
        "tabular",
        "testing",
        "test-mlp",
        feature_dim=8,
        license="BSD-3-Clause",
        description="tiny random MLP on 2-D float arrays, for sklearn's checks",
    ),
]
