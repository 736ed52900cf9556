"""Decode one image from any supported form into the backbone's uint8 input.

Supported: file paths (str / PathLike), raw bytes, PIL images, numpy arrays
(``HxW``, ``HxWxC`` or ``CxHxW``; uint8, uint16, bool, integers in [0, 255] or
floats in [0, 1]). Every mode is converted to RGB the way a person would expect:
EXIF orientation applied, transparency composited on white, 16-bit scaled (not
clipped), palette and CMYK converted.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sktransfer._inputs import is_missing
from sktransfer.backbones._spec import ImagePreprocessing
from sktransfer.exceptions import InputError

__all__ = ["load_rgb", "prepare_image", "to_rgb"]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_TEXT_HINT = (
    " If these are texts rather than file paths, use a text backbone such as "
    "'all-MiniLM-L6-v2'."
)


DRAFT_MARGIN = 2  # JPEG draft keeps a shorter side >= 2x the resize target
REDUCING_GAP = 2.0  # other formats: integer reduce while >= 2x the target is left


def _draft(image: Image.Image, min_side: int | None) -> None:
    """Ask a JPEG decoder for a DCT-scaled image (1/2, 1/4, 1/8) whose shorter
    side stays >= ``DRAFT_MARGIN * min_side``; anything else is left alone."""
    if not min_side or image.format != "JPEG":
        return
    w, h = image.size
    scale = min(w, h) / (DRAFT_MARGIN * min_side)
    if scale >= 2:  # Pillow picks the largest of 8, 4, 2 that keeps >= size
        image.draft(None, (math.ceil(w / scale), math.ceil(h / scale)))


def _open(value: Any, row: str, min_side: int | None = None) -> Image.Image:
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if not os.path.isfile(path):
            looks_like_text = " " in path.strip() or not os.path.splitext(path)[1]
            raise InputError(
                f"{row}: image file {path!r} does not exist."
                + (_TEXT_HINT if looks_like_text else "")
            )
        source: Any = path
        what = f"file {path!r}"
    elif isinstance(value, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(value))
        what = f"{len(value)} bytes starting {bytes(value[:8])!r}"
    else:  # pragma: no cover - callers dispatch other types before
        raise TypeError(type(value))
    try:
        image = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise _bomb(row, what, str(exc)) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{row}: {what} is not a decodable image ({exc}).") from exc
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise _bomb(row, what, f"{image.width}x{image.height} pixels")
    _draft(image, min_side)
    try:
        image.load()
    except OSError as exc:
        raise InputError(
            f"{row}: {what} is truncated or corrupt ({exc}). Re-export the file, or "
            "set PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True to embed what is there."
        ) from exc
    return image


def _bomb(row: str, what: str, detail: str) -> InputError:
    return InputError(
        f"{row}: {what} is too large ({detail}; the limit is "
        f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels), which "
        "protects against decompression bombs. If you trust the file, raise "
        "PIL.Image.MAX_IMAGE_PIXELS."
    )


def _from_array(arr: np.ndarray, row: str) -> Image.Image:
    if arr.size == 0:
        raise InputError(f"{row}: the image array is empty (shape {arr.shape}).")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CxHxW -> HxWxC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise InputError(
            f"{row}: an image array must be HxW, HxWx1, HxWx3 or HxWx4 (or CxHxW); "
            f"got shape {arr.shape}."
        )
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = np.round(arr / 257.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(f"{row}: the image array contains NaN or infinite values.")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            raise InputError(
                f"{row}: a float image must have values in [0, 1]; got [{lo:g}, "
                f"{hi:g}]. Divide by 255 (or by the maximum) first, or pass uint8."
            )
        arr = np.round(arr * 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(
                f"{row}: an integer image must have values in [0, 255] (or be "
                f"uint16); got [{lo}, {hi}]. Rescale it or cast to uint16."
            )
        arr = arr.astype(np.uint8)
    else:
        raise InputError(f"{row}: unsupported image array dtype {arr.dtype}.")
    return Image.fromarray(np.ascontiguousarray(arr))


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to RGB, orientation applied.

    Parameters
    ----------
    image : PIL.Image.Image

    Returns
    -------
    PIL.Image.Image in mode ``"RGB"``.

    Examples
    --------
    >>> from PIL import Image
    >>> to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0))
    (255, 255, 255)
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        if mode == "F":
            scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        else:  # 16-bit (I;16*) or 32-bit integer holding 16-bit data (PNG)
            scale = 255.0 / (
                65535.0 if arr.max(initial=0) > 255 or "16" in mode else 255.0
            )
        gray = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("P", "PA") and ("transparency" in image.info or mode == "PA"):
        return _composite_on_white(image)
    if mode in ("RGBA", "LA", "La", "RGBa"):
        return _composite_on_white(image)
    return image.convert("RGB")


def load_rgb(value: Any, row: str, min_side: int | None = None) -> Image.Image:
    """Open / convert one image value to an RGB PIL image.

    With ``min_side``, a JPEG file or bytes much larger than that is decoded at
    a reduced size whose shorter side is still at least ``2 * min_side``.

    Whatever goes wrong with the value itself is an
    :class:`~sktransfer.exceptions.InputError` that names ``row`` (Pillow raises
    many types on malformed data; none of them escapes).
    """
    try:
        return _load_rgb(value, row, min_side)
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # Pillow's errors on bad data are open-ended
        hint = (
            " Embed a PIL image before closing it, or pass its file path."
            if "closed" in str(exc)
            else ""
        )
        raise InputError(
            f"{row}: could not read the image ({type(exc).__name__}: {exc}).{hint}"
        ) from exc


def _load_rgb(value: Any, row: str, min_side: int | None) -> Image.Image:
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, str | os.PathLike | bytes | bytearray | memoryview):
        image = _open(value, row, min_side)
    elif is_missing(value):
        raise InputError(
            f"{row}: the image is missing ({type(value).__name__}). Drop or fill "
            "it first."
        )
    elif isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        image = _from_array(np.asarray(value), row)
    else:
        raise InputError(
            f"{row}: expected an image (a file path, bytes, a PIL image or a numpy "
            f"array), got {type(value).__name__}: {value!r:.80}."
        )
    if image.width == 0 or image.height == 0:
        raise InputError(f"{row}: the image is empty ({image.width}x{image.height}).")
    return to_rgb(image)


def prepare_image(value: Any, row: str, pre: ImagePreprocessing) -> np.ndarray:
    """Decode, resize (shorter side) and centre-crop one image to uint8 HxWx3.

    Parameters
    ----------
    value : path, bytes, PIL image or array
    row : str
        How to name this input in an error (``"row 3"``).
    pre : ImagePreprocessing

    Returns
    -------
    ndarray of shape ``(pre.size, pre.size, 3)`` and dtype uint8.
    """
    reduced = pre.reduced_decode
    image = load_rgb(value, row, pre.resize_size if reduced else None)
    w, h = image.size
    # torchvision's Resize(int) / CenterCrop arithmetic, so pixels match timm's eval
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = pre.resize_size, int(pre.resize_size * long / short)
    new = (new_short, new_long) if w <= h else (new_long, new_short)
    if new != (w, h):
        image = image.resize(
            new,
            _RESAMPLE.get(pre.interpolation, Image.Resampling.BILINEAR),
            reducing_gap=REDUCING_GAP if reduced else None,
        )
    left = round((new[0] - pre.size) / 2.0)
    top = round((new[1] - pre.size) / 2.0)
    image = image.crop((left, top, left + pre.size, top + pre.size))
    return np.asarray(image, dtype=np.uint8)
