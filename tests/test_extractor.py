"""PretrainedFeatureExtractor: the sklearn contract, inputs, errors, options."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import sktransfer
from sktransfer import PretrainedFeatureExtractor
from sktransfer._runtime import AutoBatchSize
from sktransfer.exceptions import BackboneNotFoundError, InputError, InputWarning

CNN = PretrainedFeatureExtractor(backbone="test-cnn", cache=None)
TXT = PretrainedFeatureExtractor(backbone="test-text", cache=None)


# ------------------------------------------------------------------ sklearn checks
@parametrize_with_checks(
    [PretrainedFeatureExtractor(backbone="test-mlp", cache=None)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("est", [CNN, TXT], ids=["image", "text"])
def test_clone_pickle_joblib_round_trips(est, image_files, texts, tmp_path):
    X = image_files[0] if est is CNN else texts[0]
    fitted = clone(est).fit(X)
    ref = fitted.transform(X)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(X), ref)
    joblib.dump(fitted, tmp_path / "ext.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "ext.joblib").transform(X), ref
    )
    np.testing.assert_array_equal(clone(est).fit(X).transform(X), ref)


def test_clone_is_cheap_and_unfitted():
    est = PretrainedFeatureExtractor("efficientnet_lite0")
    clone(est)  # nothing loaded: no weights in __init__
    assert not hasattr(clone(est), "backbone_spec_")
    assert len(pickle.dumps(est)) < 2000


def test_pickle_does_not_contain_weights(image_files):
    fitted = clone(CNN).fit(image_files[0])
    assert len(pickle.dumps(fitted)) < 5000


def test_fit_is_idempotent(image_files):
    X = image_files[0]
    est = clone(CNN)
    a = est.fit(X).transform(X)
    b = est.fit(X).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("est", [CNN, TXT], ids=["image", "text"])
def test_batch_size_invariance(est, image_files, texts):
    X = image_files[0] if est is CNN else texts[0] * 3
    outs = [clone(est).set_params(batch_size=b).fit(X).transform(X) for b in (1, 5, 64)]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("est", [CNN, TXT], ids=["image", "text"])
def test_row_order_invariance(est, image_files, texts):
    X = image_files[0] if est is CNN else texts[0]
    perm = np.random.default_rng(1).permutation(len(X))
    ext = clone(est).fit(X)
    np.testing.assert_allclose(
        ext.transform([X[i] for i in perm]),
        ext.transform(X)[perm],
        rtol=1e-5,
        atol=1e-6,
    )


def test_feature_names_and_pandas_output(image_files):
    X = pd.DataFrame({"photo": image_files[0]})
    ext = clone(CNN).fit(X)
    names = ext.get_feature_names_out()
    assert names[0] == "test-cnn_0" and names[-1] == "test-cnn_31" and len(names) == 32
    assert list(ext.feature_names_in_) == ["photo"]
    layered = clone(CNN).set_params(layer="blocks.1").fit(X)
    assert layered.get_feature_names_out()[0] == "test-cnn_blocks.1_0"
    short = clone(CNN).set_params(feature_prefix="short").fit(X)
    assert short.get_feature_names_out()[0] == "pretrainedfeatureextractor0"
    custom = clone(CNN).set_params(feature_prefix="img").fit(X)
    assert custom.get_feature_names_out()[0] == "img0"
    out = ext.set_output(transform="pandas").transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    assert out.dtypes.iloc[0] == np.float32


def test_output_is_float32_and_finite(image_files):
    out = clone(CNN).fit(image_files[0]).transform(image_files[0])
    assert out.dtype == np.float32 and np.isfinite(out).all()


# ------------------------------------------------------------------ input forms
def test_every_image_form_gives_the_same_embedding(image_files):
    paths = image_files[0][:3]
    pil = [Image.open(p).convert("RGB") for p in paths]
    arrays = [np.asarray(im) for im in pil]
    as_bytes = []
    for im in pil:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        as_bytes.append(buf.getvalue())
    ext = clone(CNN).fit(paths)
    ref = ext.transform(pil)
    for X in (
        arrays,
        as_bytes,
        np.stack(arrays),
        pd.Series(pil),
        pd.DataFrame({"img": arrays}),
        [a.astype(np.float32) / 255 for a in arrays],
    ):
        np.testing.assert_allclose(ext.transform(X), ref, atol=1e-5)
    png_paths = [p for p in paths if p.endswith(".png")]
    idx = [paths.index(p) for p in png_paths]
    np.testing.assert_allclose(ext.transform(png_paths), ref[idx], atol=1e-5)


def test_grayscale_batch(rng):
    X = rng.integers(0, 255, (3, 20, 20), np.uint8)
    out = clone(CNN).fit(X).transform(X)
    assert out.shape == (3, 32)


def test_text_inputs_forms(texts):
    X = texts[0]
    ext = clone(TXT).fit(X)
    ref = ext.transform(X)
    for form in (
        np.array(X),
        pd.Series(X),
        pd.DataFrame({"t": X}),
        np.array(X)[:, None],
    ):
        np.testing.assert_allclose(ext.transform(form), ref, atol=1e-6)


def test_empty_string_gives_a_finite_vector():
    out = clone(TXT).fit([""]).transform(["", "hello"])
    assert np.isfinite(out).all() and not np.allclose(out[0], out[1])


def test_duplicates_are_embedded_once_and_equal(texts):
    X = texts[0] + texts[0][:2]
    out = clone(TXT).fit(X).transform(X)
    np.testing.assert_array_equal(out[-2:], out[:2])


# ------------------------------------------------------------------ bad input
def test_none_and_non_str_in_text():
    ext = clone(TXT).fit(["a"])
    with pytest.raises(InputError, match=r"row 1: the text is missing \(None\)"):
        ext.transform(["ok", None])
    with pytest.raises(InputError, match=r"row 2 \(index 'c'\): the text is missing"):
        ext.transform(pd.Series(["a", "b", np.nan], index=["a", "b", "c"]))
    with pytest.raises(InputError, match=r"row 0: expected a str, got int 5"):
        ext.transform([5, "x"])


def test_zero_samples():
    with pytest.raises(InputError, match="0 samples"):
        clone(TXT).fit([])
    with pytest.raises(InputError, match="0 samples"):
        clone(CNN).fit(np.zeros((0, 8, 8, 3), np.uint8))


def test_single_sample_not_wrapped():
    with pytest.raises(InputError, match=r"single str\. Wrap it in a list"):
        clone(TXT).fit("hello")


def test_multi_column_dataframe_points_to_column_transformer():
    X = pd.DataFrame({"a": ["x"], "b": ["y"]})
    with pytest.raises(InputError, match=r"2 columns \['a', 'b'\].*ColumnTransformer"):
        clone(TXT).fit(X)


def test_wrong_modality(image_files):
    with pytest.raises(InputError, match=r"row 0: .*use a text backbone"):
        clone(CNN).fit(["a cat on a mat"]).transform(["a cat on a mat"])
    images = [Image.open(p) for p in image_files[0][:2]]
    with pytest.raises(InputError, match=r"row 0: expected a str, got .*Image"):
        clone(TXT).fit(["a"]).transform(images)
    with pytest.raises(InputError, match=r"numeric array of shape \(3, 5\)"):
        clone(CNN).fit(np.zeros((3, 5)))


def test_missing_file_names_row(image_files, tmp_path):
    X = [*image_files[0][:2], str(tmp_path / "gone.png")]
    with pytest.raises(InputError, match=r"row 2: image file .*gone\.png.* not exist"):
        clone(CNN).fit(X).transform(X)


def test_on_error_nan_and_zero_keep_rows(image_files, tmp_path):
    bad = str(tmp_path / "gone.png")
    X = [image_files[0][0], bad, image_files[0][1]]
    for policy, check in (("nan", np.isnan), ("zero", lambda r: r == 0)):
        ext = clone(CNN).set_params(on_error=policy).fit(X)
        with pytest.warns(InputWarning, match=r"1 of 3 samples.*row 1") as record:
            out = ext.transform(X)
        assert out.shape == (3, 32)
        assert check(out[1]).all() and np.isfinite(out[[0, 2]]).all()
        assert list(record[0].message.errors) == [1]
        out2, errors = ext.transform_with_errors(X)
        np.testing.assert_array_equal(out2, out)
        assert list(errors) == [1] and "gone.png" in errors[1]


def test_feature_name_mismatch(image_files):
    ext = clone(CNN).fit(pd.DataFrame({"photo": image_files[0]}))
    with pytest.raises(InputError, match="fitted on column 'photo'"):
        ext.transform(pd.DataFrame({"other": image_files[0]}))


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("batch_size", -3, r"'batch_size' parameter .* must be an int in the range"),
        ("pooling", "median", r"'pooling' parameter .* must be a str among"),
        ("precision", "fp8", r"'precision' parameter"),
        ("on_error", "ignore", r"'on_error' parameter"),
    ],
)
def test_bad_parameters(param, value, match, texts):
    with pytest.raises(ValueError, match=match):
        clone(TXT).set_params(**{param: value}).fit(texts[0])


def test_bad_backbone_and_device(texts):
    with pytest.raises(BackboneNotFoundError, match="Did you mean"):
        PretrainedFeatureExtractor("all-MiniLM-L6").fit(texts[0])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            clone(TXT).set_params(device="cuda").fit(texts[0])


# ------------------------------------------------------------------ layers / pooling
def test_layer_and_pooling_options(image_files):
    X = image_files[0][:4]
    default = clone(CNN).fit(X).transform(X)
    by_index = clone(CNN).set_params(layer=-1).fit(X).transform(X)
    np.testing.assert_allclose(by_index, default, atol=1e-6)  # last block, avg-pooled
    mid = clone(CNN).set_params(layer="blocks.1").fit(X)
    assert mid.transform(X).shape == (4, 16)
    assert clone(CNN).set_params(layer=0, pooling="max").fit(X).transform(X).shape == (
        4,
        8,
    )
    with pytest.raises(
        ValueError, match=r"layer='blocks\.9' is not a module.*blocks\.0"
    ):
        clone(CNN).set_params(layer="blocks.9").fit(X)
    with pytest.raises(ValueError, match="out of range"):
        clone(CNN).set_params(layer=7).fit(X)
    np.testing.assert_allclose(
        clone(CNN).set_params(pooling="max").fit(X).transform(X),
        clone(CNN).set_params(layer=-1, pooling="max").fit(X).transform(X),
    )
    with pytest.raises(ValueError, match="needs a token sequence"):
        clone(CNN).set_params(pooling="cls").fit(X)


def test_text_layers_and_pooling(texts):
    X = texts[0]
    outs = {
        p: clone(TXT).set_params(pooling=p).fit(X).transform(X)
        for p in ("mean", "cls", "max")
    }
    assert not np.allclose(outs["mean"], outs["cls"])
    last = clone(TXT).set_params(layer=-1).fit(X).transform(X)
    np.testing.assert_allclose(last, outs["mean"], atol=1e-5)
    emb = clone(TXT).set_params(layer=0).fit(X).transform(X)
    assert not np.allclose(emb, last)
    norm = clone(TXT).set_params(normalize=True).fit(X).transform(X)
    np.testing.assert_allclose(np.linalg.norm(norm, axis=1), 1, rtol=1e-5)


def test_verbose_progress_bar(texts, capsys):
    clone(TXT).set_params(verbose=True).fit(texts[0]).transform(texts[0])
    assert "embedding with test-text" in capsys.readouterr().err


# ------------------------------------------------------------------ runtime
def test_auto_batch_size_backs_off_on_oom():
    calls = []

    def fn(lo, hi):
        calls.append(hi - lo)
        if hi - lo > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")
        return hi - lo

    sizer = AutoBatchSize(32, floor=2)
    assert sum(sizer.map(fn, 20)) == 20
    # halves what was tried (20 rows, not the nominal 32): no wasted attempts
    assert sizer.history == [32, 10, 5]
    assert calls == [20, 10, 5, 5, 5, 5]


def test_auto_batch_size_floor_and_other_errors():
    def oom(lo, hi):
        raise RuntimeError("CUDA error: out of memory")

    sizer = AutoBatchSize(8, floor=2)
    with pytest.raises(
        MemoryError, match=r"even at batch_size=2 \(tried \[8, 4, 2\]\)"
    ):
        sizer.map(oom, 10)
    assert sizer.history == [8, 4, 2]

    def other(lo, hi):
        raise ValueError("shape mismatch")

    sizer = AutoBatchSize(8)
    with pytest.raises(ValueError, match="shape mismatch"):
        sizer.map(other, 10)
    assert sizer.history == [8]
    fixed = AutoBatchSize(8, adaptive=False)
    with pytest.raises(MemoryError, match="batch_size='auto' to back off"):
        fixed.map(oom, 10)
    assert fixed.history == [8]


def test_precision_bf16_on_cpu_is_close(image_files):
    X = image_files[0][:4]
    fp32 = clone(CNN).fit(X).transform(X)
    bf16 = clone(CNN).set_params(precision="bf16").fit(X).transform(X)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.1)


@pytest.mark.cuda
def test_cuda_matches_cpu(image_files, texts):
    for est, X in ((CNN, image_files[0]), (TXT, texts[0])):
        cpu = clone(est).set_params(device="cpu").fit(X).transform(X)
        gpu = clone(est).set_params(device="cuda", precision="fp32").fit(X).transform(X)
        np.testing.assert_allclose(gpu, cpu, atol=1e-3)
        bf16 = (
            clone(est).set_params(device="cuda", precision="bf16").fit(X).transform(X)
        )
        np.testing.assert_allclose(bf16, cpu, atol=0.1)


def test_compile_option_compiles_once_and_matches(monkeypatch):
    calls = []
    real = torch.compile

    def counting(model, **kw):
        calls.append(kw)
        return real(model, **kw)

    monkeypatch.setattr(torch, "compile", counting)
    sktransfer.clear_caches()
    X = np.random.default_rng(0).integers(0, 255, (6, 40, 40, 3), np.uint8)
    plain = PretrainedFeatureExtractor("test-cnn", cache=None).fit(X).transform(X)
    ext = PretrainedFeatureExtractor(
        "test-cnn", cache=None, compile={"backend": "eager"}, batch_size=3
    )
    out = ext.fit(X).transform(X)
    clone(ext).fit(X).transform(X[:2])  # a clone reuses the compiled network
    np.testing.assert_allclose(out, plain, atol=1e-5)
    assert calls == [{"backend": "eager"}]
    with pytest.raises(ValueError, match="'compile' parameter"):
        PretrainedFeatureExtractor("test-cnn", compile="yes").fit(X)
