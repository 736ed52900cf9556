"""Camera-size photos: 12-megapixel JPEG files, the extractor vs. a plain loop.

Files: scikit-image's sample photographs upscaled to 4000x3000 (bicubic) and
saved as JPEG quality 90, like a phone's. Measured, in one run:

- images/s of the extractor (defaults: reduced decoding, ``precision="auto"``),
  of the extractor in fp32, and of the extractor decoding at full size
  (``reduced_decode=False``), against a plain hand-written loop (PIL open +
  convert, torchvision ``Resize(256)`` + ``CenterCrop(224)``, batches of 32, the
  same model in fp32) and embetter's ``ImageLoader | TimmEncoder``. Target:
  extractor / plain loop >= 3x.
- decode time per file, full size vs. draft (one core);
- how close reduced decoding is: cosine and largest absolute difference between
  the embeddings of the reduced and the full-size decode (both fp32).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import QUICK, best_time, machine, write_result
from bench_images import BATCH, embetter_encoder, plain_loop
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer._images import load_rgb
from sktransfer.backbones import get_backbone_spec, load_backbone

N_FILES = 4 if QUICK else 24
SIZE = (1000, 750) if QUICK else (4000, 3000)


def make_photos(folder: Path, n: int) -> list[str]:
    from skimage import data

    names = ["chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field"]
    photos = [Image.fromarray(getattr(data, k)()).convert("RGB") for k in names]
    paths = []
    for i in range(n):
        img = photos[i % len(photos)]
        if i >= len(photos):  # a different crop of the same photo each round
            w, h = img.size
            f = 0.6 + 0.08 * (i // len(photos))
            left = int((w - w * f) * ((i * 37) % 10) / 10)
            img = img.crop((left, 0, left + int(w * f), int(h * f)))
        path = folder / f"photo_{i:03d}.jpg"
        img.resize(SIZE, Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return paths


def decode_ms(paths, min_side) -> float:
    start = time.perf_counter()
    for p in paths:
        load_rgb(p, "row", min_side)
    return (time.perf_counter() - start) / len(paths) * 1e3


def main():
    torch.manual_seed(0)
    spec = get_backbone_spec("efficientnet_lite0")
    full_spec = dataclasses.replace(
        spec,
        preprocessing=dataclasses.replace(spec.preprocessing, reduced_decode=False),
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(Path(tmp), N_FILES)
        pre = spec.preprocessing

        def ext(**kw):
            e = PretrainedFeatureExtractor(batch_size=BATCH, cache=None, **kw)
            return e.fit(paths[:1])

        default = ext(backbone="efficientnet_lite0")
        fp32 = ext(backbone="efficientnet_lite0", precision="fp32")
        full = ext(backbone=full_spec, precision="fp32")
        loaded = load_backbone("efficientnet_lite0")
        model = copy.deepcopy(loaded.model).eval()
        model.to(memory_format=torch.channels_last)

        reduced_rows = fp32.transform(paths)  # warm-up, and closeness
        full_rows = full.transform(paths)
        cos = (reduced_rows * full_rows).sum(1) / (
            np.linalg.norm(reduced_rows, axis=1) * np.linalg.norm(full_rows, axis=1)
        )
        default.transform(paths[:4])
        plain_loop(paths[:2], model, pre)

        t_default, _ = best_time(lambda: default.transform(paths), repeat=2)
        t_fp32, _ = best_time(lambda: fp32.transform(paths), repeat=2)
        t_full, _ = best_time(lambda: full.transform(paths), repeat=1)
        t_plain, _ = best_time(lambda: plain_loop(paths, model, pre), repeat=1)
        emb = embetter_encoder()
        emb(paths[:1])
        t_emb, _ = best_time(lambda: emb(paths), repeat=1)
        ms_full = decode_ms(paths[:6], None)
        ms_draft = decode_ms(paths[:6], pre.resize_size)

    n = N_FILES
    write_result(
        "photos",
        {
            "machine": machine(),
            "data": f"{n} JPEG files {SIZE[0]}x{SIZE[1]}, quality 90 (upscaled "
            "scikit-image photos)",
            "model": "efficientnet_lite0, batch 32",
            "images_per_second": {
                "sktransfer_default": n / t_default,
                "sktransfer_fp32": n / t_fp32,
                "sktransfer_full_size_decode_fp32": n / t_full,
                "plain_pytorch_loop": n / t_plain,
                "embetter_TimmEncoder": n / t_emb,
            },
            "decode_ms_per_file": {"full_size": ms_full, "draft": ms_draft},
            "reduced_vs_full_decode": {
                "min_cosine": float(cos.min()),
                "mean_cosine": float(cos.mean()),
                "max_abs_difference": float(np.abs(reduced_rows - full_rows).max()),
                "max_abs_value": float(np.abs(full_rows).max()),
            },
            "ratios": {
                "sktransfer_vs_plain_loop": t_plain / t_default,
                "sktransfer_fp32_vs_plain_loop": t_plain / t_fp32,
                "sktransfer_vs_embetter": t_emb / t_default,
                "reduced_vs_full_decode_fp32": t_full / t_fp32,
            },
            "target": "sktransfer_vs_plain_loop >= 3",
        },
    )


if __name__ == "__main__":
    main()
