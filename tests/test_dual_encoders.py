"""Image-text dual encoders (issue 20 item 3): CLIP and SigLIP folders built
from tiny random configs (no such weights ship anywhere), their towers, and
zero-shot image classification by class names."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.special import softmax

from sktransfer import PretrainedFeatureExtractor, ZeroShotClassifier
from sktransfer.backbones import get_backbone_spec
from sktransfer.backbones._dual import save_tiny_dual_encoder, tower

KINDS = ["clip", "siglip"]


@pytest.fixture(scope="module", params=KINDS)
def dual(request, tmp_path_factory):
    folder = save_tiny_dual_encoder(
        tmp_path_factory.mktemp(request.param), request.param
    )
    return request.param, folder


@pytest.fixture(scope="module")
def square_images():
    return np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), np.uint8)


def _reference(kind, folder, images, texts):
    """transformers' own processor, tokenizer and model: the ground truth."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
        padding = "max_length" if kind == "siglip" else True  # as each was trained
        enc = tokenizer(texts, padding=padding, max_length=16, truncation=True,
                        return_tensors="pt")  # fmt: skip
        if kind == "siglip":
            enc = {"input_ids": enc["input_ids"]}
        out = model(pixel_values=pixels, **enc)
    return (
        out.image_embeds.numpy(),
        out.text_embeds.numpy(),
        out.logits_per_image.numpy(),
    )


def test_a_dual_encoder_folder_is_an_image_backbone_with_a_text_tower(dual):
    kind, folder = dual
    spec = get_backbone_spec(folder)
    assert spec.modality == "image" and spec.option("dual") == kind
    text = tower(spec, "text")
    assert text.modality == "text" and text != spec
    assert tower(text, "image") == spec
    with pytest.raises(ValueError, match="not an image-text dual encoder"):
        tower(get_backbone_spec("test-cnn"), "text")


def test_towers_give_what_transformers_gives(dual, square_images):
    kind, folder = dual
    texts = ["a photo of a cat.", "a photo of a dog on a red road."]
    img_ref, txt_ref, _ = _reference(kind, folder, square_images, texts)
    spec = get_backbone_spec(folder)
    images = PretrainedFeatureExtractor(folder, precision="fp32", normalize=True)
    words = PretrainedFeatureExtractor(tower(spec, "text"), precision="fp32",
                                       normalize=True)  # fmt: skip
    np.testing.assert_allclose(
        images.fit(square_images).transform(square_images), img_ref, atol=1e-5
    )
    np.testing.assert_allclose(words.fit(texts).transform(texts), txt_ref, atol=1e-5)


def test_a_text_embedding_does_not_depend_on_its_batch(dual):
    _, folder = dual
    text = tower(get_backbone_spec(folder), "text")
    ext = PretrainedFeatureExtractor(text, precision="fp32", cache=None).fit(["a"])
    alone = ext.transform(["a cat"])
    among = ext.transform(["a cat", "a big black dog on a road by the sea"])[:1]
    np.testing.assert_allclose(alone, among, atol=1e-5)


def test_zero_shot_images_are_the_models_own_probabilities(dual, square_images):
    """predict_proba is the softmax of the model's logits_per_image (its
    logit scale as the temperature; SigLIP's bias is the same for every class
    and cancels in the softmax)."""
    kind, folder = dual
    labels = ["cat", "dog", "red car"]
    clf = ZeroShotClassifier(folder, labels=labels, precision="fp32").fit()
    _, _, logits = _reference(
        kind, folder, square_images, [f"a photo of a {c}." for c in labels]
    )
    np.testing.assert_allclose(
        clf.predict_proba(square_images), softmax(logits, axis=1), atol=1e-4
    )
    assert clf.predict(square_images).tolist() == [
        labels[i] for i in logits.argmax(axis=1)
    ]


def test_zero_shot_images_go_through_the_cache(dual, square_images, count_embeds):
    _, folder = dual
    first = ZeroShotClassifier(folder, labels=["cat", "dog"]).fit()
    first.predict(square_images)
    seen = count_embeds["n"]
    assert seen == len(square_images) + 2  # the images, and one prompt per class
    again = ZeroShotClassifier(folder, labels=["cat", "dog"]).fit()
    again.predict_proba(square_images)
    assert count_embeds["n"] == seen  # nothing embedded twice


def test_templates_and_temperature_can_be_chosen(dual, square_images):
    _, folder = dual
    y = np.array(["cat", "dog"] * 3)
    clf = ZeroShotClassifier(
        folder, templates=("a drawing of a {}.", "a photo of a {}."),
        precision="fp32",
    ).fit(square_images, y)  # fmt: skip
    assert clf.temperature_ > 0 and clf.classes_.tolist() == ["cat", "dog"]
    assert clf.predict_proba(square_images).shape == (6, 2)


