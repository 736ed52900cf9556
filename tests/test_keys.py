"""Cache keys cover everything that changes what the network sees."""

from __future__ import annotations

import io
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer._images import prepare_image
from sktransfer._keys import keys_ahead, sample_key, sample_keys
from sktransfer.backbones import get_backbone_spec
from sktransfer.exceptions import InputError

PRE = get_backbone_spec("test-cnn").preprocessing
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _prepared(value):
    try:
        return prepare_image(value, "row 0", PRE)
    except InputError:
        return None


def test_palette_images_with_other_palettes_get_other_keys_and_embeddings():
    idx = np.arange(64, dtype=np.uint8).reshape(8, 8) % 4
    a = Image.fromarray(idx, mode="P")
    b = a.copy()
    a.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    b.putpalette([255, 255, 255, 0, 255, 255, 255, 0, 255, 255, 255, 0] + [0] * 756)
    assert a.tobytes() == b.tobytes()  # the same indices ...
    assert sample_key("p", a, PRE) != sample_key("p", b, PRE)  # ... other keys
    ext = PretrainedFeatureExtractor("test-cnn").fit([a])
    out = ext.transform([a, b])
    again = ext.transform([b, a])  # across calls too
    assert not np.allclose(out[0], out[1])
    np.testing.assert_array_equal(again[::-1], out)


def _jpeg_with_orientation(orientation: int) -> Image.Image:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20, 0] = 255  # left half red: rotating moves it
    exif = Image.Exif()
    exif[0x010F] = "Make " * 40  # long tags push orientation past any cut-off
    exif[0x0110] = "Model " * 40
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_exif_orientation_changes_the_key_and_the_embedding():
    a, b = _jpeg_with_orientation(1), _jpeg_with_orientation(6)
    assert a.tobytes() == b.tobytes()  # identical pixels, other orientation
    assert sample_key("p", a, PRE) != sample_key("p", b, PRE)
    ext = PretrainedFeatureExtractor("test-cnn").fit([a])
    out = ext.transform([a, b])
    assert not np.allclose(out[0], out[1])


def test_a_rewritten_file_is_never_served_stale(tmp_path):
    path = tmp_path / "img.bmp"  # uncompressed: same size
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    st0 = os.stat(path)
    ext = PretrainedFeatureExtractor("test-cnn").fit([str(path)])
    first = ext.transform([str(path)])
    key = sample_key("p", str(path), PRE)
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(path)
    assert os.stat(path).st_size == st0.st_size  # same size ...
    os.utime(path, ns=(st0.st_atime_ns, st0.st_mtime_ns))  # ... mtime restored
    assert sample_key("p", str(path), PRE) != key
    fresh = PretrainedFeatureExtractor("test-cnn", cache=None).fit([str(path)])
    np.testing.assert_array_equal(
        ext.transform([str(path)]), fresh.transform([str(path)])
    )
    assert not np.allclose(first, fresh.transform([str(path)]))


images = arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_]),
    shape=array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6),
    elements={"allow_nan": False, "min_value": 0, "max_value": 1},
)


@FAST
@given(images, images)
def test_arrays_sharing_a_key_prepare_alike(a, b):
    ka, kb = sample_key("p", a, PRE), sample_key("p", b, PRE)
    assert ka == sample_key("p", a.copy(), PRE)  # equal inputs share a key
    if ka == kb:
        pa, pb = _prepared(a), _prepared(b)
        assert (pa is None) == (pb is None)
        if pa is not None:
            np.testing.assert_array_equal(pa, pb)


modes = st.sampled_from(["RGB", "L", "P", "RGBA", "LA", "I;16", "CMYK"])


@st.composite
def pil_images(draw):
    mode = draw(modes)
    w, h = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    data = draw(st.binary(min_size=w * h * 8, max_size=w * h * 8))
    image = Image.frombytes(
        mode, (w, h), data[: len(Image.new(mode, (w, h)).tobytes())]
    )
    if mode == "P":
        image.putpalette(list(draw(st.binary(min_size=768, max_size=768))))
        if draw(st.booleans()):
            image.info["transparency"] = draw(st.integers(0, 255))
    return image


@FAST
@given(pil_images(), pil_images())
def test_pil_images_share_a_key_exactly_when_prepared_alike(a, b):
    pa, pb = _prepared(a), _prepared(b)
    ka, kb = sample_key("p", a, PRE), sample_key("p", b, PRE)
    assert ka == sample_key("p", a.copy(), PRE)
    same = pa is not None and pb is not None and np.array_equal(pa, pb)
    assert (ka == kb and ka is not None) == same


@FAST
@given(st.text(), st.text())
def test_texts_share_a_key_exactly_when_equal(a, b):
    assert (sample_key("p", a) == sample_key("p", b)) == (a == b)


def test_settings_prefix_separates_keys():
    assert sample_key("a", "x") != sample_key("b", "x")
    assert sample_key("a", b"x") != sample_key("a", "x")


def test_keys_ahead_matches_sample_keys_in_order():
    values = [np.full((4, 4), i, np.uint8) for i in range(11)]
    chunks = list(keys_ahead("p", values, first=3, growth=2, largest=4))
    assert [(lo, hi) for lo, hi, _ in chunks] == [(0, 3), (3, 7), (7, 11)]
    assert [k for *_, keys in chunks for k in keys] == sample_keys("p", values)
    matrix = np.stack(values)  # an ndarray input: its rows keyed alike
    chunks = list(keys_ahead("p", matrix, first=2, growth=3))
    assert [(lo, hi) for lo, hi, _ in chunks] == [(0, 2), (2, 8), (8, 11)]
    assert [k for *_, keys in chunks for k in keys] == sample_keys("p", values)
    assert list(keys_ahead("p", [])) == []


def test_typed_buffers_are_keyed_by_their_bytes():
    """blake3 takes byte buffers only: a typed memoryview or a 0-d / strided
    array is keyed by its bytes instead of raising BufferError."""
    a = np.arange(6, dtype=np.int32)
    assert sample_key("p", memoryview(a)) == sample_key("p", a.tobytes())
    strided = np.arange(6.0).reshape(2, 3).T
    assert sample_key("p", strided) == sample_key("p", strided.copy())
    assert sample_key("p", np.array(3.0)) != sample_key("p", np.array([3.0]))


_ANY_SAMPLE = st.one_of(
    arrays(
        st.sampled_from([np.uint8, np.float32, np.int64, np.bool_]),
        array_shapes(min_dims=0, max_dims=3, max_side=4),
    ),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.none(),
)


@FAST
@given(st.lists(_ANY_SAMPLE, max_size=12))
def test_batched_keys_equal_one_by_one_keys(values):
    """sample_keys' shared hasher per (dtype, shape) gives exactly sample_key's
    keys, whatever mix of arrays, texts and bytes comes in."""
    assert sample_keys("p", values) == [sample_key("p", v) for v in values]


@FAST
@given(
    arrays(
        st.sampled_from([np.uint8, np.float16, np.float32, np.int64, np.bool_]),
        array_shapes(min_dims=2, max_dims=4, min_side=0, max_side=4),
    )
)
def test_rows_of_an_array_are_keyed_as_one_by_one(matrix):
    """An ndarray input's rows, hashed from slices of one byte view, get
    exactly the keys sample_key gives each row (what earlier folders hold)."""
    expected = [sample_key("p", row) for row in matrix]
    assert sample_keys("p", matrix) == expected
    assert [
        k for *_, ks in keys_ahead("p", matrix, first=1, growth=2) for k in ks
    ] == expected
