"""Is bf16 on this CPU safe for the extractor? Measured on every demo task.

For each task of the demo (LFW faces, digits, Rotten Tomatoes) the frozen
backbone embeds the data in fp32 and in bf16 (``torch.autocast``); reported:
seconds of each pass, the smallest cosine between a sample's two embeddings, and
the 5-fold accuracy of the demo's probe (standardise + logistic regression for
images, logistic regression for texts; same folds) on each. ``precision="auto"``
picks bf16 on a CPU with native bf16 only if these agree within noise (one
fold-std). Run on a CPU without native bf16, the bf16 pass is emulated (slow);
the accuracies still say whether the numbers change.
"""

from __future__ import annotations

import time

import numpy as np
from _common import QUICK, machine, write_result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktransfer import PretrainedFeatureExtractor
from sktransfer._demo import load_digits_images, load_lfw, load_rotten_tomatoes
from sktransfer._runtime import cpu_has_native_bf16


def tasks():
    yield "LFW faces (200 images)", load_lfw, "efficientnet_lite0", True
    yield "digits (1,797 images)", load_digits_images, "efficientnet_lite0", True
    yield (
        "Rotten Tomatoes (4,866 texts)",
        load_rotten_tomatoes,
        "all-MiniLM-L6-v2",
        False,
    )


def main():
    rows = []
    for task, load, backbone, scale in tasks():
        X, y = load()
        if QUICK:
            X, y = X[:60], y[:60]
        out = {"task": task, "backbone": backbone}
        feats = {}
        for precision in ("fp32", "bf16"):
            ext = PretrainedFeatureExtractor(backbone, precision=precision, cache=None)
            ext.fit(X[:2]).transform(X[:8])  # warm-up
            start = time.perf_counter()
            feats[precision] = ext.transform(X)
            out[f"seconds_{precision}"] = time.perf_counter() - start
            probe = LogisticRegression(max_iter=2000)
            model = make_pipeline(StandardScaler(), probe) if scale else probe
            cv = StratifiedKFold(3 if QUICK else 5, shuffle=True, random_state=0)
            scores = cross_val_score(model, feats[precision], y, cv=cv)
            out[f"accuracy_{precision}"] = float(scores.mean())
            out[f"std_{precision}"] = float(scores.std())
        a, b = feats["fp32"], feats["bf16"]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out["min_cosine"] = float(cos.min())
        out["speedup_bf16"] = out["seconds_fp32"] / out["seconds_bf16"]
        out["accuracy_change"] = out["accuracy_bf16"] - out["accuracy_fp32"]
        out["within_noise"] = abs(out["accuracy_change"]) <= out["std_fp32"]
        rows.append(out)
        print(out, flush=True)
    write_result(
        "precision",
        {
            "machine": {**machine(), "native_bf16": cpu_has_native_bf16()},
            "rows": rows,
            "decision": "precision='auto' is bf16 on CPUs with native bf16 when "
            "every row is within noise",
            "all_within_noise": all(r["within_noise"] for r in rows),
        },
    )


if __name__ == "__main__":
    main()
