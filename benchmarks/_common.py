"""Shared helpers of the benchmarks: the machine, timing, images, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
# BENCH_QUICK=1: tiny sizes, results to results/quick/, to check that the scripts
# run (the figures mean nothing then)
QUICK = os.environ.get("BENCH_QUICK") == "1"
if QUICK:
    RESULTS = RESULTS / "quick"


def machine(device: str = "cpu") -> dict:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def best_time(fn, repeat: int = 2) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeat`` times; the fastest wall time and all of them.

    The fastest run is the least disturbed by the rest of a noisy machine.
    """
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def write_result(name: str, payload: dict) -> Path:
    """Write ``results/<name>.json`` and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(payload, indent=2))
    return path


def make_image_files(folder: Path, n: int, size: int = 320, seed: int = 0) -> list:
    """``n`` JPEG files: random crops of scikit-image's sample photographs.

    Real photographs (not noise) so that JPEG decoding costs what it costs on
    real data; sizes vary around ``size`` so resizing is real work too.
    """
    from PIL import Image
    from skimage import data

    photos = [
        getattr(data, name)()
        for name in (
            "astronaut",
            "chelsea",
            "coffee",
            "rocket",
            "cat",
            "immunohistochemistry",
        )
    ]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w)))
        top, left = (
            int(rng.integers(0, h - side + 1)),
            int(rng.integers(0, w - side + 1)),
        )
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        out = int(size * rng.uniform(0.8, 1.2))
        path = folder / f"img{i:06d}.jpg"
        crop.resize((out, out)).save(path, quality=90)
        paths.append(str(path))
    return paths


WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
NOUN_FILES = {
    3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body",
    9: "cognition", 10: "communication", 11: "event", 12: "feeling", 13: "food",
    14: "group", 15: "location", 16: "motive", 17: "object", 18: "person",
    19: "phenomenon", 20: "plant", 21: "possession", 22: "process",
    23: "quantity", 24: "relation", 25: "shape", 26: "state", 27: "substance",
    28: "time",
}  # fmt: skip


def wordnet_noun_definitions(path: Path = WORDNET_NOUNS) -> list[tuple[str, str]]:
    """Every WordNet noun synset as ``(definition, "noun.<lexicographer
    file>")``, in file order (Debian's ``wordnet-base``)."""
    import re

    from sktransfer.adapt.datasets import wordnet_glosses

    rows = []
    for lexfile, gloss in wordnet_glosses(path):
        definition = re.split(r'[;"]', gloss)[0].strip()
        if definition:
            rows.append((definition, "noun." + NOUN_FILES[lexfile]))
    return rows
