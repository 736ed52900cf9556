"""Large photos are decoded at a reduced size: fast, and close to the full decode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer._images import load_rgb, prepare_image
from sktransfer.backbones import get_backbone_spec

PRE = get_backbone_spec("efficientnet_lite0").preprocessing  # resize 256, crop 224
FULL = dataclasses.replace(PRE, reduced_decode=False)


@pytest.fixture
def photo(tmp_path):
    from skimage import data

    img = Image.fromarray(data.chelsea()).resize((2400, 1600), Image.Resampling.BICUBIC)
    path = tmp_path / "big.jpg"
    img.save(path, quality=90)
    png = tmp_path / "big.png"
    img.save(png)
    return str(path), str(png)


def test_jpeg_draft_keeps_twice_the_target(photo):
    jpg, _ = photo
    reduced = load_rgb(jpg, "row 0", PRE.resize_size)
    # 1600 / (2 * 256) = 3.1: Pillow's DCT scaling picks 1/2 (the largest of
    # 1/2, 1/4, 1/8 whose result is still >= the request)
    assert reduced.size == (1200, 800)
    assert load_rgb(jpg, "row 0").size == (2400, 1600)  # no target: full size
    assert load_rgb(jpg, "row 0", 1000).size == (2400, 1600)  # not 2x larger


def test_small_images_are_untouched(tmp_path):
    path = tmp_path / "small.jpg"
    Image.new("RGB", (400, 300), (10, 200, 30)).save(path)
    np.testing.assert_array_equal(
        prepare_image(str(path), "row 0", PRE), prepare_image(str(path), "row 0", FULL)
    )


@pytest.mark.parametrize("which", [0, 1])  # JPEG draft, PNG reducing_gap
def test_reduced_decode_is_close_to_full_size(photo, which):
    path = photo[which]
    fast = prepare_image(path, "row 0", PRE).astype(int)
    full = prepare_image(path, "row 0", FULL).astype(int)
    assert fast.shape == full.shape == (224, 224, 3)
    assert np.abs(fast - full).mean() < 2.0  # of 255
    assert np.percentile(np.abs(fast - full), 99) <= 12


def test_embeddings_close_and_cache_keys_differ(photo, count_embeds):
    spec = get_backbone_spec("efficientnet_lite0")
    full_spec = dataclasses.replace(spec, preprocessing=FULL)
    fast = PretrainedFeatureExtractor(spec, precision="fp32").fit(photo[:1])
    full = PretrainedFeatureExtractor(full_spec, precision="fp32").fit(photo[:1])
    a, b = fast.transform(list(photo)), full.transform(list(photo))
    assert count_embeds["n"] == 4  # the decode mode is part of the cache key
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99
