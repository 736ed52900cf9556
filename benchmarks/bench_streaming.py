"""Peak memory when embedding 20,000 image files: streaming, not proportional to N.

Two ways out: ``transform`` (the output matrix is returned, so it is held in
memory) and ``transform_to_file`` (a memory-mapped ``.npy`` written chunk by
chunk, so nothing grows with N but the page cache, which the kernel reclaims).

Each size runs in a fresh subprocess; the figure is the process's peak resident
memory (``ru_maxrss``) minus its memory after loading the model and embedding one
batch. If the extractor held every decoded image, 20,000 images at 224x224x3
would need 3.0 GB; streamed, the peak grows only by the output (N x 960 floats)
and a few batches.

Backbone: torchvision MobileNetV3-Large with random weights (the figure is about
the data path, not the weights; a small network keeps the run short on a CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import QUICK, machine, make_image_files, write_result

CHILD = r"""
import json, os, resource, sys, tempfile, time
from sktransfer import PretrainedFeatureExtractor
paths = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
mode = sys.argv[3]
ext = PretrainedFeatureExtractor("mobilenet_v3_large", weights="random",
                                 batch_size=64, cache=None).fit(paths[:1])
ext.transform(paths[:64])
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = kib()
start = time.perf_counter()
if mode == "transform":
    out_MiB = ext.transform(paths[:n]).nbytes / 2**20
else:
    target = os.path.join(tempfile.mkdtemp(), "out.npy")
    ext.transform_to_file(paths[:n], target)
    out_MiB = os.path.getsize(target) / 2**20
secs = time.perf_counter() - start
print(json.dumps({"n": n, "mode": mode, "baseline_MiB": base / 1024,
                  "peak_MiB": kib() / 1024, "output_MiB": out_MiB, "seconds": secs}))
"""


def main(sizes=(2_000, 20_000)):
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_image_files(Path(tmp) / "img", max(sizes), size=160)
        listing = Path(tmp) / "paths.json"
        listing.write_text(json.dumps(paths))
        runs = []
        for mode, n in [(m, n) for m in ("transform", "to_file") for n in sizes]:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(listing), str(n), mode],
                check=True,
                capture_output=True,
                text=True,
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run["growth_MiB"] = run["peak_MiB"] - run["baseline_MiB"]
            run["decoded_input_if_held_MiB"] = n * 224 * 224 * 3 / 2**20
            run["images_per_second"] = n / run["seconds"]
            runs.append(run)
    small, big = runs[0], runs[len(sizes) - 1]
    file_small, file_big = runs[len(sizes)], runs[-1]
    write_result(
        "streaming",
        {
            "machine": machine(),
            "data": "JPEG files ~128-192 px, random crops of scikit-image photos",
            "backbone": "mobilenet_v3_large (random weights), batch_size=64",
            "runs": runs,
            "ratios": {
                "growth_20k_over_decoded_input": big["growth_MiB"]
                / big["decoded_input_if_held_MiB"],
                "growth_minus_output_20k_vs_2k": (big["growth_MiB"] - big["output_MiB"])
                / max(small["growth_MiB"] - small["output_MiB"], 1e-9),
                "to_file_growth_20k_vs_2k": file_big["growth_MiB"]
                / max(file_small["growth_MiB"], 1e-9),
                "to_file_growth_over_output_20k": file_big["growth_MiB"]
                / file_big["output_MiB"],
            },
        },
    )


if __name__ == "__main__":
    main((20, 200) if QUICK else (2_000, 20_000))
