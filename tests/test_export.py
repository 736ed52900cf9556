"""sktransfer.to_onnx: onnxruntime against the torch path, dynamic batches,
the onnxruntime-only recipe in a fresh process, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

import sktransfer
from sktransfer import (
    FineTunedClassifier,
    FineTunedRegressor,
    PretrainedFeatureExtractor,
)

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "serve_onnx.py"
TEXTS = [
    "a wonderful, moving film",
    "dull and far too long",
    "great acting and a clever plot",
    "boring, I fell asleep",
    "an instant classic",
    "a waste of two hours, honestly the worst thing I have seen this year",
]


def _assert_close(export, tol=1e-4):
    check = export.check
    assert check["embeddings_max_abs_diff"] <= tol, check
    if "labels_equal" in check:
        assert check["labels_equal"], check


def test_image_pipeline_matches_and_batches_are_dynamic(tmp_path, images):
    X, y = images
    model = make_pipeline(
        PretrainedFeatureExtractor(backbone="test-cnn"),
        StandardScaler(),
        LogisticRegression(),
    ).fit(X, y)
    export = sktransfer.to_onnx(model, tmp_path, check=X)
    _assert_close(export)
    assert set(export.outputs) == {"embeddings", "label", "probabilities"}
    assert export.inputs == ("images",)
    assert export.check["probabilities_max_abs_diff"] <= 1e-4
    loaded = onnx.load(export.path)
    domains = [op.domain for op in loaded.opset_import]
    assert len(domains) == len(set(domains))  # one version per domain
    graph = loaded.graph
    shape = graph.input[0].type.tensor_type
    assert shape.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in shape.shape.dim[1:]] == [32, 32, 3]
    for n in (1, 5):  # any batch size
        out = export.run(X[:n])
        assert out["label"].shape == (n,)
        assert list(out["label"]) == list(model.predict(X[:n]))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sktransfer.to_onnx(model, tmp_path)


def test_extractor_alone_and_a_head_without_probabilities(tmp_path, images):
    X, y = images
    ext = PretrainedFeatureExtractor(backbone="test-cnn", normalize=True).fit(X)
    export = sktransfer.to_onnx(ext, tmp_path / "a", check=X)
    _assert_close(export)
    assert export.outputs == ("embeddings",)
    norms = np.linalg.norm(export.run(X)["embeddings"], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    svm = make_pipeline(PretrainedFeatureExtractor(backbone="test-cnn"), LinearSVC())
    export = sktransfer.to_onnx(svm.fit(X, y), tmp_path / "b", check=X)
    _assert_close(export)
    assert "label" in export.outputs


def test_text_pipeline_and_tokenizer(tmp_path):
    y = np.array([1, 0, 1, 0, 1, 0])
    model = make_pipeline(
        PretrainedFeatureExtractor(backbone="test-text"), LogisticRegression()
    ).fit(TEXTS, y)
    export = sktransfer.to_onnx(model, tmp_path, check=TEXTS)
    _assert_close(export)
    assert export.inputs == ("input_ids", "attention_mask")
    assert export.tokenizer.name == "tokenizer.json"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(export.tokenizer))
    ids = np.array([e.ids for e in tok.encode_batch(TEXTS)])
    np.testing.assert_array_equal(ids, export.feed(TEXTS)["input_ids"])


@pytest.mark.parametrize("strategy", ["last_n", "head"])
def test_fine_tuners(tmp_path, images, strategy):
    X, y = images
    clf = FineTunedClassifier(
        backbone="test-cnn", strategy=strategy, max_epochs=1, valid_size=None
    ).fit(X, y)
    export = sktransfer.to_onnx(clf, tmp_path / "clf", check=X)
    _assert_close(export)
    assert export.check["probabilities_max_abs_diff"] <= 1e-5
    assert export.run(X[:3])["label"].tolist() == clf.predict(X[:3]).tolist()
    target = np.c_[np.arange(24.0), np.ones(24)] * 3
    reg = FineTunedRegressor(
        backbone="test-cnn", strategy=strategy, max_epochs=1, valid_size=None
    )
    export = sktransfer.to_onnx(reg.fit(X, target), tmp_path / "reg", check=X)
    _assert_close(export)
    assert export.check["predictions_max_abs_diff"] <= 1e-4


def test_text_fine_tuner(tmp_path):
    y = np.array([2, 0, 1, 0, 2, 1])
    clf = FineTunedClassifier(backbone="test-text", max_epochs=1, valid_size=None).fit(
        TEXTS, y
    )
    export = sktransfer.to_onnx(clf, tmp_path, check=TEXTS)
    _assert_close(export)
    assert export.run(TEXTS)["label"].dtype == np.int64


@pytest.mark.parametrize("backbone", ["test-text", "clip", "siglip"])
def test_zero_shot_classifier(tmp_path, backbone):
    """Texts through a text backbone, images through a CLIP / SigLIP image
    tower: onnxruntime gives the classifier's probabilities and labels."""
    from sktransfer import ZeroShotClassifier
    from sktransfer.backbones import save_tiny_dual_encoder

    X = TEXTS
    if backbone != "test-text":
        backbone = save_tiny_dual_encoder(tmp_path / backbone, backbone)
        X = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), np.uint8)
    labels = ["cat", "dog", "red car"]
    zero = ZeroShotClassifier(backbone, labels=labels).fit()
    export = sktransfer.to_onnx(zero, tmp_path / "onnx", check=X)
    _assert_close(export)
    assert set(export.outputs) == {"embeddings", "label", "probabilities"}
    assert export.check["probabilities_max_abs_diff"] <= 1e-4
    assert export.check["labels_equal"]
    out = export.run(X)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert export.metadata["classes"] == labels
    with pytest.raises(Exception, match="not fitted"):
        sktransfer.to_onnx(ZeroShotClassifier(backbone, labels=labels), tmp_path / "x")


