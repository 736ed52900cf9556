"""Classify images or texts with a model exported by ``sktransfer.to_onnx``,
with onnxruntime alone: no torch, no scikit-learn, no sktransfer.

What it needs: ``pip install onnxruntime numpy pillow`` (images) or
``onnxruntime numpy tokenizers`` (texts), and the export folder (``model.onnx``,
plus ``tokenizer.json`` for a text model)::

    python examples/serve_onnx.py export/ photos/           # a folder of images
    python examples/serve_onnx.py export/ reviews.txt       # one text per line
    python examples/serve_onnx.py export/ reviews.txt --json out.json

It prints one line per input (its label and top probability) and with
``--json`` writes every output. The preprocessing is read from the model's
metadata: images are resized (shorter side to ``resize_size``, the filter
``interpolation``) and centre-cropped to ``size`` exactly as sktransfer does
(without its reduced-size JPEG decoding, which can change a pixel or two on
very large JPEGs); texts are tokenised with the saved tokenizer (truncation
and padding are set in it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_model(folder: Path):
    """The session and the metadata ``to_onnx`` wrote into the graph."""
    session = ort.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    meta = session.get_modelmeta().custom_metadata_map
    meta = {
        k.removeprefix("sktransfer."): json.loads(v)
        for k, v in meta.items()
        if k.startswith("sktransfer.")
    }
    return session, meta


def prepare_image(path: Path, meta: dict) -> np.ndarray:
    """Decode, resize the shorter side, centre-crop: uint8 (size, size, 3)."""
    from PIL import Image, ImageOps

    filters = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGB", rgba.size, (255, 255, 255))
            white.paste(rgba, mask=rgba.getchannel("A"))
            image = white
        image = image.convert("RGB")
    size, resize = meta["size"], meta["resize_size"]
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize * long / short)
    new = (resize, new_long) if w <= h else (new_long, resize)
    if new != (w, h):
        image = image.resize(new, filters.get(meta["interpolation"]))
    left, top = round((new[0] - size) / 2.0), round((new[1] - size) / 2.0)
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def image_inputs(paths: list[Path], meta: dict) -> dict:
    return {"images": np.stack([prepare_image(p, meta) for p in paths])}


def text_inputs(texts: list[str], folder: Path) -> dict:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


def classify(folder, source, batch_size: int = 32) -> tuple[list[str], dict]:
    """The names of the inputs and every output of the model on them."""
    folder, source = Path(folder), Path(source)
    session, meta = load_model(folder)
    if meta["modality"] == "image":
        names = sorted(
            p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        make = lambda chunk: image_inputs(chunk, meta)  # noqa: E731
    else:
        names = [t for t in source.read_text().splitlines() if t.strip()]
        make = lambda chunk: text_inputs(chunk, folder)  # noqa: E731
    outputs = [o.name for o in session.get_outputs()]
    results = {name: [] for name in outputs}
    for lo in range(0, len(names), batch_size):
        values = session.run(None, make(names[lo : lo + batch_size]))
        for name, value in zip(outputs, values, strict=True):
            results[name].append(value)
    return [str(n) for n in names], {k: np.concatenate(v) for k, v in results.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the folder to_onnx wrote")
    parser.add_argument("inputs", help="a folder of images, or a text file")
    parser.add_argument("--json", help="write every output to this file")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    names, out = classify(args.model, args.inputs, args.batch_size)
    for i, name in enumerate(names):
        label = out["label"][i] if "label" in out else "-"
        top = out["probabilities"][i].max() if "probabilities" in out else float("nan")
        print(f"{label}\t{top:.3f}\t{name}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"inputs": names, **{k: v.tolist() for k, v in out.items()}})
        )


if __name__ == "__main__":
    main()