def test_a_hub_id_in_the_huggingface_cache_resolves_offline(
    dual, square_images, tmp_path, monkeypatch
):
    kind, folder = dual
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(folder, snapshot)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = get_backbone_spec("hf:org/tiny")
    assert spec.option("dual") == kind and spec.modality == "image"
    by_id = ZeroShotClassifier("hf:org/tiny", labels=["cat", "dog"],
                               precision="fp32").fit()  # fmt: skip
    by_folder = ZeroShotClassifier(folder, labels=["cat", "dog"],
                                   precision="fp32").fit()  # fmt: skip
    np.testing.assert_allclose(
        by_id.predict_proba(square_images),
        by_folder.predict_proba(square_images),
        atol=1e-6,
    )


def test_an_image_backbone_without_a_text_tower_is_refused():
    with pytest.raises(ValueError, match="dual encoder"):
        ZeroShotClassifier("test-cnn", labels=["a", "b"]).fit()


def test_a_dual_zero_shot_classifier_saves_and_loads(dual, square_images, tmp_path):
    import sktransfer

    _, folder = dual
    clf = ZeroShotClassifier(folder, labels=["cat", "dog"], precision="fp32").fit()
    path = sktransfer.save(clf, tmp_path / "zs.skt")
    back = sktransfer.load(path)
    np.testing.assert_array_equal(
        back.predict_proba(square_images), clf.predict_proba(square_images)
    )


@pytest.mark.parametrize("strategy", ["full", "last_n"])
def test_the_image_tower_fine_tunes_and_takes_few_shots(dual, strategy):
    from sktransfer import FewShotClassifier, FineTunedClassifier

    _, folder = dual
    X = np.random.default_rng(1).integers(0, 255, (24, 32, 32, 3), np.uint8)
    y = np.array([0, 1] * 12)
    X[y == 1, :, :, 0] = 250  # a red class: learnable
    clf = FineTunedClassifier(folder, strategy=strategy, max_epochs=2,
                              valid_size=None, random_state=0).fit(X, y)  # fmt: skip
    before = PretrainedFeatureExtractor(folder).fit(X).transform(X[:2])
    assert np.isfinite(clf.predict_proba(X)).all()
    # the shared backbone is untouched by fine-tuning
    after = PretrainedFeatureExtractor(folder, cache=None).fit(X).transform(X[:2])
    np.testing.assert_allclose(before, after, atol=1e-6)
    few = FewShotClassifier(folder, random_state=0).fit(X[:8], y[:8])
    assert few.predict(X).shape == (24,)


def test_the_two_towers_share_one_loaded_model(dual):
    from sktransfer.backbones import clear_loaded, load_backbone

    _, folder = dual
    clear_loaded()
    spec = get_backbone_spec(folder)
    image = load_backbone(spec)
    text = load_backbone(tower(spec, "text"))
    assert text.model is image.model and text.tokenizer is not None


def test_a_class_names_head_on_the_image_tower_starts_as_zero_shot(dual, square_images):
    """head_init="class_names" on a CLIP / SigLIP image tower: the text tower
    embeds the class prompts, so before training the fine-tuner predicts what
    the zero-shot classifier predicts."""
    from sktransfer import FineTunedClassifier, ZeroShotClassifier

    _, folder = dual
    X = np.concatenate([square_images] * 3)
    classes = ["cat", "dog", "red car"]
    y = np.array(classes * (len(X) // 3) + classes[: len(X) % 3])
    clf = FineTunedClassifier(
        folder, strategy="full", max_epochs=1, head_init="class_names",
        valid_size=None, lr=1e-12, backbone_lr=0.0, dropout=0.0, random_state=0,
    ).fit(X, y)  # fmt: skip
    zero = ZeroShotClassifier(folder, precision="fp32").fit(None, classes)
    assert clf.predict(X).tolist() == zero.predict(X).tolist()
    # same ranking, and the probabilities at the zero-shot temperature, up to
    # each image's feature norm against the mean norm (the head is linear)
    ext = PretrainedFeatureExtractor(folder, precision="fp32").fit(X)
    feats = ext.transform(X).astype(np.float64)
    w = clf.module_.head.weight.detach().double().numpy()
    cos = (
        feats / np.linalg.norm(feats, axis=1, keepdims=True)
    ) @ zero.class_embeddings_.T
    ratio = np.linalg.norm(feats, axis=1) / np.linalg.norm(feats, axis=1).mean()
    np.testing.assert_allclose(
        feats @ w.T, cos * ratio[:, None] / zero.temperature_, rtol=1e-3, atol=1e-3
    )