def test_real_minilm_pipeline(tmp_path):
    y = np.array([1, 0, 1, 0, 1, 0])
    model = make_pipeline(
        PretrainedFeatureExtractor(backbone="all-MiniLM-L6-v2"), LogisticRegression()
    ).fit(TEXTS, y)
    export = sktransfer.to_onnx(model, tmp_path, check=TEXTS)
    _assert_close(export)
    assert json.loads(onnx.load(export.path).metadata_props[0].value)


def test_refusals(tmp_path, images):
    X, _ = images
    with pytest.raises(TypeError, match="to_onnx exports"):
        sktransfer.to_onnx(make_pipeline(StandardScaler(), Ridge()), tmp_path)
    ext = PretrainedFeatureExtractor(backbone="test-cnn", layer=0).fit(X)
    with pytest.raises(TypeError, match="layer=None"):
        sktransfer.to_onnx(ext, tmp_path)
    with pytest.raises(Exception, match="not fitted"):
        sktransfer.to_onnx(PretrainedFeatureExtractor(backbone="test-cnn"), tmp_path)


def test_recipe_runs_on_onnxruntime_alone(tmp_path, rng):
    """The documented recipe, in a fresh process: no torch, no sktransfer."""
    folder = tmp_path / "photos"
    folder.mkdir()
    y = []
    for i in range(8):
        arr = rng.integers(0, 60, (50 + 7 * i, 44, 3), dtype=np.uint8)
        if i % 2:
            arr[..., 0] += 180
        Image.fromarray(arr).save(folder / f"{i}.png")
        y.append("red" if i % 2 else "dark")
    paths = sorted(folder.iterdir())
    model = make_pipeline(
        PretrainedFeatureExtractor(backbone="test-cnn"), LogisticRegression()
    ).fit([str(p) for p in sorted(folder.iterdir(), key=lambda p: int(p.stem))], y)
    sktransfer.to_onnx(model, tmp_path / "img")
    text_model = FineTunedClassifier(
        backbone="test-text", max_epochs=1, valid_size=None
    ).fit(TEXTS, ["pos", "neg"] * 3)
    sktransfer.to_onnx(text_model, tmp_path / "txt")
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    code = textwrap.dedent(
        f"""
        import json, runpy, sys
        recipe = runpy.run_path({str(RECIPE)!r}, run_name="recipe")
        out = {{}}
        for name, model, source in [
            ("img", {str(tmp_path / "img")!r}, {str(folder)!r}),
            ("txt", {str(tmp_path / "txt")!r}, {str(tmp_path / "texts.txt")!r}),
        ]:
            names, result = recipe["classify"](model, source)
            out[name] = [names, result["label"].tolist()]
        heavy = sorted(m for m in ("torch", "sktransfer", "sklearn", "skorch")
                       if m in sys.modules)
        print(json.dumps({{"out": out, "heavy": heavy}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    names, labels = result["out"]["img"]
    assert names == [str(p) for p in paths]
    assert labels == list(model.predict(names))
    names, labels = result["out"]["txt"]
    assert names == TEXTS
    assert labels == list(text_model.predict(TEXTS))
