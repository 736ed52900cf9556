"""Every image form and mode converts to the RGB a person would expect."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sktransfer._images import load_rgb, prepare_image, to_rgb
from sktransfer.backbones import ImagePreprocessing
from sktransfer.exceptions import InputError

PRE = ImagePreprocessing(size=16, crop_pct=1.0)


def px(image, xy=(0, 0)):
    return to_rgb(image).getpixel(xy)


def test_grayscale_becomes_gray_rgb():
    assert px(Image.new("L", (4, 4), 100)) == (100, 100, 100)
    assert px(Image.new("1", (4, 4), 1)) == (255, 255, 255)


def test_rgba_transparent_pixels_composite_on_white():
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert px(image) == (255, 255, 255)
    image.putpixel((1, 1), (10, 20, 30, 255))
    assert px(image, (1, 1)) == (10, 20, 30)


def test_palette_with_transparency():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0
    assert px(image) == (255, 255, 255)  # transparent index -> white
    assert px(image, (1, 1)) == (0, 0, 200)


def test_palette_without_transparency():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
    assert px(image) == (0, 0, 200)


def test_cmyk_converts():
    assert px(Image.new("CMYK", (4, 4), (0, 0, 0, 0))) == (255, 255, 255)
    r, g, b = px(Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
    assert r > 200 and g < 50 and b < 50


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((4, 4), 32768, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    value = load_rgb(str(path), "row 0").getpixel((0, 0))
    assert value == (128, 128, 128)  # 32768 / 65535 * 255, not clipped to 255


def test_16bit_array_is_scaled():
    arr = np.full((4, 4, 3), 65535, dtype=np.uint16)
    assert load_rgb(arr, "row 0").getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)  # landscape: 40 wide, 20 high
    arr[:, :20] = 255  # left half white
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = load_rgb(str(path), "row 0")
    assert loaded.size == (20, 40)  # displayed portrait
    top, bottom = loaded.getpixel((10, 2)), loaded.getpixel((10, 37))
    assert top[0] > 200 and bottom[0] < 50  # white half now on top


@pytest.mark.parametrize(
    "arr",
    [
        np.full((8, 8), 255, np.uint8),
        np.full((8, 8, 1), 255, np.uint8),
        np.full((8, 8, 3), 255, np.uint8),
        np.full((3, 8, 8), 255, np.uint8),  # CxHxW
        np.full((8, 8, 3), 1.0, np.float32),
        np.full((8, 8), 1.0, np.float64),
        np.full((8, 8), True),
        np.full((8, 8, 3), 255, np.int64),
    ],
)
def test_array_layouts_and_dtypes(arr):
    out = prepare_image(arr, "row 0", PRE)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out == 255).all()


def test_rgba_array_composites():
    arr = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    assert load_rgb(arr, "row 0").getpixel((0, 0)) == (255, 255, 255)


def test_bytes_input():
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(buf, format="PNG")
    assert load_rgb(buf.getvalue(), "row 0").getpixel((5, 5)) == (1, 2, 3)


def test_resize_and_center_crop_match_torchvision():
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (37, 53, 3), np.uint8))
    pre = ImagePreprocessing(size=24, crop_pct=0.875, interpolation="bicubic")
    ours = prepare_image(image, "row 0", pre)
    ref = v2.Compose(
        [
            v2.Resize(pre.resize_size, interpolation=v2.InterpolationMode.BICUBIC),
            v2.CenterCrop(pre.size),
        ]
    )(image)
    np.testing.assert_array_equal(ours, np.asarray(ref))


# ------------------------------------------------------------------ bad input
def test_missing_file_names_row_and_path(tmp_path):
    path = str(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match=r"row 3: image file .*nope\.jpg.* not exist"):
        load_rgb(path, "row 3")


def test_text_given_to_image_backbone_hints_at_text_backbone():
    with pytest.raises(InputError, match="use a text backbone"):
        load_rgb("a lovely sunny day", "row 0")


def test_undecodable_bytes():
    with pytest.raises(InputError, match=r"row 2: 9 bytes .* not a decodable image"):
        load_rgb(b"not a png", "row 2")


def test_truncated_image(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    ).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match=r"row 1: .*cut\.jpg.* truncated or corrupt"):
        load_rgb(str(path), "row 1")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(InputError, match=r"row 4: .*too large.*MAX_IMAGE_PIXELS"):
        load_rgb(str(path), "row 4")


def test_float_out_of_range():
    with pytest.raises(InputError, match=r"row 0: a float image must have values in"):
        load_rgb(np.full((4, 4), 16.0), "row 0")


def test_nan_array():
    with pytest.raises(InputError, match="NaN"):
        load_rgb(np.full((4, 4), np.nan), "row 0")


def test_bad_shape_and_type():
    with pytest.raises(InputError, match="shape"):
        load_rgb(np.zeros((5, 5, 7), np.uint8), "row 0")
    with pytest.raises(InputError, match=r"row 5: expected an image .* got int"):
        load_rgb(5, "row 5")
    with pytest.raises(InputError, match=r"row 6: the image is missing"):
        load_rgb(None, "row 6")
