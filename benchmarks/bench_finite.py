"""What the embedding loop's finiteness check costs (issue 18: <= 2 %).

Every forward batch's rows are checked for NaN / inf before they are cached or
returned. Measured two ways, on the packaged EfficientNet-Lite0 (uint8 arrays)
and all-MiniLM-L6-v2 (Rotten Tomatoes snippets), in one run:

- the check's own time, summed over every batch of a real pass, as a fraction
  of that pass (the direct measure, insensitive to the machine's noise);
- the whole pass with the check against the same pass with the check replaced by
  a no-op, the fastest of alternating repeats (noisy on a 2-core machine).
"""

from __future__ import annotations

import time

import numpy as np
from _common import QUICK, best_time, machine, write_result

from sktransfer import PretrainedFeatureExtractor, clear_caches
from sktransfer._demo import load_rotten_tomatoes
from sktransfer._embedder import Embedder


def _measure(name: str, X) -> dict:
    original = Embedder._check_finite
    spent = []

    def timed(self, rows, lo, where):
        start = time.perf_counter()
        out = original(self, rows, lo, where)
        spent.append(time.perf_counter() - start)
        return out

    def unchecked(self, rows, lo, where):
        return np.ones(len(rows), bool)

    ext = PretrainedFeatureExtractor(name, cache=None).fit(X[:1])
    ext.transform(X[:64])  # warm-up: threads, allocator
    Embedder._check_finite = timed
    start = time.perf_counter()
    ext.transform(X)
    one_pass = time.perf_counter() - start
    Embedder._check_finite = original
    checked, unchecked_times = [], []
    for _ in range(1 if QUICK else 3):  # alternate, so drift hits both
        checked.append(best_time(lambda: ext.transform(X), 1)[0])
        Embedder._check_finite = unchecked
        unchecked_times.append(best_time(lambda: ext.transform(X), 1)[0])
        Embedder._check_finite = original
    clear_caches()
    return {
        "samples": len(X),
        "batches": len(spent),
        "check_seconds": sum(spent),
        "pass_seconds": one_pass,
        "check_fraction": sum(spent) / one_pass,
        "with_check_best_s": min(checked),
        "without_check_best_s": min(unchecked_times),
        "ratio_with_to_without": min(checked) / min(unchecked_times),
    }


def main():
    rng = np.random.default_rng(0)
    n_img, n_txt = (64, 256) if QUICK else (512, 2000)
    images = rng.integers(0, 255, (n_img, 224, 224, 3), np.uint8)
    texts = load_rotten_tomatoes()[0][:n_txt]
    results = {
        "efficientnet_lite0": _measure("efficientnet_lite0", images),
        "all-MiniLM-L6-v2": _measure("all-MiniLM-L6-v2", texts),
    }
    write_result(
        "finite_check",
        {"machine": machine(), "target": "check <= 2 % of a pass", **results},
    )


if __name__ == "__main__":
    main()
