"""Hostile inputs: only InputError escapes (on_error="raise"), nothing with "nan".

The number of generated cases per test is set by ``FUZZ_EXAMPLES`` (default 150;
see docs/reliability.md for the count and time in CI).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays, scalar_dtypes
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer.exceptions import InputError

N = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=N,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
IMG = PretrainedFeatureExtractor("test-cnn", cache=None, num_workers=0).fit(
    [np.zeros((8, 8, 3), np.uint8)]
)
TXT = PretrainedFeatureExtractor("test-text", cache=None).fit(["a"])


def _closed_image():
    image = Image.new("RGB", (4, 4))
    image.close()
    return image


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


missing = st.sampled_from([None, np.nan, pd.NA, pd.NaT, np.datetime64("NaT")])
any_array = arrays(
    dtype=scalar_dtypes(),
    shape=array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
)
corrupted = st.builds(
    lambda data, cut, flip: (
        data[:cut] + bytes([data[cut % len(data)] ^ flip]) + data[cut + 1 :]
    ),
    st.sampled_from([_image_bytes("PNG"), _image_bytes("JPEG"), _image_bytes("GIF")]),
    st.integers(0, 300),
    st.integers(1, 255),
)
image_values = st.one_of(
    st.binary(max_size=200),
    corrupted,
    any_array,
    missing,
    st.builds(_closed_image),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.just(Image.new("RGB", (0, 5))),
)
text_values = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=40),
    missing,
    st.integers(),
    st.binary(max_size=10),
)


def _check(ext, values):
    n = len(values)
    try:
        out = ext.transform(values)
        assert out.shape == (n, ext._n_features_out)
    except InputError:
        pass
    nan = ext.set_params(on_error="nan")
    try:
        out, errors = nan.transform_with_errors(values)  # no exception at all
    finally:
        ext.set_params(on_error="raise")
    assert out.shape == (n, ext._n_features_out)
    for i in range(n):  # a failed row is NaN; any other row is finite
        assert np.isnan(out[i]).all() if i in errors else np.isfinite(out[i]).all()


@FUZZ
@given(st.lists(image_values, min_size=1, max_size=4))
def test_image_inputs_fail_only_with_input_error(values):
    _check(IMG, values)


@FUZZ
@given(st.lists(text_values, min_size=1, max_size=4))
def test_text_inputs_fail_only_with_input_error(values):
    _check(TXT, values)


@FUZZ
@given(any_array)
def test_one_array_as_X_fails_only_with_input_error(X):
    try:
        out = IMG.transform(X)
        assert out.shape[0] == len(X)
    except InputError:
        pass


# ------------------------------------------------------------ named cases
@pytest.mark.parametrize(
    "value, match",
    [
        (
            np.zeros((0, 0, 3), np.uint8),
            r"row 0: the image array is empty \(shape \(0, 0, 3\)\)",
        ),
        (np.zeros((5, 0, 3), np.uint8), "row 0: the image array is empty"),
        (Image.new("RGB", (0, 5)), r"row 0: the image is empty \(0x5\)"),
        (
            _closed_image(),
            "row 0: could not read the image .*closed.* before closing it",
        ),
        (pd.NA, r"row 0: the image is missing \(NAType\)"),
        (pd.NaT, r"row 0: the image is missing \(NaTType\)"),
    ],
)
def test_images_that_cannot_be_embedded_name_the_row(value, match):
    with pytest.raises(InputError, match=match):
        IMG.transform([value])
    out, errors = IMG.set_params(on_error="nan").transform_with_errors([value])
    IMG.set_params(on_error="raise")
    assert list(errors) == [0] and np.isnan(out).all()


@pytest.mark.parametrize(
    "value, match",
    [
        (
            "\ud800bad",
            r"row 1 \(index 'b'\): the text '\\ud800bad' has a lone surrogate '\\ud800' at position 0",
        ),
        (pd.NA, r"row 1 \(index 'b'\): the text is missing \(<NA>\)"),
        (pd.NaT, r"row 1 \(index 'b'\): the text is missing \(NaT\)"),
    ],
)
def test_texts_that_cannot_be_embedded_name_the_row_and_label(value, match):
    X = pd.Series(["fine", value], index=["a", "b"], dtype=object)
    with pytest.raises(InputError, match=match):
        TXT.transform(X)


def test_one_bare_image_array_is_ambiguous():
    with pytest.raises(
        InputError,
        match=r"one array of shape \(20, 30, 3\).*transform\(\[image\]\).*X\[\.\.\., None\]",
    ):
        IMG.transform(np.zeros((20, 30, 3), np.uint8))
    assert IMG.transform(np.zeros((2, 20, 30, 3), np.uint8)).shape[0] == 2
    assert IMG.transform(np.zeros((20, 30, 5), np.uint8)).shape[0] == 20


@pytest.mark.parametrize("typo", ["Memory", "memroy", "MEMORY", " memory"])
def test_a_cache_string_like_memory_is_an_error(typo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError, match=rf"cache={typo!r} looks like a typo of 'memory'.*pathlib.Path"
    ):
        PretrainedFeatureExtractor("test-cnn", cache=typo).fit([np.zeros((4, 4, 3))])
    assert not os.listdir(tmp_path)  # no directory was created
    from pathlib import Path

    for ok in (Path("Memory"), "./memory", "memo"):  # paths, and a real name
        PretrainedFeatureExtractor("test-cnn", cache=ok).fit([np.zeros((4, 4, 3))])


def test_cpu_out_of_memory_backs_off_through_the_extractor(monkeypatch):
    from sktransfer._embedder import Embedder

    sizes = []
    real = Embedder._forward

    def tight(self, make_batch, n, where, done=None):
        def guarded(lo, hi):
            sizes.append(hi - lo)
            if hi - lo > 3:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: 9 GB")
            return make_batch(lo, hi)

        return real(self, guarded, n, where, done)

    monkeypatch.setattr(Embedder, "_forward", tight)
    X = np.zeros((10, 8, 8, 3), np.uint8)
    ext = PretrainedFeatureExtractor("test-cnn", cache=None, num_workers=0).fit(X)
    assert ext.transform(X).shape == (10, 32)
    assert sizes[:3] == [10, 5, 2] and set(sizes[3:]) == {2}
    fixed = ext.set_params(batch_size=8)
    with pytest.raises(MemoryError, match=r"batch_size=8.*batch_size='auto'"):
        fixed.transform(X)
