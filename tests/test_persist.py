"""sktransfer.save / load: round trips, a new process, tampered and malicious
files, devices, environments, and what cannot be saved."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from skorch.callbacks import EpochScoring

import sktransfer
from sktransfer import (
    FewShotClassifier,
    FineTunedClassifier,
    FineTunedRegressor,
    PretrainedFeatureExtractor,
    ZeroShotClassifier,
)
from sktransfer.adapt import CORAL, LabeledOnly
from sktransfer.exceptions import EnvironmentChangeWarning, UnsafeFileError
from sktransfer.persist._archive import MANIFEST, TENSORS, _sha256
from sktransfer.persist._codec import Decoder, Encoder


def _no_part(obj, where):
    return None


def _roundtrip(model, tmp_path, name="model.skt"):
    path = sktransfer.save(model, tmp_path / name)
    return sktransfer.load(path)


def _rewrite(path, change):
    """Rewrite a saved archive: ``change(manifest, members)`` edits it and the
    checksums are fixed, as a deliberate tamperer would."""
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        members = {n: zf.read(n) for n in zf.namelist() if n != MANIFEST}
    change(manifest, members)
    manifest["members"] = {n: _sha256(d) for n, d in members.items()}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest))
        for n, d in members.items():
            zf.writestr(n, d)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 60, (24, 40, 40, 3), np.uint8)
    y = np.array(["cat", "dog"] * 12)
    X[y == "dog", :, :, 0] += 180
    net = FineTunedClassifier(
        backbone="test-cnn", max_epochs=2, valid_size=None, random_state=0
    ).fit(X, y)
    return net, X, y


# ------------------------------------------------------------------ round trips
def test_extractor_round_trip(tmp_path, images):
    X, _ = images
    ext = PretrainedFeatureExtractor(backbone="test-cnn", batch_size=7).fit(X)
    back = _roundtrip(ext, tmp_path)
    assert type(back) is PretrainedFeatureExtractor
    assert back.get_params() == ext.get_params()
    assert back.backbone_spec_ == ext.backbone_spec_
    np.testing.assert_array_equal(back.transform(X), ext.transform(X))
    assert list(back.get_feature_names_out()) == list(ext.get_feature_names_out())


def test_fine_tuner_round_trip_keeps_everything(tmp_path, fitted):
    net, X, y = fitted
    back = _roundtrip(net, tmp_path)
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    assert list(back.classes_) == ["cat", "dog"]
    assert len(back.history_) == len(net.history_) == 2
    assert back.history_[-1, "train_loss"] == net.history_[-1, "train_loss"]
    assert back.best_epoch_ == net.best_epoch_
    for name, value in net.get_params(deep=False).items():
        assert back.get_params(deep=False)[name] == value, name
    # it is a working net: training goes on from the saved weights
    back.set_params(max_epochs=1).partial_fit(X, y)
    assert len(back.history_) == 3


@pytest.mark.parametrize("strategy", ["head", "last_n"])
def test_fine_tuner_strategies_and_regressor(tmp_path, images, strategy):
    X, y = images
    clf = FineTunedClassifier(
        backbone="test-cnn", strategy=strategy, max_epochs=1, valid_size=None
    ).fit(X, y)
    back = _roundtrip(clf, tmp_path)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    target = np.c_[np.arange(24.0), -np.arange(24.0)] * 10 + 3
    reg = FineTunedRegressor(
        backbone="test-cnn", strategy=strategy, max_epochs=1, valid_size=None
    ).fit(X, target)
    back = _roundtrip(reg, tmp_path, "reg.skt")
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    assert back.predict(X).shape == (24, 2)


def test_few_and_zero_shot_round_trip(tmp_path, texts):
    X, y = texts
    few = FewShotClassifier(backbone="test-text", epochs=1, random_state=0).fit(X, y)
    back = _roundtrip(few, tmp_path)
    np.testing.assert_array_equal(back.predict_proba(X), few.predict_proba(X))
    zero = ZeroShotClassifier(backbone="test-text").fit(None, ["good", "bad"])
    back = _roundtrip(zero, tmp_path, "zero.skt")
    np.testing.assert_array_equal(back.predict_proba(X), zero.predict_proba(X))
    assert list(back.classes_) == list(zero.classes_)


def test_pipelines_and_column_transformer(tmp_path, images, texts):
    X, y = images
    pipe = make_pipeline(
        PretrainedFeatureExtractor(backbone="test-cnn"),
        StandardScaler(),
        SVC(random_state=0),
    ).fit(X, y)
    back = _roundtrip(pipe, tmp_path)
    np.testing.assert_array_equal(back.decision_function(X), pipe.decision_function(X))
    assert type(back[0]) is PretrainedFeatureExtractor
    frame = pd.DataFrame(
        {
            "photo": list(X[:6]),
            "review": texts[0],
            "price": np.arange(6.0),
        }
    )
    ct = make_pipeline(
        ColumnTransformer(
            [
                ("img", PretrainedFeatureExtractor(backbone="test-cnn"), ["photo"]),
                ("txt", PretrainedFeatureExtractor(backbone="test-text"), ["review"]),
                ("num", StandardScaler(), ["price"]),
            ]
        ),
        DecisionTreeClassifier(random_state=0),
    ).fit(frame, texts[1])
    back = _roundtrip(ct, tmp_path, "ct.skt")
    np.testing.assert_array_equal(back.predict_proba(frame), ct.predict_proba(frame))
    fitted_steps = back[0].named_transformers_
    assert type(fitted_steps["txt"]) is PretrainedFeatureExtractor
    # the user's objects were not touched by the placeholders
    assert type(ct[0].named_transformers_["img"]) is PretrainedFeatureExtractor


def test_adaptation_steps_and_one_object_twice(tmp_path, images):
    X, y = images
    y = y.astype(object)
    y[:6] = -1
    ext = PretrainedFeatureExtractor(backbone="test-cnn")
    pipe = make_pipeline(ext, CORAL(), LabeledOnly(LogisticRegression())).fit(X, y)
    back = _roundtrip([pipe, ext], tmp_path)
    np.testing.assert_array_equal(back[0].predict_proba(X), pipe.predict_proba(X))
    assert back[1] is back[0][0]  # one object, once


def test_new_cpu_only_process_predicts_the_same(tmp_path, fitted):
    net, X, _ = fitted
    path = sktransfer.save(net, tmp_path / "m.skt")
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(
        f"""
        import numpy as np, sktransfer, torch
        assert not torch.cuda.is_available()
        model = sktransfer.load({str(path)!r})
        np.save({str(tmp_path / "p.npy")!r}, model.predict_proba(np.load({str(tmp_path / "X.npy")!r})))
        """
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), net.predict_proba(X))


# ------------------------------------------------------------------ refusals
def test_never_overwrites_without_being_asked(tmp_path, fitted):
    path = tmp_path / "m.skt"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sktransfer.save(fitted[0], path)
    assert path.read_text() == "mine"
    sktransfer.save(fitted[0], path, overwrite=True)
    assert zipfile.is_zipfile(path)


class _Marker:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.skt"
    path.write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(UnsafeFileError, match="not a zip archive"):
        sktransfer.load(path)
    assert not marker.exists()


def test_injected_pickle_members_are_refused(tmp_path, images):
    X, y = images
    pipe = make_pipeline(
        PretrainedFeatureExtractor(backbone="test-cnn"), LogisticRegression()
    ).fit(X, y)
    marker = tmp_path / "ran"
    evil = pickle.dumps(_Marker(str(marker)))
    cases = {
        "extra member": lambda m, members: members.update({"model.pkl": evil}),
        "skops member replaced": lambda m, members: members.update(
            {next(n for n in members if n.startswith("skops/")): evil}
        ),
        "tensors replaced": lambda m, members: members.update({TENSORS: evil}),
    }
    for name, change in cases.items():
        path = sktransfer.save(pipe, tmp_path / f"{len(name)}.skt")
        if name == "extra member":  # a member the manifest does not list
            with zipfile.ZipFile(path, "a") as zf:
                zf.writestr("model.pkl", evil)
        else:
            _rewrite(path, change)
        with pytest.raises(UnsafeFileError):
            sktransfer.load(path)
        assert not marker.exists(), name


def test_changed_bytes_shapes_and_types_are_refused(tmp_path, fitted):
    net, _, _ = fitted
    path = sktransfer.save(net, tmp_path / "m.skt")
    # a flipped byte: the checksum no longer matches
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(TENSORS)
    data[info.header_offset + 200] ^= 0xFF
    broken = tmp_path / "flipped.skt"
    broken.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match=r"checksum|damaged"):
        sktransfer.load(broken)

    def shapes(manifest, members):  # one tensor reshaped, manifest kept
        tensors = load_tensors(members[TENSORS])
        key = manifest["parts"][0]["networks"]["module_"]["head.weight"]
        tensors[key] = torch.zeros(5, 7)
        members[TENSORS] = save_tensors(tensors)

    _rewrite(path, shapes)
    with pytest.raises(UnsafeFileError, match="dtypes and shapes"):
        sktransfer.load(path)

    def consistent(manifest, members):  # shapes and manifest changed together
        tensors = load_tensors(members[TENSORS])
        key = manifest["parts"][0]["networks"]["module_"]["head.weight"]
        tensors[key] = torch.zeros(5, 7)
        manifest["tensors"][key] = ["float32", [5, 7]]
        members[TENSORS] = save_tensors(tensors)

    path = sktransfer.save(net, tmp_path / "m.skt", overwrite=True)
    _rewrite(path, consistent)
    with pytest.raises(UnsafeFileError, match=r"head.weight: \(5, 7\) in the file"):
        sktransfer.load(path)

    def unknown_type(manifest, members):
        manifest["parts"][0]["params"]["items"][0][1] = {
            "__sktransfer__": "ref",
            "name": "os:system",
        }

    path = sktransfer.save(net, tmp_path / "m.skt", overwrite=True)
    _rewrite(path, unknown_type)
    with pytest.raises(UnsafeFileError, match=r"os.system.*trusted=\['os:system'\]"):
        sktransfer.load(path)


def test_untrusted_sklearn_types_are_named(tmp_path, images):
    from sklearn.base import BaseEstimator, TransformerMixin

    X, y = images
    pipe = make_pipeline(
        PretrainedFeatureExtractor(backbone="test-cnn"),
        _MyScaler(),
        LogisticRegression(),
    ).fit(X, y)
    assert isinstance(pipe[1], BaseEstimator | TransformerMixin)
    path = sktransfer.save(pipe, tmp_path / "m.skt")
    name = f"{_MyScaler.__module__}._MyScaler"
    with pytest.raises(UnsafeFileError, match=re.escape(f"trusted=['{name}']")):
        sktransfer.load(path)
    back = sktransfer.load(path, trusted=[name])
    np.testing.assert_array_equal(back.predict_proba(X), pipe.predict_proba(X))


from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402


class _MyScaler(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.scale_ = np.abs(X).max(0) + 1
        return self

    def transform(self, X):
        return X / self.scale_


def test_what_cannot_be_saved_is_named(tmp_path):
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40 * 40 * 3, 4))
    ext = PretrainedFeatureExtractor(backbone=module)
    with pytest.raises(TypeError, match="torch module you built"):
        sktransfer.save(ext, tmp_path / "a.skt")
    net = FineTunedClassifier(
        backbone="test-cnn",
        max_epochs=1,
        callbacks=[EpochScoring(lambda net, X, y: 0.0, name="zero")],
    )
    with pytest.raises(TypeError, match=r"callbacks.*lambda"):
        sktransfer.save(net, tmp_path / "b.skt")
    assert not (tmp_path / "a.skt").exists() and not (tmp_path / "b.skt").exists()


# ------------------------------------------------------------------ environment
def test_a_gpu_model_loads_on_the_cpu(tmp_path, fitted):
    net, X, _ = fitted
    net_gpu = FineTunedClassifier(**net.get_params(deep=False))
    vars(net_gpu).update(vars(net))
    net_gpu.device = "cuda"  # as saved on a GPU machine (tensors go to the CPU)
    path = sktransfer.save(net_gpu, tmp_path / "m.skt")
    with pytest.warns(EnvironmentChangeWarning, match="device='cuda'"):
        back = sktransfer.load(path)
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


def test_other_versions_and_weights_are_reported(tmp_path, images):
    X, _ = images
    ext = PretrainedFeatureExtractor(backbone="test-cnn").fit(X)
    path = sktransfer.save(ext, tmp_path / "m.skt")

    def older(manifest, members):
        manifest["environment"]["torch"] = "2.10.0"
        manifest["parts"][0]["backbone"]["fingerprint"] = "0" * 64

    _rewrite(path, older)
    with pytest.warns(EnvironmentChangeWarning) as record:
        sktransfer.load(path)
    text = " ".join(str(w.message) for w in record)
    assert "torch 2.10.0 (here" in text
    assert "other weights here" in text


def test_manifest_records_the_environment_and_backbone(tmp_path, fitted):
    path = sktransfer.save(fitted[0], tmp_path / "m.skt")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
    env = manifest["environment"]
    assert env["torch"] == torch.__version__.split("+")[0] or env["torch"].startswith(
        torch.__version__.split("+")[0]
    )
    assert {"sktransfer", "scikit-learn", "skorch", "numpy"} <= set(env)
    backbone = manifest["parts"][0]["backbone"]
    assert backbone["name"] == "test-cnn" and len(backbone["fingerprint"]) == 64
    assert backbone["preprocessing"]["type"] == "ImagePreprocessing"


# ------------------------------------------------------------------ the codec
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**62), 2**62)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    )
    | hnp.arrays(hnp.unicode_string_dtypes(max_len=4), hnp.array_shapes(max_side=3)),
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=3)
    ),
    max_leaves=12,
)


def _same(a, b):
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return (
            type(b) is dict
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None)
@given(_values)
def test_codec_round_trips_open_ended_values(value):
    enc = Encoder(_no_part, _no_part)
    record = json.loads(json.dumps(enc.encode(value, "x")))
    tensors = load_tensors(save_tensors(enc.tensors)) if enc.tensors else {}
    back = Decoder(tensors, set(), None, None).decode(record)
    assert _same(value, back)
