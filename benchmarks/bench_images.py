"""Images per second from JPEG files: the extractor vs. a plain PyTorch loop and peers.

- EfficientNet-Lite0 (packaged weights): ``PretrainedFeatureExtractor`` vs. a plain
  hand-written loop doing the same work (PIL decode, resize 256 + centre crop 224,
  uint8 batch of 32, normalise, eval + inference_mode + channels_last, the same
  model object) and vs. embetter's ``ImageLoader | TimmEncoder`` on the same
  architecture (timm ``efficientnet_lite0``; random weights, as embetter would
  download them, which speed does not depend on). Target: extractor / plain loop
  >= 0.95. The extractor runs with its defaults (``precision="auto"``: bf16 on a
  CPU with native bf16), the plain loop in fp32, as one would write it; the
  fp32-to-fp32 comparison is the photo benchmark's ``sktransfer_fp32`` row.
- ResNet-18 (random weights, as img2vec would download them): the extractor vs.
  img2vec's ``Img2Vec.get_vec`` on batches of 32 PIL images.
- channels_last: the model's forward on one uint8 batch of 32, with and without it.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import QUICK, best_time, machine, make_image_files, write_result
from PIL import Image

from sktransfer import PretrainedFeatureExtractor
from sktransfer.backbones import load_backbone

N_IMAGES = 40 if QUICK else 256
BATCH = 32


def plain_loop(paths, model, pre):
    """What one writes by hand: decode, resize/crop, batch, normalise, forward."""
    from torchvision.transforms import v2

    tf = v2.Compose(
        [
            v2.Resize(
                int(pre.size / pre.crop_pct),
                interpolation=v2.InterpolationMode(pre.interpolation),
                antialias=True,
            ),
            v2.CenterCrop(pre.size),
            v2.PILToTensor(),
        ]
    )
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255
    out = []
    with torch.inference_mode():
        for lo in range(0, len(paths), BATCH):
            batch = torch.stack(
                [tf(Image.open(p).convert("RGB")) for p in paths[lo : lo + BATCH]]
            )
            x = ((batch.float() - mean) / std).contiguous(
                memory_format=torch.channels_last
            )
            # timm's pooled pre-logits features, as the extractor returns
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(out).numpy()


def embetter_encoder():
    """embetter's ``ImageLoader`` then ``TimmEncoder``, as its docs chain them.

    Called step by step: embetter's transformers set no fitted attribute, so
    scikit-learn 1.9's ``Pipeline.transform`` refuses them as unfitted.
    """
    import timm
    from embetter.vision import ImageLoader, TimmEncoder

    real = timm.create_model
    timm.create_model = lambda name, pretrained=False, **kw: real(
        name, pretrained=False, **kw
    )
    try:
        enc = TimmEncoder("efficientnet_lite0")
    finally:
        timm.create_model = real
    loader = ImageLoader(convert="RGB")
    return lambda paths: enc.transform(loader.transform(paths))


def img2vec_encoder():
    import img2vec_pytorch.img_to_vec as i2v
    from torchvision.models import resnet18

    real = i2v.resnet18
    i2v.resnet18 = lambda weights=None: resnet18(weights=None)
    try:
        return i2v.Img2Vec(model="resnet18")
    finally:
        i2v.resnet18 = real


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_image_files(Path(tmp), N_IMAGES)
        ours = PretrainedFeatureExtractor(
            "efficientnet_lite0", batch_size=BATCH, cache=None
        ).fit(paths[:1])
        loaded = load_backbone("efficientnet_lite0")
        model = copy.deepcopy(loaded.model).eval()
        model.to(memory_format=torch.channels_last)
        pre = loaded.spec.preprocessing
        ref = ours.transform(paths[:BATCH])  # warm-up, and the same features:
        diff = np.abs(plain_loop(paths[:BATCH], model, pre) - ref).max()

        t_ours, ours_runs = best_time(lambda: ours.transform(paths), repeat=3)
        t_plain, plain_runs = best_time(lambda: plain_loop(paths, model, pre), repeat=3)
        emb = embetter_encoder()
        emb(paths[:2])
        t_emb, _ = best_time(lambda: emb(paths), repeat=1)

        r18 = PretrainedFeatureExtractor(
            "resnet18", weights="random", batch_size=BATCH, cache=None
        ).fit(paths[:1])
        r18.transform(paths[:BATCH])
        i2v = img2vec_encoder()

        def run_i2v():
            for lo in range(0, len(paths), BATCH):
                i2v.get_vec(
                    [Image.open(p).convert("RGB") for p in paths[lo : lo + BATCH]]
                )

        run_i2v()
        t_r18, _ = best_time(lambda: r18.transform(paths), repeat=2)
        t_i2v, _ = best_time(run_i2v, repeat=2)

        batch = torch.randint(0, 256, (BATCH, 3, 224, 224), dtype=torch.uint8)
        # the extractor converted the shared model's weights to channels_last; a
        # conv with channels_last weights runs channels_last whatever its input,
        # so the NCHW reference needs contiguous weights too
        plain = copy.deepcopy(loaded.model).eval()
        plain.to(memory_format=torch.contiguous_format)

        def forward(m, cl):
            x = batch.float()
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                m(x)

        forward(model, True)
        forward(plain, False)
        t_cl, _ = best_time(lambda: forward(model, True), repeat=3)
        t_nchw, _ = best_time(lambda: forward(plain, False), repeat=3)

    n = N_IMAGES
    write_result(
        "images",
        {
            "machine": machine(),
            "data": f"{n} JPEG files, random crops of scikit-image photos, ~256-384 px",
            "batch_size": BATCH,
            "max_abs_difference_extractor_vs_plain_loop": float(diff),
            "images_per_second": {
                "efficientnet_lite0": {
                    "sktransfer": n / t_ours,
                    "plain_pytorch_loop": n / t_plain,
                    "embetter_TimmEncoder": n / t_emb,
                },
                "resnet18": {"sktransfer": n / t_r18, "img2vec": n / t_i2v},
            },
            "runs_seconds": {"sktransfer": ours_runs, "plain_pytorch_loop": plain_runs},
            "ratios": {
                "sktransfer_vs_plain_loop": t_plain / t_ours,
                "sktransfer_vs_embetter": t_emb / t_ours,
                "sktransfer_vs_img2vec": t_i2v / t_r18,
                "channels_last_speedup_lite0_forward": t_nchw / t_cl,
            },
            "target": "sktransfer_vs_plain_loop >= 0.95",
        },
    )


if __name__ == "__main__":
    main()
